// Adam and SGD with momentum against hand-computed references in Double (PyTorch's formulas), and
// independence from the thread count.

import XCTest
import Kernels
@testable import Models

final class OptimizerTests: XCTestCase {
    func buffer(_ values: [Float]) -> FloatBuffer {
        let b = FloatBuffer(count: values.count)
        for (i, v) in values.enumerated() { b.pointer[i] = v }
        return b
    }

    /// Gradients of three steps for four parameters: large, small, sign-changing and zero, and one
    /// comparable to epsilon so that where epsilon enters the denominator matters.
    let initial: [Float] = [1.0, -0.5, 0.25, 2.0, -1.5]
    let gradients: [[Float]] = [
        [0.3, -1.2, 0.002, 0, 4e-3],
        [-0.1, -0.8, 0.004, 0, 1e-3],
        [0.5, 2.0, -0.003, 0, -2e-3],
    ]

    func testAdamMatchesReference() {
        var settings = OptimizerSettings()
        settings.kind = .adam; settings.lr = 0.01; settings.beta1 = 0.8; settings.beta2 = 0.95; settings.epsilon = 1e-3
        let opt = Optimizer(settings: settings, parameterCount: initial.count)
        XCTAssertEqual(opt.state.map(\.name), ["m", "v"])
        let p = buffer(initial)
        let pool = ComputePool(threads: 1)
        // Reference (torch.optim.Adam): m = b1 m + (1 − b1) g; v = b2 v + (1 − b2) g²;
        // p −= lr / (1 − b1^t) · m / (sqrt(v) / sqrt(1 − b2^t) + eps).
        var rp = initial.map(Double.init), rm = [Double](repeating: 0, count: 5), rv = rm
        let b1 = 0.8, b2 = 0.95, lr = 0.01, eps = 1e-3
        for (step, g) in gradients.enumerated() {
            opt.update(p, gradients: buffer(g), pool: pool)
            let t = Double(step + 1)
            for i in 0..<5 {
                let gi = Double(g[i])
                rm[i] = b1 * rm[i] + (1 - b1) * gi
                rv[i] = b2 * rv[i] + (1 - b2) * gi * gi
                rp[i] -= lr / (1 - pow(b1, t)) * rm[i] / (rv[i].squareRoot() / (1 - pow(b2, t)).squareRoot() + eps)
            }
            XCTAssertEqual(opt.updates, Int64(step + 1))
            for i in 0..<5 {
                XCTAssertEqual(Double(p.pointer[i]), rp[i], accuracy: 1e-6 * max(1, abs(rp[i])), "step \(step + 1) p[\(i)]")
                XCTAssertEqual(Double(opt.state[0].buffer.pointer[i]), rm[i], accuracy: 1e-6 * abs(rm[i]) + 1e-12)
                XCTAssertEqual(Double(opt.state[1].buffer.pointer[i]), rv[i], accuracy: 1e-6 * abs(rv[i]) + 1e-15)
            }
        }
        // The first step moves each parameter with a clearly nonzero gradient by about lr against its sign.
        XCTAssertEqual(p.pointer[3], 2.0, "zero gradients leave a parameter alone")
        // Independent sanity: after three steps the parameters moved by the reference's amounts, not by
        // those of a variant without bias correction.
        var noCorrection = initial.map(Double.init)
        var m = [Double](repeating: 0, count: 5), v = m
        for g in gradients {
            for i in 0..<5 {
                let gi = Double(g[i]); m[i] = b1 * m[i] + (1 - b1) * gi; v[i] = b2 * v[i] + (1 - b2) * gi * gi
                noCorrection[i] -= lr * m[i] / (v[i].squareRoot() + eps)
            }
        }
        XCTAssertGreaterThan(abs(noCorrection[0] - rp[0]), 1e-3)
    }

    func testAdamDefaultsEpsilonPlacement() {
        // PyTorch defaults; a gradient of 1e-8 is comparable to eps and tells eps·sqrt(1 − b2^t) (TF-style) from eps.
        var settings = OptimizerSettings()
        settings.kind = .adam
        XCTAssertEqual(settings.lr, 0.001); XCTAssertEqual(settings.beta1, 0.9); XCTAssertEqual(settings.beta2, 0.999)
        XCTAssertEqual(settings.epsilon, 1e-8)
        let opt = Optimizer(settings: settings, parameterCount: 2)
        let p = buffer([0, 0])
        opt.update(p, gradients: buffer([1e-8, 1]), pool: ComputePool(threads: 1))
        // Step 1: m̂ = g, v̂ = g², update = lr · g / (|g| + eps).
        XCTAssertEqual(Double(p.pointer[0]), -0.001 * 1e-8 / (1e-8 + 1e-8), accuracy: 1e-8)
        XCTAssertEqual(Double(p.pointer[1]), -0.001 / (1 + 1e-8), accuracy: 1e-9)
    }

    func testSGDMomentumMatchesReference() {
        var settings = OptimizerSettings()
        settings.kind = .sgd; settings.lr = 0.1; settings.momentum = 0.7
        let opt = Optimizer(settings: settings, parameterCount: initial.count)
        XCTAssertEqual(opt.state.map(\.name), ["momentum"])
        let p = buffer(initial)
        // torch.optim.SGD (dampening 0, no Nesterov): buf = momentum · buf + g (buf = g at step 1); p −= lr · buf.
        var rp = initial.map(Double.init), rb = [Double](repeating: 0, count: 5)
        for (step, g) in gradients.enumerated() {
            opt.update(p, gradients: buffer(g), pool: ComputePool(threads: 2))
            for i in 0..<5 {
                rb[i] = step == 0 ? Double(g[i]) : 0.7 * rb[i] + Double(g[i])
                rp[i] -= 0.1 * rb[i]
                XCTAssertEqual(Double(p.pointer[i]), rp[i], accuracy: 1e-6 * max(1, abs(rp[i])), "step \(step + 1) p[\(i)]")
                XCTAssertEqual(Double(opt.state[0].buffer.pointer[i]), rb[i], accuracy: 1e-6 * abs(rb[i]) + 1e-12)
            }
        }
        XCTAssertEqual(opt.updates, 3)
        // Without momentum it is plain gradient descent.
        settings.momentum = 0
        let plain = Optimizer(settings: settings, parameterCount: 1)
        let q = buffer([1])
        plain.update(q, gradients: buffer([2]), pool: ComputePool(threads: 1))
        plain.update(q, gradients: buffer([-1]), pool: ComputePool(threads: 1))
        XCTAssertEqual(q.pointer[0], 1 - 0.1 * 2 + 0.1 * 1, accuracy: 1e-7)
    }

    func testThreadCountDoesNotChangeTheResult() {
        // Enough parameters (> 2 · 65536) that the loop is split into several blocks.
        let n = 300_003
        let key = RandomKey(seed: 8, stream: .evaluation)
        let start = (0..<n).map { key.normal(UInt64($0)) }
        for kind in OptimizerKind.allCases {
            var settings = OptimizerSettings()
            settings.kind = kind
            var results: [[Float]] = []
            var states: [[[Float]]] = []
            var afterFirstStep: [Float] = []
            for threads in [1, 3] {
                let pool = ComputePool(threads: threads)
                let opt = Optimizer(settings: settings, parameterCount: n)
                let p = buffer(start)
                for step in 0..<3 {
                    // Gradients of either sign with |g| in [0.5, 1.5): every first step moves every parameter.
                    let g = buffer((0..<n).map { i -> Float in
                        let u = key.uniform(UInt64(n * (step + 1) + i))
                        return i % 3 == 0 ? -(0.5 + u) : 0.5 + u
                    })
                    opt.update(p, gradients: g, pool: pool)
                    if step == 0 && threads == 3 { afterFirstStep = p.array }
                }
                results.append(p.array)
                states.append(opt.state.map(\.buffer.array))
            }
            XCTAssert(results[0] == results[1], "\(kind): parameters differ between 1 and 3 threads")
            XCTAssert(states[0] == states[1], "\(kind): state differs between 1 and 3 threads")
            // The first step moves every parameter by about lr (a block range error would leave some alone).
            let unchanged = (0..<n).filter { afterFirstStep[$0] == start[$0] }
            XCTAssert(unchanged.isEmpty, "\(kind): \(unchanged.count) parameters were not updated, first \(unchanged.prefix(5))")
        }
    }
}
