// The micro-kernel algorithms, generic over the tile, and `TileRoutines`: one instruction set's
// compiled instances of them, which the matrix product calls through.

extension MicroKernel {
    /// c (MR × T.width, row stride ldc) = (loadC ? c : 0) + a·b over kc steps: one FMA chain per element.
    @inlinable @inline(__always)
    public static func product<T: RegisterTile>(_: T.Type, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                                                stripStride: Int, c: UnsafeMutablePointer<Float>, ldc: Int, loadC: Bool) {
        var t = loadC ? T(loading: c, ld: ldc) : T()
        t.multiplyAdd(kc: kc, a, b, stripStride: stripStride)
        t.store(to: c, ld: ldc)
    }

    /// The reduction-chunk product: `chunks` chunks of `chunk` steps each; each chunk's tile is a fresh
    /// FMA chain from zero, the chunk tiles are combined with the binary-counter tree (stack of tiles
    /// at `stack`, room for PairwiseTree.scratchCount(leaves: chunks) tiles of MR × T.width), and the
    /// result is stored into c, or added to it (c + result) when `accumulate`.
    @inlinable @inline(__always)
    public static func chunkedProduct<T: RegisterTile>(_: T.Type, chunks: Int, chunk: Int,
                                                       a: UnsafePointer<Float>, b: UnsafePointer<Float>, stripStride: Int,
                                                       stack: UnsafeMutablePointer<Float>,
                                                       c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        let tileSize = mr * T.width
        var depth = 0
        var pa = a, pb = b
        var t = T()
        for leaf in 1...chunks {
            t = T()
            t.multiplyAdd(kc: chunk, pa, pb, stripStride: stripStride)
            pa += chunk * mr; pb += chunk * nr
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
    public typealias Product = @Sendable (_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ stripStride: Int,
                                          _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ loadC: Bool) -> Void
    public typealias ChunkedProduct = @Sendable (_ chunks: Int, _ chunk: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
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
    /// when at least 24 columns remain (below that a 16 + 8 pair wastes fewer lanes), then 16, then 8.
    @inlinable @inline(__always)
    public func kernel(remaining: Int) -> TileKernel {
        if remaining >= 24, let wide { return wide }
        return remaining > 8 ? full : half
    }
}
