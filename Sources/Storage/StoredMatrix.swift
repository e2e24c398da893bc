import CHDF5
import Foundation

/// A numeric dataset [rows, d1, ..., dk] (or some of its rows) as a [rows, d1·…·dk] matrix, held in
/// memory in its stored element type (an 8-bit dataset stays 8-bit). Makes no HDF5 calls after
/// `init`, so any number of threads may read it at once; a staging matrix is written only by its owner.
public final class StoredMatrix: @unchecked Sendable {
    public let rows: Int
    public let columns: Int
    /// The shape of one sample, [d1, ..., dk] ([columns] for a 2-D dataset).
    public let sampleShape: [Int]
    public let elementType: ElementType
    /// "FILE:/path/in/file" (or "<memory>") for messages.
    public let source: String
    /// rows × columns values of `elementType`, row-major; bound to that type.
    private let storage: UnsafeMutableRawPointer

    /// Loads the whole dataset. Errors name the file and dataset: missing file, not HDF5, path
    /// absent, a group, fewer than 2 dimensions, zero rows or columns, a non-numeric type, a
    /// compression filter that is not available, damaged data.
    public convenience init(file: String, dataset: String) throws {
        let reader = try DatasetRows(file: file, dataset: dataset)
        try self.init(reader, rows: 0..<reader.rows)
    }

    /// Loads rows `range` of an open dataset (one rank's shard, a piece of a split).
    public init(_ reader: DatasetRows, rows range: Range<Int>) throws {
        let (bytes, overflow) = range.count.multipliedReportingOverflow(by: reader.rowBytes)
        let memory = ProcessInfo.processInfo.physicalMemory
        guard !overflow, UInt64(bytes) <= memory else {
            throw StorageError("data '\(reader.source)': rows \(range.lowerBound)..<\(range.upperBound) need \(overflow ? "more than 8 EiB" : "\(bytes) bytes") in memory, more than this machine has (\(memory)); data.residency: sharded or streamed holds less")
        }
        // Read before any property is set: a throwing init of a whole object would run deinit too.
        let loaded = UnsafeMutableRawPointer.allocate(byteCount: max(1, bytes), alignment: 16)
        do { try reader.read(range, into: loaded) } catch { loaded.deallocate(); throw error }
        rows = range.count
        columns = reader.columns
        sampleShape = reader.sampleShape
        elementType = reader.elementType
        source = reader.source
        storage = loaded
        StoredMatrix.bind(storage, elementType, count: rows * columns)
    }

    /// Room for `rows` rows shaped and typed as `reader`'s, filled later through `rawRow` (the
    /// rows of one step, assembled from other ranks or read from the file).
    public init(staging rows: Int, like reader: DatasetRows) {
        self.rows = rows
        columns = reader.columns
        sampleShape = reader.sampleShape
        elementType = reader.elementType
        source = reader.source
        storage = UnsafeMutableRawPointer.allocate(byteCount: max(1, rows * reader.rowBytes), alignment: 16)
        storage.initializeMemory(as: UInt8.self, repeating: 0, count: max(1, rows * reader.rowBytes))
        StoredMatrix.bind(storage, elementType, count: rows * columns)
    }

    /// Bytes of one row.
    public var rowBytes: Int { columns * elementType.byteCount }

    /// The bytes of row `row` (for copying rows between matrices and messages of the same type).
    public func rawRow(_ row: Int) -> UnsafeMutableRawPointer {
        precondition(row >= 0 && row < rows, "StoredMatrix.rawRow: row \(row) outside 0..<\(rows) of \(source)")
        return storage + row * rowBytes
    }

    /// An in-memory float32 matrix (tests, small data). `floats.count` must be rows × columns.
    public init(rows: Int, columns: Int, floats: [Float]) {
        precondition(rows >= 0 && columns >= 0 && floats.count == rows * columns,
                     "StoredMatrix: \(floats.count) values given for \(rows) x \(columns)")
        self.rows = rows
        self.columns = columns
        sampleShape = [columns]
        elementType = .float32
        source = "<memory>"
        storage = UnsafeMutableRawPointer.allocate(byteCount: max(1, floats.count) * 4, alignment: 16)
        floats.withUnsafeBytes { storage.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        StoredMatrix.bind(storage, elementType, count: floats.count)
    }

    deinit { storage.deallocate() }

    private static func bind(_ p: UnsafeMutableRawPointer, _ type: ElementType, count: Int) {
        switch type {
        case .int8: p.bindMemory(to: Int8.self, capacity: count)
        case .uint8: p.bindMemory(to: UInt8.self, capacity: count)
        case .int16: p.bindMemory(to: Int16.self, capacity: count)
        case .uint16: p.bindMemory(to: UInt16.self, capacity: count)
        case .int32: p.bindMemory(to: Int32.self, capacity: count)
        case .uint32: p.bindMemory(to: UInt32.self, capacity: count)
        case .int64: p.bindMemory(to: Int64.self, capacity: count)
        case .uint64: p.bindMemory(to: UInt64.self, capacity: count)
        case .float32: p.bindMemory(to: Float.self, capacity: count)
        case .float64: p.bindMemory(to: Double.self, capacity: count)
        }
    }

    /// Converts rows `indices` (in that order) to Float, multiplied by `scale`, into `out`
    /// (indices.count × columns, row-major). Each index must be in 0..<rows (checked, traps).
    public func gatherRows(_ indices: UnsafeBufferPointer<Int>, scale: Float, into out: UnsafeMutablePointer<Float>) {
        switch elementType {
        case .int8: gather(Int8.self, indices, scale, out)
        case .uint8: gather(UInt8.self, indices, scale, out)
        case .int16: gather(Int16.self, indices, scale, out)
        case .uint16: gather(UInt16.self, indices, scale, out)
        case .int32: gather(Int32.self, indices, scale, out)
        case .uint32: gather(UInt32.self, indices, scale, out)
        case .int64: gather(Int64.self, indices, scale, out)
        case .uint64: gather(UInt64.self, indices, scale, out)
        case .float32: gather(Float.self, indices, scale, out)
        case .float64: gather(Double.self, indices, scale, out)
        }
    }

    @inline(__always)
    private func gather<T: StorageScalar>(_: T.Type, _ indices: UnsafeBufferPointer<Int>, _ scale: Float,
                                          _ out: UnsafeMutablePointer<Float>) {
        let base = UnsafePointer(storage.assumingMemoryBound(to: T.self))
        let columns = self.columns, rows = self.rows
        var dst = out
        for index in indices {
            precondition(index >= 0 && index < rows, "StoredMatrix.gatherRows: row \(index) outside 0..<\(rows) of \(source)")
            let src = base + index * columns
            for c in 0..<columns { dst[c] = src[c].floatValue * scale }
            dst += columns
        }
    }

    /// The smallest and largest stored value in rows `range` (exact for every integer type up to
    /// 2^53; the data must be finite); nil for an empty range.
    public func valueRange(rows range: Range<Int>) -> (min: Double, max: Double)? {
        guard !range.isEmpty, columns > 0 else { return nil }
        switch elementType {
        case .int8: return valueRange(Int8.self, range)
        case .uint8: return valueRange(UInt8.self, range)
        case .int16: return valueRange(Int16.self, range)
        case .uint16: return valueRange(UInt16.self, range)
        case .int32: return valueRange(Int32.self, range)
        case .uint32: return valueRange(UInt32.self, range)
        case .int64: return valueRange(Int64.self, range)
        case .uint64: return valueRange(UInt64.self, range)
        case .float32: return valueRange(Float.self, range)
        case .float64: return valueRange(Double.self, range)
        }
    }

    private func valueRange<T: StorageScalar & Comparable>(_: T.Type, _ range: Range<Int>) -> (min: Double, max: Double) {
        let base = UnsafePointer(storage.assumingMemoryBound(to: T.self))
        let values = UnsafeBufferPointer(start: base + range.lowerBound * columns, count: range.count * columns)
        var low = values[0], high = values[0]
        for v in values {
            if v < low { low = v }
            if v > high { high = v }
        }
        return (low.doubleValue, high.doubleValue)
    }

    /// For float datasets: the first row (of `range`, default all) holding a NaN or infinity, or nil.
    /// Integer types: nil.
    public func firstNonFiniteRow(in range: Range<Int>? = nil) -> Int? {
        let range = range ?? 0..<rows
        switch elementType {
        case .float32: return firstNonFinite(Float.self, range)
        case .float64: return firstNonFinite(Double.self, range)
        default: return nil
        }
    }

    private func firstNonFinite<T: BinaryFloatingPoint>(_: T.Type, _ range: Range<Int>) -> Int? {
        let base = UnsafePointer(storage.assumingMemoryBound(to: T.self))
        for r in range {
            let row = base + r * columns
            var finite = true
            for c in 0..<columns where !row[c].isFinite { finite = false }
            if !finite { return r }
        }
        return nil
    }
}
