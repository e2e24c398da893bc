// The micro-kernel algorithms, generic over the tile, and `TileRoutines`: one instruction set's
// compiled instances of them, which the matrix product calls through.

/// Where a tile's six rows of A are: a packed strip (row r of step p at base[p·MR + r]) or the
/// operand itself (at base[r·rowStride + p·stepStride]), which a narrow product reads in place
/// rather than packing a block of A for only a few columns.
@frozen
public struct ARows {
    public let base: UnsafePointer<Float>
    public let rowStride: Int, stepStride: Int

    @inlinable public init(packed base: UnsafePointer<Float>) {
        self.base = base; rowStride = 1; stepStride = MicroKernel.mr
    }
    @inlinable public init(base: UnsafePointer<Float>, rowStride: Int, stepStride: Int) {
        self.base = base; self.rowStride = rowStride; self.stepStride = stepStride
    }
    @inlinable public var isPacked: Bool { rowStride == 1 && stepStride == MicroKernel.mr }
    /// The same rows `steps` steps on.
    @inlinable @inline(__always)
    public func advanced(steps: Int) -> ARows {
        ARows(base: base + steps * stepStride, rowStride: rowStride, stepStride: stepStride)
    }
}

extension RegisterTile {
    /// self += a·b over `kc` steps, A packed or in place.
    @inlinable @inline(__always)
    public mutating func multiplyAdd(kc: Int, a: ARows, _ b: UnsafePointer<Float>, stripStride: Int) {
        if a.isPacked {
            multiplyAdd(kc: kc, a.base, b, stripStride: stripStride)
        } else {
            multiplyAdd(kc: kc, rows: a.base, rowStride: a.rowStride, stepStride: a.stepStride, b, stripStride: stripStride)
        }
    }
}

extension MicroKernel {
    /// c (MR × T.width, row stride ldc) = (loadC ? c : 0) + a·b over kc steps: one FMA chain per element.
    /// A is a packed strip when `a` says so (`packed`), else read where it lies (`ARows`).
    @inlinable @inline(__always)
    public static func product<T: RegisterTile>(_: T.Type, kc: Int, a: ARows, b: UnsafePointer<Float>,
                                                stripStride: Int, c: UnsafeMutablePointer<Float>, ldc: Int, loadC: Bool) {
        var t = loadC ? T(loading: c, ld: ldc) : T()
        t.multiplyAdd(kc: kc, a: a, b, stripStride: stripStride)
        t.store(to: c, ld: ldc)
    }

    /// The reduction-chunk product: `chunks` chunks of `chunk` steps each; each chunk's tile is a fresh
    /// FMA chain from zero, the chunk tiles are combined with the binary-counter tree (stack of tiles
    /// at `stack`, room for PairwiseTree.scratchCount(leaves: chunks) tiles of MR × T.width), and the
    /// result is stored into c, or added to it (c + result) when `accumulate`.
    @inlinable @inline(__always)
    public static func chunkedProduct<T: RegisterTile>(_: T.Type, chunks: Int, chunk: Int,
                                                       a: ARows, b: UnsafePointer<Float>, stripStride: Int,
                                                       stack: UnsafeMutablePointer<Float>,
                                                       c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        let tileSize = mr * T.width
        var depth = 0
        var pa = a, pb = b
        var t = T()
        for leaf in 1...chunks {
            t = T()
            t.multiplyAdd(kc: chunk, a: pa, pb, stripStride: stripStride)
            pa = pa.advanced(steps: chunk); pb += chunk * nr
            var merges = leaf.trailingZeroBitCount
            while merges > 0 {
                depth -= 1
                t.add(below: stack + depth * tileSize)
                merges -= 1
            }
            if leaf < chunks {
                t.store(to: stack + depth * tileSize, ld: T.width)
                depth += 1
            }
        }
        // t is the top; fold the rest of the stack into it from the top down.
        while depth > 0 {
            depth -= 1
            t.add(below: stack + depth * tileSize)
        }
        if accumulate { t.add(old: c, ld: ldc) }
        t.store(to: c, ld: ldc)
    }
}

/// One tile width's compiled micro-kernels.
public struct TileKernel: Sendable {
    public typealias Product = @Sendable (_ kc: Int, _ a: ARows, _ b: UnsafePointer<Float>, _ stripStride: Int,
                                          _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ loadC: Bool) -> Void
    public typealias ChunkedProduct = @Sendable (_ chunks: Int, _ chunk: Int, _ a: ARows, _ b: UnsafePointer<Float>,
                                                 _ stripStride: Int, _ stack: UnsafeMutablePointer<Float>,
                                                 _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool) -> Void
    public let width: Int
    public let product: Product
    public let chunkedProduct: ChunkedProduct

    /// The kernels of tile `T`, compiled in (and for the instruction set of) the calling module.
    @inlinable
    public init<T: RegisterTile>(_: T.Type) {
        width = T.width
        product = { kc, a, b, stride, c, ldc, loadC in
            MicroKernel.product(T.self, kc: kc, a: a, b: b, stripStride: stride, c: c, ldc: ldc, loadC: loadC)
        }
        chunkedProduct = { chunks, chunk, a, b, stride, stack, c, ldc, accumulate in
            MicroKernel.chunkedProduct(T.self, chunks: chunks, chunk: chunk, a: a, b: b, stripStride: stride,
                                       stack: stack, c: c, ldc: ldc, accumulate: accumulate)
        }
    }
}

/// The micro-kernels of one instruction set: an optional 32-wide tile (two B strips), the 16-wide
/// tile and the 8-wide tile for narrow column edges.
public struct TileRoutines: Sendable {
    public let wide: TileKernel?
    public let full: TileKernel
    public let half: TileKernel

    public init(wide: TileKernel?, full: TileKernel, half: TileKernel) {
        self.wide = wide
        self.full = full
        self.half = half
    }

    /// The kernel for a tile starting `remaining` columns before the panel's end: the wide tile
    /// when more than 16 columns remain, then 16, then 8. A 17- to 23-column edge wastes more lanes
    /// in one wide tile than in a 16 + 8 pair, but the 8-wide tile's six FMA chains are too few to
    /// keep the FMA units busy: measured on Zen 4, a 20-wide product ran 1.07-1.27x faster so.
    @inlinable @inline(__always)
    public func kernel(remaining: Int) -> TileKernel {
        if remaining > 16, let wide { return wide }
        return remaining > 8 ? full : half
    }
}
