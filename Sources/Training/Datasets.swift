// The run's data: train and test matrices read from HDF5 in their stored type, and their scale.
import Foundation
import Storage

public struct Datasets {
    public let train: StoredMatrix
    public let test: StoredMatrix?
    /// Multiplier from stored values to model units.
    public let scale: Float

    /// Reads and checks the data the configuration names. Errors name the file, dataset and problem.
    public init(config: RunConfig, checkValues: Bool = true) throws {
        let d = config.data
        train = try StoredMatrix(file: d.path, dataset: d.train)
        test = try d.test.map { try StoredMatrix(file: d.path, dataset: $0) }
        if let test, test.columns != train.columns {
            throw ConfigError("data file '\(d.path)': test set '\(test.source)' has \(test.columns) features but the train set '\(train.source)' has \(train.columns)")
        }
        scale = d.scale ?? Datasets.automaticScale(train.elementType)
        if checkValues {
            for m in [train] + (test.map { [$0] } ?? []) {
                if let row = m.firstNonFiniteRow() {
                    throw ConfigError("data '\(m.source)': row \(row) holds NaN or infinite values")
                }
            }
        }
    }

    /// 1/255 for 8-bit integer data (pixels), 1 otherwise.
    public static func automaticScale(_ type: ElementType) -> Float {
        type == .uint8 || type == .int8 ? 1 / 255 : 1
    }
}
