// `aedist bench`: matrix-product throughput and the training step's cost, as JSON (BENCHMARKS.md).
// The step benchmark runs the trainer's step (gather, forward, backward, loss tree, tree allreduce
// overlapped with backward or after it, optimizer update) on the configured model and data, with
// timers around each part, and writes nothing.
import Communication
import Foundation
import Kernels
import Models
import Storage
#if canImport(Glibc)
import Glibc
#endif

@inline(__always)
func monotonicSeconds() -> Double {
    Double(DispatchTime.now().uptimeNanoseconds) * 1e-9
}

func median(_ values: [Double]) -> Double {
    if values.isEmpty { return 0 }
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : 0.5 * (s[s.count / 2 - 1] + s[s.count / 2])
}

/// Peak resident set of this process in MiB (getrusage: ru_maxrss, KiB on Linux).
public func peakResidentMiB() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

public struct GemmBenchmark {
    public var m = 512, n = 512, k = 512
    public var threads = 1
    public var transposeA = false, transposeB = false
    /// > 0: the weight-gradient form (reduction chunks combined by the pairwise tree).
    public var reductionChunk = 0
    /// Timed samples; each runs the product repeatedly for at least `sampleSeconds`.
    public var samples = 7
    public var sampleSeconds = 0.2
    public init() {}

    /// Runs the product and returns one JSON object: GFLOP/s median, min, max over the samples.
    public func run() -> [String: Any] {
        let aCount = m * k, bCount = k * n
        let a = UnsafeMutablePointer<Float>.allocate(capacity: max(aCount, 1))
        let b = UnsafeMutablePointer<Float>.allocate(capacity: max(bCount, 1))
        let c = UnsafeMutablePointer<Float>.allocate(capacity: max(m * n, 1))
        defer { a.deallocate(); b.deallocate(); c.deallocate() }
        var state: UInt32 = 12345
        func next() -> Float {
            state = state &* 1_664_525 &+ 1_013_904_223
            return Float(state >> 8) / Float(1 << 24) - 0.5
        }
        for i in 0..<aCount { a[i] = next() }
        for i in 0..<bCount { b[i] = next() }
        c.initialize(repeating: 0, count: m * n)
        let pool = ComputePool(threads: threads)
        let chunk = reductionChunk
        func once() {
            matrixProduct(m: m, n: n, k: k,
                          a: a, lda: transposeA ? m : k, transposeA: transposeA,
                          b: b, ldb: transposeB ? k : n, transposeB: transposeB,
                          c: c, ldc: n, accumulate: false, reductionChunk: chunk, pool: pool)
        }
        // Warm up and size the repeat count so one sample lasts about `sampleSeconds`.
        var reps = 1
        while true {
            let t0 = monotonicSeconds()
            for _ in 0..<reps { once() }
            let dt = monotonicSeconds() - t0
            if dt >= sampleSeconds / 4 {
                reps = max(1, Int(Double(reps) * sampleSeconds / max(dt, 1e-9)))
                break
            }
            reps *= 2
        }
        var rates: [Double] = []
        let flops = 2.0 * Double(m) * Double(n) * Double(k)
        for _ in 0..<samples {
            let t0 = monotonicSeconds()
            for _ in 0..<reps { once() }
            let dt = monotonicSeconds() - t0
            rates.append(flops * Double(reps) / dt / 1e9)
        }
        return ["benchmark": "gemm", "m": m, "n": n, "k": k, "threads": threads, "kernels": pool.instructionSet.rawValue,
                "transpose_a": transposeA, "transpose_b": transposeB, "reduction_chunk": chunk,
                "gflops": median(rates), "gflops_min": rates.min() ?? 0, "gflops_max": rates.max() ?? 0,
                "samples": samples, "repeats_per_sample": reps,
                "ms_per_product": flops / max(median(rates), 1e-9) / 1e6]
    }
}

public struct StepBenchmark {
    public var config: RunConfig
    /// Threads per rank; nil: this rank's share of its cores.
    public var threads: Int?
    public var steps = 100
    public var warmup = 10
    /// Rows per rank; nil: train.batch_size / ranks (train.batch_size is then set to ranks × this).
    public var perRankBatch: Int?
    /// Overrides train.exact_reduction when set (see TrainingStep.exactReduction).
    public var exactReduction: Bool? = nil
    /// Overrides train.overlap_reduction when set (see TrainingStep.overlapReduction).
    public var overlapReduction: Bool? = nil
    /// Overrides whether the update is sharded (see TrainingStep.shardUpdate) when set.
    public var shardUpdate: Bool? = nil
    public init(config: RunConfig) { self.config = config }

    /// Runs `warmup` + `steps` training steps and returns (on every rank) one JSON object with the
    /// throughput and the median per-step split. Collective: every rank must call it.
    public func run(communicator: Communicator) throws -> [String: Any] {
        var config = self.config
        if let perRankBatch { config.train.batchSize = perRankBatch * communicator.size }
        let c = config
        let threads = self.threads ?? defaultThreads(localRanks: communicator.localSize)
        var (data, plan) = try agreeing(communicator) {
            let plan = try BatchPlan(config: c, worldSize: communicator.size)
            let data = try Datasets(config: c, communicator: communicator)
            if data.train.rows < plan.global {
                throw ConfigError("data '\(data.train.source)': \(data.train.rows) rows, fewer than the global batch \(plan.global)")
            }
            return (data, plan)
        }
        config = try data.resolve(config, communicator: communicator, checkValues: false)
        let pool = ComputePool(threads: threads)
        let training = try TrainingStep(config: config, data: data, plan: plan, communicator: communicator, pool: pool)
        if let exactReduction { training.exactReduction = exactReduction }
        if let overlapReduction { training.overlapReduction = overlapReduction }
        if let shardUpdate { training.shardUpdate = shardUpdate }
        if training.writesParameters { training.model.initialise(training.parameters, seed: config.train.seed) }
        try training.shareParameters()
        let p = training.model.parameterCount, model = training.model

        var dataMs: [Double] = [], forwardMs: [Double] = [], backwardMs: [Double] = []
        var waitMs: [Double] = [], allreduceMs: [Double] = [], updateMs: [Double] = [], stepMs: [Double] = []
        var progressMs: [Double] = [], exposedMs: [Double] = []
        var timedSeconds = 0.0
        var lastLoss = 0.0
        var times = StepTimes()
        try communicator.barrier()
        for step in 0..<(warmup + steps) {
            if step == warmup { try communicator.barrier() }
            let t0 = monotonicSeconds()
            let loss = try training.computeGradient(step: step, stopRequested: false, times: &times)
            try training.update(times: &times)
            let t1 = monotonicSeconds()
            if step >= warmup {
                dataMs.append(times.data); forwardMs.append(times.forward); backwardMs.append(times.backward)
                waitMs.append(times.wait); allreduceMs.append(times.allreduce); updateMs.append(times.update)
                stepMs.append((t1 - t0) * 1e3)
                progressMs.append(times.progress); exposedMs.append(times.exposedCommunication)
                timedSeconds += t1 - t0
            }
            lastLoss = loss.total
        }
        // Slowest rank's medians (a step is as slow as its slowest rank) and every rank's peak RSS.
        let medians = [dataMs, forwardMs, backwardMs, waitMs, allreduceMs, updateMs, stepMs, progressMs, exposedMs].map(median)
        var slowest = medians.map { Int64(($0 * 1e6).rounded()) } + [Int64((timedSeconds * 1e6).rounded())]
        try communicator.allreduceMax(&slowest)
        let rss = try communicator.valuesPerRank(peakResidentMiB())
        let ms = slowest.prefix(9).map { Double($0) / 1e6 }
        let wall = Double(slowest[9]) / 1e6
        let compute = ms[1] + ms[2] - ms[7] + ms[5]   // forward, backward without its progress calls, update
        return ["benchmark": "step", "reduction": training.exactReduction ? "tree" : "library",
                "overlap": training.overlapReduction, "sharded_update": training.updateIsSharded, "shared_memory": training.sharesMemory, "model": model.summary, "parameters": p,
                "world_size": communicator.size, "threads_per_rank": threads, "kernels": pool.instructionSet.rawValue,
                "global_batch": plan.global, "per_rank_batch": plan.perRank, "micro_batch": plan.microBatch,
                "steps": steps, "warmup": warmup,
                "samples_per_second": Double(steps * plan.global) / max(wall, 1e-9),
                "samples_per_second_median_step": Double(plan.global) / max(ms[6], 1e-9) * 1e3,
                "ms_per_step": ms[6], "ms_compute": compute, "ms_forward": ms[1], "ms_backward": ms[2],
                "ms_update": ms[5], "ms_data": ms[0], "ms_wait": ms[3], "ms_allreduce": ms[4],
                "allreduce_share": ms[4] / max(ms[6], 1e-9), "ms_progress": ms[7],
                "ms_exposed_communication": ms[8], "exposed_communication_share": ms[8] / max(ms[6], 1e-9),
                "peak_rss_mib_per_rank": rss, "final_loss": lastLoss]
    }
}
