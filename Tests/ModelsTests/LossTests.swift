// The loss functions against their textbook formulas in Double: binary cross-entropy from logits
// (stable at |z| = 50, where the naive formula overflows), squared error, the VAE's closed-form KL,
// the sparsity penalty, and the activations with their derivatives.

import XCTest
import Kernels
@testable import Models

final class LossTests: XCTestCase {
    let pool = ComputePool(threads: 1)

    /// Runs bernoulliLoss on rows × columns and returns (perRow, gradient).
    func bernoulli(_ z: [Float], _ x: [Float], rows: Int, scale: Float) -> ([Float], [Float]) {
        let columns = z.count / rows
        var perRow = [Float](repeating: .nan, count: rows), grad = [Float](repeating: .nan, count: z.count)
        perRow.withUnsafeMutableBufferPointer { pr in
            grad.withUnsafeMutableBufferPointer { g in
                bernoulliLoss(logits: z, targets: x, rows: rows, columns: columns, scale: scale,
                              gradient: g.baseAddress!, perRow: pr.baseAddress!, pool: pool)
            }
        }
        return (perRow, grad)
    }

    /// −[x log σ(z) + (1 − x) log(1 − σ(z))] in Double, written stably for |z| where the naive one fails.
    func referenceBCE(_ z: Double, _ x: Double) -> Double {
        // log σ(z) = −log(1 + e^{−z}); log(1 − σ(z)) = −log(1 + e^{z}).
        func softplus(_ t: Double) -> Double { t > 0 ? t + log1p(exp(-t)) : log1p(exp(t)) }
        return x * softplus(-z) + (1 - x) * softplus(z)
    }

    func referenceSigmoid(_ z: Double) -> Double { z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z)) }

    func testBernoulliLossMatchesTextbookFormula() {
        // Moderate logits: the naive textbook formula in Double is accurate here.
        let z: [Float] = [0, 1.5, -2.25, 3, -0.5, 0.125, 7, -4]
        let x: [Float] = [0, 1, 0.3, 0, 1, 0.5, 1, 0.9]
        let (perRow, grad) = bernoulli(z, x, rows: 2, scale: 0.5)
        for r in 0..<2 {
            var expected = 0.0
            for c in 0..<4 {
                let zi = Double(z[r * 4 + c]), xi = Double(x[r * 4 + c])
                let s = 1 / (1 + exp(-zi))
                expected += -(xi * log(s) + (1 - xi) * log(1 - s))
                XCTAssertEqual(Double(grad[r * 4 + c]), (s - xi) * 0.5, accuracy: 1e-7)
            }
            XCTAssertEqual(Double(perRow[r]), expected, accuracy: 1e-6 * expected)
        }
    }

    func testBernoulliLossIsStableForLargeLogits() {
        // One element per row, so perRow is the element's loss. The naive formula in Float gives inf or NaN here.
        let z: [Float] = [50, 50, -50, -50, 50, -50, 88, -88, 20, -20, 1e-3]
        let x: [Float] = [0, 1, 0, 1, 0.25, 0.75, 0, 1, 1, 0, 1]
        let naive = zip(z, x).map { zi, xi -> Float in
            let s = 1 / (1 + expf(-zi))
            return -(xi * logf(s) + (1 - xi) * logf(1 - s))
        }
        XCTAssert(naive.contains { !$0.isFinite }, "the example should break the naive formula")
        let (perRow, grad) = bernoulli(z, x, rows: z.count, scale: 1)
        for i in 0..<z.count {
            let expected = referenceBCE(Double(z[i]), Double(x[i]))
            XCTAssert(perRow[i].isFinite && grad[i].isFinite, "z \(z[i]) x \(x[i])")
            // Relative accuracy, even on tiny losses like e^{-50} ≈ 2e-22.
            XCTAssertEqual(Double(perRow[i]), expected, accuracy: 2e-6 * expected, "loss at z \(z[i]) x \(x[i])")
            let g = referenceSigmoid(Double(z[i])) - Double(x[i])
            // σ(z) − x to within an ulp of 1 (for z ≫ 0 and x = 1, σ(z) rounds to 1 in Float).
            XCTAssertEqual(Double(grad[i]), g, accuracy: 1e-6 * abs(g) + 6e-8, "gradient at z \(z[i]) x \(x[i])")
        }
        // Spot values: softplus(50) = 50 to within e^{-50}; softplus(-50) = e^{-50}; sigmoid(-50) = e^{-50},
        // kept to full relative precision (1 − sigmoid(50) would round to 0).
        XCTAssertEqual(perRow[0], 50)
        XCTAssertEqual(Double(perRow[1]), exp(-50.0), accuracy: 1e-6 * exp(-50.0))
        XCTAssertEqual(Double(perRow[2]), exp(-50.0), accuracy: 1e-6 * exp(-50.0))
        XCTAssertEqual(perRow[3], 50)
        XCTAssertEqual(Double(grad[2]), exp(-50.0), accuracy: 1e-6 * exp(-50.0))
        XCTAssertEqual(grad[0], 1)
        XCTAssertEqual(grad[3], -1)
    }

    func testBernoulliLossWithoutGradientAndWithManyThreads() {
        // Large enough that the rows are split across threads; perRow must not change, and no gradient is written.
        let rows = 64, columns = 1024
        let z = (0..<(rows * columns)).map { Float(($0 * 37) % 201 - 100) * 0.6 }
        let x = (0..<(rows * columns)).map { Float(($0 * 13) % 11) / 10 }
        let (withGradient, _) = bernoulli(z, x, rows: rows, scale: 1)
        var perRow = [Float](repeating: .nan, count: rows)
        let many = ComputePool(threads: 4)
        perRow.withUnsafeMutableBufferPointer { pr in
            bernoulliLoss(logits: z, targets: x, rows: rows, columns: columns, scale: 1, gradient: nil,
                          perRow: pr.baseAddress!, pool: many)
        }
        XCTAssertEqual(perRow, withGradient)
        for r in [0, 17, 63] {
            var expected = 0.0
            for c in 0..<columns { expected += referenceBCE(Double(z[r * columns + c]), Double(x[r * columns + c])) }
            XCTAssertEqual(Double(perRow[r]), expected, accuracy: 1e-5 * expected)
        }
    }

    func testSquaredErrorLoss() {
        let z: [Float] = [0.5, -1, 2, 3.25, 0, -7, 1e3, 4]
        let x: [Float] = [0, 1, 2, -3, 0.1, -7, -1e3, 4.5]
        var perRow = [Float](repeating: .nan, count: 2), grad = [Float](repeating: .nan, count: 8)
        perRow.withUnsafeMutableBufferPointer { pr in
            grad.withUnsafeMutableBufferPointer { g in
                squaredErrorLoss(outputs: z, targets: x, rows: 2, columns: 4, scale: 0.25,
                                 gradient: g.baseAddress!, perRow: pr.baseAddress!, pool: pool)
            }
        }
        for r in 0..<2 {
            var expected = 0.0
            for c in 0..<4 {
                let d = Double(z[r * 4 + c]) - Double(x[r * 4 + c])
                expected += d * d
                XCTAssertEqual(Double(grad[r * 4 + c]), 2 * d * 0.25, accuracy: 1e-6 * abs(d))
            }
            XCTAssertEqual(Double(perRow[r]), expected, accuracy: 1e-6 * expected)
        }
        XCTAssertEqual(perRow[0], 0.25 + 4 + 0 + 6.25 * 6.25)
    }

    func testReconstructionSquaredError() {
        let z: [Float] = [0, 2, -3, 50, -50, 1]
        let x: [Float] = [0.5, 1, 0, 1, 0, 0.25]
        var plain = 0.0, sigmoid = 0.0
        for i in 0..<6 {
            let d = Double(z[i]) - Double(x[i]); plain += d * d
            let s = referenceSigmoid(Double(z[i])) - Double(x[i]); sigmoid += s * s
        }
        XCTAssertEqual(reconstructionSquaredError(outputs: z, targets: x, rows: 2, columns: 3, sigmoidOutputs: false),
                       plain, accuracy: 1e-5)
        XCTAssertEqual(reconstructionSquaredError(outputs: z, targets: x, rows: 2, columns: 3, sigmoidOutputs: true),
                       sigmoid, accuracy: 1e-6)
    }

    /// A VAE without hidden layers whose code weights are zero: the heads are the biases, so mu and
    /// log-variance are set by hand; then KL, the sample and the sparsity penalty are checked in closed form.
    func testVAEKLTermAndSampleMatchClosedForm() {
        let spec = makeSpec(.vae, inputs: 4, encoder: [], latent: 3, output: .gaussian, l1: 0.5, klWeight: 0.75)
        let model = Autoencoder(spec: spec)
        let parameters = FloatBuffer(count: model.parameterCount)
        model.initialise(parameters, seed: 3)
        let names = Dictionary(uniqueKeysWithValues: model.tensors.map { ($0.name, $0) })
        let mu: [Float] = [0.5, -1.25, 2]
        let logvar: [Float] = [-0.5, 0, 1.5]
        for i in 0..<parameters[names["encoder.mu.weight"]!].count {
            parameters[names["encoder.mu.weight"]!][i] = 0
            parameters[names["encoder.logvar.weight"]!][i] = 0
        }
        for j in 0..<3 {
            parameters[names["encoder.mu.bias"]!][j] = mu[j]
            parameters[names["encoder.logvar.bias"]!][j] = logvar[j]
        }
        let ws = Workspace(model: model, capacity: 2)
        for i in 0..<8 { ws.input.pointer[i] = Float(i) * 0.1 }
        var klExpected = 0.0
        for j in 0..<3 {
            let m = Double(mu[j]), lv = Double(logvar[j])
            klExpected += -0.5 * (1 + lv - m * m - exp(lv))
        }
        let noise = NoiseSource(seed: 17, firstSample: 40, corruptInputs: false)
        model.forward(parameters, ws, rows: 2, noise: noise, pool: pool)
        for r in 0..<2 {
            XCTAssertEqual(Double(ws.kl.pointer[r]), klExpected, accuracy: 1e-6 * klExpected)
            let key = RandomKey(seed: 17, stream: .latentNoise, 40 + UInt64(r))
            var l1 = 0.0
            for j in 0..<3 {
                XCTAssertEqual(ws.codes[r * 6 + j], mu[j])
                XCTAssertEqual(ws.codes[r * 6 + 3 + j], logvar[j])
                let z = Double(mu[j]) + exp(0.5 * Double(logvar[j])) * Double(key.normal(UInt64(j)))
                XCTAssertEqual(Double(ws.latent[r * 3 + j]), z, accuracy: 1e-6 * (1 + abs(z)))
                l1 += abs(z)
            }
            XCTAssertEqual(Double(ws.sparsity.pointer[r]), 0.5 * l1, accuracy: 1e-6 * l1)
            // Gaussian output: squared error of the decoder's output against the input.
            var se = 0.0
            for c in 0..<4 {
                let d = Double(ws.outputs[r * 4 + c]) - Double(ws.input.pointer[r * 4 + c]); se += d * d
            }
            XCTAssertEqual(Double(ws.reconstruction.pointer[r]), se, accuracy: 1e-6 * se)
            XCTAssertEqual(model.loss(ws, row: r),
                           ws.reconstruction.pointer[r] + 0.75 * ws.kl.pointer[r] + ws.sparsity.pointer[r])
        }
        // The two rows have different sample numbers, hence different draws.
        XCTAssertNotEqual(ws.latent[0], ws.latent[3])
        // Without sampling the latent is the mean and KL is unchanged.
        model.forward(parameters, ws, rows: 2, noise: NoiseSource(seed: 17, firstSample: 40, sampleLatent: false,
                                                                   corruptInputs: false), pool: pool)
        for r in 0..<2 {
            for j in 0..<3 { XCTAssertEqual(ws.latent[r * 3 + j], mu[j]) }
            XCTAssertEqual(Double(ws.kl.pointer[r]), klExpected, accuracy: 1e-6 * klExpected)
        }
        // mu = 0, logvar = 0: KL is exactly zero.
        for j in 0..<3 { parameters[names["encoder.mu.bias"]!][j] = 0; parameters[names["encoder.logvar.bias"]!][j] = 0 }
        model.forward(parameters, ws, rows: 2, noise: noise, pool: pool)
        XCTAssertEqual(ws.kl.pointer[0], 0)
    }

    /// The AE's KL term is zero and its sparsity penalty is l1 · Σ|code|.
    func testAEHasNoKLAndL1OnTheCode() {
        let spec = makeSpec(.ae, l1: 0.125, klWeight: 1)
        let f = Fixture(spec, rows: 3)
        // Stale values in the KL buffer must be overwritten.
        for r in 0..<3 { f.ws.kl.pointer[r] = 5 }
        f.forward()
        for r in 0..<3 {
            XCTAssertEqual(f.ws.kl.pointer[r], 0)
            var l1: Float = 0
            for j in 0..<3 { l1 += abs(f.ws.codes[r * 3 + j]) }
            XCTAssertEqual(f.ws.sparsity.pointer[r], 0.125 * l1, accuracy: 1e-6)
        }
    }

    func testActivationsAndDerivatives() {
        let v: [Float] = [-3, -0.5, 0, 0.25, 2]
        let bias: [Float] = [0.5, 0, 0, -0.25, 1]   // pre-activations: -2.5, -0.5, 0, 0, 3
        let pre = zip(v, bias).map { Double($0) + Double($1) }
        let cases: [(Activation, (Double) -> Double, (Double) -> Double)] = [
            (.relu, { max($0, 0) }, { $0 > 0 ? 1 : 0 }),
            (.leakyRelu, { $0 > 0 ? $0 : 0.01 * $0 }, { $0 > 0 ? 1 : 0.01 }),
            (.tanh, { Foundation.tanh($0) }, { 1 - Foundation.tanh($0) * Foundation.tanh($0) }),
            (.sigmoid, { 1 / (1 + exp(-$0)) }, { let s = 1 / (1 + exp(-$0)); return s * (1 - s) }),
            (.linear, { $0 }, { _ in 1 }),
        ]
        for (activation, f, df) in cases {
            var out = v
            out.withUnsafeMutableBufferPointer {
                addBiasAndActivate($0.baseAddress!, bias: bias, rows: 1, columns: 5, activation: activation, pool: pool)
            }
            var grad: [Float] = [1, -2, 3, 0.5, -1]
            let g0 = grad
            grad.withUnsafeMutableBufferPointer {
                multiplyByActivationDerivative($0.baseAddress!, output: out, count: 5, activation: activation, pool: pool)
            }
            for i in 0..<5 {
                XCTAssertEqual(Double(out[i]), f(pre[i]), accuracy: 1e-6, "\(activation) at \(pre[i])")
                if pre[i] != 0 || activation == .tanh || activation == .sigmoid || activation == .linear {
                    XCTAssertEqual(Double(grad[i]), Double(g0[i]) * df(pre[i]), accuracy: 1e-6,
                                   "\(activation)' at \(pre[i])")
                }
            }
        }
    }
}
