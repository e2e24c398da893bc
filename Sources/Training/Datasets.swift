// The run's data: train and test matrices read from HDF5 in their stored type, and their scale.
import Communication
import Foundation
import Models
import Storage

public struct Datasets {
    /// The rows training draws from: the train dataset, less a validation fraction's rows.
    public let train: DataSplit
    /// The whole train dataset, where `data.residency` keeps its rows (validation rows included).
    public let trainDataset: DataSplit
    /// The rows evaluated at every epoch's end to steer the run (`data.validation`), if any.
    public let validation: DataSplit?
    public let test: DataSplit?
    /// Where the rows live (never `auto`: the choice made), and why, for the start-up log.
    public let residency: Residency
    public let residencyReason: String
    /// Multiplier from stored values to model units (`resolve` sets the automatic one).
    public private(set) var scale: Float
    /// `data.normalize`'s per-feature statistics of the train split (`resolve` computes them).
    public private(set) var normalization: FeatureNormalization?
    /// Stored rows to model inputs: the scale, then the normalization.
    public var input: InputMapping { InputMapping(scale: scale, normalization: normalization) }

    /// Opens the data the configuration names and loads the rows `data.residency` keeps on this
    /// rank (`estimate` decides `auto`). Not collective. Errors name the file, dataset and problem.
    public init(config: RunConfig, communicator: Communicator, estimate: inout MemoryEstimate) throws {
        let d = config.data
        let (rank, size) = (communicator.rank, communicator.size)
        (residency, residencyReason) = estimate.residency(d.residency, ranks: size, ranksOnNode: communicator.localSize,
                                                          blockRows: d.shuffle == .blocks ? d.blockRows ?? 1024 : nil,
                                                          window: d.shuffleWindow)
        let whole = try DataSplit(file: d.path, dataset: d.train, residency: residency, rank: rank, size: size)
        trainDataset = whole
        // Evaluations split a dataset's rows by evaluationRows: sharded, each rank holds just those.
        let kept = residency
        func evaluated(file: String, dataset: String, hint: String) throws -> DataSplit {
            do { return try DataSplit(file: file, dataset: dataset, residency: kept, rank: rank, size: size, share: evaluationRows) }
            catch let error as StorageError where error.description.contains("no such object") {
                throw ConfigError("\(error); \(hint)")
            }
        }
        switch d.validation {
        case nil:
            train = whole; validation = nil
        case .fraction(let f)?:
            let unit = d.shuffle == .blocks ? d.blockRows ?? whole.chunkRows ?? 1024 : 1
            guard (whole.rows + unit - 1) / unit >= 2 else {
                throw ConfigError("key 'data.validation': \(f) of '\(whole.source)' holds out whole \(unit == 1 ? "rows" : "blocks of \(unit) rows (data.shuffle: blocks)"), and its \(whole.rows) rows make fewer than two")
            }
            let held = HeldOutRows(rows: whole.rows, unit: unit, fraction: f, seed: config.train.seed)
            train = whole.selecting(held.training); validation = whole.selecting(held.validation)
        case .dataset(let name)?:
            train = whole
            validation = try evaluated(file: d.path, dataset: name,
                                       hint: "set data.validation to a dataset of '\(d.path)', a fraction of the train rows like 0.1, or null")
        }
        test = try d.test.map {
            try evaluated(file: d.testPath ?? d.path, dataset: $0,
                          hint: "set data.test to the test split's dataset, or data.test: null (--set data.test=null) to train without one")
        }
        if let labels = d.labels {
            // Read only by the report's latent map, but a wrong name is better said now than after the run.
            let file = try HDF5File(readingAt: d.path)
            defer { file.close() }
            guard file.kind(of: labels) == .dataset else { throw ConfigError("key 'data.labels': no dataset '\(labels)' in '\(d.path)'") }
            let shape = try file.shape(ofDataset: labels)
            guard shape.first == whole.rows, shape.count == 1 || shape.dropFirst().allSatisfy({ $0 == 1 }) else {
                throw ConfigError("key 'data.labels': '\(labels)' has shape \(shape); expected one label per train row, [\(whole.rows)]")
            }
        }
        for (name, split) in [("validation", validation), ("test", test)] {
            if let split, split.columns != train.columns {
                throw ConfigError("\(name) set '\(split.source)' has \(split.columns) features but the train set '\(train.source)' has \(train.columns)")
            }
        }
        scale = d.scale ?? 1
    }

    /// The whole data on every rank, whatever the configuration says (`bench step`, tests).
    public init(config: RunConfig, communicator: Communicator) throws {
        var c = config
        if c.data.residency == .auto { c.data.residency = .replicated }
        var estimate = try MemoryEstimate(config: c, perRankBatch: 1)
        try self.init(config: c, communicator: communicator, estimate: &estimate)
    }

    /// Resolves `data.scale: auto` and `data.image_shape`, and checks the targets against the
    /// model's output; returns the configuration with both resolved, which checkpoints carry to
    /// every later command. Collective: every rank calls it after loading.
    public mutating func resolve(_ config: RunConfig, communicator: Communicator, checkValues: Bool = true) throws -> RunConfig {
        var resolved = config
        let (trainSet, testSet, validationSet) = (train, test, validation)
        resolved.data.imageShape = try agreeing(communicator) { () -> [Int]? in
            let shape = try Datasets.imageShape(config.data, sampleShape: trainSet.sampleShape, source: trainSet.source)
            var c = config
            c.data.imageShape = shape
            _ = try c.modelSpec(features: trainSet.columns)   // a model the data cannot feed is refused here
            return shape
        }
        if config.data.shuffle == .blocks, config.data.blockRows == nil {
            resolved.data.blockRows = trainSet.chunkRows ?? 1024   // kept: re-chunking the file must not change the order
        }
        // The train rows first: the scale and the normalization are theirs; every split's targets are checked.
        let splits = [trainSet] + [validationSet, testSet].compactMap { $0 }
        if checkValues {
            for split in splits {
                let found = try split.firstNonFiniteRow(communicator)
                try agreeing(communicator) {
                    // A validation fraction, or the rows it leaves, counts its own rows: name the file's.
                    if let row = found { throw ConfigError("data '\(split.source)': row \(split.selection?.physical(row) ?? row) holds NaN or infinite values") }
                }
            }
        }
        let ranges: [DataRange]
        if let given = config.data.scale, config.data.normalize == .none,
           splits.allSatisfy({ DataRange.withinUnitInterval($0.elementType, scale: given) }) || config.model.output != .bernoulli {
            // Nothing to learn from a pass over the rows (for a streamed dataset, a read of all of it):
            // the scale is given and the targets cannot leave [0, 1] (or need not stay in it).
            ranges = splits.map { DataRange.bounds($0.elementType) ?? DataRange(min: 0, max: 1 / Double(given)) }
        } else {
            ranges = try DataRange.across(communicator, splits)
        }
        let s = config.data.scale ?? DataRange.automaticScale(trainSet.elementType, range: ranges[0])
        resolved.data.scale = s
        scale = s
        if config.data.normalize != .none {
            normalization = try FeatureNormalization.compute(config.data.normalize, data: trainSet, scale: s, communicator: communicator)
        }
        let inputs = normalization?.inputRange
        try agreeing(communicator) {
            try DataRange.checkTargets(ranges[0], of: trainSet, scale: s, inputs: inputs, config: config)
            // Other splits' ranges after the train rows' normalization are not bounded: only the scale is checked.
            if inputs == nil {
                for (split, range) in zip(splits, ranges).dropFirst() {
                    try DataRange.checkTargets(range, of: split, scale: s, inputs: nil, config: config)
                }
            }
        }
        return resolved
    }

    /// `data.image_shape` as given (checked against the features), else an N-D dataset's own
    /// trailing shape, else the file's `image_shape` attribute when it fits, else nil.
    /// `sampleShape`: the train dataset's shape after its first (sample) axis.
    static func imageShape(_ d: DataSettings, sampleShape: [Int], source: String) throws -> [Int]? {
        let columns = sampleShape.reduce(1, *)
        if let shape = d.imageShape {
            guard shape.reduce(1, *) == columns else {
                throw ConfigError("key 'data.image_shape': \(shape) holds \(shape.reduce(1, *)) values, but the rows of '\(source)' have \(columns) features")
            }
            return shape
        }
        if sampleShape.count >= 2 { return sampleShape }
        guard let file = try? HDF5File(readingAt: d.path) else { return nil }
        defer { file.close() }
        guard file.hasAttribute("image_shape"), let values = try? file.int64ArrayAttribute("image_shape"),
              (2...3).contains(values.count), values.allSatisfy({ $0 > 0 }),
              values.reduce(1, *) == Int64(columns) else { return nil }
        return values.map { Int($0) }
    }

    /// What `scale: auto` meant before it depended on the data (1/255 for 8-bit integers, else 1):
    /// for files written then, whose configuration says `auto`.
    public static func earlierAutomaticScale(_ type: ElementType) -> Float {
        type == .uint8 || type == .int8 ? 1 / 255 : 1
    }
}

extension DataSplit {
    /// The first row holding a NaN or infinity (float data), the same on every rank: each rank
    /// scans its share. Collective.
    func firstNonFiniteRow(_ communicator: Communicator) throws -> Int? {
        var first: Int?
        if elementType == .float32 || elementType == .float64 {
            try forEachPiece(of: rowRange(count: rows, rank: communicator.rank, size: communicator.size)) { m, base, piece in
                guard first == nil else { return }
                first = m.firstNonFiniteRow(in: (piece.lowerBound - base)..<(piece.upperBound - base)).map { $0 + base }
            }
        }
        var v: [Int64] = [first.map { Int64(rows - $0) } ?? 0]   // the smallest row wins the maximum
        try communicator.allreduceMax(&v)
        return v[0] == 0 ? nil : rows - Int(v[0])
    }
}

/// The smallest and largest stored value of a dataset, over all ranks' rows.
public struct DataRange: Equatable, Sendable {
    public var min: Double
    public var max: Double

    /// Each rank scans its share of the rows; one maximum across ranks gives every rank the same
    /// exact range (a maximum does not round), whatever the rank count.
    public static func across(_ communicator: Communicator, _ splits: [DataSplit]) throws -> [DataRange] {
        var extremes: [Double] = []
        for split in splits {
            var high = -Double.infinity, negatedLow = -Double.infinity
            try split.forEachPiece(of: rowRange(count: split.rows, rank: communicator.rank, size: communicator.size)) { m, base, piece in
                guard let local = m.valueRange(rows: (piece.lowerBound - base)..<(piece.upperBound - base)) else { return }
                high = Swift.max(high, local.max); negatedLow = Swift.max(negatedLow, -local.min)
            }
            extremes += [high, negatedLow]
        }
        try communicator.allreduceMax(&extremes)
        return splits.indices.map { DataRange(min: -extremes[2 * $0 + 1], max: extremes[2 * $0]) }
    }

    /// The values an integer type can hold; nil for floats.
    static func bounds(_ type: ElementType) -> DataRange? {
        switch type {
        case .int8: return DataRange(min: -128, max: 127)
        case .uint8: return DataRange(min: 0, max: 255)
        case .int16: return DataRange(min: -32768, max: 32767)
        case .uint16: return DataRange(min: 0, max: 65535)
        default: return nil   // wider integers and floats: only a scan knows
        }
    }

    /// Whether every value `type` can hold, times `scale`, lies in [0, 1] (uint8 with 1/255).
    static func withinUnitInterval(_ type: ElementType, scale: Float) -> Bool {
        guard let b = bounds(type) else { return false }
        return b.min >= 0 && b.max * Double(scale) <= 1 + 1e-6
    }

    /// `data.scale: auto`: 1 / (the train split's maximum) for integer data, so that it spans [0, 1]
    /// whatever its bit width (8x8 digits hold 0..16, MNIST 0..255); 1 for floats.
    public static func automaticScale(_ type: ElementType, range: DataRange) -> Float {
        guard type != .float32, type != .float64, range.max > 0 else { return 1 }
        return Float(1 / range.max)
    }

    /// A Bernoulli output models targets in [0, 1]; anything else trains to nonsense (a BCE that
    /// runs to minus infinity), so it is refused before the first step with the fixes.
    /// `inputs`: the model inputs' range after a normalization (nil: the scaled values).
    static func checkTargets(_ range: DataRange, of matrix: DataSplit, scale: Float, inputs: DataRange?,
                             config: RunConfig) throws {
        guard config.model.output == .bernoulli else { return }
        let low = inputs?.min ?? range.min * Double(scale), high = inputs?.max ?? range.max * Double(scale)
        let tolerance = 1e-6
        guard low < -tolerance || high > 1 + tolerance else { return }
        func g(_ x: Double) -> String { String(format: "%g", x) }
        var fixes: [String] = []
        if range.min >= 0, range.max > 0, inputs == nil { fixes.append("data.scale: \(g(1 / range.max)) (1 / the largest value) to map it onto [0, 1]") }
        fixes.append("data.normalize: minmax (each feature onto [0, 1])")
        fixes.append("model.output: gaussian (squared error, any range)")
        let mapped = inputs == nil ? "data.scale \(g(Double(scale)))" : "data.scale \(g(Double(scale))) and data.normalize: \(config.data.normalize.rawValue)"
        throw ConfigError("data '\(matrix.source)': values range from \(g(range.min)) to \(g(range.max)), which \(mapped) maps to [\(g(low)), \(g(high))], but model.output: bernoulli needs targets in [0, 1]. Use " + fixes.joined(separator: ", or "))
    }
}
