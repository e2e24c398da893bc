// HDF5 checkpoints (docs/checkpoints.md): everything exact resumption needs, written atomically by
// rank 0, found again by step number, validated before use.
import Foundation
import Models
import Storage
import TensorBoard

public enum CheckpointFormat {
    public static let name = "aedist-checkpoint"
    public static let version: Int64 = 1
}

/// The training state a checkpoint carries besides parameters and optimizer buffers.
public struct TrainingProgress: Equatable, Sendable {
    /// Optimizer steps completed.
    public var step: Int = 0
    /// Epoch of the next step (0-based).
    public var epoch: Int = 0
    /// Samples consumed so far (global).
    public var samplesSeen: Int64 = 0
}

/// What a run's record (`metrics.jsonl`, the progress lines) needs to continue after a resume as if
/// the run had not stopped: which run it is, its time so far, and the logging window in progress.
public struct RunRecord: Equatable, Sendable {
    /// Names one run from its first step on; every checkpoint and metrics line carries it.
    public var runID: String
    /// Training seconds of the run so far, over all its invocations (metrics' `seconds`).
    public var seconds: Double = 0
    /// Sums over the steps since the last logged line (they continue after a resume).
    public var window = LogWindow()
    /// Early stopping's best loss so far, where it was reached, and the epochs since.
    public var earlyStopping = EarlyStoppingState()

    /// A new run's id: its start time (UTC) and 32 random bits, e.g. 20261203T131500Z-3f9a2c01.
    public static func newRunID() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter.string(from: Date()) + "-" + String(format: "%08x", UInt32.random(in: 0...UInt32.max))
    }
}

/// Where `train.early_stopping` stands after an epoch's evaluation.
public struct EarlyStoppingState: Equatable, Sendable {
    /// The lowest monitored loss so far (nil: none evaluated yet), its step and 1-based epoch.
    public var bestLoss: Double? = nil
    public var bestStep = 0
    public var bestEpoch = 0
    /// Epochs evaluated since the best without an improvement of more than `min_delta`.
    public var epochsSinceBest = 0

    /// Takes an epoch's monitored loss; returns whether it is the new best (below the best by
    /// more than `minDelta`, as Keras counts it). A loss that is not finite never is.
    public mutating func observe(_ loss: Double, step: Int, epoch: Int, minDelta: Double) -> Bool {
        if !loss.isFinite || bestLoss.map({ !(loss < $0 - minDelta) }) == true {
            epochsSinceBest += 1
            return false
        }
        bestLoss = loss; bestStep = step; bestEpoch = epoch; epochsSinceBest = 0
        return true
    }

    /// Whether a run with these settings stops here.
    public func exhausted(_ settings: EarlyStoppingSettings?) -> Bool {
        settings.map { bestLoss != nil && epochsSinceBest >= $0.patience } ?? false
    }
}

/// Loss sums over the steps since the last logged line.
public struct LogWindow: Equatable, Sendable {
    public var loss = 0.0, reconstruction = 0.0, kl = 0.0, seconds = 0.0
    public var steps = 0
}

public struct Checkpoint {
    public let path: String
    public let config: RunConfig
    public let progress: TrainingProgress
    public let worldSize: Int
    /// Empty run id: a checkpoint written before run ids existed.
    public let record: RunRecord
    /// The inputs' per-feature normalization (nil: none).
    public let normalization: FeatureNormalization?
    /// The shape of one training row as the train dataset had it ([64], [8, 8], ...); nil in
    /// checkpoints written before it was kept.
    public let sampleShape: [Int]?

    /// Writes parameters, optimizer state and progress to `path` atomically.
    public static func write(to path: String, config: RunConfig, model: Autoencoder, parameters: FloatBuffer,
                             optimizer: Optimizer, progress: TrainingProgress, record: RunRecord, sampleShape: [Int],
                             normalization: FeatureNormalization? = nil, worldSize: Int) throws {
        try writeAtomically(to: path, sealed: true) { file in
            try file.setAttribute("format", CheckpointFormat.name)
            try file.setAttribute("format_version", CheckpointFormat.version)
            try file.setAttribute("step", Int64(progress.step))
            try file.setAttribute("epoch", Int64(progress.epoch))
            try file.setAttribute("samples_seen", progress.samplesSeen)
            try file.setAttribute("config", config.yaml)
            try file.setAttribute("model_kind", model.spec.kind.rawValue)
            try file.setAttribute("model_summary", model.summary)
            try file.setAttribute("activation", model.spec.activation.rawValue)
            try file.setAttribute("output", model.spec.output.rawValue)
            try file.setAttribute("parameter_count", Int64(model.parameterCount))
            try file.setAttribute("world_size", Int64(worldSize))
            try file.setAttribute("sample_shape", sampleShape.map { Int64($0) })
            try file.setAttribute("run_id", record.runID)
            try file.setAttribute("run_seconds", record.seconds)
            try file.setAttribute("log_window_loss", record.window.loss)
            try file.setAttribute("log_window_recon", record.window.reconstruction)
            try file.setAttribute("log_window_kl", record.window.kl)
            try file.setAttribute("log_window_seconds", record.window.seconds)
            try file.setAttribute("log_window_steps", Int64(record.window.steps))
            let stopping = record.earlyStopping
            try file.setAttribute("early_stopping_best_loss", stopping.bestLoss ?? .nan)
            try file.setAttribute("early_stopping_best_step", Int64(stopping.bestStep))
            try file.setAttribute("early_stopping_best_epoch", Int64(stopping.bestEpoch))
            try file.setAttribute("early_stopping_epochs_since_best", Int64(stopping.epochsSinceBest))
            try file.createGroup("/model")
            for t in model.tensors {
                try t.withStoredValues(in: parameters) { try file.write($0, shape: t.shape, to: "/model/\(t.name)") }
                if let layer = t.layer { try file.setAttribute("layer", layer, at: "/model/\(t.name)") }
                for (name, values) in t.geometry { try file.setAttribute(name, values.map { Int64($0) }, at: "/model/\(t.name)") }
            }
            try normalization?.write(to: file)
            try file.createGroup("/optimizer")
            try file.setAttribute("kind", optimizer.settings.kind.rawValue, at: "/optimizer")
            try file.setAttribute("updates", optimizer.updates, at: "/optimizer")
            for (name, buffer) in optimizer.state {
                try file.createGroup("/optimizer/\(name)")
                for t in model.tensors {
                    try t.withStoredValues(in: buffer) { try file.write($0, shape: t.shape, to: "/optimizer/\(name)/\(t.name)") }
                }
            }
        }
    }

    /// Opens a checkpoint and checks its format; reads its configuration and progress.
    public init(path: String) throws {
        // The seal first: a damaged file never reaches libhdf5's parser.
        do { try verifySeal(ofFileAt: path) } catch { throw ConfigError("not a complete aedist checkpoint: \(error)") }
        let file = try HDF5File(readingAt: path)
        defer { file.close() }
        guard file.hasAttribute("format"), try file.stringAttribute("format") == CheckpointFormat.name else {
            throw ConfigError("checkpoint '\(path)': not an aedist checkpoint (no format = \"\(CheckpointFormat.name)\" attribute)")
        }
        let version = try file.int64Attribute("format_version")
        guard version == CheckpointFormat.version else {
            throw ConfigError("checkpoint '\(path)': format_version \(version) is not supported (this aedist reads \(CheckpointFormat.version))")
        }
        self.path = path
        config = try RunConfig.parse(yaml: try file.stringAttribute("config"), origin: "checkpoint '\(path)' attribute config")
        progress = TrainingProgress(step: Int(try file.int64Attribute("step")),
                                    epoch: Int(try file.int64Attribute("epoch")),
                                    samplesSeen: try file.int64Attribute("samples_seen"))
        worldSize = Int(try file.int64Attribute("world_size"))
        var record = RunRecord(runID: file.hasAttribute("run_id") ? try file.stringAttribute("run_id") : "")
        if file.hasAttribute("run_seconds") {
            record.seconds = try file.doubleAttribute("run_seconds")
            record.window = LogWindow(loss: try file.doubleAttribute("log_window_loss"),
                                      reconstruction: try file.doubleAttribute("log_window_recon"),
                                      kl: try file.doubleAttribute("log_window_kl"),
                                      seconds: try file.doubleAttribute("log_window_seconds"),
                                      steps: Int(try file.int64Attribute("log_window_steps")))
        }
        if file.hasAttribute("early_stopping_best_loss") {
            let best = try file.doubleAttribute("early_stopping_best_loss")
            record.earlyStopping = EarlyStoppingState(bestLoss: best.isNaN ? nil : best,
                                                      bestStep: Int(try file.int64Attribute("early_stopping_best_step")),
                                                      bestEpoch: Int(try file.int64Attribute("early_stopping_best_epoch")),
                                                      epochsSinceBest: Int(try file.int64Attribute("early_stopping_epochs_since_best")))
        }
        self.record = record
        normalization = try FeatureNormalization.read(from: file, path: path)
        sampleShape = file.hasAttribute("sample_shape") ? try file.int64ArrayAttribute("sample_shape").map { Int($0) } : nil
    }

    /// Loads parameters (and optimizer state, when given) into buffers laid out for `model`.
    /// Every tensor's shape must match the model's.
    public func load(model: Autoencoder, parameters: FloatBuffer, optimizer: Optimizer?) throws {
        let file = try HDF5File(readingAt: path)
        defer { file.close() }
        func read(_ dataset: String, _ t: TensorView, into buffer: FloatBuffer) throws {
            guard file.kind(of: dataset) == .dataset else {
                throw ConfigError("checkpoint '\(path)': missing dataset \(dataset) that the model \(model.summary) needs")
            }
            let shape = try file.shape(ofDataset: dataset)
            guard shape == t.shape else {
                throw ConfigError("checkpoint '\(path)': \(dataset) has shape \(shape) but the model \(model.summary) expects \(t.shape)")
            }
            let values = try file.readFloats(dataset)
            t.setStoredValues(values, in: buffer)
        }
        for t in model.tensors { try read("/model/\(t.name)", t, into: parameters) }
        if let optimizer {
            let kind = file.hasAttribute("kind", at: "/optimizer") ? try file.stringAttribute("kind", at: "/optimizer") : "?"
            guard kind == optimizer.settings.kind.rawValue else {
                throw ConfigError("checkpoint '\(path)': optimizer state is for '\(kind)' but the configuration uses '\(optimizer.settings.kind.rawValue)'")
            }
            optimizer.updates = try file.int64Attribute("updates", at: "/optimizer")
            for (name, buffer) in optimizer.state {
                for t in model.tensors { try read("/optimizer/\(name)/\(t.name)", t, into: buffer) }
            }
        }
    }
}

/// The checkpoints of a run directory: naming, listing, choosing one to resume from, pruning.
public struct CheckpointDirectory {
    public let path: String
    public init(runDirectory: String) { path = runDirectory + "/checkpoints" }

    public func file(forStep step: Int) -> String { path + "/" + String(format: "step-%09d.h5", step) }

    /// Early stopping's best model: never pruned, never resumed from by `--resume auto`.
    public var best: String { path + "/best.h5" }

    /// Checkpoint files by step, newest first.
    public func list() -> [(step: Int, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.compactMap { name -> (Int, String)? in
            guard name.hasPrefix("step-"), name.hasSuffix(".h5"),
                  let step = Int(name.dropFirst(5).dropLast(3)) else { return nil }
            return (step, path + "/" + name)
        }.sorted { $0.0 > $1.0 }
    }

    /// The run id of each checkpoint that opens ("" for one written before run ids), newest first;
    /// damaged files are left out.
    public func runs() -> [(step: Int, path: String, runID: String)] {
        list().compactMap { entry in
            (try? Checkpoint(path: entry.path)).map { (entry.step, entry.path, $0.record.runID) }
        }
    }

    /// Keeps the newest `keep` checkpoints of run `runID` and removes its older ones, oldest first;
    /// never touches another run's checkpoint (nor a damaged file, whose run is unknown).
    public func prune(keep: Int, runID: String) {
        let own = runs().filter { $0.runID == runID }
        for entry in own.dropFirst(keep).reversed() { try? FileManager.default.removeItem(atPath: entry.path) }
    }

    /// Moves every checkpoint (and `best.h5`), and the run's `metrics.jsonl`, `config.yaml`,
    /// `summary.json`, TensorBoard event files and report, into `RUN_DIR/previous/STAMP/` (nothing
    /// is deleted); returns that folder.
    public func moveAside(runDirectory: String) throws -> String {
        let stamp = String(RunRecord.newRunID().prefix(16))
        var target = runDirectory + "/previous/" + stamp
        var n = 1
        while FileManager.default.fileExists(atPath: target) { n += 1; target = runDirectory + "/previous/\(stamp)-\(n)" }
        let fm = FileManager.default
        do {
            try fm.createDirectory(atPath: target + "/checkpoints", withIntermediateDirectories: true)
            for file in list().map(\.path) + (fm.fileExists(atPath: best) ? [best] : []) {
                try fm.moveItem(atPath: file, toPath: target + "/checkpoints/" + URL(fileURLWithPath: file).lastPathComponent)
            }
            let events = ((try? fm.contentsOfDirectory(atPath: runDirectory)) ?? []).filter(EventFile.isEventFile)
            for name in ["metrics.jsonl", "config.yaml", "summary.json", "report"] + events
            where fm.fileExists(atPath: runDirectory + "/" + name) {
                try fm.moveItem(atPath: runDirectory + "/" + name, toPath: target + "/" + name)
            }
        } catch {
            throw ConfigError("run_dir '\(runDirectory)': moving the earlier run into '\(target)' failed: \(error.localizedDescription)")
        }
        return target
    }
}
