// The learning rate and the KL weight as functions of the global step alone (train.lr_schedule,
// model.kl_schedule), so that every rank, every rank count and a resumed run use the same values.
import Foundation

public enum LearningRateScheduleKind: String, CaseIterable, Sendable {
    /// train.lr throughout.
    case constant
    /// Linear warm-up from lr / warmup_steps to lr over `warmup_steps`, then half a cosine down to `min_lr` at the last step.
    case cosine
    /// lr × factor^(step / every).
    case step
}

public struct LearningRateSchedule: Equatable, Sendable {
    public var kind: LearningRateScheduleKind = .constant
    public var warmupSteps = 0
    public var minLR: Float = 0
    public var every = 1000
    public var factor: Float = 0.5
    public init() {}

    /// The learning rate of global step `step` (0-based) of a run of `totalSteps` steps.
    public func rate(base: Float, step: Int, totalSteps: Int) -> Float {
        switch kind {
        case .constant:
            return base
        case .step:
            return Float(Double(base) * pow(Double(factor), Double(step / max(every, 1))))
        case .cosine:
            if step < warmupSteps { return Float(Double(base) * Double(step + 1) / Double(warmupSteps)) }
            let span = max(1, totalSteps - 1 - warmupSteps)
            let t = min(1, Double(step - warmupSteps) / Double(span))
            return Float(Double(minLR) + (Double(base) - Double(minLR)) * 0.5 * (1 + cos(Double.pi * t)))
        }
    }
}

public enum KLScheduleKind: String, CaseIterable, Sendable {
    /// model.kl_weight throughout.
    case constant
    /// From kl_weight / warmup_steps up to kl_weight over `warmup_steps` (KL annealing).
    case linear
    /// Cyclical annealing: each `period` steps rise linearly over the first `ramp` fraction, then hold.
    case cyclical
}

public struct KLSchedule: Equatable, Sendable {
    public var kind: KLScheduleKind = .constant
    public var warmupSteps = 1000
    public var period = 1000
    public var ramp: Float = 0.5
    public init() {}

    /// The factor of model.kl_weight at global step `step` (0-based), in (0, 1].
    public func factor(step: Int) -> Float {
        switch kind {
        case .constant: return 1
        case .linear: return Float(min(1, Double(step + 1) / Double(max(warmupSteps, 1))))
        case .cyclical:
            let position = Double(step % max(period, 1) + 1) / Double(max(period, 1))
            return Float(min(1, position / Double(ramp)))
        }
    }
}
