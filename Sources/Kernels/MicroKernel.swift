// MicroKernel: the only code that knows the instruction set. An MR × NR = 6 × 16 block of C held in
// twelve 8-wide accumulators (AVX2 + FMA: 12 accumulators, 2 B vectors and 1 broadcast fit the 16 ymm
// registers), and a 6 × 8 half for column edges of at most 8 (n = 20 or 40 wide products).
// Packed operands: A strips are kc × MR (k-major), B strips are kc × NR.
// Every element of a tile is one chain of fused multiply-adds in k order; padded rows and columns
// (zeros in the packed panels) do not touch the valid ones.

enum MicroKernel {
    static let mr = 6
    static let nr = 16
}

@inline(__always)
private func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always)
private func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
}

/// A block of C in registers, as the kernels below use it. Stack entries (`add(below:)`) have row stride NR.
protocol RegisterTile {
    /// Columns of C the tile covers (16 or 8).
    static var width: Int { get }
    init()
    init(loading c: UnsafePointer<Float>, ld: Int)
    func store(to c: UnsafeMutablePointer<Float>, ld: Int)
    /// self += a·b over `kc` steps of packed strips (B strips of row stride NR).
    mutating func multiplyAdd(kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>)
    /// self = below + self, element by element, `below` a stack entry.
    mutating func add(below t: UnsafePointer<Float>)
    /// self = old + self, `old` read from C.
    mutating func add(old c: UnsafePointer<Float>, ld: Int)
}

/// A 6 × 16 tile of C in registers: row r is (r{r}a, r{r}b).
struct Tile: RegisterTile {
    static var width: Int { 16 }

    var r0a, r0b, r1a, r1b, r2a, r2b, r3a, r3b, r4a, r4b, r5a, r5b: SIMD8<Float>

    @inline(__always)
    init() {
        let z = SIMD8<Float>()
        (r0a, r0b, r1a, r1b, r2a, r2b) = (z, z, z, z, z, z)
        (r3a, r3b, r4a, r4b, r5a, r5b) = (z, z, z, z, z, z)
    }

    /// Loads rows of `ld`-strided C.
    @inline(__always)
    init(loading c: UnsafePointer<Float>, ld: Int) {
        r0a = load8(c); r0b = load8(c + 8)
        r1a = load8(c + ld); r1b = load8(c + ld + 8)
        r2a = load8(c + 2 * ld); r2b = load8(c + 2 * ld + 8)
        r3a = load8(c + 3 * ld); r3b = load8(c + 3 * ld + 8)
        r4a = load8(c + 4 * ld); r4b = load8(c + 4 * ld + 8)
        r5a = load8(c + 5 * ld); r5b = load8(c + 5 * ld + 8)
    }

    @inline(__always)
    func store(to c: UnsafeMutablePointer<Float>, ld: Int) {
        store8(r0a, c); store8(r0b, c + 8)
        store8(r1a, c + ld); store8(r1b, c + ld + 8)
        store8(r2a, c + 2 * ld); store8(r2b, c + 2 * ld + 8)
        store8(r3a, c + 3 * ld); store8(r3b, c + 3 * ld + 8)
        store8(r4a, c + 4 * ld); store8(r4b, c + 4 * ld + 8)
        store8(r5a, c + 5 * ld); store8(r5b, c + 5 * ld + 8)
    }

    /// One step of k: self += a[0..<6] ⊗ b[0..<16], fused.
    @inline(__always)
    mutating func multiplyAdd(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>) {
        let b0 = load8(b), b1 = load8(b + 8)
        var x = SIMD8<Float>(repeating: a[0])
        r0a = r0a.addingProduct(x, b0); r0b = r0b.addingProduct(x, b1)
        x = SIMD8<Float>(repeating: a[1])
        r1a = r1a.addingProduct(x, b0); r1b = r1b.addingProduct(x, b1)
        x = SIMD8<Float>(repeating: a[2])
        r2a = r2a.addingProduct(x, b0); r2b = r2b.addingProduct(x, b1)
        x = SIMD8<Float>(repeating: a[3])
        r3a = r3a.addingProduct(x, b0); r3b = r3b.addingProduct(x, b1)
        x = SIMD8<Float>(repeating: a[4])
        r4a = r4a.addingProduct(x, b0); r4b = r4b.addingProduct(x, b1)
        x = SIMD8<Float>(repeating: a[5])
        r5a = r5a.addingProduct(x, b0); r5b = r5b.addingProduct(x, b1)
    }

    /// self += a·b over `kc` steps of packed strips.
    @inline(__always)
    mutating func multiplyAdd(kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>) {
        var pa = a, pb = b
        var p = 0
        while p + 4 <= kc {
            multiplyAdd(pa, pb)
            multiplyAdd(pa + 6, pb + 16)
            multiplyAdd(pa + 12, pb + 32)
            multiplyAdd(pa + 18, pb + 48)
            pa += 24; pb += 64; p += 4
        }
        while p < kc {
            multiplyAdd(pa, pb)
            pa += 6; pb += 16; p += 1
        }
    }

    /// `left + self`, element by element (the tree's `below + acc`).
    @inline(__always)
    mutating func add(below t: UnsafePointer<Float>) {
        r0a = load8(t) + r0a; r0b = load8(t + 8) + r0b
        r1a = load8(t + 16) + r1a; r1b = load8(t + 24) + r1b
        r2a = load8(t + 32) + r2a; r2b = load8(t + 40) + r2b
        r3a = load8(t + 48) + r3a; r3b = load8(t + 56) + r3b
        r4a = load8(t + 64) + r4a; r4b = load8(t + 72) + r4b
        r5a = load8(t + 80) + r5a; r5b = load8(t + 88) + r5b
    }

    @inline(__always)
    mutating func add(old c: UnsafePointer<Float>, ld: Int) {
        let old = Tile(loading: c, ld: ld)
        r0a = old.r0a + r0a; r0b = old.r0b + r0b
        r1a = old.r1a + r1a; r1b = old.r1b + r1b
        r2a = old.r2a + r2a; r2b = old.r2b + r2b
        r3a = old.r3a + r3a; r3b = old.r3b + r3b
        r4a = old.r4a + r4a; r4b = old.r4b + r4b
        r5a = old.r5a + r5a; r5b = old.r5b + r5b
    }
}

/// A 6 × 8 tile: the left half of a 16-wide strip, same arithmetic per element as `Tile`.
struct HalfTile: RegisterTile {
    static var width: Int { 8 }
    var r0, r1, r2, r3, r4, r5: SIMD8<Float>

    @inline(__always)
    init() {
        let z = SIMD8<Float>()
        (r0, r1, r2, r3, r4, r5) = (z, z, z, z, z, z)
    }

    @inline(__always)
    init(loading c: UnsafePointer<Float>, ld: Int) {
        r0 = load8(c); r1 = load8(c + ld); r2 = load8(c + 2 * ld)
        r3 = load8(c + 3 * ld); r4 = load8(c + 4 * ld); r5 = load8(c + 5 * ld)
    }

    @inline(__always)
    func store(to c: UnsafeMutablePointer<Float>, ld: Int) {
        store8(r0, c); store8(r1, c + ld); store8(r2, c + 2 * ld)
        store8(r3, c + 3 * ld); store8(r4, c + 4 * ld); store8(r5, c + 5 * ld)
    }

    @inline(__always)
    mutating func multiplyAdd(kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>) {
        var pa = a, pb = b
        for _ in 0..<kc {
            let b0 = load8(pb)
            r0 = r0.addingProduct(SIMD8(repeating: pa[0]), b0)
            r1 = r1.addingProduct(SIMD8(repeating: pa[1]), b0)
            r2 = r2.addingProduct(SIMD8(repeating: pa[2]), b0)
            r3 = r3.addingProduct(SIMD8(repeating: pa[3]), b0)
            r4 = r4.addingProduct(SIMD8(repeating: pa[4]), b0)
            r5 = r5.addingProduct(SIMD8(repeating: pa[5]), b0)
            pa += 6; pb += 16
        }
    }

    @inline(__always)
    mutating func add(below t: UnsafePointer<Float>) {
        r0 = load8(t) + r0; r1 = load8(t + 16) + r1; r2 = load8(t + 32) + r2
        r3 = load8(t + 48) + r3; r4 = load8(t + 64) + r4; r5 = load8(t + 80) + r5
    }

    @inline(__always)
    mutating func add(old c: UnsafePointer<Float>, ld: Int) {
        let old = HalfTile(loading: c, ld: ld)
        r0 = old.r0 + r0; r1 = old.r1 + r1; r2 = old.r2 + r2
        r3 = old.r3 + r3; r4 = old.r4 + r4; r5 = old.r5 + r5
    }
}

extension MicroKernel {
    /// c (6 × 16, row stride ldc) = (loadC ? c : 0) + a·b over kc steps: one FMA chain per element.
    @inline(never)
    static func product<T: RegisterTile>(_: T.Type, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                                         c: UnsafeMutablePointer<Float>, ldc: Int, loadC: Bool) {
        var t = loadC ? T(loading: c, ld: ldc) : T()
        t.multiplyAdd(kc: kc, a, b)
        t.store(to: c, ld: ldc)
    }

    /// The reduction-chunk product: `chunks` chunks of `chunk` steps each; each chunk's tile is a fresh
    /// FMA chain from zero, the chunk tiles are combined with the binary-counter tree (stack of
    /// 6 × 16 tiles at `stack`, room for PairwiseTree.scratchCount(leaves: chunks) tiles), and the
    /// result is stored into c, or added to it (c + result) when `accumulate`.
    @inline(never)
    static func chunkedProduct<T: RegisterTile>(_: T.Type, chunks: Int, chunk: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                               stack: UnsafeMutablePointer<Float>,
                               c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        let tileSize = mr * nr
        var depth = 0
        var pa = a, pb = b
        var t = T()
        for leaf in 1...chunks {
            t = T()
            t.multiplyAdd(kc: chunk, pa, pb)
            pa += chunk * mr; pb += chunk * nr
            var merges = leaf.trailingZeroBitCount
            while merges > 0 {
                depth -= 1
                t.add(below: stack + depth * tileSize)
                merges -= 1
            }
            if leaf < chunks {
                t.store(to: stack + depth * tileSize, ld: nr)
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
