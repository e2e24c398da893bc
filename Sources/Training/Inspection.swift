// `aedist eval` and `aedist inspect`: reading a checkpoint back and reporting on files.
import Communication
import Foundation
import Kernels
import Models
import Storage

public struct EvaluationReport {
    public let split: String
    public let result: EvaluationResult
    public let kind: ModelKind
    /// VAE with `--importance-samples K`: the importance-weighted negative log-likelihood estimate.
    public var nllIS: Double? = nil
    public var importanceSamples: Int? = nil

    public var json: String {
        var object: [String: Any] = ["split": split, "samples": result.samples, "loss": result.loss,
                                     "mse_per_feature": result.msePerFeature,
                                     "code_mean_activation": result.codeMeanActivation,
                                     "code_near_zero_fraction": result.codeNearZeroFraction]
        if kind == .vae { object["recon"] = result.reconstruction; object["kl"] = result.kl }
        if let nllIS { object["nll_is"] = nllIS; object["importance_samples"] = importanceSamples ?? 0 }
        return Console.encode(object)
    }

    public var text: String {
        var s = String(format: "%@: %d samples, loss %.4f, mse per feature %.6f", split, result.samples, result.loss, result.msePerFeature)
        if kind == .vae { s += String(format: " (negative ELBO: reconstruction %.4f + KL %.4f)", result.reconstruction, result.kl) }
        s += String(format: "; code: mean |value| %.4f, %.1f%% below %.2f", result.codeMeanActivation,
                    100 * result.codeNearZeroFraction, nearZeroCode)
        if let nllIS { s += String(format: "; importance-sampled NLL (K = %d) %.4f", importanceSamples ?? 0, nllIS) }
        return s
    }
}

/// A model file (checkpoint or PCA file) with its model built and parameters loaded.
public struct LoadedModel {
    public let path: String
    /// The checkpoint's configuration (a PCA file: the equivalent linear autoencoder's).
    public let config: RunConfig
    public let model: Autoencoder
    public let parameters: FloatBuffer
    /// The inputs' normalization the model was trained with (nil: none).
    public var normalization: FeatureNormalization? = nil
}

/// The configuration of a checkpoint or of a PCA file.
public func modelFileConfig(path: String) throws -> RunConfig {
    if PCA.isPCAFile(path) {
        let file = try HDF5File(readingAt: path)
        defer { file.close() }
        return try RunConfig.parse(yaml: try file.stringAttribute("config"), origin: "PCA file '\(path)' attribute config")
    }
    return try Checkpoint(path: path).config
}

/// Opens a checkpoint (or a PCA file, as its linear autoencoder) and builds its model; `features` is the data's width.
public func loadModel(checkpointPath: String, features: Int) throws -> LoadedModel {
    if PCA.isPCAFile(checkpointPath) { return try PCA.loadModel(path: checkpointPath, features: features) }
    let checkpoint = try Checkpoint(path: checkpointPath)
    let model = Autoencoder(spec: try checkpoint.config.modelSpec(features: features))
    let parameters = FloatBuffer(count: model.parameterCount)
    try checkpoint.load(model: model, parameters: parameters, optimizer: nil)
    if let n = checkpoint.normalization, n.shift.count != features {
        throw ConfigError("checkpoint '\(checkpointPath)': its normalization has \(n.shift.count) features but the data has \(features)")
    }
    return LoadedModel(path: checkpointPath, config: checkpoint.config, model: model, parameters: parameters,
                       normalization: checkpoint.normalization)
}

/// The model of a checkpoint (or PCA file) for the rows of `data` (any file and dataset): they
/// must fit it (`LoadedModel.check`).
public func loadModel(checkpointPath: String, for data: DataSplit) throws -> LoadedModel {
    if !PCA.isPCAFile(checkpointPath), let trained = try Checkpoint(path: checkpointPath).sampleShape {
        // Before the model is built for the rows' width: a wrong width would fail there, less clearly.
        try checkRows(data, trainedFeatures: trained.reduce(1, *), trainedShape: trained, model: checkpointPath)
    }
    let loaded = try loadModel(checkpointPath: checkpointPath, features: data.columns)
    try loaded.check(data)
    return loaded
}

extension LoadedModel {
    /// Refuses rows that do not fit the model: another feature count, or an image shape of their
    /// own (an N-D dataset) other than the model's. Flat rows of the right width always fit.
    public func check(_ data: DataSplit) throws {
        try checkRows(data, trainedFeatures: model.spec.inputs, trainedShape: config.data.imageShape, model: path)
    }
}

private func checkRows(_ data: DataSplit, trainedFeatures: Int, trainedShape: [Int]?, model path: String) throws {
    func shown(_ shape: [Int]?) -> String { (shape?.count ?? 0) > 1 ? " (\(shape!.map(String.init).joined(separator: "x")))" : "" }
    guard data.columns == trainedFeatures else {
        throw ConfigError("data '\(data.source)': rows of \(data.columns) features\(shown(data.sampleShape)), but the model in '\(path)' was trained on rows of \(trainedFeatures) features\(shown(trainedShape))")
    }
    if data.sampleShape.count > 1, let image = trainedShape, image.count > 1,
       ImageShape.channelsDropped(data.sampleShape) != ImageShape.channelsDropped(image) {
        throw ConfigError("data '\(data.source)': rows of shape \(data.sampleShape), but the model in '\(path)' was trained on images of shape \(image); give rows of that shape, or flat rows [N, \(trainedFeatures)] to be read as such")
    }
}

/// The file a split lives in: `--data` when given, else the test split's `data.test_path` (when
/// set) or `data.path`.
func dataFile(split: String?, config: RunConfig, dataPath: String?) -> String {
    if let dataPath { return dataPath }
    let isTest = split == "test" || (split == nil && config.data.test != nil)
    return isTest ? (config.data.testPath ?? config.data.path) : config.data.path
}

/// Resolves `--split` against a configuration: "train", "test", or a dataset path.
func datasetPath(split: String?, config: RunConfig) -> String {
    switch split {
    case nil: return config.data.test ?? config.data.train
    case "train"?: return config.data.train
    case "test"?: return config.data.test ?? "test"
    case let path?: return path
    }
}

public func evaluateCheckpoint(path: String, dataPath: String?, split: String?, threads: Int?,
                               importanceSamples: Int? = nil,
                               communicator: Communicator) throws -> EvaluationReport {
    let pool = ComputePool(threads: threads ?? defaultThreads(localRanks: communicator.localSize))
    let (loaded, data, input, name) = try agreeing(communicator) { () -> (LoadedModel, DataSplit, InputMapping, String) in
        let config = try modelFileConfig(path: path)
        let file = dataFile(split: split, config: config, dataPath: dataPath)
        let name = datasetPath(split: split, config: config)
        // Each rank evaluates its evaluationRows of the split: it holds just those rows.
        let data = try DataSplit(file: file, dataset: name) { evaluationRows(count: $0, rank: communicator.rank, size: communicator.size) }
        let loaded = try loadModel(checkpointPath: path, for: data)
        let scale = config.data.scale ?? Datasets.earlierAutomaticScale(data.elementType)
        if importanceSamples != nil, loaded.model.spec.kind != .vae {
            throw ConfigError("--importance-samples: '\(path)' holds a model of kind '\(loaded.model.spec.kind.rawValue)'; the importance-sampled likelihood needs a VAE")
        }
        return (loaded, data, InputMapping(scale: scale, normalization: loaded.normalization), name)
    }
    let workspace = Workspace(model: loaded.model, capacity: 256)
    let result = try evaluate(model: loaded.model, parameters: loaded.parameters, data: data, input: input,
                              seed: loaded.config.train.seed, workspace: workspace,
                              communicator: communicator, pool: pool)
    var report = EvaluationReport(split: name, result: result, kind: loaded.model.spec.kind)
    if let k = importanceSamples {
        report.nllIS = try importanceSampledNLL(model: loaded.model, parameters: loaded.parameters, data: data,
                                                input: input, samples: k, seed: loaded.config.train.seed,
                                                communicator: communicator, pool: pool)
        report.importanceSamples = k
    }
    return report
}

/// A readable summary of a dataset file or a checkpoint.
public func describeFile(_ path: String) throws -> String {
    if hasSeal(fileAt: path) { try verifySeal(ofFileAt: path) }
    let file = try HDF5File(readingAt: path)
    defer { file.close() }
    var lines: [String] = []
    if file.hasAttribute("format"), (try? file.stringAttribute("format")) == CheckpointFormat.name {
        let checkpoint = try Checkpoint(path: path)
        let c = checkpoint.config
        var count = 0
        var shapes: [String] = []
        for name in try file.children(ofGroup: "/model").sorted() {
            let shape = try file.shape(ofDataset: "/model/\(name)")
            count += shape.reduce(1, *)
            shapes.append("  /model/\(name) \(shape)")
        }
        lines.append("\(path): aedist checkpoint, format_version \(try file.int64Attribute("format_version"))")
        lines.append("step \(checkpoint.progress.step), epoch \(checkpoint.progress.epoch), samples seen \(checkpoint.progress.samplesSeen), written by \(checkpoint.worldSize) rank(s)")
        lines.append("model: \(c.model.summaryText); \(count) parameters")
        lines.append("train: optimizer \(c.train.optimizer.kind.rawValue) lr \(c.train.optimizer.lr), batch \(c.train.batchSize), seed \(c.train.seed), epochs \(c.train.epochs)")
        lines.append("data: \(c.data.path) (\(c.data.train))")
        lines += shapes
    } else {
        lines.append("\(path): HDF5 file")
        func walk(_ group: String) throws {
            for name in try file.children(ofGroup: group).sorted() {
                let full = group == "/" ? "/" + name : group + "/" + name
                switch file.kind(of: full) {
                case .group?: lines.append("  \(full)/"); try walk(full)
                case .dataset?:
                    let shape = try file.shape(ofDataset: full)
                    let type = (try? file.elementType(ofDataset: full).rawValue) ?? "non-numeric"
                    lines.append("  \(full) \(type) \(shape)")
                case nil: break
                }
            }
        }
        try walk("/")
        if file.hasAttribute("image_shape") {
            lines.append("  image_shape \(try file.int64ArrayAttribute("image_shape"))")
        }
    }
    return lines.joined(separator: "\n")
}
