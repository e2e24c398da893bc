#if canImport(Glibc)
import Glibc
#endif
// Optimizers over the flat parameter buffer: one element-wise loop each, split across threads by
// ranges (so the result does not depend on the thread count). Their state is a few buffers of the
// parameters' layout plus a step count, all of which a checkpoint saves.
import Kernels

public enum OptimizerKind: String, CaseIterable, Sendable { case adam, sgd }

public struct OptimizerSettings: Equatable, Sendable {
    public var kind: OptimizerKind = .adam
    public var lr: Float = 0.001
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-8
    public var momentum: Float = 0.9
    public init() {}
}

public final class Optimizer: @unchecked Sendable {
    public let settings: OptimizerSettings
    /// Named state buffers: Adam "m" and "v"; SGD "momentum".
    public let state: [(name: String, buffer: FloatBuffer)]
    /// Updates applied so far (Adam's bias correction uses it).
    public var updates: Int64 = 0
    /// The learning rate of the next update: `settings.lr`, or a schedule's value for the step.
    public var learningRate: Float

    public init(settings: OptimizerSettings, parameterCount: Int) {
        self.settings = settings
        learningRate = settings.lr
        switch settings.kind {
        // A rank of a sharded update touches only its own segments of the state.
        case .adam: state = [("m", FloatBuffer(zeroedOnTouch: parameterCount)), ("v", FloatBuffer(zeroedOnTouch: parameterCount))]
        case .sgd: state = [("momentum", FloatBuffer(zeroedOnTouch: parameterCount))]
        }
    }

    /// Back to the state of a new run: no updates, zero moments.
    public func reset() {
        updates = 0
        for (_, buffer) in state { buffer.zero() }
    }

    /// Applies one update to `parameters` from `gradients` (the mean-loss gradient): to every element,
    /// or only to those in `ranges` (a rank's shard: the others are updated by other ranks, and each
    /// element's update depends on that element alone, so the result is the same bits).
    public func update(_ parameters: FloatBuffer, gradients: FloatBuffer, ranges: [Range<Int>]? = nil, pool: ComputePool) {
        updates += 1
        let p = parameters.pointer, g = gradients.pointer
        var s = settings
        s.lr = learningRate
        let t = Double(updates)
        let c1 = Float(1 - pow(Double(s.beta1), t)), c2 = Float(1 - pow(Double(s.beta2), t))
        let stepSize = s.lr / c1, rootC2 = c2.squareRoot()
        let first = state[0].buffer.pointer, second = state.count > 1 ? state[1].buffer.pointer : first
        func apply(_ range: Range<Int>) {
            let n = range.count, base = range.lowerBound
            let blocks = max(1, min(pool.threads * 4, n / 65_536))
            switch s.kind {
            case .adam:
                let m = first, v = second
                pool.parallelFor(blocks) { b in
                    for i in (base + n * b / blocks)..<(base + n * (b + 1) / blocks) {
                        let gi = g[i]
                        let mi = s.beta1 * m[i] + (1 - s.beta1) * gi
                        let vi = s.beta2 * v[i] + (1 - s.beta2) * gi * gi
                        m[i] = mi; v[i] = vi
                        p[i] -= stepSize * mi / (vi.squareRoot() / rootC2 + s.epsilon)
                    }
                }
            case .sgd:
                let u = first
                pool.parallelFor(blocks) { b in
                    for i in (base + n * b / blocks)..<(base + n * (b + 1) / blocks) {
                        let ui = s.momentum * u[i] + g[i]
                        u[i] = ui
                        p[i] -= s.lr * ui
                    }
                }
            }
        }
        if let ranges {
            for range in ranges { apply(range) }
        } else {
            apply(0..<parameters.count)
        }
    }
}
