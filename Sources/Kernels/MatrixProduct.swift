// MatrixProduct: C = op(A)·op(B) with the BLIS loop nest (column panels, k blocks, row blocks,
// micro-tiles) around the pool's micro-kernels (InstructionSet), split across threads by rows and
// columns of C only.
import RegisterTiles

/// Rows of C per micro-tile: a product cut into row blocks on multiples of this wastes no lanes.
public var productRowTile: Int { MicroKernel.mr }

/// C = op(A)·op(B)  (or C += ... when accumulate), row-major. op(A) is m×k, op(B) is k×n.
/// A is stored m×k with row stride lda (or k×m when transposeA); B is stored k×n (or n×k when transposeB).
/// reductionChunk > 0: k must be a multiple of it; the k range is cut into chunks of that size, each chunk's
/// product is computed exactly as a call with k = reductionChunk would compute it, and the chunk results are
/// combined with the binary-counter pairwise tree of docs/determinism.md (see PairwiseTree) before being
/// stored/added into C. reductionChunk == 0: plain product.
///
/// Arithmetic: with reductionChunk == 0 every element of C is one chain of fused multiply-adds in k order,
/// starting from 0 (or from the old C when `accumulate`), whatever the thread count, the block sizes or the
/// other rows and columns in the call. With a reduction chunk, C = tree (or C = C + tree).
/// C must not overlap A or B. One caller per pool at a time (see ComputePool).
public func matrixProduct(m: Int, n: Int, k: Int,
                          a: UnsafePointer<Float>, lda: Int, transposeA: Bool,
                          b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
                          c: UnsafeMutablePointer<Float>, ldc: Int,
                          accumulate: Bool, reductionChunk: Int = 0, pool: ComputePool) {
    precondition(m >= 0 && n >= 0 && k >= 0, "matrixProduct: negative size m=\(m) n=\(n) k=\(k)")
    precondition(lda >= max(1, transposeA ? m : k), "matrixProduct: lda \(lda) is smaller than the stored width")
    precondition(ldb >= max(1, transposeB ? k : n), "matrixProduct: ldb \(ldb) is smaller than the stored width")
    precondition(ldc >= max(1, n), "matrixProduct: ldc \(ldc) is smaller than n \(n)")
    precondition(reductionChunk >= 0, "matrixProduct: negative reductionChunk \(reductionChunk)")
    precondition(reductionChunk == 0 || k % reductionChunk == 0,
                 "matrixProduct: k \(k) is not a multiple of reductionChunk \(reductionChunk)")
    if m == 0 || n == 0 { return }
    if k == 0 {
        if !accumulate {
            for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) }
        }
        return
    }
    if reductionChunk > 0, ProductProblem.runsChunkByChunk(m: m, n: n, k: k, chunk: reductionChunk) {
        productChunkByChunk(m: m, n: n, k: k, a: Operand(base: a, ld: lda, transposed: transposeA),
                            b: Operand(base: b, ld: ldb, transposed: transposeB), c: c, ldc: ldc,
                            accumulate: accumulate, chunk: reductionChunk, pool: pool)
        return
    }
    let problem = ProductProblem(m: m, n: n, k: k,
                                 a: Operand(base: a, ld: lda, transposed: transposeA),
                                 b: Operand(base: b, ld: ldb, transposed: transposeB),
                                 c: c, ldc: ldc, accumulate: accumulate, chunk: reductionChunk,
                                 tiles: pool.tiles)
    guard pool.tryAcquire() else {
        // Busy pool (a concurrent or nested call): same arithmetic, one thread, temporary scratch.
        let scratch = ProductScratch()
        problem.run(rows: 0..<m, cols: 0..<n, scratch: scratch)
        return
    }
    defer { pool.release() }

    let (tm, tn) = problem.split(threads: pool.threads)
    if tm * tn == 1 {
        problem.run(rows: 0..<m, cols: 0..<n, scratch: pool.scratch[0])
        return
    }
    let mr = MicroKernel.mr, nr = MicroKernel.nr
    let rowStrips = (m + mr - 1) / mr, colStrips = (n + nr - 1) / nr
    // Grow every worker's buffers here, on one thread, before the workers start.
    for t in 0..<(tm * tn) {
        let rows = (rowStrips / tm + 1) * mr, cols = (colStrips / tn + 1) * nr
        problem.reserve(rows: rows, cols: cols, scratch: pool.scratch[t])
    }
    pool.parallelFor(tm * tn) { t in
        let ti = t / tn, tj = t % tn
        let r0 = min(m, (rowStrips * ti / tm) * mr), r1 = min(m, (rowStrips * (ti + 1) / tm) * mr)
        let c0 = min(n, (colStrips * tj / tn) * nr), c1 = min(n, (colStrips * (tj + 1) / tn) * nr)
        if r0 < r1 && c0 < c1 {
            problem.run(rows: r0..<r1, cols: c0..<c1, scratch: pool.scratch[t])
        }
    }
}

/// A chunked product with long chunks (a convolution's weight gradient sums over every position of a
/// micro-batch): the fused kernels would stream panels of the whole k from memory for every tile, so
/// instead each chunk is a plain product (k-blocked, its panels in cache) into a leaf of its own, the
/// threads sharing out the chunks, and the leaves are combined by `PairwiseTree.combine`. The same
/// bits as the fused kernels: either way each chunk is one chain of multiply-adds in k order from 0,
/// then the one tree.
private func productChunkByChunk(m: Int, n: Int, k: Int, a: Operand, b: Operand, c: UnsafeMutablePointer<Float>,
                                 ldc: Int, accumulate: Bool, chunk: Int, pool: ComputePool) {
    let leaves = k / chunk, length = m * n
    let count = (leaves + PairwiseTree.scratchCount(leaves: leaves) + 1) * length
    let acquired = pool.tryAcquire()
    defer { if acquired { pool.release() } }
    // A busy pool (a concurrent or nested call): one thread, temporary buffers, the same arithmetic.
    let workers = acquired ? pool.scratch : [ProductScratch()]
    let owner = workers[0]
    owner.reserveChunkResults(count)
    let results = owner.chunkResults
    let items = acquired ? min(pool.threads, leaves) : 1
    func leafProblem(_ q: Int) -> ProductProblem {
        let aStart = a.transposed ? q * chunk * a.ld : q * chunk
        let bStart = b.transposed ? q * chunk : q * chunk * b.ld
        return ProductProblem(m: m, n: n, k: chunk, a: Operand(base: a.base + aStart, ld: a.ld, transposed: a.transposed),
                              b: Operand(base: b.base + bStart, ld: b.ld, transposed: b.transposed),
                              c: results + q * length, ldc: n, accumulate: false, chunk: 0, tiles: pool.tiles)
    }
    for t in 0..<items { leafProblem(0).reserve(rows: m, cols: n, scratch: workers[t]) }
    let body = { (t: Int) in
        var q = t
        while q < leaves {
            leafProblem(q).run(rows: 0..<m, cols: 0..<n, scratch: workers[t])
            q += items
        }
    }
    if acquired { pool.parallelFor(items, body) } else { body(0) }
    let tree = results + (leaves + PairwiseTree.scratchCount(leaves: leaves)) * length
    PairwiseTree.combine(leaves: results, count: leaves, length: length, into: tree, scratch: results + leaves * length)
    for i in 0..<m {
        let row = c + i * ldc, from = tree + i * n
        if accumulate {
            for j in 0..<n { row[j] += from[j] }
        } else {
            row.update(from: from, count: n)
        }
    }
}

/// One call's operands and the loop nest over a rectangle of C.
struct ProductProblem {
    let m: Int, n: Int, k: Int
    let a: Operand, b: Operand
    let c: UnsafeMutablePointer<Float>
    let ldc: Int
    let accumulate: Bool
    /// The reduction chunk, 0 for a plain product.
    let chunk: Int
    /// The micro-kernels of the pool's instruction set.
    let tiles: TileRoutines

    /// Block sizes: KC steps of k per packed panel (plain product), MC rows of A per packed block,
    /// NC columns of B per packed panel.
    static let kcMax = 256
    static let mcMax = 72
    static let ncMax = 2048
    /// Whether a chunked product runs chunk by chunk (`productChunkByChunk`): when its k is too long
    /// for the fused kernels' whole-k panels to stay in cache and each chunk is long enough to be a
    /// product of its own, and its leaves take at most 64 MiB.
    static func runsChunkByChunk(m: Int, n: Int, k: Int, chunk: Int) -> Bool {
        k > 2 * kcMax && chunk >= 128 && (k / chunk + 1) * m * n <= 1 << 24
    }
    /// Below this many multiply-adds per extra thread, a product runs on fewer threads.
    static let minWorkPerThread = 1 << 19
    /// Whether the tiles of a panel `nc` columns wide read A where it lies instead of from packed
    /// strips: when C is narrow, a packed float of A would serve only n multiply-adds while packing it
    /// costs about 16 (packing was a quarter of the 40-wide product of a VAE's latent layer). The six
    /// rows of a strip (a few KiB per k block) stay in L1 across the column tiles anyway. Only the
    /// wide and the half tiles read in place: the 16-wide tile's in-place loop runs out of the 16
    /// vector registers of an AVX2 target and spills (measured slower: n = 20 and 50).
    func readsAInPlace(panel nc: Int) -> Bool {
        guard n <= 64, tiles.wide != nil else { return false }
        var remaining = nc
        while remaining > 0 {
            let width = tiles.kernel(remaining: remaining).width
            if width == tiles.full.width { return false }
            remaining -= width
        }
        return true
    }

    /// The k step per packed panel: the whole of k with a reduction chunk (the chunk tree runs per
    /// tile over all of k), otherwise k cut into equal blocks of at most kcMax.
    var kcBlock: Int {
        if chunk > 0 { return k }
        let blocks = (k + ProductProblem.kcMax - 1) / ProductProblem.kcMax
        return (k + blocks - 1) / blocks
    }

    /// Rows of A per packed block: a multiple of MR, with the block at most about 72 × 256 floats (L2-resident).
    var mcBlock: Int {
        let mr = MicroKernel.mr
        let rows = (ProductProblem.mcMax * ProductProblem.kcMax) / max(kcBlock, 1)
        return max(mr, min(ProductProblem.mcMax, rows / mr * mr))
    }

    /// Columns of B per packed panel: a multiple of NR, with the panel at most about 256 × 2048 floats.
    var ncBlock: Int {
        let nr = MicroKernel.nr
        let cols = (ProductProblem.ncMax * ProductProblem.kcMax) / max(kcBlock, 1)
        return max(nr, min(ProductProblem.ncMax, cols / nr * nr))
    }

    /// Grows `scratch` for a rectangle of at most `rows` × `cols`.
    func reserve(rows: Int, cols: Int, scratch: ProductScratch) {
        let mr = MicroKernel.mr, nr = MicroKernel.nr
        let kc = kcBlock
        let mc = (min(mcBlock, rows) + mr - 1) / mr * mr
        let nc = (min(ncBlock, cols) + nr - 1) / nr * nr
        let stack = chunk > 0 ? PairwiseTree.scratchCount(leaves: k / chunk) : 0
        scratch.reserve(a: mc * kc + Packing.packSlack, b: kc * nc, stackTiles: stack)
    }

    /// Threads over rows (tm) and columns (tn) of C: the split with the least work per thread,
    /// counting packing, and only as many threads as the product's size is worth.
    func split(threads: Int) -> (Int, Int) {
        let mr = MicroKernel.mr, nr = MicroKernel.nr
        let rowStrips = (m + mr - 1) / mr, colStrips = (n + nr - 1) / nr
        let work = rowStrips * mr * colStrips * nr * k
        let useful = max(1, min(threads, work / ProductProblem.minWorkPerThread))
        var best = (1, 1)
        var bestCost = Int.max
        for tm in 1...useful where tm <= rowStrips {
            for tn in 1...(useful / tm) where tn <= colStrips {
                let rows = (rowStrips + tm - 1) / tm * mr
                let cols = (colStrips + tn - 1) / tn * nr
                let panels = (cols + ncBlock - 1) / ncBlock
                // One packed float costs about as much as 16 multiply-adds (two FMA pipes × 8 lanes).
                let cost = rows * cols * k + 16 * k * (rows * panels + cols)
                if cost < bestCost {
                    bestCost = cost
                    best = (tm, tn)
                }
            }
        }
        return best
    }

    /// Computes C[rows, cols] on the calling thread with `scratch`.
    func run(rows: Range<Int>, cols: Range<Int>, scratch: ProductScratch) {
        let mr = MicroKernel.mr, nr = MicroKernel.nr
        reserve(rows: rows.count, cols: cols.count, scratch: scratch)
        let kc = kcBlock, mcMax = mcBlock, ncMax = ncBlock
        let pa = scratch.packedA, pb = scratch.packedB
        var jc = cols.lowerBound
        while jc < cols.upperBound {
            let nc = min(ncMax, cols.upperBound - jc)
            var pc = 0
            while pc < k {
                let kcNow = min(kc, k - pc)
                Packing.packB(b, cols: jc..<(jc + nc), p0: pc, kc: kcNow, into: pb)
                let loadC = accumulate || pc > 0
                let inPlace = readsAInPlace(panel: nc)
                var ic = rows.lowerBound
                while ic < rows.upperBound {
                    let mc = min(mcMax, rows.upperBound - ic), whole = mc / mr * mr
                    if !inPlace {
                        Packing.packA(a, rows: ic..<(ic + mc), p0: pc, kc: kcNow, into: pa)
                    } else if whole < mc {   // a last, partial strip: packed, so its missing rows are zeros
                        Packing.packA(a, rows: (ic + whole)..<(ic + mc), p0: pc, kc: kcNow, into: pa)
                    }
                    var jr = 0
                    while jr < nc {
                        let kernel = tiles.kernel(remaining: nc - jr)
                        let cw = min(kernel.width, nc - jr)
                        let bStrip = UnsafePointer(pb + jr * kcNow)
                        var ir = 0
                        while ir < mc {
                            let ch = min(mr, mc - ir)
                            let aStrip = !inPlace ? ARows(packed: pa + ir * kcNow)
                                : ch < mr ? ARows(packed: pa) : a.rows(from: ic + ir, step: pc)
                            tile(kernel, kc: kcNow, aStrip, bStrip, c: c + (ic + ir) * ldc + jc + jr, rows: ch, cols: cw,
                                 loadC: loadC, scratch: scratch)
                            ir += mr
                        }
                        jr += max(kernel.width, nr)
                    }
                    ic += mc
                }
                pc += kcNow
            }
            jc += nc
        }
    }

    /// One micro-tile of C at `c` with `rows` × `cols` valid: computed in place when the tile is full,
    /// otherwise in full on a copy (zero padding) of which the valid part is written back.
    @inline(__always)
    private func tile(_ kernel: TileKernel, kc: Int, _ a: ARows, _ b: UnsafePointer<Float>,
                      c: UnsafeMutablePointer<Float>, rows: Int, cols: Int, loadC: Bool, scratch: ProductScratch) {
        let mr = MicroKernel.mr, width = kernel.width
        if rows == mr && cols == width {
            compute(kernel, kc: kc, a, b, c: c, ldc: ldc, loadC: loadC, scratch: scratch)
            return
        }
        let edge = scratch.edgeTile
        if loadC || (chunk > 0 && accumulate) {
            for r in 0..<mr {
                for j in 0..<width {
                    edge[r * width + j] = (r < rows && j < cols) ? c[r * ldc + j] : 0
                }
            }
        }
        compute(kernel, kc: kc, a, b, c: edge, ldc: width, loadC: loadC, scratch: scratch)
        for r in 0..<rows {
            (c + r * ldc).update(from: edge + r * width, count: cols)
        }
    }

    @inline(__always)
    private func compute(_ kernel: TileKernel, kc: Int, _ a: ARows, _ b: UnsafePointer<Float>,
                         c: UnsafeMutablePointer<Float>, ldc: Int, loadC: Bool, scratch: ProductScratch) {
        let stripStride = kc * MicroKernel.nr
        if chunk > 0 {
            kernel.chunkedProduct(kc / chunk, chunk, a, b, stripStride, scratch.tileStack, c, ldc, accumulate)
        } else {
            kernel.product(kc, a, b, stripStride, c, ldc, loadC)
        }
    }
}
