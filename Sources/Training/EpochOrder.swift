// The order in which an epoch visits the train rows (data.shuffle), a pure function of the seed,
// the epoch and the row count: every rank, residency and rank count sees the same order.
import Models

public enum ShuffleKind: String, CaseIterable, Sendable {
    /// One permutation of all rows.
    case rows
    /// Blocks of consecutive rows (aligned to the dataset's chunks) in a permuted order, the rows
    /// shuffled within windows of `data.shuffle_window` blocks: a streamed epoch reads each chunk once.
    case blocks
}

/// Rows at positions of an epoch's order. Not shared between threads: each user owns one.
/// `rows` keeps one epoch's permutation (8 bytes per row); `blocks` keeps the block permutation
/// and one window's rows, so its memory does not grow with the dataset.
public final class EpochOrder {
    public let count: Int
    public let kind: ShuffleKind
    public let blockRows: Int
    public let window: Int
    let seed: UInt64
    /// The rows the order runs over (nil: all `count`): positions give their file rows. With
    /// `blocks`, a selection keeps or drops whole blocks, so its blocks are file blocks.
    let selection: RowSelection?
    private var epoch = -1
    private var permutation: [Int] = []
    /// blocks: the epoch's block order, and each window's first position in the epoch.
    private var blocks: [Int] = []
    private var windowStarts: [Int] = []
    private var cachedWindow = -1
    private var windowRows: [Int] = []

    public init(count: Int, kind: ShuffleKind, blockRows: Int, window: Int, seed: UInt64, selection: RowSelection? = nil) {
        precondition(count > 0 && blockRows > 0 && window > 0 && (selection == nil || selection!.count == count))
        self.count = count; self.kind = kind; self.blockRows = blockRows; self.window = window; self.seed = seed
        self.selection = selection
    }

    public convenience init(count: Int, data: DataSettings, chunkRows: Int?, seed: UInt64, selection: RowSelection? = nil) {
        self.init(count: count, kind: data.shuffle, blockRows: data.blockRows ?? chunkRows ?? 1024,
                  window: data.shuffleWindow, seed: seed, selection: selection)
    }

    /// The file row at `position` of `epoch`'s order.
    public func row(epoch e: Int, position: Int) -> Int {
        let r = selectedRow(epoch: e, position: position)
        return selection?.physical(r) ?? r
    }

    /// The row (of the selection, when there is one) at `position` of `epoch`'s order.
    private func selectedRow(epoch e: Int, position: Int) -> Int {
        precondition(position >= 0 && position < count)
        prepare(e)
        if kind == .rows { return permutation[position] }
        var w = windowStarts.count - 1   // the window holding `position` (binary search)
        var low = 0
        while low < w {
            let mid = (low + w + 1) / 2
            if windowStarts[mid] <= position { low = mid } else { w = mid - 1 }
        }
        w = low
        if w != cachedWindow { shuffleWindow(w) }
        return windowRows[position - windowStarts[w]]
    }

    /// Rows at `positions` of `epoch` into `out`.
    public func rows(epoch e: Int, positions: Range<Int>, into out: UnsafeMutablePointer<Int>) {
        for (i, p) in positions.enumerated() { out[i] = row(epoch: e, position: p) }
    }

    private func prepare(_ e: Int) {
        guard e != epoch else { return }
        epoch = e
        cachedWindow = -1
        if kind == .rows { permutation = epochOrder(count: count, seed: seed, epoch: e); return }
        let blockCount = (count + blockRows - 1) / blockRows
        blocks = EpochOrder.shuffled(Array(0..<blockCount), RandomKey(seed: seed, stream: .dataOrder, UInt64(e), 1))
        windowStarts = []
        var position = 0
        for (i, b) in blocks.enumerated() {
            if i % window == 0 { windowStarts.append(position) }
            position += min(blockRows, count - b * blockRows)
        }
    }

    private func shuffleWindow(_ w: Int) {
        var members: [Int] = []
        for b in blocks[(w * window)..<min(blocks.count, (w + 1) * window)] {
            members += (b * blockRows)..<min(count, (b + 1) * blockRows)
        }
        windowRows = EpochOrder.shuffled(members, RandomKey(seed: seed, stream: .dataOrder, UInt64(epoch), 2 + UInt64(w)))
        cachedWindow = w
    }

    /// Fisher–Yates with the key's draws.
    static func shuffled(_ values: [Int], _ key: RandomKey) -> [Int] {
        var v = values
        if v.count > 1 {
            for i in stride(from: v.count - 1, to: 0, by: -1) { v.swapAt(i, key.below(i + 1, UInt64(i))) }
        }
        return v
    }
}
