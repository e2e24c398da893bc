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
    /// With `.never` on a run directory that holds checkpoints: move the earlier run into
    /// `RUN_DIR/previous/STAMP/` first (without it, such a start is refused).
    public var archivePrevious = false
    /// Threads per rank; nil: this rank's share of the cores it may run on.
    public var threads: Int? = nil
    public init() {}
}

public struct TrainSummary {
    public var status: String
    public var step: Int
    /// The epoch of the last step, 1-based as in the progress lines (0 before any step).
    public var epoch: Int
    public var trainLoss: Double?
    public var testLoss: Double?
    public var samplesPerSecond: Double
    public var worldSize: Int
    public var threadsPerRank: Int
    public var checkpoint: String?
    public var wallSeconds: Double
    /// The largest peak resident memory of any rank (MiB), each rank's, and the data residency in use.
    public var maxRSSMiB: Double = 0
    public var rssMiBPerRank: [Double] = []
    public var residency = ""
    /// Early stopping's best model (`checkpoints/best.h5`), when the run has one.
    public var bestCheckpoint: String? = nil

    public var json: [String: Any] {
        ["event": "summary", "status": status, "step": step, "epoch": epoch,
         "train_loss": trainLoss.map { $0 as Any } ?? NSNull(), "test_loss": testLoss.map { $0 as Any } ?? NSNull(),
         "samples_per_second": samplesPerSecond, "world_size": worldSize, "threads_per_rank": threadsPerRank,
         "checkpoint": checkpoint.map { $0 as Any } ?? NSNull(), "wall_seconds": wallSeconds,
         "max_rss_mib": maxRSSMiB, "rss_mib_per_rank": rssMiBPerRank, "data_residency": residency,
         "best_checkpoint": bestCheckpoint.map { $0 as Any } ?? NSNull()]
    }

    /// `RUN_DIR/summary.json`: the last summary of the run, for `aedist report` and scripts.
    public static func file(runDirectory: String) -> String { runDirectory + "/summary.json" }

    /// The environment variable naming a file for a copy of the summary: launchers read it after
    /// mpirun has exited, since mpirun's own exit status does not carry the run's (75 on a stop).
    public static let fileVariable = "AEDIST_SUMMARY_FILE"

    /// The run directory's last summary, if it has one.
    public static func read(runDirectory: String) -> [String: Any]? {
        guard let data = FileManager.default.contents(atPath: file(runDirectory: runDirectory)) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }

    func write(runDirectory: String) throws {
        let path = TrainSummary.file(runDirectory: runDirectory)
        do { try (Console.encode(json) + "\n").write(toFile: path, atomically: true, encoding: .utf8) }
        catch { throw ConfigError("run_dir '\(runDirectory)': cannot write '\(path)': \(error.localizedDescription)") }
    }

    func writeIfRequested() throws {
        guard let path = ProcessInfo.processInfo.environment[TrainSummary.fileVariable], !path.isEmpty else { return }
        do { try (Console.encode(json) + "\n").write(toFile: path, atomically: true, encoding: .utf8) }
        catch { throw ConfigError("\(TrainSummary.fileVariable) '\(path)': cannot write the summary: \(error.localizedDescription)") }
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
        let b = config.train.batchSize, m = config.train.resolvedMicroBatch
        if let problem = BatchPlan.problem(batch: b, microBatch: m, exact: config.train.exactReduction, ranks: worldSize) {
            let working = (1...min(b, 4096)).filter { BatchPlan.problem(batch: b, microBatch: m, exact: config.train.exactReduction, ranks: $0) == nil }
            let shown = working.prefix(12).map(String.init).joined(separator: ", ") + (working.count > 12 ? ", ..." : "")
            let micro = config.train.microBatch == nil ? "micro_batch auto = \(m)" : "micro_batch \(m)"
            throw ConfigError("\(worldSize) ranks cannot split train.batch_size \(b) (\(micro)): \(problem). Rank counts that work for this batch: \(shown); or change train.batch_size (the global batch)")
        }
        global = b; perRank = b / worldSize; microBatch = m
    }

    /// Why `ranks` ranks cannot split a global batch into micro-batches, or nil when they can.
    static func problem(batch b: Int, microBatch m: Int, exact: Bool, ranks: Int) -> String? {
        guard b % ranks == 0 else { return "it does not divide evenly by \(ranks)" }
        let per = b / ranks
        guard per % m == 0 else { return "the per-rank batch \(per) is not a whole number of micro-batches of \(m)" }
        let leaves = per / m
        if exact && ranks > 1 && leaves & (leaves - 1) != 0 {
            return "each rank would get \(leaves) micro-batches, and with several ranks that must be a power of two so that results do not depend on the rank count (docs/determinism.md)"
        }
        return nil
    }
}

public final class Trainer {
    let config: RunConfig
    let communicator: Communicator
    let console: Console
    let pool: ComputePool
    var data: Datasets
    let plan: BatchPlan
    /// The model, its buffers and the step itself (shared with `aedist bench step`).
    let training: TrainingStep
    var model: Autoencoder { training.model }
    var parameters: FloatBuffer { training.parameters }
    var optimizer: Optimizer { training.optimizer }
    let evaluationWorkspace: Workspace
    let checkpoints: CheckpointDirectory
    var progress = TrainingProgress()
    /// Rank 0's record of the run (the other ranks keep theirs but never log).
    var record = RunRecord(runID: "")
    var lastCheckpoint: String?
    let threads: Int
    /// Settings changed since the checkpoint resumed from, "key old → new" (rank 0).
    var changedOnResume: [String] = []
    /// Rank 0's hold on the run directory, for as long as this trainer lives.
    var lock: RunLock?
    /// Ends this rank when a step's collectives stop making progress.
    let watchdog: StallWatchdog

    public init(config unresolved: RunConfig, options: TrainOptions, communicator: Communicator) throws {
        let config = unresolved
        self.communicator = communicator
        console = Console(rank: communicator.rank)
        threads = options.threads ?? defaultThreads(localRanks: communicator.localSize)
        pool = ComputePool(threads: threads)
        checkpoints = CheckpointDirectory(runDirectory: config.runDirectory)
        watchdog = StallWatchdog(timeout: config.train.stallTimeout, rank: communicator.rank)

        let c = config
        let rank = communicator.rank
        try LaunchCheck.verify(c, communicator: communicator)
        if communicator.size > 1 { watchdog.attach(try RollCall(communicator: communicator)) }
        // Everything that can fail on one rank only happens inside `agreeing`.
        (data, plan) = try agreeing(communicator) {
            let plan = try BatchPlan(config: c, worldSize: communicator.size)
            var estimate = try MemoryEstimate(config: c, perRankBatch: plan.perRank)
            let data = try Datasets(config: c, communicator: communicator, estimate: &estimate)
            try estimate.check(ranksOnNode: communicator.localSize)
            if data.train.rows < plan.global {
                let heldOut = data.train.selection == nil ? "" : " (after data.validation holds out \(data.trainDataset.rows - data.train.rows))"
                throw ConfigError("data '\(data.train.source)': \(data.train.rows) rows\(heldOut), fewer than train.batch_size \(plan.global)")
            }
            if rank == 0 { try Trainer.prepareRunDirectory(c) }
            return (data, plan)
        }
        self.config = try data.resolve(config, communicator: communicator)
        training = try TrainingStep(config: self.config, data: data, plan: plan, communicator: communicator, pool: pool)
        evaluationWorkspace = Workspace(model: training.model, capacity: 256)
        try start(resume: options.resume, archivePrevious: options.archivePrevious)
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
    /// takes rank 0's parameters, progress and, when resuming, optimizer state. A run directory holds one run:
    /// starting a new run where another's checkpoints are is refused unless they are moved aside.
    private func start(resume: ResumeMode, archivePrevious: Bool) throws {
        let c = config
        let chosen: String = try agreeing(communicator) {
            guard communicator.isRoot else { return "" }
            // First, before anything in the directory is touched: a live run's files stay its own.
            lock = try RunLock(runDirectory: c.runDirectory, log: { console.progress($0) })
            for name in removeStrayTemporaryFiles(in: checkpoints.path) {
                console.warn("warning: removed unfinished checkpoint '\(checkpoints.path)/\(name)' left by an interrupted write")
            }
            let chosen: String
            switch resume {
            case .never:
                if let newest = checkpoints.list().first {
                    guard archivePrevious else {
                        throw ConfigError("run_dir '\(c.runDirectory)' already holds checkpoints (newest: \(newest.path)); --resume never would start a second run beside them. To start fresh: give another --run-dir, or add --archive-previous to move the earlier run's checkpoints, metrics.jsonl, config.yaml, summary.json, TensorBoard events and report into \(c.runDirectory)/previous/ (nothing is deleted); or --resume auto to continue it")
                    }
                    let target = try checkpoints.moveAside(runDirectory: c.runDirectory)
                    console.progress("aedist: moved the earlier run in \(c.runDirectory) into \(target)")
                }
                chosen = ""
            case .path(let path):
                try load(try Checkpoint(path: path))
                let others = checkpoints.runs().filter { !$0.runID.isEmpty && $0.runID != record.runID && !sameFile($0.path, path) }
                if let other = others.first {
                    throw ConfigError("run_dir '\(c.runDirectory)' holds checkpoints of another run (\(other.path), run \(other.runID)) than '\(path)' (run \(record.runID.isEmpty ? "without an id" : record.runID)); resume into another --run-dir, or move them aside with --resume never --archive-previous first")
                }
                chosen = path
            case .auto:
                // Checkpoints of two runs in one directory (copied there by hand, or written by an
                // earlier aedist): which to continue is the user's choice, not the newest step's.
                let ids = Dictionary(grouping: checkpoints.runs().filter { !$0.runID.isEmpty }, by: \.runID)
                if ids.count > 1 {
                    let listed = ids.map { "run \($0.key): \($0.value.map { URL(fileURLWithPath: $0.path).lastPathComponent }.joined(separator: ", "))" }.sorted()
                    throw ConfigError("run_dir '\(c.runDirectory)' holds checkpoints of \(ids.count) runs (\(listed.joined(separator: "; "))); choose one with --resume PATH after moving the others' files out, or start a new run with --resume never --archive-previous")
                }
                var found = ""
                for (_, path) in checkpoints.list() {
                    do {
                        try load(try Checkpoint(path: path))
                        found = path
                        break
                    } catch let error as CheckpointMismatch {
                        throw error   // the configuration belongs to another run: the user must choose
                    } catch {
                        console.warn("warning: skipping checkpoint '\(path)': \(error)")
                        // It may have loaded a part of the optimizer state before failing.
                        optimizer.reset()
                    }
                }
                chosen = found
            }
            if chosen.isEmpty {
                model.initialise(parameters, seed: c.train.seed)
                record = RunRecord(runID: RunRecord.newRunID())
            } else if record.runID.isEmpty {
                record.runID = RunRecord.newRunID()   // a checkpoint from before run ids: name the run from here on
            }
            try setAsideStaleBest()
            try RunLog.cutMetrics(path: RunLog.metricsPath(runDirectory: c.runDirectory), toStep: chosen.isEmpty ? 0 : progress.step,
                               runID: record.runID)
            try c.yaml.write(toFile: c.runDirectory + "/config.yaml", atomically: true, encoding: .utf8)
            return chosen
        }
        let path = try communicator.broadcast(chosen, root: 0)
        if !path.isEmpty {
            lastCheckpoint = path
            watchdog.end(checkpoint: path)
            console.progress("resuming from \(path) at step \(progress.step) (run \(record.runID))")
            if !changedOnResume.isEmpty {
                console.progress("aedist: settings changed since that checkpoint: " + changedOnResume.joined(separator: ", "))
            }
        }
        try training.shareParameters()
        // A new run's optimizer state is zeros on every rank already (and untouched: with a sharded
        // update each rank then keeps only its own segments in memory).
        if !path.isEmpty {
            for (_, buffer) in optimizer.state {
                try communicator.broadcast(buffer.pointer, byteCount: buffer.count * 4, root: 0)
            }
        }
        // Every rank decides the same about early stopping: rank 0's state, the loss by its bits.
        let stopping = record.earlyStopping
        var counters: [Int64] = [Int64(progress.step), Int64(progress.epoch), progress.samplesSeen, optimizer.updates,
                                 Int64(bitPattern: (stopping.bestLoss ?? .nan).bitPattern), Int64(stopping.bestStep),
                                 Int64(stopping.bestEpoch), Int64(stopping.epochsSinceBest)]
        try counters.withUnsafeMutableBytes { try communicator.broadcast($0.baseAddress!, byteCount: $0.count, root: 0) }
        progress = TrainingProgress(step: Int(counters[0]), epoch: Int(counters[1]), samplesSeen: counters[2])
        optimizer.updates = counters[3]
        let best = Double(bitPattern: UInt64(bitPattern: counters[4]))
        record.earlyStopping = EarlyStoppingState(bestLoss: best.isNaN ? nil : best, bestStep: Int(counters[5]),
                                                  bestEpoch: Int(counters[6]), epochsSinceBest: Int(counters[7]))
    }

    /// A `best.h5` that is not the best of the run as it now resumes (another run's, one written
    /// after the step resumed from by a branch now abandoned, or a damaged file) is renamed
    /// `best-step-NNNNNNNNN.h5`, with a warning: kept, but not taken for this run's best (rank 0).
    private func setAsideStaleBest() throws {
        let path = checkpoints.best
        guard FileManager.default.fileExists(atPath: path) else { return }
        let best = try? Checkpoint(path: path)
        if let best, best.record.runID == record.runID, best.progress.step == record.earlyStopping.bestStep { return }
        let name = checkpoints.path + "/" + String(format: "best-step-%09d", best?.progress.step ?? 0)
        var aside = name + ".h5", n = 1
        while FileManager.default.fileExists(atPath: aside) { n += 1; aside = name + "-\(n).h5" }
        do {
            try FileManager.default.moveItem(atPath: path, toPath: aside)
        } catch { throw ConfigError("run_dir '\(config.runDirectory)': cannot move the stale '\(path)' aside: \(error.localizedDescription)") }
        let why = best.map { $0.record.runID == record.runID
            ? "its step \($0.progress.step) is not the best so far of the run resumed at step \(progress.step)"
            : "it belongs to run \($0.record.runID)" } ?? "it does not open"
        console.warn("warning: moved \(path) to \(aside): \(why)")
    }

    /// Loads a checkpoint after checking that it belongs to this run: every setting that shapes the
    /// model, the data or the order of the steps must match; the others may change, and are listed.
    private func load(_ checkpoint: Checkpoint) throws {
        var saved = checkpoint.config, current = config
        // Written when data.scale: auto was not yet resolved into the checkpoint: what auto meant then.
        if saved.data.scale == nil { saved.data.scale = Datasets.earlierAutomaticScale(data.train.elementType) }
        // micro_batch auto and the number it stands for are the same run.
        saved.train.microBatch = saved.train.resolvedMicroBatch
        current.train.microBatch = current.train.resolvedMicroBatch
        let differences = saved.differences(from: current)
        let fixed = differences.filter { !RunConfig.changeableOnResume.contains($0.key) }
        if !fixed.isEmpty {
            let listed = fixed.map { "\($0.key): \($0.mine) in the checkpoint, \($0.theirs) now" }.joined(separator: "; ")
            throw CheckpointMismatch(description: "checkpoint '\(checkpoint.path)' belongs to a run with other settings (\(listed)); these must match to resume it. To start a new run instead: another --run-dir, or --resume never --archive-previous (moves the earlier checkpoints into RUN_DIR/previous/)")
        }
        try checkpoint.load(model: model, parameters: parameters, optimizer: optimizer)
        progress = checkpoint.progress
        record = checkpoint.record
        changedOnResume = differences.map { "\($0.key) \($0.mine) → \($0.theirs)" }
    }

    private var stepsPerEpoch: Int { training.stepsPerEpoch }
    private var totalSteps: Int {
        let byEpochs = config.train.epochs * stepsPerEpoch
        return min(byEpochs, config.train.maxSteps ?? byEpochs)
    }

    public func run() throws -> TrainSummary {
        let wallStart = Date()
        training.totalSteps = totalSteps
        let metrics = try agreeing(communicator) {
            try RunLog(runDirectory: config.runDirectory, continuingAfter: progress.step, enabled: communicator.isRoot)
        }
        let dropped = data.train.rows - stepsPerEpoch * plan.global
        console.progress("aedist: \(model.summary), \(model.parameterCount) parameters; \(data.train.rows) training rows from \(data.train.source), scale \(data.scale)" + (data.normalization.map { ", \($0.kind.rawValue) normalization" } ?? ""))
        console.progress("aedist: data \(data.residency.rawValue) (\(data.residencyReason)), \(config.data.shuffle == .blocks ? "shuffled in blocks of \(config.data.blockRows ?? 0) rows, windows of \(config.data.shuffleWindow)" : "shuffled by rows")")
        console.progress("aedist: \(communicator.size) rank(s) x \(threads) thread(s), \(pool.instructionSet) kernels; global batch \(plan.global) (\(plan.perRank) per rank, micro-batch \(plan.microBatch)); \(stepsPerEpoch) steps per epoch" + (dropped > 0 ? ", the last \(dropped) samples of each epoch's order are dropped" : "")
                         + (training.reductionTransport.map { "; " + $0 } ?? ""))
        var status = "completed"
        // A run that stopped early, resumed with the same settings (one whose patience ran out at
        // its last step ended completed, and stays so).
        if progress.step < totalSteps && record.earlyStopping.exhausted(config.train.earlyStopping) {
            let state = record.earlyStopping
            console.progress(String(format: "aedist: this run stopped early at step %d (the best, %.4f at epoch %d, is %@); nothing to train",
                                    progress.step, state.bestLoss!, state.bestEpoch, checkpoints.best))
            status = "stopped_early"
        } else if progress.step >= totalSteps {
            console.progress("aedist: already at step \(progress.step) of \(totalSteps); nothing to train")
        }

        var lastLoss: Double?
        var testLoss: Double?
        var trainingSeconds = 0.0
        let startStep = progress.step
        let secondsBefore = record.seconds
        /// The run's total seconds: earlier invocations' and this one's.
        func runSeconds() -> Double { secondsBefore + Date().timeIntervalSince(wallStart) }
        func failure(_ text: String) -> RunFailure {
            RunFailure(message: communicator.isRoot ? text + ". The last good checkpoint is \(lastCheckpoint ?? "none (no checkpoint written yet)")" : nil, exitCode: 1)
        }

        while progress.step < totalSteps && status != "stopped_early" {
            let stepStart = Date()
            let step = progress.step
            let epoch = step / stepsPerEpoch
            watchdog.begin("the training step (its exchange with every rank)", step: step)
            let result = try training.computeGradient(step: step, stopRequested: Preemption.requested != 0)
            let (loss, recon, kl) = (result.total, result.reconstruction, result.kl)
            guard loss.isFinite else {
                throw failure("the loss became \(loss) at step \(step + 1) (epoch \(epoch + 1)); stopping before the update; try a lower train.lr")
            }
            if let impossible = impossibleLoss(reconstruction: recon, kl: kl) {
                throw failure("the loss became \(loss) at step \(step + 1): \(impossible); stopping before the update")
            }
            if let limit = config.train.clipGradNorm {
                let norm = training.clipGradient(to: limit)
                guard norm.isFinite else {
                    throw failure("the gradient norm became \(norm) at step \(step + 1); stopping before the update")
                }
            }
            try training.update()
            watchdog.end(stepSeconds: Date().timeIntervalSince(stepStart))
            progress.step += 1
            progress.samplesSeen += Int64(plan.global)
            progress.epoch = progress.step / stepsPerEpoch
            let stepSeconds = Date().timeIntervalSince(stepStart)
            trainingSeconds += stepSeconds
            record.window.seconds += stepSeconds
            record.window.loss += loss; record.window.reconstruction += recon; record.window.kl += kl
            record.window.steps += 1
            lastLoss = loss

            let stopRequested = result.stopRequested
            let endOfEpoch = progress.step % stepsPerEpoch == 0
            let finished = progress.step == totalSteps
            let logged = progress.step % config.train.logEvery == 0 || finished
            if logged || stopRequested {
                // Throughput over training steps only (evaluation and checkpoints excluded).
                let w = record.window, n = Double(w.steps)
                let rate = Double(w.steps * plan.global) / max(w.seconds, 1e-9)
                let left = Double((totalSteps - progress.step) * plan.global) / max(rate, 1e-9)
                var line = String(format: "step %d/%d  epoch %d/%d  loss %.4f", progress.step, totalSteps,
                                  min(epoch + 1, config.train.epochs), config.train.epochs, w.loss / n)
                if config.model.kind == .vae { line += String(format: " (recon %.4f, kl %.4f)", w.reconstruction / n, w.kl / n) }
                line += String(format: "  %.0f samples/s  %@ left", rate, formatDuration(left))
                console.progress(line, live: !endOfEpoch && !finished && !stopRequested)
                // The record holds the logging cadence only, so that a stopped and resumed run's
                // record is the straight run's: a stop's partial window goes into the checkpoint.
                if logged {
                    var event: [String: Any] = ["event": "train", "step": progress.step, "epoch": epoch + 1, "loss": w.loss / n,
                                                "samples_per_second": rate, "seconds": runSeconds(), "run_id": record.runID,
                                                "lr": Double(training.learningRate)]
                    if config.model.kind == .vae { event["kl_weight"] = Double(training.stepKLWeight) }
                    if config.model.kind == .vae { event["recon"] = w.reconstruction / n; event["kl"] = w.kl / n }
                    metrics.append(event)
                    record.window = LogWindow()
                }
            }
            var stopsEarly = false
            if endOfEpoch || finished {
                var evaluated: [(event: String, result: EvaluationResult)] = []
                for (event, split) in [("validation", data.validation), ("test", data.test)] {
                    guard let split else { continue }
                    watchdog.begin("the \(event) evaluation", step: step, steps: Double(split.rows) / Double(plan.global))
                    defer { watchdog.end() }
                    evaluated.append((event, try evaluate(model: model, parameters: parameters, data: split, input: data.input,
                                                          seed: config.train.seed, workspace: evaluationWorkspace,
                                                          communicator: communicator, pool: pool)))
                }
                for (index, (event, result)) in evaluated.enumerated() {
                    if event == "test" { testLoss = result.loss }
                    var line = String(format: "epoch %d: %@ loss %.4f (mse per feature %.6f)", epoch + 1, event, result.loss, result.msePerFeature)
                    // The first split evaluated (validation, else test) steers early stopping.
                    if index == 0, endOfEpoch, let settings = config.train.earlyStopping {
                        if record.earlyStopping.observe(result.loss, step: progress.step, epoch: epoch + 1, minDelta: settings.minDelta) {
                            record.seconds = runSeconds()
                            try writeCheckpoint(to: checkpoints.best)
                            line += "; the best so far, \(checkpoints.best)"
                        } else {
                            let state = record.earlyStopping
                            line += String(format: "; best %.4f at epoch %d, %d of %d epochs without improvement",
                                           state.bestLoss!, state.bestEpoch, state.epochsSinceBest, settings.patience)
                        }
                        stopsEarly = record.earlyStopping.exhausted(settings) && !finished
                    }
                    console.progress(line)
                    var entry: [String: Any] = ["event": event, "step": progress.step, "epoch": epoch + 1, "loss": result.loss,
                                                "mse_per_feature": result.msePerFeature, "seconds": runSeconds(), "run_id": record.runID]
                    if config.model.kind == .vae { entry["recon"] = result.reconstruction; entry["kl"] = result.kl }
                    metrics.append(entry)
                }
            }
            if endOfEpoch || finished { logPictures(metrics, step: progress.step) }
            if endOfEpoch || finished || stopRequested || progress.step % config.train.checkpointEvery == 0 {
                record.seconds = runSeconds()
                try writeCheckpoint()
            }
            if stopsEarly {
                status = "stopped_early"
                let state = record.earlyStopping
                console.progress(String(format: "aedist: stopping early: no improvement of the %@ loss by more than %g for %d epochs; the best, %.4f at epoch %d (step %d), is %@",
                                        data.validation == nil ? "test" : "validation", config.train.earlyStopping!.minDelta,
                                        state.epochsSinceBest, state.bestLoss!, state.bestEpoch, state.bestStep, checkpoints.best))
                break
            }
            if stopRequested && !finished {
                status = "preempted"
                console.progress("aedist: stop signal received; checkpoint written at step \(progress.step)")
                break
            }
        }
        let peaks = try communicator.valuesPerRank(peakResidentMiB())
        var summary = TrainSummary(status: status, step: progress.step,
                                   epoch: (progress.step + stepsPerEpoch - 1) / stepsPerEpoch, trainLoss: lastLoss,
                                   testLoss: testLoss,
                                   samplesPerSecond: trainingSeconds > 0 ? Double((progress.step - startStep) * plan.global) / trainingSeconds : 0,
                                   worldSize: communicator.size, threadsPerRank: threads,
                                   checkpoint: lastCheckpoint, wallSeconds: Date().timeIntervalSince(wallStart))
        summary.maxRSSMiB = peaks.max() ?? 0
        summary.rssMiBPerRank = peaks
        summary.residency = data.residency.rawValue
        if config.train.earlyStopping != nil, record.earlyStopping.bestLoss != nil, FileManager.default.fileExists(atPath: checkpoints.best) {
            summary.bestCheckpoint = checkpoints.best
        }
        let stoppedBefore = status == "stopped_early" && progress.step == startStep
        try onRoot(communicator) {
            if stoppedBefore, let earlier = TrainSummary.read(runDirectory: config.runDirectory), earlier["step"] as? Int == progress.step {
                // A run that had stopped early: its record stays as it was, losses included.
                summary.trainLoss = earlier["train_loss"] as? Double
                summary.testLoss = earlier["test_loss"] as? Double
            } else {
                try summary.write(runDirectory: config.runDirectory)
            }
            try summary.writeIfRequested()
        }
        console.json(summary.json)
        return summary
    }

    /// The epoch's pictures in TensorBoard (rank 0, data with a grayscale image shape): the first
    /// rows of the test split (else validation, else train) above their reconstructions, and a
    /// VAE's draws from its prior (seeded by train.seed, the same draws every epoch).
    private func logPictures(_ log: RunLog, step: Int) {
        guard log.writesEvents, let shape = config.data.imageShape.flatMap(ImageShape.init(sampleShape:)) else { return }
        let split = data.test ?? data.validation ?? data.train, count = min(8, split.rows)
        guard count > 0, let rows = try? split.gather(Array(0..<count)) else { return }
        let pool = ComputePool(threads: 1)   // the other ranks go on meanwhile: keep to one core
        let shown = encode(model: model, parameters: parameters, data: rows, input: data.input, indices: Array(0..<count),
                           pool: pool, reconstructions: true)
        log.append(Pictures.reconstructions(originals: shown.inputs, outputs: shown.outputs, count: count, shape: shape),
                   tag: "images/reconstructions", step: step)
        if model.spec.kind == .vae, let (_, images) = try? samplePrior(model: model, parameters: parameters, count: 16, seed: config.train.seed,
                                                                     input: data.input, communicator: SingleProcess(), pool: pool) {
            log.append(Pictures.grid(images, count: 16, shape: shape), tag: "images/samples", step: step)
        }
    }

    /// The current model's loss and code statistics on the training set.
    public func evaluateTraining() throws -> EvaluationResult {
        try evaluate(model: model, parameters: parameters, data: data.train, input: data.input, seed: config.train.seed,
                     workspace: evaluationWorkspace, communicator: communicator, pool: pool)
    }

    /// Rank 0 writes the checkpoint of this step (or, given `bestPath`, early stopping's best
    /// model there); all ranks learn whether it worked before going on.
    private func writeCheckpoint(to bestPath: String? = nil) throws {
        let path = bestPath ?? checkpoints.file(forStep: progress.step)
        watchdog.beginCheckpoint(step: progress.step - 1)
        try training.gatherOptimizerState()
        try onRoot(communicator) {
            try lock?.check(runDirectory: config.runDirectory)
            do {
                try Checkpoint.write(to: path, config: config, model: model, parameters: parameters,
                                     optimizer: optimizer, progress: progress, record: record,
                                     sampleShape: data.train.sampleShape, normalization: data.normalization,
                                     worldSize: communicator.size)
            } catch {
                throw ConfigError("writing checkpoint '\(path)' failed: \(error); the earlier checkpoints are intact (\(lastCheckpoint ?? "none"))")
            }
            if bestPath == nil { checkpoints.prune(keep: config.train.keepCheckpoints, runID: record.runID) }
        }
        // The best model is not where a resume continues from: messages keep naming the newest step's.
        if bestPath == nil { lastCheckpoint = path }
        watchdog.end(checkpoint: bestPath == nil ? path : nil)
    }
}

/// Cross-entropy against targets in [0, 1], squared error and KL are never negative: a negative
/// term is garbage however finite it is (targets the data checks missed). Rounding stays far
/// above the bound. Returns what is wrong, or nil.
func impossibleLoss(reconstruction: Double, kl: Double) -> String? {
    if reconstruction < -1e-3 { return "a negative reconstruction loss (\(reconstruction)), which targets in [0, 1] never give" }
    if kl < -1e-3 { return "a negative KL divergence (\(kl))" }
    return nil
}

/// Whether two paths name the same file.
private func sameFile(_ a: String, _ b: String) -> Bool {
    var x = stat(), y = stat()
    return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino
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
