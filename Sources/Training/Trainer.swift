// The training loop: load, initialise or resume, then per step { batch, forward, backward,
// reduce, update, log, checkpoint } until the configured end or a stop signal.
import Communication
import Foundation
import Kernels
import Models
import Storage

public enum ResumeMode: Equatable, Sendable {
    case auto, never
    case path(String)
}

public struct TrainOptions: Sendable {
    public var resume: ResumeMode = .auto
    /// Threads per rank; nil: this rank's share of the cores it may run on.
    public var threads: Int? = nil
    public init() {}
}

public struct TrainSummary {
    public var status: String
    public var step: Int
    public var epoch: Int
    public var trainLoss: Double?
    public var testLoss: Double?
    public var samplesPerSecond: Double
    public var worldSize: Int
    public var threadsPerRank: Int
    public var checkpoint: String?
    public var wallSeconds: Double

    public var json: [String: Any] {
        ["event": "summary", "status": status, "step": step, "epoch": epoch,
         "train_loss": trainLoss.map { $0 as Any } ?? NSNull(), "test_loss": testLoss.map { $0 as Any } ?? NSNull(),
         "samples_per_second": samplesPerSecond, "world_size": worldSize, "threads_per_rank": threadsPerRank,
         "checkpoint": checkpoint.map { $0 as Any } ?? NSNull(), "wall_seconds": wallSeconds]
    }
}

/// Threads for one rank: the cores in this process's affinity mask divided among the ranks on the node.
public func defaultThreads(localRanks: Int) -> Int {
    return max(1, allowedCores() / max(localRanks, 1))
}

/// Cores in this process's affinity mask (what taskset, mpirun --bind-to or Slurm allow), from
/// /proc/self/status; all online cores where that is not readable.
func allowedCores() -> Int {
    if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
       let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed:") }) {
        let mask = line.dropFirst("Cpus_allowed:".count).filter { $0.isHexDigit }
        let count = mask.reduce(0) { $0 + (Int(String($1), radix: 16) ?? 0).nonzeroBitCount }
        if count > 0 { return count }
    }
    return ProcessInfo.processInfo.activeProcessorCount
}

/// How the global batch is split: per-rank rows and micro-batches (docs/determinism.md).
public struct BatchPlan: Equatable {
    public let global: Int
    public let perRank: Int
    public let microBatch: Int

    public init(config: RunConfig, worldSize: Int) throws {
        let b = config.train.batchSize, m = config.train.microBatch
        guard b % worldSize == 0 else {
            throw ConfigError("train.batch_size \(b) does not divide evenly across \(worldSize) ranks: use a multiple of \(worldSize) (it is the global batch)")
        }
        let per = b / worldSize
        guard per % m == 0 else {
            throw ConfigError("train.micro_batch \(m) does not divide the per-rank batch \(per) (train.batch_size \(b) / \(worldSize) ranks): choose a micro_batch that divides \(per)")
        }
        let leaves = per / m
        if config.train.exactReduction && worldSize > 1 && leaves & (leaves - 1) != 0 {
            throw ConfigError("each rank gets \(leaves) micro-batches (train.batch_size \(b) / \(worldSize) ranks / micro_batch \(m)); with several ranks this must be a power of two so results do not depend on the rank count (docs/determinism.md)")
        }
        global = b; perRank = per; microBatch = m
    }
}

public final class Trainer {
    let config: RunConfig
    let communicator: Communicator
    let console: Console
    let pool: ComputePool
    let data: Datasets
    let plan: BatchPlan
    /// The model, its buffers and the step itself (shared with `aedist bench step`).
    let training: TrainingStep
    var model: Autoencoder { training.model }
    var parameters: FloatBuffer { training.parameters }
    var optimizer: Optimizer { training.optimizer }
    let evaluationWorkspace: Workspace
    let checkpoints: CheckpointDirectory
    var progress = TrainingProgress()
    var lastCheckpoint: String?
    let threads: Int

    public init(config: RunConfig, options: TrainOptions, communicator: Communicator) throws {
        self.config = config
        self.communicator = communicator
        console = Console(rank: communicator.rank)
        threads = options.threads ?? defaultThreads(localRanks: communicator.localSize)
        pool = ComputePool(threads: threads)
        checkpoints = CheckpointDirectory(runDirectory: config.runDirectory)

        let c = config
        let rank = communicator.rank
        // Everything that can fail on one rank only happens inside `agreeing`.
        (data, plan) = try agreeing(communicator) {
            let plan = try BatchPlan(config: c, worldSize: communicator.size)
            try MemoryEstimate(config: c, perRankBatch: plan.perRank).check(ranksOnNode: communicator.localSize)
            let data = try Datasets(config: c)
            if data.train.rows < plan.global {
                throw ConfigError("data '\(data.train.source)': \(data.train.rows) rows, fewer than train.batch_size \(plan.global)")
            }
            if rank == 0 { try Trainer.prepareRunDirectory(c) }
            return (data, plan)
        }
        training = TrainingStep(config: config, data: data, plan: plan, communicator: communicator, pool: pool)
        evaluationWorkspace = Workspace(model: training.model, capacity: 256)
        try start(resume: options.resume)
    }

    static func prepareRunDirectory(_ config: RunConfig) throws {
        let dir = config.runDirectory
        do {
            try FileManager.default.createDirectory(atPath: dir + "/checkpoints", withIntermediateDirectories: true)
        } catch {
            throw ConfigError("run_dir '\(dir)': cannot create it: \(error.localizedDescription)")
        }
        guard FileManager.default.isWritableFile(atPath: dir) else {
            throw ConfigError("run_dir '\(dir)': not writable")
        }
    }

    /// Initialises from the seed, or resumes from a checkpoint chosen on rank 0; then every rank
    /// takes rank 0's parameters, optimizer state and progress.
    private func start(resume: ResumeMode) throws {
        let c = config
        let chosen: String = try agreeing(communicator) {
            guard communicator.isRoot else { return "" }
            for name in removeStrayTemporaryFiles(in: checkpoints.path) {
                console.warn("warning: removed unfinished checkpoint '\(checkpoints.path)/\(name)' left by an interrupted write")
            }
            try c.yaml.write(toFile: c.runDirectory + "/config.yaml", atomically: true, encoding: .utf8)
            switch resume {
            case .never:
                model.initialise(parameters, seed: c.train.seed)
                return ""
            case .path(let path):
                let checkpoint = try Checkpoint(path: path)
                try load(checkpoint)
                return path
            case .auto:
                for (_, path) in checkpoints.list() {
                    do {
                        let checkpoint = try Checkpoint(path: path)
                        try load(checkpoint)
                        return path
                    } catch let error as CheckpointMismatch {
                        throw error   // a checkpoint of another run: the user must choose
                    } catch {
                        console.warn("warning: skipping checkpoint '\(path)': \(error)")
                    }
                }
                model.initialise(parameters, seed: c.train.seed)
                return ""
            }
        }
        let path = try communicator.broadcast(chosen, root: 0)
        if !path.isEmpty {
            lastCheckpoint = path
            console.progress("resuming from \(path) at step \(progress.step)")
        }
        try communicator.broadcast(parameters.pointer, byteCount: parameters.count * 4, root: 0)
        for (_, buffer) in optimizer.state {
            try communicator.broadcast(buffer.pointer, byteCount: buffer.count * 4, root: 0)
        }
        var counters: [Int64] = [Int64(progress.step), Int64(progress.epoch), progress.samplesSeen, optimizer.updates]
        try counters.withUnsafeMutableBytes { try communicator.broadcast($0.baseAddress!, byteCount: $0.count, root: 0) }
        progress = TrainingProgress(step: Int(counters[0]), epoch: Int(counters[1]), samplesSeen: counters[2])
        optimizer.updates = counters[3]
    }

    /// Loads a checkpoint after checking that it belongs to this run's model and batch plan.
    private func load(_ checkpoint: Checkpoint) throws {
        let saved = checkpoint.config
        var mismatches: [String] = []
        if saved.model != config.model { mismatches.append("model (checkpoint: \(saved.model.summaryText), configuration: \(config.model.summaryText))") }
        if saved.train.batchSize != config.train.batchSize { mismatches.append("train.batch_size (\(saved.train.batchSize) vs \(config.train.batchSize))") }
        if saved.train.microBatch != config.train.microBatch { mismatches.append("train.micro_batch (\(saved.train.microBatch) vs \(config.train.microBatch))") }
        if saved.train.seed != config.train.seed { mismatches.append("train.seed (\(saved.train.seed) vs \(config.train.seed))") }
        if saved.train.optimizer.kind != config.train.optimizer.kind { mismatches.append("train.optimizer (\(saved.train.optimizer.kind.rawValue) vs \(config.train.optimizer.kind.rawValue))") }
        if !mismatches.isEmpty {
            throw CheckpointMismatch(description: "checkpoint '\(checkpoint.path)' differs from the configuration in " + mismatches.joined(separator: "; ") + "; use --resume never (or another run_dir) to start a new run")
        }
        try checkpoint.load(model: model, parameters: parameters, optimizer: optimizer)
        progress = checkpoint.progress
    }

    private var stepsPerEpoch: Int { training.stepsPerEpoch }
    private var totalSteps: Int {
        let byEpochs = config.train.epochs * stepsPerEpoch
        return min(byEpochs, config.train.maxSteps ?? byEpochs)
    }

    public func run() throws -> TrainSummary {
        let wallStart = Date()
        let metrics = try agreeing(communicator) {
            try MetricsLog(path: config.runDirectory + "/metrics.jsonl", enabled: communicator.isRoot)
        }
        let dropped = data.train.rows - stepsPerEpoch * plan.global
        console.progress("aedist: \(model.summary), \(model.parameterCount) parameters; \(data.train.rows) training rows from \(data.train.source)")
        console.progress("aedist: \(communicator.size) rank(s) x \(threads) thread(s), \(pool.instructionSet) kernels; global batch \(plan.global) (\(plan.perRank) per rank, micro-batch \(plan.microBatch)); \(stepsPerEpoch) steps per epoch" + (dropped > 0 ? ", the last \(dropped) samples of each epoch's order are dropped" : ""))
        if progress.step >= totalSteps {
            console.progress("aedist: already at step \(progress.step) of \(totalSteps); nothing to train")
        }

        var windowLoss = 0.0, windowRecon = 0.0, windowKL = 0.0, windowSteps = 0, windowSeconds = 0.0
        var lastLoss: Double?
        var testLoss: Double?
        var trainingSeconds = 0.0
        var status = "completed"
        let startStep = progress.step

        while progress.step < totalSteps {
            let stepStart = Date()
            let step = progress.step
            let epoch = step / stepsPerEpoch
            let result = try training.computeGradient(step: step, stopRequested: Preemption.requested != 0)
            let (loss, recon, kl) = (result.total, result.reconstruction, result.kl)
            guard loss.isFinite else {
                throw RunFailure(message: communicator.isRoot ? "the loss became \(loss) at step \(step + 1) (epoch \(epoch + 1)); stopping before the update. The last good checkpoint is \(lastCheckpoint ?? "none (no checkpoint written yet)"); try a lower train.lr" : nil, exitCode: 1)
            }
            if let limit = config.train.clipGradNorm {
                let norm = training.clipGradient(to: limit)
                guard norm.isFinite else {
                    throw RunFailure(message: communicator.isRoot ? "the gradient norm became \(norm) at step \(step + 1); stopping before the update. The last good checkpoint is \(lastCheckpoint ?? "none (no checkpoint written yet)")" : nil, exitCode: 1)
                }
            }
            try training.update()
            progress.step += 1
            progress.samplesSeen += Int64(plan.global)
            progress.epoch = progress.step / stepsPerEpoch
            let stepSeconds = Date().timeIntervalSince(stepStart)
            trainingSeconds += stepSeconds
            windowSeconds += stepSeconds
            windowLoss += loss; windowRecon += recon; windowKL += kl; windowSteps += 1
            lastLoss = loss

            let stopRequested = result.stopRequested
            let endOfEpoch = progress.step % stepsPerEpoch == 0
            let finished = progress.step == totalSteps
            if progress.step % config.train.logEvery == 0 || finished || stopRequested {
                // Throughput over training steps only (evaluation and checkpoints excluded).
                let rate = Double(windowSteps * plan.global) / max(windowSeconds, 1e-9)
                let left = Double((totalSteps - progress.step) * plan.global) / max(rate, 1e-9)
                let mean = windowLoss / Double(windowSteps)
                var line = String(format: "step %d/%d  epoch %d/%d  loss %.4f", progress.step, totalSteps,
                                  min(epoch + 1, config.train.epochs), config.train.epochs, mean)
                if config.model.kind == .vae { line += String(format: " (recon %.4f, kl %.4f)", windowRecon / Double(windowSteps), windowKL / Double(windowSteps)) }
                line += String(format: "  %.0f samples/s  %@ left", rate, formatDuration(left))
                console.progress(line, live: !endOfEpoch && !finished)
                var event: [String: Any] = ["event": "train", "step": progress.step, "epoch": epoch + 1, "loss": mean,
                                            "samples_per_second": rate, "seconds": Date().timeIntervalSince(wallStart)]
                if config.model.kind == .vae { event["recon"] = windowRecon / Double(windowSteps); event["kl"] = windowKL / Double(windowSteps) }
                metrics.append(event)
                windowLoss = 0; windowRecon = 0; windowKL = 0; windowSteps = 0; windowSeconds = 0
            }
            if endOfEpoch || finished {
                if let test = data.test {
                    let result = try evaluate(model: model, parameters: parameters, data: test, scale: data.scale,
                                              seed: config.train.seed, workspace: evaluationWorkspace,
                                              communicator: communicator, pool: pool)
                    testLoss = result.loss
                    console.progress(String(format: "epoch %d: test loss %.4f (mse per feature %.6f)", epoch + 1, result.loss, result.msePerFeature))
                    var event: [String: Any] = ["event": "test", "step": progress.step, "epoch": epoch + 1, "loss": result.loss,
                                                "mse_per_feature": result.msePerFeature, "seconds": Date().timeIntervalSince(wallStart)]
                    if config.model.kind == .vae { event["recon"] = result.reconstruction; event["kl"] = result.kl }
                    metrics.append(event)
                }
            }
            if endOfEpoch || finished || stopRequested || progress.step % config.train.checkpointEvery == 0 {
                try writeCheckpoint()
            }
            if stopRequested && !finished {
                status = "preempted"
                console.progress("aedist: stop signal received; checkpoint written at step \(progress.step)")
                break
            }
        }
        let summary = TrainSummary(status: status, step: progress.step, epoch: progress.epoch, trainLoss: lastLoss,
                                   testLoss: testLoss,
                                   samplesPerSecond: trainingSeconds > 0 ? Double((progress.step - startStep) * plan.global) / trainingSeconds : 0,
                                   worldSize: communicator.size, threadsPerRank: threads,
                                   checkpoint: lastCheckpoint, wallSeconds: Date().timeIntervalSince(wallStart))
        console.json(summary.json)
        return summary
    }

    /// The current model's loss and code statistics on the training set.
    public func evaluateTraining() throws -> EvaluationResult {
        try evaluate(model: model, parameters: parameters, data: data.train, scale: data.scale, seed: config.train.seed,
                     workspace: evaluationWorkspace, communicator: communicator, pool: pool)
    }

    /// Rank 0 writes; all ranks learn whether it worked before going on.
    private func writeCheckpoint() throws {
        let path = checkpoints.file(forStep: progress.step)
        try training.gatherOptimizerState()
        try onRoot(communicator) {
            do {
                try Checkpoint.write(to: path, config: config, model: model, parameters: parameters,
                                     optimizer: optimizer, progress: progress, worldSize: communicator.size)
            } catch {
                throw ConfigError("writing checkpoint '\(path)' failed: \(error); the earlier checkpoints are intact (\(lastCheckpoint ?? "none"))")
            }
            checkpoints.prune(keep: config.train.keepCheckpoints)
        }
        lastCheckpoint = path
    }
}

/// A readable checkpoint that belongs to another model or batch plan than the configuration's.
public struct CheckpointMismatch: Error, CustomStringConvertible {
    public let description: String
}

extension ModelSpec {
    var summaryText: String {
        "\(kind.rawValue) encoder \(encoder) latent \(latent) \(activation.rawValue) \(output.rawValue)"
    }
}
