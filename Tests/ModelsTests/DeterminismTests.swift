// Forward and backward do not depend on batching or thread count: a row's outputs are the same in any
// batch, and a batch's gradient is exactly the pairwise-tree combination of its micro-batches' gradients.

import XCTest
import Kernels
@testable import Models

final class DeterminismTests: XCTestCase {
    let specs: [ModelSpec] = [
        makeSpec(.ae, activation: .tanh, output: .bernoulli, noise: .gaussian, noiseLevel: 0.3, l1: 0.1),
        makeSpec(.vae, activation: .relu, output: .gaussian, noise: .masking, noiseLevel: 0.25, l1: 0.05, klWeight: 0.5),
        makeSpec(.vae, encoder: [], activation: .sigmoid, output: .bernoulli, noise: .saltPepper, noiseLevel: 0.2),
    ]

    /// The gradient of rows [start, start + count) of `inputs`, with sample numbers firstSample + start + r.
    func gradient(_ spec: ModelSpec, inputs: [Float], start: Int, count: Int, chunk: Int, firstSample: UInt64,
                  threads: Int = 1) -> (gradient: [Float], losses: [Float], outputs: [Float], latent: [Float]) {
        let d = spec.inputs
        let f = Fixture(spec, rows: count, seed: 5, threads: threads,
                        noise: NoiseSource(seed: 77, firstSample: firstSample + UInt64(start),
                                           corruptInputs: spec.noise != .none),
                        inputs: Array(inputs[(start * d)..<((start + count) * d)]))
        let g = f.analyticGradient(chunk: chunk, scale: 0.125)
        return (g, f.rowLosses, Array(UnsafeBufferPointer(start: f.ws.outputs, count: count * d)),
                Array(UnsafeBufferPointer(start: f.ws.latent, count: count * spec.latent)))
    }

    func bits(_ x: [Float]) -> [UInt32] { x.map(\.bitPattern) }

    func testBatchGradientIsTreeOfHalves() {
        for spec in specs {
            let inputs = makeInputs(rows: 12, inputs: spec.inputs, output: spec.output, seed: 21)
            // 8 rows in chunks of 4: two leaves, a + b.
            let full = gradient(spec, inputs: inputs, start: 0, count: 8, chunk: 4, firstSample: 1000)
            let a = gradient(spec, inputs: inputs, start: 0, count: 4, chunk: 4, firstSample: 1000)
            let b = gradient(spec, inputs: inputs, start: 4, count: 4, chunk: 4, firstSample: 1000)
            XCTAssertEqual(bits(full.gradient), bits(zip(a.gradient, b.gradient).map { $0 + $1 }), "\(spec.kind) 8 = 4 + 4")
            XCTAssertEqual(bits(full.losses), bits(a.losses + b.losses))
            // The halves really are different (the test would be vacuous otherwise).
            XCTAssertNotEqual(a.gradient, b.gradient)
            // 8 rows in chunks of 2: ((l0 + l1) + (l2 + l3)), whose halves are 4-row batches in chunks of 2.
            let full2 = gradient(spec, inputs: inputs, start: 0, count: 8, chunk: 2, firstSample: 1000)
            let a2 = gradient(spec, inputs: inputs, start: 0, count: 4, chunk: 2, firstSample: 1000)
            let b2 = gradient(spec, inputs: inputs, start: 4, count: 4, chunk: 2, firstSample: 1000)
            XCTAssertEqual(bits(full2.gradient), bits(zip(a2.gradient, b2.gradient).map { $0 + $1 }), "\(spec.kind) chunk 2")
            // 12 rows in chunks of 4: three leaves, (a + b) + c.
            let full3 = gradient(spec, inputs: inputs, start: 0, count: 12, chunk: 4, firstSample: 1000)
            let c = gradient(spec, inputs: inputs, start: 8, count: 4, chunk: 4, firstSample: 1000)
            let tree = zip(zip(a.gradient, b.gradient).map { $0 + $1 }, c.gradient).map { $0 + $1 }
            XCTAssertEqual(bits(full3.gradient), bits(tree), "\(spec.kind) 12 = (4 + 4) + 4")
        }
    }

    func testRowOutputsDoNotDependOnTheBatch() {
        for spec in specs {
            let d = spec.inputs, z = spec.latent
            let inputs = makeInputs(rows: 8, inputs: d, output: spec.output, seed: 22)
            let full = gradient(spec, inputs: inputs, start: 0, count: 8, chunk: 8, firstSample: 50)
            let part = gradient(spec, inputs: inputs, start: 3, count: 3, chunk: 3, firstSample: 50)
            XCTAssertEqual(bits(part.outputs), bits(Array(full.outputs[(3 * d)..<(6 * d)])), "\(spec.kind)")
            XCTAssertEqual(bits(part.latent), bits(Array(full.latent[(3 * z)..<(6 * z)])), "\(spec.kind)")
            XCTAssertEqual(bits(part.losses), bits(Array(full.losses[3..<6])), "\(spec.kind)")
            // Moving the rows to other sample numbers changes their noise (and so their outputs).
            let moved = gradient(spec, inputs: inputs, start: 3, count: 3, chunk: 3, firstSample: 51)
            XCTAssertNotEqual(moved.losses, part.losses, "\(spec.kind): noise must follow the sample number")
        }
    }

    /// Repeated forwards with one NoiseSource see the same draws (what the finite differences rely on).
    func testRepeatedForwardIsIdentical() {
        for spec in specs {
            let f = Fixture(spec, rows: 4)
            f.forward()
            let first = (f.rowLosses, Array(UnsafeBufferPointer(start: f.ws.outputs, count: 4 * spec.inputs)))
            f.forward()
            XCTAssertEqual(bits(f.rowLosses), bits(first.0))
            XCTAssertEqual(bits(Array(UnsafeBufferPointer(start: f.ws.outputs, count: 4 * spec.inputs))), bits(first.1))
        }
    }

    func testThreadCountDoesNotChangeForwardOrBackward() {
        // Large enough that the products and the element-wise passes are split between threads.
        let spec = makeSpec(.vae, inputs: 256, encoder: [128], latent: 8, activation: .tanh, output: .bernoulli,
                            noise: .masking, noiseLevel: 0.2, l1: 0.01)
        let inputs = makeInputs(rows: 128, inputs: spec.inputs, output: spec.output, seed: 23)
        let one = gradient(spec, inputs: inputs, start: 0, count: 128, chunk: 32, firstSample: 0, threads: 1)
        for threads in [2, 3] {
            let many = gradient(spec, inputs: inputs, start: 0, count: 128, chunk: 32, firstSample: 0, threads: threads)
            XCTAssert(bits(many.outputs) == bits(one.outputs), "outputs differ with \(threads) threads")
            XCTAssert(bits(many.losses) == bits(one.losses), "losses differ with \(threads) threads")
            XCTAssert(bits(many.gradient) == bits(one.gradient), "gradients differ with \(threads) threads")
        }
    }
}
