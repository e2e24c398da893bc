// One data-parallel training step on one rank: gather the rank's rows of the global batch,
// forward, backward, reduce the gradients across ranks with the pairwise tree (by default bucket by
// bucket during backward), update. The trainer's loop and `aedist bench step` both run exactly this.
import Communication
import Foundation
import Kernels
import Models
import Storage

/// Where a step's time went (milliseconds), filled when a step is timed. `total` sums the disjoint
/// phases; `progress` is a part of `backward`.
/// - Overlapped reduction: `backward` is the pass with the reduction's start and progress calls in
///   it (`progress`: the time in those calls); `wait` is the time blocked in `finish` after backward
///   (communication not hidden, the last buckets' folds, and waiting for a slower rank); `allreduce`
///   is the all-gather of the updated parameters after a sharded update (with the parameters in
///   shared memory: the barrier that stands for it), else 0.
/// - Blocking reduction: `backward` is compute only; `wait` is a barrier after backward (waiting for
///   the slowest rank, np > 1 only); `allreduce` is the blocking tree allreduce after it.
public struct StepTimes {
    public var data = 0.0, forward = 0.0, backward = 0.0, wait = 0.0, allreduce = 0.0, update = 0.0
    public var progress = 0.0
    public var total: Double { data + forward + backward + wait + allreduce + update }
    /// Time after backward spent on communication before the gradient can be used.
    public var exposedCommunication: Double { wait + allreduce }
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
    let lrSchedule: LearningRateSchedule
    let klSchedule: KLSchedule
    /// The run's length, for schedules that end somewhere (cosine); the trainer sets it.
    public var totalSteps = Int.max
    /// The learning rate and the KL weight of the last step computed.
    public private(set) var learningRate: Float = 0, stepKLWeight: Float = 0
    let communicator: Communicator
    let pool: ComputePool
    private let treeScratch: FloatBuffer
    /// Folds the ranks' copies of a segment with the pairwise tree (both reductions use it).
    private let treeCombine: TreeCombine
    private let leafSums: FloatBuffer
    /// This rank's rows of each step, from wherever `data.residency` keeps them.
    private let rows: StepRows

    static let extraCount = 4   // reconstruction, kl, penalty sums; stop requests
    // The three switches below start from the configuration; `bench step` may override them.
    /// false (`train.exact_reduction: false`): sum the weight gradients over the rank's rows in one
    /// chain and reduce across ranks with MPI_Allreduce. Faster; results then depend on the rank count.
    public var exactReduction: Bool
    /// true (`train.overlap_reduction`): send each layer's gradients while backward computes the
    /// layers below (GradientReduction); false: one blocking reduction after backward. Same bits.
    public var overlapReduction: Bool
    /// Row blocks of the last layer's weight gradient, each sent as soon as it is computed, so that
    /// little is left to send when backward ends.
    static let lastLayerBlocks = 4
    /// Each rank updates only its own segments of the parameters (those whose gradient sums it folded)
    /// and the ranks then all-gather the updated parameters, instead of all-gathering the gradient and
    /// every rank updating everything: the optimizer's cost divides by the rank count. In effect with
    /// the overlapped reduction at np > 1; off when gradient clipping (`train.clip_grad_norm`) needs
    /// the whole gradient on every rank. Each element's update is the same either way: same bits.
    public var shardUpdate: Bool
    public var updateIsSharded: Bool { shardUpdate && overlapReduction && communicator.size > 1 }
    /// The parameters and gradients are in memory every rank of the node reads (`train.shared_memory`
    /// with every rank on one node): the overlapped exact reduction then reads the other ranks'
    /// gradients in place, and the parameters are one copy for the node. Only rank 0 writes them
    /// outside a sharded update (see `shareParameters`).
    public let sharesMemory: Bool
    /// Why the step's buffers are not in shared memory although `train.shared_memory` asked for it
    /// and every rank is on one node; nil otherwise.
    public let sharedMemoryUnavailable: String?
    /// How the gradients cross ranks, for the start-up line (nil with one rank).
    public var reductionTransport: String? {
        guard communicator.size > 1 else { return nil }
        if sharesMemory && exactReduction && overlapReduction { return "gradients reduced in shared memory (every rank on one node)" }
        let messages = "gradients reduced by MPI messages"
        if let why = sharedMemoryUnavailable { return messages + " (shared memory unavailable: \(why))" }
        if sharesMemory { return messages + ", one copy of the parameters in shared memory (every rank on one node)" }
        return messages + (communicator.sharesOneNode ? "" : " (the ranks span nodes)")
    }
    /// This rank's parameter ranges when the update is sharded.
    private var updateRanges: [Range<Int>] = []
    /// Made on first use (collective), again if `exactReduction` or `updateIsSharded` changes.
    private var reduction: GradientReduction?
    private var reductionKind: (exact: Bool, sharded: Bool)?
    /// The next bucket backward will finish, and the time spent in reduction calls during backward.
    private var nextBucket = 0
    private var progressNanoseconds: UInt64 = 0

    public init(config: RunConfig, data: Datasets, plan: BatchPlan, communicator: Communicator, pool: ComputePool) throws {
        model = Autoencoder(spec: try config.modelSpec(features: data.train.columns))
        self.plan = plan
        self.data = data
        self.seed = config.train.seed
        self.klWeight = config.model.klWeight
        lrSchedule = config.train.lrSchedule
        klSchedule = config.train.klSchedule
        exactReduction = config.train.exactReduction
        overlapReduction = config.train.overlapReduction
        shardUpdate = config.train.clipGradNorm == nil
        self.communicator = communicator
        self.pool = pool
        let buffers = try communicator.makeStepBuffers(parameterCount: model.parameterCount,
                                                       gradientCount: model.parameterCount + TrainingStep.extraCount,
                                                       sharedMemory: config.train.sharedMemory)
        sharesMemory = buffers.isShared
        sharedMemoryUnavailable = buffers.sharedMemoryUnavailable
        parameters = FloatBuffer(count: model.parameterCount, at: buffers.parameters, owner: buffers)
        gradients = FloatBuffer(count: model.parameterCount + TrainingStep.extraCount, at: buffers.gradients, owner: buffers)
        optimizer = Optimizer(settings: config.train.optimizer, parameterCount: model.parameterCount)
        workspace = Workspace(model: model, capacity: plan.perRank)
        let segment = (gradients.count + communicator.size - 1) / communicator.size
        treeScratch = FloatBuffer(count: PairwiseTree.scratchCount(leaves: communicator.size) * segment)
        let scratch = treeScratch.pointer
        treeCombine = { leaves, count, length, stride, out in
            PairwiseTree.combine(leaves: leaves, count: count, length: length, stride: stride, into: out, scratch: scratch)
        }
        let leaves = plan.perRank / plan.microBatch
        leafSums = FloatBuffer(count: 3 * leaves + 3 * PairwiseTree.scratchCount(leaves: leaves))
        rows = makeStepRows(data.train, whole: data.trainDataset, residency: data.residency, config: config, plan: plan, communicator: communicator)
    }

    public var stepsPerEpoch: Int { data.train.rows / plan.global }

    /// Computes the gradient of global step `step` and reduces it across ranks; the parameters are
    /// not changed yet (`update` does that), so a caller can refuse a non-finite loss first.
    /// `times`: when given, the phases are timed (see StepTimes); with the blocking reduction at np > 1
    /// a barrier before it separates waiting for the slowest rank from moving the bytes.
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
        learningRate = lrSchedule.rate(base: optimizer.settings.lr, step: step, totalSteps: totalSteps)
        stepKLWeight = klWeight * klSchedule.factor(step: step)
        optimizer.learningRate = learningRate
        model.trainingKLWeight = stepKLWeight
        let input = data.input, into = workspace.input.pointer
        do {
            try rows.withRows(step: step) { matrix, indices in input.gather(matrix, rows: indices, into: into) }
        } catch let error as StorageError {
            // A read that failed on this rank alone (a damaged chunk, a file gone): the others are
            // already in this step's collectives, so the whole job ends here.
            communicator.abort("aedist: rank \(rank): training data: \(error)", exitCode: 1)
        }
        lap(\.data, &clock)
        let noise = NoiseSource(seed: seed, firstSample: UInt64(step) * UInt64(plan.global) + UInt64(rank * plan.perRank),
                                corruptInputs: true)
        model.forward(parameters, workspace, rows: plan.perRank, noise: noise, pool: pool)
        lap(\.forward, &clock)
        // Loss sums per micro-batch, combined with the same tree as the gradients, and the stop flag:
        // they travel at the end of the gradient buffer (bucket 0 of the overlapped reduction, shared
        // in full), so every rank sees the same values.
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
        let chunk = exactReduction ? plan.microBatch : plan.perRank
        if overlapReduction {
            let reduction = try gradientReduction()
            progressNanoseconds = 0
            try reduction.start(0)   // the loss sums, final already
            nextBucket = 1
            try model.backward(parameters, gradients, workspace, rows: plan.perRank, chunk: chunk,
                               scale: 1 / Float(plan.global), pool: pool, lastLayerBlocks: TrainingStep.lastLayerBlocks) { event in
                let start = times == nil ? 0 : DispatchTime.now().uptimeNanoseconds
                if case .gradientsFinal(let range) = event {
                    precondition(range.lowerBound == reduction.buckets[nextBucket].lowerBound,
                                 "backward finished \(range), expected bucket \(reduction.buckets[nextBucket])")
                    try reduction.start(nextBucket)
                    nextBucket += 1
                }
                try reduction.progress()
                if times != nil { progressNanoseconds += DispatchTime.now().uptimeNanoseconds - start }
            }
            lap(\.backward, &clock)
            try reduction.finish()
            lap(\.wait, &clock)
            times?.pointee.allreduce = 0   // sharded: `update` times the parameters' all-gather here
            times?.pointee.progress = Double(progressNanoseconds) / 1e6
        } else {
            model.backward(parameters, gradients, workspace, rows: plan.perRank, chunk: chunk,
                           scale: 1 / Float(plan.global), pool: pool)
            lap(\.backward, &clock)
            if times != nil && communicator.size > 1 { try communicator.barrier() }
            lap(\.wait, &clock)
            if exactReduction {
                try communicator.treeAllreduce(gradients.pointer, count: gradients.count, combine: treeCombine)
            } else {
                try communicator.allreduceSum(gradients.pointer, count: gradients.count)
            }
            lap(\.allreduce, &clock)
            times?.pointee.progress = 0
        }
        let g = gradients.pointer, n = Double(plan.global)
        let reconstruction = Double(g[p]) / n, kl = Double(g[p + 1]) / n, penalty = Double(g[p + 2]) / n
        return StepLoss(reconstruction: reconstruction, kl: kl, penalty: penalty,
                        total: reconstruction + Double(stepKLWeight) * kl + penalty, stopRequested: g[p + 3] > 0)
    }

    /// The bucketed reduction over `gradients`: bucket 0 holds the loss sums and stop flag that follow
    /// the parameters (every rank reads them), then the ranges backward finishes, in its order; with a
    /// sharded update those are reduce-scattered, otherwise shared in full.
    private func gradientReduction() throws -> GradientReduction {
        let kind = (exact: exactReduction, sharded: updateIsSharded)
        if let reduction, let reductionKind, reductionKind == kind { return reduction }
        let p = model.parameterCount
        let layers = model.finalGradientRanges(lastLayerBlocks: TrainingStep.lastLayerBlocks)
        precondition(layers[0].upperBound == p, "the output layer is not last in the buffer")
        let made = try communicator.makeGradientReduction(buffer: gradients.pointer, buckets: [p..<gradients.count] + layers,
                                                          shared: [true] + Array(repeating: !kind.sharded, count: layers.count),
                                                          exact: exactReduction, combine: treeCombine)
        reduction = made
        reductionKind = kind
        updateRanges = Array(made.ownedRanges.dropFirst())
        return made
    }

    /// Gives every rank rank 0's parameters, after rank 0 (alone, when the node shares one copy:
    /// `writesParameters`) has initialised or loaded them. Collective.
    public func shareParameters() throws {
        if sharesMemory {
            try communicator.barrier()
        } else {
            try communicator.broadcast(parameters.pointer, byteCount: parameters.count * 4, root: 0)
        }
    }

    /// Whether this rank writes the parameters when they are set whole (initialised or loaded): rank
    /// 0 alone when the node shares one copy, every rank otherwise.
    public var writesParameters: Bool { !sharesMemory || communicator.rank == 0 }

    /// With a sharded update each rank's optimizer state is current only in its own segments: this
    /// gathers them on rank 0, so that it can write the whole state. The other ranks never touch the
    /// rest of theirs (it is not even in their memory: see `Optimizer`). Collective.
    public func gatherOptimizerState() throws {
        guard updateIsSharded, let reduction else { return }
        for (_, buffer) in optimizer.state { try reduction.gather(buffer.pointer, root: 0) }
    }

    /// Scales the reduced gradient down to L2 norm `limit` when it is larger; returns the norm before.
    /// Every rank holds the same reduced gradient and sums it in the same order, so all decide alike.
    public func clipGradient(to limit: Float) -> Double {
        precondition(!updateIsSharded, "clipping needs the whole gradient: set shardUpdate = false")
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

    /// Applies the optimizer with the reduced gradient: to this rank's shard followed by the all-gather
    /// of the updated parameters (timed as `allreduce`) when the update is sharded, else to everything.
    public func update(times: UnsafeMutablePointer<StepTimes>? = nil) throws {
        let start = DispatchTime.now().uptimeNanoseconds
        guard updateIsSharded else {
            // One copy of the parameters for the node: rank 0 updates it (and holds the whole
            // optimizer state, as a checkpoint needs), and the others wait for it.
            if !sharesMemory || communicator.rank == 0 { optimizer.update(parameters, gradients: gradients, pool: pool) }
            if sharesMemory { try communicator.barrier() }
            times?.pointee.update = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
            return
        }
        guard let reduction else { preconditionFailure("update before computeGradient") }
        optimizer.update(parameters, gradients: gradients, ranges: updateRanges, pool: pool)
        let updated = DispatchTime.now().uptimeNanoseconds
        times?.pointee.update = Double(updated - start) / 1e6
        try reduction.gather(parameters.pointer, root: nil)
        times?.pointee.allreduce = Double(DispatchTime.now().uptimeNanoseconds - updated) / 1e6
    }
}
