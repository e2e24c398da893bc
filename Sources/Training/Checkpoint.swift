// HDF5 checkpoints (docs/checkpoints.md): everything exact resumption needs, written atomically by
// rank 0, found again by step number, validated before use.
import Foundation
import Models
import Storage

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

public struct Checkpoint {
    public let path: String
    public let config: RunConfig
    public let progress: TrainingProgress
    public let worldSize: Int

    /// Writes parameters, optimizer state and progress to `path` atomically.
    public static func write(to path: String, config: RunConfig, model: Autoencoder, parameters: FloatBuffer,
                             optimizer: Optimizer, progress: TrainingProgress, worldSize: Int) throws {
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
            try file.createGroup("/model")
            for t in model.tensors {
                try file.write(UnsafeBufferPointer(parameters[t]), shape: t.shape, to: "/model/\(t.name)")
            }
            try file.createGroup("/optimizer")
            try file.setAttribute("kind", optimizer.settings.kind.rawValue, at: "/optimizer")
            try file.setAttribute("updates", optimizer.updates, at: "/optimizer")
            for (name, buffer) in optimizer.state {
                try file.createGroup("/optimizer/\(name)")
                for t in model.tensors {
                    try file.write(UnsafeBufferPointer(buffer[t]), shape: t.shape, to: "/optimizer/\(name)/\(t.name)")
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
            _ = values.withUnsafeBufferPointer { buffer[t].update(fromContentsOf: $0) }
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

    /// Checkpoint files by step, newest first.
    public func list() -> [(step: Int, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.compactMap { name -> (Int, String)? in
            guard name.hasPrefix("step-"), name.hasSuffix(".h5"),
                  let step = Int(name.dropFirst(5).dropLast(3)) else { return nil }
            return (step, path + "/" + name)
        }.sorted { $0.0 > $1.0 }
    }

    /// The newest checkpoint that opens and validates; broken ones are reported through `warn` and skipped.
    public func newestValid(warn: (String) -> Void) -> Checkpoint? {
        for (_, file) in list() {
            do { return try Checkpoint(path: file) }
            catch { warn("warning: skipping checkpoint '\(file)': \(error)") }
        }
        return nil
    }

    /// Keeps the newest `keep` checkpoints.
    public func prune(keep: Int) {
        for (_, file) in list().dropFirst(keep) { try? FileManager.default.removeItem(atPath: file) }
    }
}
