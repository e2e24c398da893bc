// data.validation as a fraction: rows of the train dataset held out from training and evaluated
// at every epoch's end, the same rows at any rank count. They are drawn from the seed in whole
// units (single rows; whole blocks with shuffle: blocks, so a streamed epoch still reads each chunk
// once) and the remaining rows are the training set, renumbered in file order.
import Models

/// A subset of a dataset's rows in file order: logical row i is file row `physical(i)`.
public protocol RowSelection: Sendable {
    var count: Int { get }
    func physical(_ row: Int) -> Int
}

/// The units of `rows` file rows that a fraction holds out: `unit` rows each (the last may be
/// shorter), `held` of them drawn by Floyd's algorithm from a key of the seed, kept sorted.
public struct HeldOutRows: Sendable, Equatable {
    public let rows: Int
    public let unit: Int
    /// Held-out unit indices, ascending.
    let held: [Int]

    public init(rows: Int, unit: Int, fraction: Double, seed: UInt64) {
        precondition(rows > 0 && unit > 0 && fraction > 0 && fraction < 1)
        self.rows = rows; self.unit = unit
        let units = (rows + unit - 1) / unit
        let k = min(units - 1, max(1, Int((fraction * Double(units)).rounded())))
        var chosen = Set<Int>()
        chosen.reserveCapacity(k)
        let key = RandomKey(seed: seed, stream: .dataOrder, 0x7A11_DA7E)
        for j in (units - k)..<units {
            let t = key.below(j + 1, UInt64(j))
            chosen.insert(chosen.contains(t) ? j : t)
        }
        held = chosen.sorted()
    }

    private var units: Int { (rows + unit - 1) / unit }
    private func size(ofUnit u: Int) -> Int { min(unit, rows - u * unit) }

    /// The held-out rows, in file order.
    public var validation: RowSelection { Selected(count: held.reduce(0) { $0 + size(ofUnit: $1) }) { [held, unit] row in
        held[row / unit] * unit + row % unit   // only the last unit can be short, and it sorts last
    } }

    /// The rows left for training, in file order.
    public var training: RowSelection {
        let count = rows - held.reduce(0) { $0 + size(ofUnit: $1) }
        return Selected(count: count) { [held, unit] row in
            // Kept unit j is file unit j + i, i the number of held units before it: the first i
            // with held[i] - i > j (held[i] - i never decreases).
            let j = row / unit
            var (low, high) = (0, held.count)
            while low < high {
                let mid = (low + high) / 2
                if held[mid] - mid > j { high = mid } else { low = mid + 1 }
            }
            return (j + low) * unit + row % unit
        }
    }

    private struct Selected: RowSelection {
        let count: Int
        let map: @Sendable (Int) -> Int
        init(count: Int, _ map: @escaping @Sendable (Int) -> Int) { self.count = count; self.map = map }
        func physical(_ row: Int) -> Int { map(row) }
    }
}
