// One data-parallel training step on one rank: gather the rank's rows of the global batch,
// forward, backward, reduce the gradients across ranks with the pairwise tree, update. The
// trainer's loop and `aedist bench step` both run exactly this.
import Communication
import Foundation
import Kernels
import Models
import Storage

/// Where a step's time went (milliseconds), filled when a step is timed.
public struct StepTimes {
    public var data = 0.0, forward = 0.0, backward = 0.0, wait = 0.0, allreduce = 0.0, update = 0.0
    public var total: Double { data + forward + backward + wait + allreduce + update }
    public init() {}
}

/// The globally reduced loss terms of a step (means per sample) and whether any rank asked to stop.
public struct StepLoss {
    public let reconstruction: Double
    public let kl: Double
    public let penalty: Double
    public let total: Double
    public let stopRequested: Bool
}

public final class TrainingStep {
    public let model: Autoencoder
    public let plan: BatchPlan
    public let parameters: FloatBuffer
    /// Parameter gradients followed by `extraCount` reduced scalars (loss sums, stop flag).
    let gradients: FloatBuffer
    public let optimizer: Optimizer
    let workspace: Workspace
    let data: Datasets
    let seed: UInt64
    let klWeight: Float
    let communicator: Communicator
    let pool: ComputePool
    private let treeScratch: FloatBuffer
    private let leafSums: FloatBuffer
    private var order: [Int] = []
    private var orderEpoch = -1
    private var indices: [Int]

    static let extraCount = 4   // reconstruction, kl, penalty sums; stop requests
    /// false (`train.exact_reduction: false`): sum the weight gradients over the rank's rows in one
    /// chain and reduce across ranks with MPI_Allreduce. Faster; results then depend on the rank count.
    public var exactReduction = true

    public init(config: RunConfig, data: Datasets, plan: BatchPlan, communicator: Communicator, pool: ComputePool) {
        var spec = config.model
        spec.inputs = data.train.columns
        model = Autoencoder(spec: spec)
        self.plan = plan
        self.data = data
        self.seed = config.train.seed
        self.klWeight = config.model.klWeight
        self.communicator = communicator
        self.pool = pool
        parameters = FloatBuffer(count: model.parameterCount)
        gradients = FloatBuffer(count: model.parameterCount + TrainingStep.extraCount)
        optimizer = Optimizer(settings: config.train.optimizer, parameterCount: model.parameterCount)
        workspace = Workspace(model: model, capacity: plan.perRank)
        let segment = (gradients.count + communicator.size - 1) / communicator.size
        treeScratch = FloatBuffer(count: PairwiseTree.scratchCount(leaves: communicator.size) * segment)
        let leaves = plan.perRank / plan.microBatch
        leafSums = FloatBuffer(count: 3 * leaves + 3 * PairwiseTree.scratchCount(leaves: leaves))
        indices = [Int](repeating: 0, count: plan.perRank)
    }

    public var stepsPerEpoch: Int { data.train.rows / plan.global }

    /// Computes the gradient of global step `step` and reduces it across ranks; the parameters are
    /// not changed yet (`update` does that), so a caller can refuse a non-finite loss first.
    /// `times`: when given, the phases are timed, and at np > 1 a barrier before the reduction
    /// separates waiting for the slowest rank from moving the bytes.
    public func computeGradient(step: Int, stopRequested: Bool, times: UnsafeMutablePointer<StepTimes>? = nil) throws -> StepLoss {
        let rank = communicator.rank
        // Phase timer (no captured state: a closure over a var would allocate every step).
        var clock: UInt64 = times == nil ? 0 : DispatchTime.now().uptimeNanoseconds
        let lap = { (field: WritableKeyPath<StepTimes, Double>, clock: inout UInt64) in
            guard let times else { return }
            let now = DispatchTime.now().uptimeNanoseconds
            times.pointee[keyPath: field] = Double(now - clock) / 1e6
            clock = now
        }
        let epoch = step / stepsPerEpoch, position = step % stepsPerEpoch
        if epoch != orderEpoch {
            order = epochOrder(count: data.train.rows, seed: seed, epoch: epoch)
            orderEpoch = epoch
        }
        let first = position * plan.global + rank * plan.perRank
        for i in 0..<plan.perRank { indices[i] = order[first + i] }
        indices.withUnsafeBufferPointer { data.train.gatherRows($0, scale: data.scale, into: workspace.input.pointer) }
        lap(\.data, &clock)
        let noise = NoiseSource(seed: seed, firstSample: UInt64(step) * UInt64(plan.global) + UInt64(rank * plan.perRank),
                                corruptInputs: true)
        model.forward(parameters, workspace, rows: plan.perRank, noise: noise, pool: pool)
        lap(\.forward, &clock)
        let chunk = exactReduction ? plan.microBatch : plan.perRank
        model.backward(parameters, gradients, workspace, rows: plan.perRank, chunk: chunk,
                       scale: 1 / Float(plan.global), pool: pool)
        // Loss sums per micro-batch, combined with the same tree as the gradients, and the stop flag:
        // they travel in the gradient buffer, so every rank sees the same values.
        let p = model.parameterCount, leaves = plan.perRank / plan.microBatch
        let sums = leafSums.pointer
        for l in 0..<leaves {
            var r: Float = 0, k: Float = 0, s: Float = 0
            for i in (l * plan.microBatch)..<((l + 1) * plan.microBatch) {
                r += workspace.reconstruction.pointer[i]; k += workspace.kl.pointer[i]; s += workspace.sparsity.pointer[i]
            }
            sums[3 * l] = r; sums[3 * l + 1] = k; sums[3 * l + 2] = s
        }
        PairwiseTree.combine(leaves: sums, count: leaves, length: 3, into: gradients.pointer + p, scratch: sums + 3 * leaves)
        gradients.pointer[p + 3] = stopRequested ? 1 : 0
        lap(\.backward, &clock)
        if times != nil && communicator.size > 1 { try communicator.barrier() }
        lap(\.wait, &clock)
        let scratch = treeScratch.pointer
        if exactReduction {
            try communicator.treeAllreduce(gradients.pointer, count: gradients.count) { leaves, count, length, out in
                PairwiseTree.combine(leaves: leaves, count: count, length: length, into: out, scratch: scratch)
            }
        } else {
            try communicator.allreduceSum(gradients.pointer, count: gradients.count)
        }
        lap(\.allreduce, &clock)
        let g = gradients.pointer, n = Double(plan.global)
        let reconstruction = Double(g[p]) / n, kl = Double(g[p + 1]) / n, penalty = Double(g[p + 2]) / n
        return StepLoss(reconstruction: reconstruction, kl: kl, penalty: penalty,
                        total: reconstruction + Double(klWeight) * kl + penalty, stopRequested: g[p + 3] > 0)
    }

    /// Scales the reduced gradient down to L2 norm `limit` when it is larger; returns the norm before.
    /// Every rank holds the same reduced gradient and sums it in the same order, so all decide alike.
    public func clipGradient(to limit: Float) -> Double {
        let g = gradients.pointer
        var sum = 0.0
        for i in 0..<model.parameterCount { sum += Double(g[i]) * Double(g[i]) }
        let norm = sum.squareRoot()
        if norm.isFinite && norm > Double(limit) {
            let factor = Float(Double(limit) / norm)
            for i in 0..<model.parameterCount { g[i] *= factor }
        }
        return norm
    }

    /// Applies the optimizer with the reduced gradient.
    public func update(times: UnsafeMutablePointer<StepTimes>? = nil) {
        let start = DispatchTime.now().uptimeNanoseconds
        optimizer.update(parameters, gradients: gradients, pool: pool)
        times?.pointee.update = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
    }
}
