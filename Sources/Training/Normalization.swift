// From stored values to model inputs and back: the data scale, then (with data.normalize) one
// shift and factor per feature computed from the train split and kept in the checkpoint.
import Communication
import Foundation
import Storage

public enum NormalizationKind: String, CaseIterable, Sendable {
    /// Model inputs are the scaled values.
    case none
    /// Per feature: (x − mean) / standard deviation.
    case standard
    /// Per feature: (x − min) / (max − min), onto [0, 1].
    case minmax
}

/// model input = (stored value × scale − shift[j]) × factor[j], for feature j.
public struct FeatureNormalization: Equatable, Sendable {
    public let kind: NormalizationKind
    public let shift: [Float]
    public let factor: [Float]
    /// The smallest and largest model input over the train split, for the targets check.
    let inputRange: DataRange

    /// Statistics of all rows of `data` (times `scale`), the same bits at any rank count: rows are
    /// cut into blocks that depend on the row and feature counts only; a block's per-feature sums
    /// run sequentially in its row order on whichever rank holds it, and the block sums are added
    /// in block order on every rank. Minima and maxima are exact. Collective.
    public static func compute(_ kind: NormalizationKind, data: DataSplit, scale: Float,
                               communicator: Communicator) throws -> FeatureNormalization {
        let n = data.rows, d = data.columns
        let blocks = max(1, min(256, max(1, (1 << 22) / max(d, 1)), n / 1024))
        let mine = rowRange(count: blocks, rank: communicator.rank, size: communicator.size)
        var sums = [Double](repeating: 0, count: blocks * 2 * d)   // per block: Σx then Σx² per feature
        var extremes = [Double](repeating: -.infinity, count: 2 * d)   // per feature: max, then -min
        let batch = 256
        var rows = [Float](repeating: 0, count: batch * d)
        var indices = [Int](repeating: 0, count: batch)
        for b in mine {
            let base = b * 2 * d
            try data.forEachPiece(of: rowRange(count: n, rank: b, size: blocks)) { m, offset, piece in
                var start = piece.lowerBound
                while start < piece.upperBound {
                    let count = min(batch, piece.upperBound - start)
                    for i in 0..<count { indices[i] = start + i - offset }
                    indices.withUnsafeBufferPointer { m.gatherRows(UnsafeBufferPointer(rebasing: $0[0..<count]), scale: scale, into: &rows) }
                    for r in 0..<count {
                        for j in 0..<d {
                            let v = Double(rows[r * d + j])
                            sums[base + j] += v
                            sums[base + d + j] += v * v
                            extremes[j] = max(extremes[j], v)
                            extremes[d + j] = max(extremes[d + j], -v)
                        }
                    }
                    start += count
                }
            }
        }
        try communicator.allreduceSum(&sums)   // each block's sums come from one rank: x + 0 is exact
        try communicator.allreduceMax(&extremes)
        var shift = [Float](repeating: 0, count: d), factor = [Float](repeating: 1, count: d)
        var low = Double.infinity, high = -Double.infinity
        for j in 0..<d {
            var total = 0.0, squares = 0.0
            for b in 0..<blocks { total += sums[b * 2 * d + j]; squares += sums[b * 2 * d + d + j] }
            let maximum = extremes[j], minimum = -extremes[d + j]
            switch kind {
            case .none: break
            case .standard:
                let mean = total / Double(n)
                let sd = (max(0, squares / Double(n) - mean * mean)).squareRoot()
                shift[j] = Float(mean)
                factor[j] = sd > 1e-12 * max(1, abs(mean)) ? Float(1 / sd) : 1   // a constant feature stays 0
            case .minmax:
                shift[j] = Float(minimum)
                factor[j] = maximum > minimum ? Float(1 / (maximum - minimum)) : 1
            }
            for v in [minimum, maximum] {
                let mapped = (Double(Float(v) - shift[j])) * Double(factor[j])
                low = min(low, mapped); high = max(high, mapped)
            }
        }
        return FeatureNormalization(kind: kind, shift: shift, factor: factor, inputRange: DataRange(min: low, max: high))
    }

    init(kind: NormalizationKind, shift: [Float], factor: [Float], inputRange: DataRange = DataRange(min: 0, max: 0)) {
        self.kind = kind; self.shift = shift; self.factor = factor; self.inputRange = inputRange
    }

    /// Writes group `/normalization` (attribute `kind`; float32 `shift` and `factor` [features]).
    func write(to file: HDF5File) throws {
        try file.createGroup("/normalization")
        try file.setAttribute("kind", kind.rawValue, at: "/normalization")
        try file.write(shift, shape: [shift.count], to: "/normalization/shift")
        try file.write(factor, shape: [factor.count], to: "/normalization/factor")
    }

    /// The normalization a checkpoint holds, or nil (none, or a file from before normalization).
    static func read(from file: HDF5File, path: String) throws -> FeatureNormalization? {
        guard file.kind(of: "/normalization") == .group else { return nil }
        let text = try file.stringAttribute("kind", at: "/normalization")
        guard let kind = NormalizationKind(rawValue: text) else {
            throw ConfigError("checkpoint '\(path)': /normalization kind '\(text)' is not one of none, standard, minmax")
        }
        let shift = try file.readFloats("/normalization/shift"), factor = try file.readFloats("/normalization/factor")
        guard shift.count == factor.count else { throw ConfigError("checkpoint '\(path)': /normalization shift and factor differ in length") }
        return FeatureNormalization(kind: kind, shift: shift, factor: factor)
    }
}

/// How rows of a dataset become model inputs, and model outputs data units again.
public struct InputMapping: Sendable {
    public let scale: Float
    public let normalization: FeatureNormalization?

    public init(scale: Float, normalization: FeatureNormalization? = nil) {
        self.scale = scale
        self.normalization = normalization?.kind == NormalizationKind.none ? nil : normalization
    }

    /// Rows `indices` of `data` as model inputs into `out` (indices.count × columns).
    public func gather(_ data: StoredMatrix, rows indices: UnsafeBufferPointer<Int>, into out: UnsafeMutablePointer<Float>) {
        data.gatherRows(indices, scale: scale, into: out)
        guard let normalization else { return }
        normalization.shift.withUnsafeBufferPointer { shift in
            normalization.factor.withUnsafeBufferPointer { factor in
                let d = shift.count
                for r in 0..<indices.count {
                    let row = out + r * d
                    for j in 0..<d { row[j] = (row[j] - shift[j]) * factor[j] }
                }
            }
        }
    }

    /// Model-space values (inputs or decoded outputs, `count` rows) back in scaled data units, in place.
    public func toData(_ values: UnsafeMutablePointer<Float>, rows: Int) {
        guard let normalization else { return }
        let d = normalization.shift.count
        for r in 0..<rows {
            let row = values + r * d
            for j in 0..<d { row[j] = row[j] / normalization.factor[j] + normalization.shift[j] }
        }
    }

    public func toData(_ values: inout [Float], rows: Int) {
        values.withUnsafeMutableBufferPointer { toData($0.baseAddress!, rows: rows) }
    }
}
