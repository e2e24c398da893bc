// Shared fixtures of the Models tests: small models on fixed inputs, their objective
// L = scale · Σ_rows loss(row) in Double, and the analytic gradient from `backward`.

import XCTest
import Kernels
@testable import Models

func makeSpec(_ kind: ModelKind = .ae, inputs: Int = 7, encoder: [LayerSpec] = [6, 5], latent: Int = 3,
              activation: Activation = .tanh, output: OutputDistribution = .bernoulli,
              noise: NoiseKind = .none, noiseLevel: Float = 0, l1: Float = 0, klWeight: Float = 1) -> ModelSpec {
    var s = ModelSpec()
    s.kind = kind; s.inputs = inputs; s.encoder = encoder; s.latent = latent
    s.activation = activation; s.output = output; s.noise = noise; s.noiseLevel = noiseLevel
    s.l1 = l1; s.klWeight = klWeight
    return s
}

/// Deterministic test data: Bernoulli targets in [0, 1] (with some exact 0s and 1s), Gaussian ones around 0.
func makeInputs(rows: Int, inputs: Int, output: OutputDistribution, seed: UInt64) -> [Float] {
    let key = RandomKey(seed: seed, stream: .evaluation, 12345)
    return (0..<(rows * inputs)).map { i in
        switch output {
        case .bernoulli:
            let u = key.uniform(UInt64(i))
            return u < 0.15 ? 0 : (u > 0.85 ? 1 : u)
        case .gaussian:
            return key.normal(UInt64(i))
        }
    }
}

/// One model with parameters, gradient buffer and workspace for `rows` rows of fixed input.
final class Fixture {
    let model: Autoencoder
    let parameters: FloatBuffer
    let gradients: FloatBuffer
    let ws: Workspace
    let pool: ComputePool
    let rows: Int
    var noise: NoiseSource
    let inputs: [Float]

    init(_ spec: ModelSpec, rows: Int, seed: UInt64 = 1, threads: Int = 1, capacity: Int? = nil,
         noise: NoiseSource? = nil, inputs: [Float]? = nil) {
        model = Autoencoder(spec: spec)
        parameters = FloatBuffer(count: model.parameterCount)
        gradients = FloatBuffer(count: model.parameterCount)
        model.initialise(parameters, seed: seed)
        ws = Workspace(model: model, capacity: capacity ?? rows)
        pool = ComputePool(threads: threads)
        self.rows = rows
        self.noise = noise ?? NoiseSource(seed: seed &+ 100, firstSample: 0, corruptInputs: spec.noise != .none)
        self.inputs = inputs ?? makeInputs(rows: rows, inputs: spec.inputs, output: spec.output, seed: seed)
        precondition(self.inputs.count == rows * spec.inputs)
        setInput(self.inputs)
    }

    func setInput(_ x: [Float]) {
        x.withUnsafeBufferPointer { ws.input.pointer.update(from: $0.baseAddress!, count: x.count) }
    }

    func forward() { model.forward(parameters, ws, rows: rows, noise: noise, pool: pool) }

    /// Per-row losses of the last forward.
    var rowLosses: [Float] { (0..<rows).map { model.loss(ws, row: $0) } }

    /// scale · Σ_rows loss(row), summed in Double.
    func objective(scale: Float) -> Double {
        forward()
        return Double(scale) * rowLosses.reduce(0.0) { $0 + Double($1) }
    }

    /// dL/dθ from forward + backward.
    func analyticGradient(chunk: Int, scale: Float) -> [Float] {
        forward()
        model.backward(parameters, gradients, ws, rows: rows, chunk: chunk, scale: scale, pool: pool)
        return gradients.array
    }

    /// Which side of every kink the last forward was on: the sign of each hidden ReLU/leaky pre-activation
    /// (read from the outputs) and, with an L1 penalty, the sign of each latent value.
    func kinkPattern() -> [Int8] {
        var pattern: [Int8] = []
        for (layer, buffer) in zip(model.layers, ws.activations) where layer.activation == .relu || layer.activation == .leakyRelu {
            for i in 0..<(rows * layer.output.count) { pattern.append(buffer.pointer[i] > 0 ? 1 : 0) }
        }
        if model.spec.l1 != 0 {
            let z = ws.latent
            for i in 0..<(rows * model.spec.latent) { pattern.append(z[i] > 0 ? 1 : (z[i] < 0 ? -1 : 0)) }
        }
        return pattern
    }
}

struct GradientCheck {
    var checked = 0
    var skipped = 0
    var errors: [Double] = []
    var worst: (index: Int, analytic: Float, numeric: Double, error: Double) = (-1, 0, 0, 0)
    var median: Double { errors.isEmpty ? .nan : errors.sorted()[errors.count / 2] }
    var maxError: Double { errors.max() ?? .nan }
    /// Coordinates whose analytic and numeric derivatives disagree in sign while both are clearly nonzero.
    var signMismatches = 0
}

/// Central differences of `fixture.objective` with respect to every parameter (or `indices`), compared
/// with `backward`'s gradient. Error of a coordinate: |numeric − analytic| / (|analytic| + floor), where
/// floor = floorFraction · rms(analytic gradient) absorbs the Float rounding of the objective on tiny
/// derivatives. Coordinates whose ±h perturbation crosses a kink (ReLU, |·|) are skipped.
func checkGradient(_ f: Fixture, chunk: Int, scale: Float = 1, h: Float = 1e-2, floorFraction: Double = 0.02,
                   indices: [Int]? = nil) -> GradientCheck {
    let analytic = f.analyticGradient(chunk: chunk, scale: scale)
    let basePattern = f.kinkPattern()
    let rms = (analytic.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(analytic.count)).squareRoot()
    let floor = max(floorFraction * rms, 1e-6)
    var result = GradientCheck()
    let p = f.parameters.pointer
    for i in indices ?? Array(0..<f.model.parameterCount) {
        let saved = p[i]
        let plus = saved + h, minus = saved - h
        p[i] = plus
        let lp = f.objective(scale: scale)
        let patternPlus = f.kinkPattern()
        p[i] = minus
        let lm = f.objective(scale: scale)
        let patternMinus = f.kinkPattern()
        p[i] = saved
        if patternPlus != basePattern || patternMinus != basePattern { result.skipped += 1; continue }
        let numeric = (lp - lm) / (Double(plus) - Double(minus))
        let a = Double(analytic[i])
        let error = abs(numeric - a) / (abs(a) + floor)
        if a * numeric < 0 && abs(a) > floor && abs(numeric) > floor { result.signMismatches += 1 }
        result.errors.append(error)
        result.checked += 1
        if error > result.worst.error { result.worst = (i, analytic[i], numeric, error) }
    }
    f.forward()   // leave the workspace at the unperturbed parameters
    return result
}

/// Which tensor a parameter index lies in, for messages.
func tensorName(_ model: Autoencoder, _ index: Int) -> String {
    for t in model.tensors where (t.offset..<(t.offset + t.count)).contains(index) {
        return "\(t.name)[\(index - t.offset)]"
    }
    return "?\(index)"
}

/// Indices of every parameter of the tensors whose name starts with `prefix`.
func indices(_ model: Autoencoder, prefix: String) -> [Int] {
    model.tensors.filter { $0.name.hasPrefix(prefix) }.flatMap { Array($0.offset..<($0.offset + $0.count)) }
}
