// One split of the run's data (train or test) and where its rows live (data.residency): all rows
// in every rank's memory, each rank's own share, or none (read from the file as they are needed).
import Foundation
import Storage

public enum Residency: String, CaseIterable, Sendable {
    /// Replicated when the data fits comfortably in each rank's share of the node's memory, else
    /// sharded when the shards fit, else streamed (`MemoryEstimate.residency`).
    case auto
    /// Every rank holds every row.
    case replicated
    /// Each rank holds its 1/N of the rows; a step fetches the rows it needs from their holders.
    case sharded
    /// Rows are read from the file while training, a few steps ahead.
    case streamed
}

public final class DataSplit: @unchecked Sendable {
    /// The dataset's shape, type, chunking and name, as the file has them; `rows` counts the
    /// selected rows of a selection.
    public var rows: Int { selection?.count ?? reader.rows }
    public var columns: Int { reader.columns }
    public var sampleShape: [Int] { reader.sampleShape }
    public var elementType: ElementType { reader.elementType }
    public var chunkRows: Int? { reader.chunkRows }
    public var source: String { reader.source }
    /// The rows this process holds (nil: none) and the index of the first of them.
    public let held: StoredMatrix?
    public let heldFrom: Int
    /// The open dataset, for rows not held.
    let reader: DatasetRows
    /// nil: every row of the dataset; else the rows this split stands for (row i is file row
    /// `selection.physical(i)`): a validation fraction, or the train rows it leaves.
    public let selection: RowSelection?

    /// Opens `dataset` of `file` and loads rows `holding(rows)` (nil: none).
    public init(file: String, dataset: String, holding: (_ rows: Int) -> Range<Int>?) throws {
        let reader = try DatasetRows(file: file, dataset: dataset)
        self.reader = reader
        let range = holding(reader.rows).map { $0.clamped(to: 0..<reader.rows) }
        held = try range.map { try StoredMatrix(reader, rows: $0) }
        heldFrom = range?.lowerBound ?? 0
        selection = nil
    }

    private init(_ whole: DataSplit, selection: RowSelection) {
        reader = whole.reader; held = whole.held; heldFrom = whole.heldFrom
        self.selection = selection
    }

    /// The rows `selection` picks from this whole dataset, sharing its reader and held rows.
    public func selecting(_ selection: RowSelection) -> DataSplit {
        precondition(self.selection == nil, "a selection of a selection")
        return DataSplit(self, selection: selection)
    }

    /// Opens a split and loads all its rows.
    public convenience init(file: String, dataset: String) throws {
        try self.init(file: file, dataset: dataset) { 0..<$0 }
    }

    /// Opens a split with the rows `residency` keeps on this rank: all of them, the rank's
    /// `share` (training's `rowRange`, or an evaluation's `evaluationRows`), or none.
    public convenience init(file: String, dataset: String, residency: Residency, rank: Int, size: Int,
                            share: (_ count: Int, _ rank: Int, _ size: Int) -> Range<Int> = rowRange) throws {
        try self.init(file: file, dataset: dataset) { rows in
            switch residency {
            case .replicated, .auto: return 0..<rows
            case .sharded: return share(rows, rank, size)
            case .streamed: return nil
            }
        }
    }

    /// Whether every row of `range` is held.
    func holds(_ range: Range<Int>) -> Bool {
        guard let held else { return false }
        return range.isEmpty || (range.lowerBound >= heldFrom && range.upperBound <= heldFrom + held.rows)
    }

    /// Calls `body(matrix, base, piece)` for consecutive pieces covering `range`, in order: row g
    /// of a piece is row g - base of `matrix`. Held rows come as one piece; others are read from
    /// the file `pieceRows` at a time, starting at `range.lowerBound`, so that callers working in
    /// batches of a divisor of `pieceRows` see the same batches whatever the residency.
    public func forEachPiece(of range: Range<Int>, pieceRows: Int = 8192,
                             _ body: (StoredMatrix, Int, Range<Int>) throws -> Void) throws {
        if range.isEmpty { return }
        if selection == nil, let held, holds(range) { try body(held, heldFrom, range); return }
        var start = range.lowerBound
        while start < range.upperBound {
            let piece = start..<min(range.upperBound, start + pieceRows)
            try body(selection == nil ? try StoredMatrix(reader, rows: piece) : try gather(Array(piece)), start, piece)
            start = piece.upperBound
        }
    }

    /// Rows `indices` (any order) as a matrix in that order: from memory when held, else read.
    public func gather(_ indices: [Int]) throws -> StoredMatrix {
        let out = StoredMatrix(staging: indices.count, like: reader)
        try fill(out, rows: indices)
        return out
    }

    /// Copies rows `indices` into rows 0..<indices.count of `out` (a staging matrix like this split's):
    /// held rows from memory, the others with one read of their sorted runs.
    func fill(_ out: StoredMatrix, rows indices: [Int]) throws {
        let bytes = out.rowBytes
        var missing: [(row: Int, slot: Int)] = []
        for (slot, index) in indices.enumerated() {
            precondition(index >= 0 && index < rows, "DataSplit: row \(index) outside 0..<\(rows) of \(source)")
            let row = selection?.physical(index) ?? index
            if let held, holds(row..<(row + 1)) {
                out.rawRow(slot).copyMemory(from: held.rawRow(row - heldFrom), byteCount: bytes)
            } else {
                missing.append((row, slot))
            }
        }
        guard !missing.isEmpty else { return }
        missing.sort { $0.row < $1.row }
        var runs: [Range<Int>] = []
        for (row, _) in missing {
            if let last = runs.last, last.upperBound == row { runs[runs.count - 1] = last.lowerBound..<(row + 1) }
            else if let last = runs.last, last.upperBound > row { continue }   // a repeated row: read once
            else { runs.append(row..<(row + 1)) }
        }
        let count = runs.reduce(0) { $0 + $1.count }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(1, count * bytes), alignment: 16)
        defer { buffer.deallocate() }
        try reader.read(runs: runs, into: buffer)
        var at = 0, previous = -1
        for (row, slot) in missing {
            if row != previous && previous >= 0 { at += 1 }
            previous = row
            out.rawRow(slot).copyMemory(from: buffer + at * bytes, byteCount: bytes)
        }
    }
}
