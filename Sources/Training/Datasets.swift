// The run's data: train and test matrices read from HDF5 in their stored type, and their scale.
import Communication
import Foundation
import Models
import Storage

public struct Datasets {
    public let train: StoredMatrix
    public let test: StoredMatrix?
    /// Multiplier from stored values to model units (`resolve` sets the automatic one).
    public private(set) var scale: Float
    /// `data.normalize`'s per-feature statistics of the train split (`resolve` computes them).
    public private(set) var normalization: FeatureNormalization?
    /// Stored rows to model inputs: the scale, then the normalization.
    public var input: InputMapping { InputMapping(scale: scale, normalization: normalization) }

    /// Reads and checks the data the configuration names. Errors name the file, dataset and problem.
    public init(config: RunConfig, checkValues: Bool = true) throws {
        let d = config.data
        train = try StoredMatrix(file: d.path, dataset: d.train)
        do {
            test = try d.test.map { try StoredMatrix(file: d.testPath ?? d.path, dataset: $0) }
        } catch let error as StorageError where error.description.contains("no such object") {
            throw ConfigError("\(error); set data.test to the test split's dataset, or data.test: null (--set data.test=null) to train without one")
        }
        if let test, test.columns != train.columns {
            throw ConfigError("test set '\(test.source)' has \(test.columns) features but the train set '\(train.source)' has \(train.columns)")
        }
        scale = d.scale ?? 1
        if checkValues {
            for m in [train] + (test.map { [$0] } ?? []) {
                if let row = m.firstNonFiniteRow() {
                    throw ConfigError("data '\(m.source)': row \(row) holds NaN or infinite values")
                }
            }
        }
    }

    /// Resolves `data.scale: auto` and `data.image_shape`, and checks the targets against the
    /// model's output; returns the configuration with both resolved, which checkpoints carry to
    /// every later command. Collective: every rank calls it after loading.
    public mutating func resolve(_ config: RunConfig, communicator: Communicator) throws -> RunConfig {
        var resolved = config
        let (trainSet, testSet) = (train, test)
        resolved.data.imageShape = try agreeing(communicator) { try Datasets.imageShape(config.data, trainSet) }
        let ranges = try DataRange.across(communicator, [trainSet] + (testSet.map { [$0] } ?? []))
        let s = config.data.scale ?? DataRange.automaticScale(trainSet.elementType, range: ranges[0])
        resolved.data.scale = s
        scale = s
        if config.data.normalize != .none {
            normalization = try FeatureNormalization.compute(config.data.normalize, data: trainSet, scale: s, communicator: communicator)
        }
        let inputs = normalization?.inputRange
        try agreeing(communicator) {
            try DataRange.checkTargets(ranges[0], of: trainSet, scale: s, inputs: inputs, config: config)
            // The test split's range after the train split's normalization is not bounded: only the scale is checked.
            if let testSet, ranges.count == 2, inputs == nil {
                try DataRange.checkTargets(ranges[1], of: testSet, scale: s, inputs: nil, config: config)
            }
        }
        return resolved
    }

    /// `data.image_shape` as given (checked against the features), else an N-D dataset's own
    /// trailing shape, else the file's `image_shape` attribute when it fits, else nil.
    static func imageShape(_ d: DataSettings, _ train: StoredMatrix) throws -> [Int]? {
        if let shape = d.imageShape {
            guard shape.reduce(1, *) == train.columns else {
                throw ConfigError("key 'data.image_shape': \(shape) holds \(shape.reduce(1, *)) values, but the rows of '\(train.source)' have \(train.columns) features")
            }
            return shape
        }
        if train.sampleShape.count >= 2 { return train.sampleShape }
        guard let file = try? HDF5File(readingAt: d.path) else { return nil }
        defer { file.close() }
        guard file.hasAttribute("image_shape"), let values = try? file.int64ArrayAttribute("image_shape"),
              (2...3).contains(values.count), values.allSatisfy({ $0 > 0 }),
              values.reduce(1, *) == Int64(train.columns) else { return nil }
        return values.map { Int($0) }
    }

    /// What `scale: auto` meant before it depended on the data (1/255 for 8-bit integers, else 1):
    /// for files written then, whose configuration says `auto`.
    public static func earlierAutomaticScale(_ type: ElementType) -> Float {
        type == .uint8 || type == .int8 ? 1 / 255 : 1
    }
}

/// The smallest and largest stored value of a dataset, over all ranks' rows.
public struct DataRange: Equatable, Sendable {
    public var min: Double
    public var max: Double

    /// Each rank scans its share of the rows; one maximum across ranks gives every rank the same
    /// exact range (a maximum does not round), whatever the rank count.
    public static func across(_ communicator: Communicator, _ matrices: [StoredMatrix]) throws -> [DataRange] {
        var extremes: [Double] = []
        for m in matrices {
            let rows = rowRange(count: m.rows, rank: communicator.rank, size: communicator.size)
            let local = m.valueRange(rows: rows)
            extremes += [local.map { $0.max } ?? -.infinity, local.map { -$0.min } ?? -.infinity]
        }
        try communicator.allreduceMax(&extremes)
        return matrices.indices.map { DataRange(min: -extremes[2 * $0 + 1], max: extremes[2 * $0]) }
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
    static func checkTargets(_ range: DataRange, of matrix: StoredMatrix, scale: Float, inputs: DataRange?,
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
