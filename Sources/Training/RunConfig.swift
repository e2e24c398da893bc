// The run configuration: defaults, the YAML file, `--set` overrides,
// and validation that names the file, key and value of every mistake.
import Foundation
import Models
import Storage
import Yams

public struct ConfigError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public struct DataSettings: Equatable, Sendable {
    public var path = "data/digits.h5"
    public var train = "train/images"
    public var test: String? = "test/images"
    /// The file of the test split; nil: `path`.
    public var testPath: String? = nil
    /// One sample's picture shape, [H, W] or [H, W, C]: given for 2-D datasets, or nil; a trained
    /// run holds the resolved one (an N-D dataset's own trailing shape, or the file's image_shape).
    public var imageShape: [Int]? = nil
    /// Per-feature normalization of the model inputs, from the train split's statistics.
    public var normalize: NormalizationKind = .none
    /// nil: automatic (integer data: 1 / the train split's maximum; floats: 1); a trained run
    /// holds the number it resolved to.
    public var scale: Float? = nil
    /// Where the train rows live; never changes results.
    public var residency: Residency = .auto
    /// The order of an epoch.
    public var shuffle: ShuffleKind = .rows
    /// Rows per block for `shuffle: blocks`; nil: the dataset's chunk height (1024 if contiguous).
    public var blockRows: Int? = nil
    /// Blocks whose rows are shuffled together for `shuffle: blocks`.
    public var shuffleWindow = 16
    /// Rows evaluated at every epoch's end to steer the run (early stopping), if any.
    public var validation: ValidationSource? = nil
    /// The dataset of the train rows' labels (latent maps); nil: `labels` beside the train dataset
    /// when the file has one.
    public var labels: String? = nil
}

/// `data.validation`: a fraction of the train dataset's rows, held out from training (drawn from
/// the seed), or a dataset of `data.path`.
public enum ValidationSource: Equatable, Sendable {
    case fraction(Double)
    case dataset(String)
}

/// `train.early_stopping`: end the run when the validation loss (else the test loss) has not
/// fallen below the best so far by more than `minDelta` for `patience` epochs.
public struct EarlyStoppingSettings: Equatable, Sendable {
    public var patience: Int
    public var minDelta: Double
    public init(patience: Int, minDelta: Double) { self.patience = patience; self.minDelta = minDelta }
}

public struct TrainSettings: Equatable, Sendable {
    public var epochs = 10
    public var maxSteps: Int? = nil
    public var batchSize = 128
    /// nil: automatic (`automaticMicroBatch`); else a divisor of the batch.
    public var microBatch: Int? = nil
    /// true: results do not depend on the rank or thread count (docs/determinism.md), about 10 %
    /// slower at np = 2; false: the library's allreduce and one chain per rank.
    public var exactReduction = true
    /// true: each layer's gradients are sent while backward computes the layers below, and at np > 1
    /// the optimizer update is sharded across ranks (unless clip_grad_norm is set); false: one
    /// blocking reduction after backward, every rank updating everything. Same bits either way.
    public var overlapReduction = true
    /// true: when every rank is on one node, the ranks keep their parameters and gradients in memory
    /// they all read, and the overlapped exact reduction reads the other ranks' gradients in place
    /// instead of sending messages; false: MPI messages always. Same bits either way.
    public var sharedMemory = true
    public var optimizer = OptimizerSettings()
    public var seed: UInt64 = 0
    public var logEvery = 50
    public var checkpointEvery = 500
    public var keepCheckpoints = 3
    /// Rescale the gradient when its global L2 norm exceeds this (nil: no clipping).
    public var clipGradNorm: Float? = nil
    /// Seconds without progress in a step's collectives before a rank ends the job; nil:
    /// automatic, max(60, 20 × the slowest step so far).
    public var stallTimeout: Double? = nil
    /// `train.lr_schedule`.
    public var lrSchedule = LearningRateSchedule()
    /// `model.kl_schedule` (kept here: the model's spec holds only what shapes the network).
    public var klSchedule = KLSchedule()
    /// nil: the run trains to its configured end.
    public var earlyStopping: EarlyStoppingSettings? = nil

    /// The micro-batch in use: the configured one, or the automatic one for this batch.
    public var resolvedMicroBatch: Int { microBatch ?? TrainSettings.automaticMicroBatch(batchSize: batchSize) }

    /// `micro_batch: auto`: the batch divided by the largest power of two that divides it and
    /// leaves micro-batches of at least 16 rows (smaller ones make the weight-gradient products
    /// short). It depends on the batch alone, so every rank count gets the same tree of sums; the
    /// rank counts that split it are the powers of two up to batch / micro-batch. Batch 128 gives
    /// 16 (np 1 to 8), 100 gives 25 (np 1, 2, 4), 250 gives 125 (np 1, 2), 1000 gives 125 (np 1 to 8).
    public static func automaticMicroBatch(batchSize b: Int) -> Int {
        var m = b
        while m % 2 == 0 && m / 2 >= 16 { m /= 2 }
        return m
    }
}

public struct RunConfig: Equatable, Sendable {
    public var model = ModelSpec()
    public var data = DataSettings()
    public var train = TrainSettings()
    public var runDirectory = "runs/default"

    public init() {}

    /// The keys a configuration may set, with their defaults: the schema for unknown-key checks.
    static let defaultsYAML = """
    model:
      kind: vae
      encoder: [512, 256]
      decoder: mirror
      latent: 20
      activation: relu
      output: bernoulli
      denoise: {noise: none, level: 0.0}
      sparsity: {l1: 0.0, target: 0.0, kl_weight: 0.0}
      kl_weight: 1.0
      kl_schedule: {kind: constant, warmup_steps: 1000, period: 1000, ramp: 0.5}
    data:
      path: data/digits.h5
      train: train/images
      test: test/images
      test_path: null
      scale: auto
      normalize: none
      image_shape: null
      residency: auto
      shuffle: rows
      block_rows: null
      shuffle_window: 16
      validation: null
      labels: null
    train:
      epochs: 10
      max_steps: null
      batch_size: 128
      micro_batch: auto
      exact_reduction: true
      overlap_reduction: true
      shared_memory: true
      optimizer: adam
      lr: 0.001
      momentum: 0.9
      seed: 0
      log_every: 50
      checkpoint_every: 500
      keep_checkpoints: 3
      clip_grad_norm: null
      stall_timeout: auto
      lr_schedule: {kind: constant, warmup_steps: 0, min_lr: 0.0, every: 1000, factor: 0.5}
      early_stopping: {patience: 5, min_delta: 0.0}
    run_dir: null
    """

    /// Sections that `null` turns off (the defaults above give their keys' values when on).
    static let sectionsThatMayBeNull: Set<String> = ["train.early_stopping"]

    /// Reads `file` (nil: defaults only), applies `overrides` ("dotted.key=yaml value"), validates.
    public static func load(file: String?, overrides: [String] = []) throws -> RunConfig {
        var values = try flatten(text: defaultsYAML, origin: "defaults")
        let known = Set(values.keys)
        let null = Node("null", .init(.null))
        for section in sectionsThatMayBeNull { values[section] = null }   // off unless given
        var origins: [String: String] = [:]
        /// Sets a known key, or turns a section off (`null`) or on (any of its keys); false: unknown.
        func assign(_ key: String, _ node: Node) -> Bool {
            if sectionsThatMayBeNull.contains(key), case .scalar = node, node.null != nil { values[key] = null; return true }
            guard known.contains(key) else { return false }
            values[key] = node
            if let section = sectionsThatMayBeNull.first(where: { key.hasPrefix($0 + ".") }) { values[section] = nil }
            return true
        }
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw ConfigError("config file '\(file)': cannot be read (does it exist?\(relativePathNote(file)))")
            }
            guard let text = String(data: data, encoding: .utf8) else {
                throw ConfigError("config file '\(file)': not UTF-8 text")
            }
            for (key, node) in try flatten(text: text, origin: "config file '\(file)'") {
                guard assign(key, node) else {
                    throw ConfigError("config file '\(file)': unknown key '\(key)'\(RunConfig.suggestion(for: key, among: known))")
                }
                origins[key] = "config file '\(file)'"
            }
        }
        for item in overrides {
            guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
                throw ConfigError("--set '\(item)': expected KEY=VALUE, for example --set model.latent=32")
            }
            let key = String(item[..<eq]), valueText = String(item[item.index(after: eq)...])
            let origin = "--set \(item)"
            let node: Node
            do { node = try Yams.compose(yaml: valueText) ?? null }
            catch { throw ConfigError("\(origin): the value is not valid YAML") }
            if !assign(key, node) {
                guard case .mapping = node, known.contains(where: { $0.hasPrefix(key + ".") }) else {
                    throw ConfigError("\(origin): unknown key '\(key)'\(RunConfig.suggestion(for: key, among: known))")
                }
                for (sub, n) in try flatten(node: node, prefix: key, origin: origin) {
                    guard assign(sub, n) else { throw ConfigError("\(origin): unknown key '\(sub)'\(RunConfig.suggestion(for: sub, among: known))") }
                }
            }
            origins[key] = origin
        }
        var config = RunConfig()
        let reader = ValueReader(values: values, origins: origins, configFile: file)
        try config.read(reader, file: file)
        return config
    }

    private mutating func read(_ r: ValueReader, file: String?) throws {
        model.kind = try r.choice("model.kind", ModelKind.self)
        model.encoder = try r.layerList(.encoder)
        model.decoder = try r.isMirror("model.decoder") ? nil : r.layerList(.decoder)
        model.latent = try r.int("model.latent", minimum: 1)
        model.activation = try r.choice("model.activation", Activation.self)
        model.output = try r.choice("model.output", OutputDistribution.self)
        model.noise = try r.choice("model.denoise.noise", NoiseKind.self)
        model.noiseLevel = try r.float("model.denoise.level", minimum: 0)
        if model.noise == .masking || model.noise == .saltPepper, model.noiseLevel > 1 {
            throw r.error("model.denoise.level", "a probability in [0, 1] for \(model.noise.rawValue) noise")
        }
        model.l1 = try r.float("model.sparsity.l1", minimum: 0)
        model.sparsityTarget = try r.float("model.sparsity.target", minimum: 0)
        model.sparsityKLWeight = try r.float("model.sparsity.kl_weight", minimum: 0)
        if model.sparsityTarget >= 1 { throw r.error("model.sparsity.target", "a target activation in (0, 1), or 0 for none") }
        if model.sparsityTarget > 0 && model.kind == .vae {
            throw r.error("model.sparsity.target", "0 for a VAE (the KL sparsity target applies to an AE's sigmoid code)")
        }
        model.klWeight = try r.float("model.kl_weight", minimum: 0)
        data.path = try r.string("data.path")
        data.train = try r.string("data.train")
        data.test = try r.optionalString("data.test")
        data.testPath = try r.optionalString("data.test_path")
        data.scale = try r.scale("data.scale")
        data.normalize = try r.choice("data.normalize", NormalizationKind.self)
        data.imageShape = try r.optionalIntList("data.image_shape", minimum: 1)
        data.residency = try r.choice("data.residency", Residency.self)
        data.shuffle = try r.choice("data.shuffle", ShuffleKind.self)
        data.blockRows = try r.optionalInt("data.block_rows", minimum: 1)
        data.shuffleWindow = try r.int("data.shuffle_window", minimum: 1)
        data.labels = try r.optionalString("data.labels")
        if let n = r.values["data.validation"], case .scalar(let scalar) = n, n.null == nil {
            if scalar.style == .plain, let f = n.float {   // a quoted '0.5' is a dataset's name
                guard f > 0, f < 1 else { throw r.error("data.validation", "a fraction of the train rows in (0, 1), a dataset of data.path, or null") }
                data.validation = .fraction(f)
            } else {
                data.validation = .dataset(scalar.string)
            }
        } else if let n = r.values["data.validation"], n.null == nil {
            throw r.error("data.validation", "a fraction of the train rows in (0, 1), a dataset of data.path, or null")
        }
        if let shape = data.imageShape, !(2...3).contains(shape.count) {
            throw r.error("data.image_shape", "[height, width] or [height, width, channels], or null")
        }
        train.epochs = try r.int("train.epochs", minimum: 1)
        train.maxSteps = try r.optionalInt("train.max_steps", minimum: 1)
        train.batchSize = try r.int("train.batch_size", minimum: 1)
        train.microBatch = try r.automaticInt("train.micro_batch", minimum: 1)
        train.exactReduction = try r.bool("train.exact_reduction")
        train.overlapReduction = try r.bool("train.overlap_reduction")
        train.sharedMemory = try r.bool("train.shared_memory")
        train.optimizer.kind = try r.choice("train.optimizer", OptimizerKind.self)
        train.optimizer.lr = try r.float("train.lr", minimum: 0, exclusive: true)
        train.optimizer.momentum = try r.float("train.momentum", minimum: 0)
        train.seed = UInt64(try r.int("train.seed", minimum: 0))
        train.logEvery = try r.int("train.log_every", minimum: 1)
        train.checkpointEvery = try r.int("train.checkpoint_every", minimum: 1)
        train.keepCheckpoints = try r.int("train.keep_checkpoints", minimum: 1)
        train.clipGradNorm = try r.optionalFloat("train.clip_grad_norm", minimum: 0, exclusive: true)
        if let n = r.values["train.stall_timeout"], case .scalar(let s) = n, s.string == "auto" {
            train.stallTimeout = nil
        } else {
            do { train.stallTimeout = Double(try r.float("train.stall_timeout", minimum: 0, exclusive: true)) }
            catch { throw r.error("train.stall_timeout", "auto or a number of seconds > 0") }
        }
        train.lrSchedule.kind = try r.choice("train.lr_schedule.kind", LearningRateScheduleKind.self)
        train.lrSchedule.warmupSteps = try r.int("train.lr_schedule.warmup_steps", minimum: 0)
        train.lrSchedule.minLR = try r.float("train.lr_schedule.min_lr", minimum: 0)
        train.lrSchedule.every = try r.int("train.lr_schedule.every", minimum: 1)
        train.lrSchedule.factor = try r.float("train.lr_schedule.factor", minimum: 0, exclusive: true)
        train.klSchedule.kind = try r.choice("model.kl_schedule.kind", KLScheduleKind.self)
        train.klSchedule.warmupSteps = try r.int("model.kl_schedule.warmup_steps", minimum: 1)
        train.klSchedule.period = try r.int("model.kl_schedule.period", minimum: 1)
        train.klSchedule.ramp = try r.float("model.kl_schedule.ramp", minimum: 0, exclusive: true)
        if train.klSchedule.ramp > 1 { throw r.error("model.kl_schedule.ramp", "a fraction of the period in (0, 1]") }
        if r.values["train.early_stopping"] == nil {   // not turned off: on, with these settings
            train.earlyStopping = EarlyStoppingSettings(patience: try r.int("train.early_stopping.patience", minimum: 1),
                                                        minDelta: try r.double("train.early_stopping.min_delta", expected: "a number ≥ 0"))
            if train.earlyStopping!.minDelta < 0 { throw r.error("train.early_stopping.min_delta", "a number ≥ 0") }
            if data.validation == nil && data.test == nil {
                throw ConfigError("key 'train.early_stopping': it watches the validation loss (data.validation) or else the test loss (data.test), but both are null; set one of them, or train.early_stopping: null")
            }
        }
        if let dir = try r.optionalString("run_dir") {
            runDirectory = dir
        } else {
            let name = file.map { URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent } ?? "default"
            runDirectory = "runs/\(name)"
        }
        if let m = train.microBatch, train.batchSize % m != 0 {
            throw r.error("train.micro_batch", "auto or a divisor of train.batch_size (\(train.batchSize))")
        }
    }

    /// The resolved configuration as YAML, every default filled in (written to the run directory
    /// and into checkpoints; `load` reads it back to the same value).
    public var yaml: String {
        func number(_ x: Float) -> String { "\(x)" }
        func quoted(_ s: String) -> String {
            let needs = s.isEmpty || s.contains(where: { ":#{}[],&*!|>'\"%@`".contains($0) }) || s != s.trimmingCharacters(in: .whitespaces)
                || ["null", "true", "false", "~", "yes", "no"].contains(s.lowercased()) || Double(s) != nil
            return needs ? "'" + s.replacingOccurrences(of: "'", with: "''") + "'" : s
        }
        return """
        model:
          kind: \(model.kind.rawValue)
          encoder: [\(model.encoder.map(\.yaml).joined(separator: ", "))]
          decoder: \(model.decoder.map { "[" + $0.map(\.yaml).joined(separator: ", ") + "]" } ?? "mirror")
          latent: \(model.latent)
          activation: \(model.activation.rawValue)
          output: \(model.output.rawValue)
          denoise: {noise: \(model.noise.rawValue), level: \(number(model.noiseLevel))}
          sparsity: {l1: \(number(model.l1)), target: \(number(model.sparsityTarget)), kl_weight: \(number(model.sparsityKLWeight))}
          kl_weight: \(number(model.klWeight))
          kl_schedule: {kind: \(train.klSchedule.kind.rawValue), warmup_steps: \(train.klSchedule.warmupSteps), period: \(train.klSchedule.period), ramp: \(number(train.klSchedule.ramp))}
        data:
          path: \(quoted(data.path))
          train: \(quoted(data.train))
          test: \(data.test.map(quoted) ?? "null")
          test_path: \(data.testPath.map(quoted) ?? "null")
          scale: \(data.scale.map(number) ?? "auto")
          normalize: \(data.normalize.rawValue)
          image_shape: \(data.imageShape.map { "[" + $0.map(String.init).joined(separator: ", ") + "]" } ?? "null")
          residency: \(data.residency.rawValue)
          shuffle: \(data.shuffle.rawValue)
          block_rows: \(data.blockRows.map(String.init) ?? "null")
          shuffle_window: \(data.shuffleWindow)
          validation: \(data.validation.map { switch $0 { case .fraction(let f): return "\(f)"; case .dataset(let name): return quoted(name) } } ?? "null")
          labels: \(data.labels.map(quoted) ?? "null")
        train:
          epochs: \(train.epochs)
          max_steps: \(train.maxSteps.map(String.init) ?? "null")
          batch_size: \(train.batchSize)
          micro_batch: \(train.microBatch.map(String.init) ?? "auto")
          exact_reduction: \(train.exactReduction)
          overlap_reduction: \(train.overlapReduction)
          shared_memory: \(train.sharedMemory)
          optimizer: \(train.optimizer.kind.rawValue)
          lr: \(number(train.optimizer.lr))
          momentum: \(number(train.optimizer.momentum))
          seed: \(train.seed)
          log_every: \(train.logEvery)
          checkpoint_every: \(train.checkpointEvery)
          keep_checkpoints: \(train.keepCheckpoints)
          clip_grad_norm: \(train.clipGradNorm.map(number) ?? "null")
          stall_timeout: \(train.stallTimeout.map { "\($0)" } ?? "auto")
          lr_schedule: {kind: \(train.lrSchedule.kind.rawValue), warmup_steps: \(train.lrSchedule.warmupSteps), min_lr: \(number(train.lrSchedule.minLR)), every: \(train.lrSchedule.every), factor: \(number(train.lrSchedule.factor))}
          early_stopping: \(train.earlyStopping.map { "{patience: \($0.patience), min_delta: \($0.minDelta)}" } ?? "null")
        run_dir: \(quoted(runDirectory))

        """
    }

    /// Keys a resumed run may change (one log line lists them, old → new); every other key must
    /// equal the checkpoint's, since it changes the model, the data or the order of the steps.
    public static let changeableOnResume: Set<String> = [
        "train.epochs", "train.max_steps", "train.lr", "train.momentum", "model.kl_weight",
        "train.log_every", "train.checkpoint_every", "train.keep_checkpoints", "train.overlap_reduction", "train.shared_memory", "train.stall_timeout",
        "train.lr_schedule.kind", "train.lr_schedule.warmup_steps", "train.lr_schedule.min_lr", "train.lr_schedule.every",
        "train.lr_schedule.factor", "model.kl_schedule.kind", "model.kl_schedule.warmup_steps", "model.kl_schedule.period",
        "model.kl_schedule.ramp", "train.early_stopping", "train.early_stopping.patience", "train.early_stopping.min_delta",
        "data.path", "data.test", "data.test_path", "data.image_shape", "data.residency", "data.labels", "run_dir",
    ]

    /// The keys whose values differ between `self` and `other`, sorted, with both values as
    /// written in the resolved YAML.
    public func differences(from other: RunConfig) -> [(key: String, mine: String, theirs: String)] {
        guard let a = try? RunConfig.flatten(text: yaml, origin: "configuration"),
              let b = try? RunConfig.flatten(text: other.yaml, origin: "configuration") else { return [] }
        func text(_ node: Node?) -> String {
            guard let node else { return "nothing" }
            switch node {
            case .scalar(let s): return s.string
            case .sequence(let s): return "[" + s.map { text($0) }.joined(separator: ", ") + "]"
            default: return (try? Yams.serialize(node: node).trimmingCharacters(in: .whitespacesAndNewlines)) ?? "?"
            }
        }
        return Set(a.keys).union(b.keys).sorted().compactMap { key in
            let (x, y) = (text(a[key]), text(b[key]))
            return x == y ? nil : (key, x, y)
        }
    }

    /// Reads a configuration from YAML text (the resolved form in a checkpoint).
    public static func parse(yaml text: String, origin: String) throws -> RunConfig {
        let path = NSTemporaryDirectory() + "aedist-config-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).yaml"
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) else {
            throw ConfigError("\(origin): cannot stage the configuration")
        }
        defer { try? FileManager.default.removeItem(atPath: path) }
        do { return try load(file: path) }
        catch let e as ConfigError {
            throw ConfigError(e.description.replacingOccurrences(of: "config file '\(path)'", with: origin))
        }
    }

    /// " (did you mean 'x'?)" for a near miss, else the keys of the same section.
    static func suggestion(for key: String, among known: Set<String>) -> String {
        func distance(_ a: String, _ b: String) -> Int {
            let a = Array(a), b = Array(b)
            var row = Array(0...b.count)
            for i in 1...max(a.count, 1) where !a.isEmpty {
                var previous = row[0]
                row[0] = i
                for j in 1...max(b.count, 1) where !b.isEmpty {
                    let current = row[j]
                    row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                    previous = current
                }
            }
            return row[b.count]
        }
        if let best = known.min(by: { distance(key, $0) < distance(key, $1) }), distance(key, best) <= 3 {
            return " (did you mean '\(best)'?)"
        }
        let section = key.split(separator: ".").first.map(String.init) ?? ""
        let siblings = known.filter { $0.hasPrefix(section + ".") }.sorted()
        return " (keys of \(siblings.isEmpty ? "a configuration" : "'" + section + "'"): \((siblings.isEmpty ? known.sorted() : siblings).joined(separator: ", ")))"
    }

    // MARK: flattening YAML into dotted keys

    static func flatten(text: String, origin: String) throws -> [String: Node] {
        let node: Node?
        do { node = try Yams.compose(yaml: text) }
        catch { throw ConfigError("\(origin): not valid YAML: \(String(describing: error).prefix(300))") }
        guard let node else { return [:] }
        guard case .mapping = node else { throw ConfigError("\(origin): expected a mapping of sections (model:, data:, train:)") }
        return try flatten(node: node, prefix: "", origin: origin)
    }

    static func flatten(node: Node, prefix: String, origin: String) throws -> [String: Node] {
        var out: [String: Node] = [:]
        guard let mapping = node.mapping else { return [prefix: node] }
        for (k, v) in mapping {
            guard let name = k.string else { throw ConfigError("\(origin): a key that is not text under '\(prefix)'") }
            let key = prefix.isEmpty ? name : prefix + "." + name
            if case .mapping = v { out.merge(try flatten(node: v, prefix: key, origin: origin)) { $1 } }
            else { out[key] = v }
        }
        return out
    }
}

/// Typed access to the flattened values with errors that name where a value came from.
struct ValueReader {
    let values: [String: Node]
    let origins: [String: String]
    let configFile: String?

    func error(_ key: String, _ expected: String) -> ConfigError {
        let origin = origins[key] ?? origins.first(where: { key.hasPrefix($0.key + ".") })?.value
            ?? (configFile.map { "config file '\($0)'" } ?? "defaults")
        let shown = values[key].map(describe) ?? "nothing"
        return ConfigError("\(origin): key '\(key)': expected \(expected), got \(shown)")
    }

    private func describe(_ node: Node) -> String {
        if case .scalar(let s) = node { return "'\(s.string)'" }
        return flow(node)
    }

    /// A node in YAML's flow style: [16, {conv: 8, kernel: 3}].
    private func flow(_ node: Node) -> String {
        switch node {
        case .scalar(let s): return s.string
        case .sequence(let s): return "[" + s.map(flow).joined(separator: ", ") + "]"
        case .mapping(let m): return "{" + m.map { "\(flow($0.key)): \(flow($0.value))" }.joined(separator: ", ") + "}"
        }
    }

    private func isNull(_ node: Node?) -> Bool {
        guard let node else { return true }
        if case .scalar(let s) = node { return node.null != nil && s.style == .plain || s.string == "null" || s.string == "~" }
        return false
    }

    func int(_ key: String, minimum: Int) throws -> Int {
        guard let n = values[key], case .scalar = n, let v = n.int, n.float.map({ $0 == Double(v) }) ?? true,
              !(n.scalar?.style == .singleQuoted || n.scalar?.style == .doubleQuoted) else {
            throw error(key, "an integer ≥ \(minimum)")
        }
        guard v >= minimum else { throw error(key, "an integer ≥ \(minimum)") }
        return v
    }

    func optionalInt(_ key: String, minimum: Int) throws -> Int? {
        isNull(values[key]) ? nil : try int(key, minimum: minimum)
    }

    func float(_ key: String, minimum: Float, exclusive: Bool = false) throws -> Float {
        let what = exclusive ? "a number > \(minimum)" : "a number ≥ \(minimum)"
        let f = Float(try double(key, expected: what))
        guard exclusive ? f > minimum : f >= minimum else { throw error(key, what) }
        return f
    }

    /// A finite number, unquoted.
    func double(_ key: String, expected what: String) throws -> Double {
        guard let n = values[key], case .scalar = n, let v = n.float, v.isFinite,
              !(n.scalar?.style == .singleQuoted || n.scalar?.style == .doubleQuoted) else { throw error(key, what) }
        return v
    }

    func optionalFloat(_ key: String, minimum: Float, exclusive: Bool = false) throws -> Float? {
        isNull(values[key]) ? nil : try float(key, minimum: minimum, exclusive: exclusive)
    }

    func string(_ key: String) throws -> String {
        guard let n = values[key], case .scalar(let s) = n, !isNull(n), !s.string.isEmpty else {
            throw error(key, "a text value")
        }
        return s.string
    }

    func optionalString(_ key: String) throws -> String? {
        isNull(values[key]) ? nil : try string(key)
    }

    func bool(_ key: String) throws -> Bool {
        guard let n = values[key], case .scalar(let s) = n, s.style == .plain || s.style == .any,
              let v = ["true": true, "false": false][s.string.lowercased()] else {
            throw error(key, "true or false")
        }
        return v
    }

    func choice<T: RawRepresentable & CaseIterable>(_ key: String, _ type: T.Type) throws -> T where T.RawValue == String {
        let options = T.allCases.map(\.rawValue).joined(separator: " | ")
        guard let n = values[key], case .scalar(let s) = n, let v = T(rawValue: s.string) else {
            throw error(key, "one of \(options)")
        }
        return v
    }

    func intList(_ key: String, minimum: Int) throws -> [Int] {
        guard let n = values[key] else { throw error(key, "a list of integers") }
        if case .sequence(let seq) = n {
            var out: [Int] = []
            for item in seq {
                guard case .scalar = item, let v = item.int, v >= minimum else {
                    throw error(key, "a list of integers ≥ \(minimum), like [512, 256]")
                }
                out.append(v)
            }
            return out
        }
        throw error(key, "a list of integers ≥ \(minimum), like [512, 256] ([] for none)")
    }

    /// `model.decoder: mirror`.
    func isMirror(_ key: String) -> Bool {
        if let n = values[key], case .scalar(let s) = n, s.string == "mirror" { return true }
        return false
    }

    /// A list of layers (`model.encoder`, `model.decoder`): widths, and the mappings of the other
    /// layer kinds, `{conv: 32, kernel: 4, stride: 2, padding: 1}`; Models knows their forms.
    func layerList(_ section: ModelSection) throws -> [LayerSpec] {
        let key = section.key
        let expected = (section == .decoder ? "mirror, or " : "") + "a list of layers, each " + LayerSpec.forms(in: section)
            + (section == .encoder ? " ([] for none)" : "")
        guard let n = values[key], case .sequence(let seq) = n else { throw error(key, expected) }
        return try seq.enumerated().map { index, item in
            var fields: [String: Int] = [:]
            switch item {
            case .scalar:
                guard let width = item.int, width >= 1 else { throw error(key, "a width ≥ 1 in entry \(index + 1) of " + expected) }
                fields["dense"] = width
            case .mapping(let map):
                for (k, v) in map {
                    let name = k.string ?? "\(k)"
                    guard let i = v.int else { throw error(key, "an integer for '\(name)' in entry \(index + 1)") }
                    fields[name] = i
                }
            default: throw error(key, "in entry \(index + 1) " + LayerSpec.forms(in: section))
            }
            do { return try LayerSpec(section: section, index: index, fields: fields) } catch let problem as LayerEntryError {
                throw error(key, problem.expected)
            }
        }
    }

    /// `auto` (nil) or an integer.
    func automaticInt(_ key: String, minimum: Int) throws -> Int? {
        if let n = values[key], case .scalar(let s) = n, s.string == "auto" { return nil }
        do { return try int(key, minimum: minimum) } catch { throw self.error(key, "auto or an integer ≥ \(minimum)") }
    }

    func optionalIntList(_ key: String, minimum: Int) throws -> [Int]? {
        isNull(values[key]) ? nil : try intList(key, minimum: minimum)
    }

    func scale(_ key: String) throws -> Float? {
        if let n = values[key], case .scalar(let s) = n, s.string == "auto" { return nil }
        return try float(key, minimum: 0, exclusive: true)
    }
}

extension RunConfig {
    /// The model of this configuration for data of `features` features and its `data.image_shape`;
    /// a model the data cannot feed (a convolution without an image shape, a kernel larger than its
    /// image) is a `ConfigError` naming the key.
    public func modelSpec(features: Int) throws -> ModelSpec {
        var spec = model
        spec.inputs = features
        spec.imageShape = data.imageShape
        if let problem = Autoencoder.problem(with: spec) { throw ConfigError(problem) }
        return spec
    }
}
