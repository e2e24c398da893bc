// The model-family subcommands (docs/family.md): pca, encode, reconstruct, sample, interpolate.
// Each runs the same with or without mpirun: rows are split across ranks, rank 0 prints and writes.
import ArgumentParser
import Communication
import Foundation
import Kernels
import Models
import Storage
import Training

/// The extension of an output path, checked against what a command can write.
private func outputKind(_ path: String, option: String, allowed: [String]) throws -> String {
    let ext = URL(fileURLWithPath: path).pathExtension.lowercased()
    guard allowed.contains(ext) else {
        throw ValidationError("\(option) '\(path)': expected a file ending in " + allowed.map { ".\($0)" }.joined(separator: " or "))
    }
    return ext
}

private func threadPool(_ threads: Int?, _ communicator: Communicator) -> ComputePool {
    ComputePool(threads: threads ?? defaultThreads(localRanks: communicator.localSize))
}

/// Rank 0 runs `body` (writing files); every rank learns whether it worked.
struct PCACommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pca",
        abstract: "Exact PCA of a data split (the linear-autoencoder baseline); eval, encode and reconstruct accept its file like a checkpoint.")

    @Option(help: "Data file (HDF5).")
    var data: String

    @Option(help: "train, test, or a dataset path inside the data file.")
    var split: String = "train"

    @Option(help: "Dataset that eval uses by default (default: test/images when the file has it).")
    var test: String?

    @Option(help: "Number of principal components K.")
    var components: Int

    @Option(help: "Output PCA file (.h5).")
    var out: String

    @Option(help: "Multiplier from stored values to model units: auto (integer data: 1 / the split's largest value; floats: 1, as data.scale: auto in training) or a number.")
    var scale: String = "auto"

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if components < 1 { throw ValidationError("--components must be at least 1, got \(components)") }
        _ = try outputKind(out, option: "--out", allowed: ["h5"])
        if scale != "auto", !(Float(scale).map { $0 > 0 && $0.isFinite } ?? false) {
            throw ValidationError("--scale '\(scale)': expected auto or a positive number")
        }
    }

    func run() throws {
        let (data, split, test, k, out, scaleText, threads) = (self.data, self.split, self.test, components, self.out, scale, compute.threads)
        let dataset: String
        switch split { case "train": dataset = "train/images"; case "test": dataset = "test/images"; default: dataset = split }
        runParallel { communicator in
            let pool = threadPool(threads, communicator)
            let started = Date()
            let (matrix, testSet) = try agreeing(communicator) { () -> (DataSplit, String?) in
                let matrix = try DataSplit(file: data, dataset: dataset) {
                    PCA.rowsOf(rank: communicator.rank, size: communicator.size, rows: $0)
                }
                guard k <= matrix.columns else {
                    throw ConfigError("--components \(k): more than the \(matrix.columns) features of '\(matrix.source)'")
                }
                guard matrix.rows >= 2 else { throw ConfigError("data '\(matrix.source)': PCA needs at least 2 rows, it has \(matrix.rows)") }
                var testSet = test
                if testSet == nil, let f = try? HDF5File(readingAt: data) {
                    if f.kind(of: "/test/images") == .dataset { testSet = "test/images" }
                    f.close()
                }
                return (matrix, testSet)
            }
            let scale = scaleText == "auto"
                ? DataRange.automaticScale(matrix.elementType, range: try DataRange.across(communicator, [matrix])[0])
                : Float(scaleText)!
            let result = try PCA.fit(data: matrix, scale: scale, components: k, communicator: communicator, pool: pool)
            let config = PCA.configuration(components: k, dataPath: data, train: dataset, test: testSet, scale: scale)
            try onRoot(communicator) {
                try PCA.write(result, config: config, source: matrix.source, to: out)
                let explained = result.explainedVariance.reduce(0, +)
                print(String(format: "pca: %d components of %d features from %d rows of %@; explained variance %.6f of %.6f (%.2f%%); train mse per feature %.6f; %.2f s; wrote %@",
                             k, result.features, result.samples, matrix.source, explained, result.totalVariance,
                             result.totalVariance > 0 ? 100 * explained / result.totalVariance : 0,
                             result.residualVariance / Double(result.features), Date().timeIntervalSince(started), out))
            }
            return 0
        }
    }
}

struct EncodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encode",
        abstract: "Write the latent codes of a data split (VAE: /mean and /logvar; AE and PCA: /codes).",
        discussion: "Any file whose rows have the model's feature count (and, for N-D datasets, its image shape) can be encoded: --data FILE --split DATASET. The model's scale and normalization are applied to them. With --beside, each split's codes go into its own dataset's group, named as the input file names them: --split train/images --split test/images writes train/mean, train/logvar, test/mean, test/logvar (AE and PCA: train/codes, test/codes), and the labels beside the images when the input has them.")

    @Option(help: "Checkpoint or PCA file.")
    var checkpoint: String

    @Option(help: "Data file (default: the model's data.path).")
    var data: String?

    @Option(help: "train, test, or a dataset path inside the data file (default: test, or train when there is no test set); repeat it with --beside.")
    var split: [String] = []

    @Option(help: "Output HDF5 file.")
    var out: String

    @Flag(help: "Write each split's codes in the group of its dataset (train/images -> train/mean, train/logvar or train/codes) instead of /mean, /logvar or /codes.")
    var beside = false

    @Option(help: "Also draw the codes as a 2-D map (.png), coloured by label when the data has labels (latent > 2: projected on the codes' first two principal directions).")
    var map: String?

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        _ = try outputKind(out, option: "--out", allowed: ["h5"])
        if let map { _ = try outputKind(map, option: "--map", allowed: ["png"]) }
        if split.count > 1 && !beside { throw ValidationError("several --split go into one file with --beside (each split's codes in its own group)") }
        if split.count > 1 && map != nil { throw ValidationError("--map draws one split: give one --split") }
    }

    func run() throws {
        let (path, dataPath, out, mapPath, beside, threads) = (checkpoint, data, self.out, map, self.beside, compute.threads)
        let splits: [String?] = split.isEmpty ? [nil] : split
        runParallel { communicator in
            let pool = threadPool(threads, communicator)
            let (loaded, chosen) = try agreeing(communicator) { () -> (LoadedModel, [ChosenSplit]) in
                let config = try modelFileConfig(path: path)
                let chosen = try splits.map { try ChosenSplit(config: config, dataPath: dataPath, split: $0) }
                let groups = chosen.map { EncodeCommand.group(of: $0.dataset) }
                if beside, let repeated = Dictionary(grouping: zip(groups, chosen.map(\.dataset)), by: \.0).first(where: { $0.value.count > 1 }) {
                    throw ConfigError("--beside: \(repeated.value.map(\.1).joined(separator: " and ")) are in the same group '/\(repeated.key)', where their codes would have the same names; encode them into separate files")
                }
                let loaded = try loadModel(checkpointPath: path, for: chosen[0].data)
                for split in chosen.dropFirst() { try loaded.check(split.data) }
                return (loaded, chosen)
            }
            let model = loaded.model, width = model.codeWidth, z = model.spec.latent
            var written: [(split: ChosenSplit, codes: [Float], labels: [Int]?)] = []
            for split in chosen {
                let n = split.data.rows
                let range = rowRange(count: n, rank: communicator.rank, size: communicator.size)
                let rows = try agreeing(communicator) { try split.rows(Array(range)) }
                let local = Training.encode(model: model, parameters: loaded.parameters, data: rows, input: split.input(for: loaded),
                                            indices: Array(0..<range.count), pool: pool).codes
                let codes = try shareRows(local, range: range, total: n, width: width, communicator: communicator)
                written.append((split, codes, communicator.isRoot ? split.labels() : nil))
            }
            try onRoot(communicator) {
                var lines: [String] = []
                try writeAtomically(to: out) { file in
                    try file.setAttribute("model", path)
                    try file.setAttribute("model_kind", PCA.isPCAFile(path) ? "pca" : model.spec.kind.rawValue)
                    try file.setAttribute("source", written.map(\.split.data.source).joined(separator: ", "))
                    for (split, codes, labels) in written {
                        let n = split.data.rows, group = beside ? EncodeCommand.group(of: split.dataset) : ""
                        let prefix = group.isEmpty ? "/" : "/\(group)/"
                        if model.spec.kind == .vae {
                            let (mean, logvar) = model.splitCodes(codes, rows: n)
                            try file.write(mean, shape: [n, z], to: prefix + "mean")
                            try file.write(logvar, shape: [n, z], to: prefix + "logvar")
                        } else {
                            try file.write(codes, shape: [n, z], to: prefix + "codes")
                        }
                        if let labels { try file.write(labels.map { Int64($0) }, shape: [n], to: prefix + "labels") }
                        let names = model.spec.kind == .vae ? "\(prefix)mean, \(prefix)logvar" : "\(prefix)codes"
                        lines.append("encode: \(n) rows of \(split.data.source) -> \(out) (\(names) [\(n), \(z)])")
                    }
                }
                lines.forEach { print($0) }
                if let mapPath, let (split, codes, labels) = written.first {
                    let n = split.data.rows
                    let latent = model.spec.kind == .vae ? (0..<n).flatMap { r in codes[(r * width)..<(r * width + z)] } : codes
                    try PNG.write(Pictures.map(points: Pictures.planar(codes: latent, rows: n, width: z), labels: labels), to: mapPath)
                    print("encode: map \(mapPath)" + (labels == nil ? " (no labels)" : " (coloured by label)"))
                }
            }
            return 0
        }
    }

    /// The group holding a dataset: "train/images" -> "train", "images" -> "" (the root).
    static func group(of dataset: String) -> String {
        let parts = dataset.split(separator: "/")
        return parts.dropLast().joined(separator: "/")
    }
}

struct ReconstructCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reconstruct",
        abstract: "Originals above their reconstructions as a PNG grid; with several --checkpoint, one row per model under the originals.")

    @Option(help: "Checkpoint or PCA file (repeat to compare models on the same rows).")
    var checkpoint: [String]

    @OptionGroup var input: DataSelection

    @Option(help: "Number of rows (the first N of the split).")
    var count: Int = 16

    @Option(help: "Output PNG file.")
    var out: String

    @OptionGroup var picture: PictureOptions

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if checkpoint.isEmpty { throw ValidationError("--checkpoint is required") }
        if count < 1 { throw ValidationError("--count must be at least 1, got \(count)") }
        _ = try outputKind(out, option: "--out", allowed: ["png"])
    }

    func run() throws {
        let (paths, dataPath, split, count, out, shapeText, threads) = (checkpoint, input.data, input.split, self.count, self.out, picture.imageShape, compute.threads)
        runParallel { communicator in
            let pool = threadPool(threads, communicator)
            let (models, split, shape) = try agreeing(communicator) { () -> ([LoadedModel], ChosenSplit, ImageShape) in
                let split = try ChosenSplit(config: try modelFileConfig(path: paths[0]), dataPath: dataPath, split: split)
                guard count <= split.data.rows else {
                    throw ConfigError("--count \(count): '\(split.data.source)' has only \(split.data.rows) rows")
                }
                let models = try paths.map { try loadModel(checkpointPath: $0, for: split.data) }
                let shape = try ImageShape.resolve(override: shapeText, known: split.pictureShape(config: models[0].config),
                                                   dataFile: split.file, features: split.data.columns)
                return (models, split, shape)
            }
            // Few rows: every rank computes them (cheap); rank 0 writes.
            var originals = [Float](), outputs = [[Float]]()
            let rows = try agreeing(communicator) { try split.rows(Array(0..<count)) }
            for m in models {
                let r = Training.encode(model: m.model, parameters: m.parameters, data: rows, input: split.input(for: m),
                                        indices: Array(0..<count), pool: pool, reconstructions: true)
                originals = r.inputs
                outputs.append(r.outputs)
            }
            try onRoot(communicator) {
                let image = models.count == 1
                    ? Pictures.reconstructions(originals: originals, outputs: outputs[0], count: count, shape: shape)
                    : Pictures.comparison(originals: originals, outputs: outputs, count: count, shape: shape)
                try PNG.write(image, to: out)
                print("reconstruct: \(count) rows of \(split.data.source), \(models.count) model(s) -> \(out) (\(image.width)x\(image.height))")
            }
            return 0
        }
    }
}

struct SampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sample",
        abstract: "Decode draws from a VAE's prior N(0, I): a PNG grid, or an HDF5 file with /samples and /latent.")

    @Option(help: "VAE checkpoint.")
    var checkpoint: String

    @Option(help: "Number of samples.")
    var count: Int = 64

    @Option(help: "Output file (.png or .h5).")
    var out: String

    @Option(help: "Seed of the draws (sample i uses the i-th draw of this seed).")
    var seed: Int = 0

    @Option(help: "Data file for the image_shape attribute (default: the model's data.path).")
    var data: String?

    @OptionGroup var picture: PictureOptions

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if count < 1 { throw ValidationError("--count must be at least 1, got \(count)") }
        if seed < 0 { throw ValidationError("--seed must be at least 0, got \(seed)") }
        _ = try outputKind(out, option: "--out", allowed: ["png", "h5"])
    }

    func run() throws {
        let (path, count, out, seed, dataPath, shapeText, threads) = (checkpoint, self.count, self.out, UInt64(self.seed), data, picture.imageShape, compute.threads)
        let png = out.lowercased().hasSuffix(".png")
        runParallel { communicator in
            let pool = threadPool(threads, communicator)
            let (loaded, shape) = try agreeing(communicator) { () -> (LoadedModel, ImageShape?) in
                let config = try modelFileConfig(path: path)
                guard config.model.kind == .vae, !PCA.isPCAFile(path) else {
                    throw ConfigError("checkpoint '\(path)': sample needs a VAE (model.kind = vae); this model is '\(PCA.isPCAFile(path) ? "pca" : config.model.kind.rawValue)', which has no prior to draw from")
                }
                let file = dataPath ?? config.data.path
                let features: Int
                do {
                    let h5 = try HDF5File(readingAt: file)
                    defer { h5.close() }
                    let shape = try h5.shape(ofDataset: config.data.train)
                    guard shape.count >= 2 else { throw ConfigError("data '\(file):\(config.data.train)': expected a dataset [samples, features, ...]") }
                    features = shape.dropFirst().reduce(1, *)
                }
                let shape = png ? try ImageShape.resolve(override: shapeText, known: config.data.imageShape, dataFile: file, features: features) : nil
                return (try loadModel(checkpointPath: path, features: features), shape)
            }
            // Decoded draws in data units: the scale does not enter, a normalization is undone.
            let (latent, images) = try samplePrior(model: loaded.model, parameters: loaded.parameters, count: count, seed: seed,
                                                   input: InputMapping(scale: 1, normalization: loaded.normalization),
                                                   communicator: communicator, pool: pool)
            try onRoot(communicator) {
                if let shape {
                    try PNG.write(Pictures.grid(images, count: count, shape: shape), to: out)
                } else {
                    try writeAtomically(to: out) { file in
                        try file.setAttribute("model", path)
                        try file.setAttribute("seed", Int64(seed))
                        try file.write(images, shape: [count, loaded.model.spec.inputs], to: "/samples")
                        try file.write(latent, shape: [count, loaded.model.spec.latent], to: "/latent")
                    }
                }
                print("sample: \(count) draws from the prior (seed \(seed)) -> \(out)")
            }
            return 0
        }
    }
}

struct InterpolateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "interpolate",
        abstract: "Decode straight lines in latent space between the codes of row pairs (2p, 2p+1) of a split: one strip per pair, the originals at both ends.")

    @Option(help: "Checkpoint (AE or VAE; a VAE uses the posterior means) or PCA file.")
    var checkpoint: String

    @OptionGroup var input: DataSelection

    @Option(help: "Number of pairs: rows (0, 1), (2, 3), ... of the split.")
    var pairs: Int = 4

    @Option(help: "Decoded points per pair, both ends included.")
    var steps: Int = 8

    @Option(help: "Output file (.png, or .h5 with /path [pairs * steps, features]).")
    var out: String

    @OptionGroup var picture: PictureOptions

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if pairs < 1 { throw ValidationError("--pairs must be at least 1, got \(pairs)") }
        if steps < 2 { throw ValidationError("--steps must be at least 2, got \(steps)") }
        _ = try outputKind(out, option: "--out", allowed: ["png", "h5"])
    }

    func run() throws {
        let (path, dataPath, split, pairs, steps, out, shapeText, threads) = (checkpoint, input.data, input.split, self.pairs, self.steps, self.out, picture.imageShape, compute.threads)
        let png = out.lowercased().hasSuffix(".png")
        runParallel { communicator in
            let pool = threadPool(threads, communicator)
            let (loaded, split, shape) = try agreeing(communicator) { () -> (LoadedModel, ChosenSplit, ImageShape?) in
                let config = try modelFileConfig(path: path)
                let split = try ChosenSplit(config: config, dataPath: dataPath, split: split)
                guard 2 * pairs <= split.data.rows else {
                    throw ConfigError("--pairs \(pairs): needs \(2 * pairs) rows but '\(split.data.source)' has \(split.data.rows)")
                }
                let shape = png ? try ImageShape.resolve(override: shapeText, known: split.pictureShape(config: config),
                                                         dataFile: split.file, features: split.data.columns) : nil
                return (try loadModel(checkpointPath: path, for: split.data), split, shape)
            }
            let rows = try agreeing(communicator) { try split.rows(Array(0..<(2 * pairs))) }
            let r = Training.interpolate(model: loaded.model, parameters: loaded.parameters, data: rows,
                                         input: split.input(for: loaded), pairs: (0..<pairs).map { (2 * $0, 2 * $0 + 1) },
                                         steps: steps, pool: pool)
            try onRoot(communicator) {
                if let shape {
                    try PNG.write(Pictures.strips(path: r.path, starts: r.starts, ends: r.ends, pairs: pairs, steps: steps,
                                                  shape: shape), to: out)
                } else {
                    try writeAtomically(to: out) { file in
                        try file.setAttribute("model", path)
                        try file.write(r.path, shape: [pairs * steps, loaded.model.spec.inputs], to: "/path")
                    }
                }
                print("interpolate: \(pairs) pair(s) x \(steps) steps -> \(out)")
            }
            return 0
        }
    }
}

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write a run's report: RUN_DIR/report/index.html (self-contained: its pictures are embedded) and its PNGs.",
        discussion: "Loss curves from metrics.jsonl; reconstructions, prior samples (VAE), an interpolation and the latent map of checkpoints/best.h5 when early stopping kept one, else of the newest checkpoint; the run's summary and configuration.")

    @Argument(help: "The run directory (run_dir).")
    var runDirectory: String

    @Option(help: "Folder for index.html and the PNGs (default: RUN_DIR/report).")
    var out: String?

    @Option(help: "Data file for the pictures (default: the run's data.path).")
    var data: String?

    @OptionGroup var compute: ComputeOptions

    func run() throws {
        let report = RunReport(runDirectory: runDirectory, folder: out, dataPath: data)
        let threads = compute.threads
        runParallel { communicator in
            try onRoot(communicator) {
                let written = try report.write(pool: threadPool(threads, communicator))
                print("report: \(written.page) (\(written.pictures.count) pictures)")
            }
            return 0
        }
    }
}
