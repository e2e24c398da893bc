// Denoising corruption (model.denoise): the statistics of each kind of noise, draws reproducible from
// (seed, sample number), and the loss measured against the clean input.
import Foundation
import Kernels
@testable import Models
import XCTest

final class FamilyNoiseTests: XCTestCase {
    let rows = 200, features = 50

    /// Inputs in (0.2, 0.8) so that neither 0 nor 1 occurs before corruption.
    func clean() -> [Float] {
        let key = RandomKey(seed: 11, stream: .evaluation)
        return (0..<(rows * features)).map { 0.2 + 0.6 * key.uniform(UInt64($0)) }
    }

    func corrupted(_ noise: NoiseKind, level: Float, seed: UInt64 = 5, firstSample: UInt64 = 0) -> [Float] {
        var spec = ModelSpec()
        spec.kind = .ae; spec.inputs = features; spec.encoder = []; spec.latent = 2
        spec.noise = noise; spec.noiseLevel = level
        let model = Autoencoder(spec: spec)
        var out = [Float](repeating: .nan, count: rows * features)
        let x = clean()
        x.withUnsafeBufferPointer { xp in
            out.withUnsafeMutableBufferPointer { op in
                model.corrupt(xp.baseAddress!, into: op.baseAddress!, rows: rows,
                              noise: NoiseSource(seed: seed, firstSample: firstSample, corruptInputs: true),
                              pool: ComputePool(threads: 1))
            }
        }
        return out
    }

    func testMaskingZeroesAboutTheLevel() {
        let x = clean()
        for level: Float in [0.1, 0.5] {
            let y = corrupted(.masking, level: level)
            var masked = 0
            for i in 0..<y.count {
                if y[i] == 0 { masked += 1 } else { XCTAssertEqual(y[i], x[i]) }
            }
            XCTAssertEqual(Double(masked) / Double(y.count), Double(level), accuracy: 0.02, "masking \(level)")
        }
        XCTAssertEqual(corrupted(.masking, level: 0), x)
        XCTAssertTrue(corrupted(.masking, level: 1).allSatisfy { $0 == 0 })
    }

    func testSaltAndPepperSetsHalfToZeroHalfToOne() {
        let x = clean()
        let y = corrupted(.saltPepper, level: 0.4)
        var zeros = 0, ones = 0
        for i in 0..<y.count {
            if y[i] == 0 { zeros += 1 } else if y[i] == 1 { ones += 1 } else { XCTAssertEqual(y[i], x[i]) }
        }
        let n = Double(y.count)
        XCTAssertEqual(Double(zeros + ones) / n, 0.4, accuracy: 0.02)
        XCTAssertEqual(Double(zeros) / n, 0.2, accuracy: 0.015)
        XCTAssertEqual(Double(ones) / n, 0.2, accuracy: 0.015)
    }

    func testGaussianNoiseHasTheLevelAsStandardDeviation() {
        let x = clean()
        let y = corrupted(.gaussian, level: 0.3)
        let d = zip(y, x).map { Double($0 - $1) }
        let mean = d.reduce(0, +) / Double(d.count)
        let sd = (d.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(d.count)).squareRoot()
        XCTAssertEqual(mean, 0, accuracy: 0.01)
        XCTAssertEqual(sd, 0.3, accuracy: 0.01)
        // Roughly normal: about 68% within one standard deviation.
        let within = Double(d.filter { abs($0) < 0.3 }.count) / Double(d.count)
        XCTAssertEqual(within, 0.683, accuracy: 0.02)
    }

    func testDrawsAreKeyedBySeedAndSampleNumber() {
        for kind in [NoiseKind.gaussian, .masking, .saltPepper] {
            let a = corrupted(kind, level: 0.3), b = corrupted(kind, level: 0.3)
            XCTAssertEqual(a, b, "\(kind): same seed, same draws")
            XCTAssertNotEqual(a, corrupted(kind, level: 0.3, seed: 6), "\(kind): another seed")
            // Row r with firstSample 0 is sample r; with firstSample 10 row r is sample r + 10.
            // Draws depend on the sample number only: sample 10 is row 10 of `a` and row 0 of `shifted`.
            let shifted = corrupted(kind, level: 0.3, firstSample: 10)
            if kind == .masking {
                for c in 0..<features {
                    XCTAssertEqual(a[10 * features + c] == 0, shifted[c] == 0, "masking pattern of sample 10")
                }
            }
            XCTAssertNotEqual(Array(a[0..<features]), Array(shifted[0..<features]))
        }
    }

    /// The reconstruction loss of a denoising pass is measured against the clean input.
    func testLossIsAgainstTheCleanInput() {
        var spec = ModelSpec()
        spec.kind = .ae; spec.inputs = features; spec.encoder = [8]; spec.latent = 3; spec.activation = .tanh
        spec.output = .gaussian; spec.noise = .masking; spec.noiseLevel = 0.5
        let model = Autoencoder(spec: spec)
        let parameters = FloatBuffer(count: model.parameterCount)
        model.initialise(parameters, seed: 2)
        let ws = Workspace(model: model, capacity: rows)
        let x = clean()
        x.withUnsafeBufferPointer { ws.input.pointer.update(from: $0.baseAddress!, count: x.count) }
        model.forward(parameters, ws, rows: rows, noise: NoiseSource(seed: 5, firstSample: 0, corruptInputs: true),
                      pool: ComputePool(threads: 1))
        XCTAssertTrue(ws.inputWasCorrupted)
        XCTAssertEqual(ws.input.array.prefix(x.count).map { $0 }, x, "the clean input is kept")
        for r in 0..<rows {
            var e: Float = 0
            for c in 0..<features { let d = ws.outputs[r * features + c] - x[r * features + c]; e += d * d }
            XCTAssertEqual(ws.reconstruction.pointer[r], e, accuracy: 1e-4 * max(e, 1))
        }
        XCTAssertEqual(corrupted(.masking, level: 0.5), ws.corrupted.array.prefix(x.count).map { $0 },
                       "the encoder saw the corrupted copy of (seed, sample)")
    }
}
