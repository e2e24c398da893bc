// Register tiles of C and the two micro-kernel algorithms over them (plain product, reduction-chunk
// tree). Everything here is @inlinable and generic: it is compiled, not here, but in each
// instruction-set module (Kernels for AVX2, KernelsAVX512, KernelsPortable) with that module's
// target flags, so one source gives every path the same arithmetic.
//
// Packed operands: A strips are kc × MR (k-major), B strips are kc × NR, consecutive strips
// `stripStride` floats apart. Every element of a tile is one chain of fused multiply-adds in k order,
// whatever the tile's width or vector length, so every path computes the same bits; padded rows and
// columns (zeros in the packed panels) do not touch the valid ones.

public enum MicroKernel {
    // Inlinable constants, not `static let`: a let of another module is read through a call.
    /// Rows of a tile and of a packed A strip.
    @inlinable public static var mr: Int { 6 }
    /// Columns of a packed B strip; tiles are 8, 16 or 32 (two strips) wide.
    @inlinable public static var nr: Int { 16 }
    /// The widest tile of any path, for scratch sizing.
    @inlinable public static var widest: Int { 32 }
}

/// A block of C in registers. Stack entries (`add(below:)`) have row stride `width`.
public protocol RegisterTile {
    /// Columns of C the tile covers.
    static var width: Int { get }
    init()
    init(loading c: UnsafePointer<Float>, ld: Int)
    func store(to c: UnsafeMutablePointer<Float>, ld: Int)
    /// self += a·b over `kc` steps of packed strips; a tile wider than NR reads the next strip at
    /// `b + stripStride`.
    mutating func multiplyAdd(kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, stripStride: Int)
    /// The same over A read where it lies: row r's value of step p at a[r·rowStride + p·stepStride].
    mutating func multiplyAdd(kc: Int, rows a: UnsafePointer<Float>, rowStride: Int, stepStride: Int,
                              _ b: UnsafePointer<Float>, stripStride: Int)
    /// self = below + self, element by element, `below` a stack entry.
    mutating func add(below t: UnsafePointer<Float>)
    /// self = old + self, `old` read from C.
    mutating func add(old c: UnsafePointer<Float>, ld: Int)
}

@inlinable @inline(__always)
func load<V: SIMD>(_ p: UnsafePointer<Float>) -> V where V.Scalar == Float {
    UnsafeRawPointer(p).loadUnaligned(as: V.self)
}

@inlinable @inline(__always)
func store<V: SIMD>(_ v: V, _ p: UnsafeMutablePointer<Float>) where V.Scalar == Float {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
}

/// A 6 × 2w tile of C, w = V's lane count: row r is (r{r}a, r{r}b). 12 accumulators, 2 B vectors and
/// 1 broadcast: with SIMD8 (`Tile`, 6 × 16) they fit AVX2's 16 ymm registers; with SIMD16 (6 × 32)
/// AVX-512's zmm registers, the second half then read from the next B strip.
@frozen
public struct PairTile<V: SIMD>: RegisterTile where V.Scalar == Float {
    @inlinable public static var width: Int { 2 * V.scalarCount }
    /// Where a B row's second vector starts: inside the strip, or in the next one for tiles wider than NR.
    @inlinable @inline(__always)
    static func secondHalf(stripStride: Int) -> Int { width <= MicroKernel.nr ? V.scalarCount : stripStride }

    @usableFromInline var r0a, r0b, r1a, r1b, r2a, r2b, r3a, r3b, r4a, r4b, r5a, r5b: V

    @inlinable @inline(__always)
    public init() {
        let z = V()
        (r0a, r0b, r1a, r1b, r2a, r2b) = (z, z, z, z, z, z)
        (r3a, r3b, r4a, r4b, r5a, r5b) = (z, z, z, z, z, z)
    }

    /// Loads rows of `ld`-strided C.
    @inlinable @inline(__always)
    public init(loading c: UnsafePointer<Float>, ld: Int) {
        let w = V.scalarCount
        r0a = load(c); r0b = load(c + w)
        r1a = load(c + ld); r1b = load(c + ld + w)
        r2a = load(c + 2 * ld); r2b = load(c + 2 * ld + w)
        r3a = load(c + 3 * ld); r3b = load(c + 3 * ld + w)
        r4a = load(c + 4 * ld); r4b = load(c + 4 * ld + w)
        r5a = load(c + 5 * ld); r5b = load(c + 5 * ld + w)
    }

    @inlinable @inline(__always)
    public func store(to c: UnsafeMutablePointer<Float>, ld: Int) {
        let w = V.scalarCount
        RegisterTiles.store(r0a, c); RegisterTiles.store(r0b, c + w)
        RegisterTiles.store(r1a, c + ld); RegisterTiles.store(r1b, c + ld + w)
        RegisterTiles.store(r2a, c + 2 * ld); RegisterTiles.store(r2b, c + 2 * ld + w)
        RegisterTiles.store(r3a, c + 3 * ld); RegisterTiles.store(r3b, c + 3 * ld + w)
        RegisterTiles.store(r4a, c + 4 * ld); RegisterTiles.store(r4b, c + 4 * ld + w)
        RegisterTiles.store(r5a, c + 5 * ld); RegisterTiles.store(r5b, c + 5 * ld + w)
    }

    /// One step of k: self += a[0..<6] ⊗ (b[0..<w], b[second..<second+w]), fused.
    @inlinable @inline(__always)
    mutating func multiplyAdd(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, second: Int) {
        let b0: V = load(b), b1: V = load(b + second)
        var x = V(repeating: a[0])
        r0a = r0a.addingProduct(x, b0); r0b = r0b.addingProduct(x, b1)
        x = V(repeating: a[1])
        r1a = r1a.addingProduct(x, b0); r1b = r1b.addingProduct(x, b1)
        x = V(repeating: a[2])
        r2a = r2a.addingProduct(x, b0); r2b = r2b.addingProduct(x, b1)
        x = V(repeating: a[3])
        r3a = r3a.addingProduct(x, b0); r3b = r3b.addingProduct(x, b1)
        x = V(repeating: a[4])
        r4a = r4a.addingProduct(x, b0); r4b = r4b.addingProduct(x, b1)
        x = V(repeating: a[5])
        r5a = r5a.addingProduct(x, b0); r5b = r5b.addingProduct(x, b1)
    }

    @inlinable @inline(__always)
    public mutating func multiplyAdd(kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, stripStride: Int) {
        let second = Self.secondHalf(stripStride: stripStride)
        var pa = a, pb = b
        var p = 0
        while p + 4 <= kc {
            multiplyAdd(pa, pb, second: second)
            multiplyAdd(pa + 6, pb + 16, second: second)
            multiplyAdd(pa + 12, pb + 32, second: second)
            multiplyAdd(pa + 18, pb + 48, second: second)
            pa += 24; pb += 64; p += 4
        }
        while p < kc {
            multiplyAdd(pa, pb, second: second)
            pa += 6; pb += 16; p += 1
        }
    }

    @inlinable @inline(__always)
    public mutating func multiplyAdd(kc: Int, rows a: UnsafePointer<Float>, rowStride rs: Int, stepStride ss: Int,
                                     _ b: UnsafePointer<Float>, stripStride: Int) {
        let second = Self.secondHalf(stripStride: stripStride)
        let a0 = a, a1 = a + rs, a2 = a + 2 * rs, a3 = a + 3 * rs, a4 = a + 4 * rs, a5 = a + 5 * rs
        var pb = b, at = 0
        for _ in 0..<kc {
            let b0: V = load(pb), b1: V = load(pb + second)
            var x = V(repeating: a0[at])
            r0a = r0a.addingProduct(x, b0); r0b = r0b.addingProduct(x, b1)
            x = V(repeating: a1[at])
            r1a = r1a.addingProduct(x, b0); r1b = r1b.addingProduct(x, b1)
            x = V(repeating: a2[at])
            r2a = r2a.addingProduct(x, b0); r2b = r2b.addingProduct(x, b1)
            x = V(repeating: a3[at])
            r3a = r3a.addingProduct(x, b0); r3b = r3b.addingProduct(x, b1)
            x = V(repeating: a4[at])
            r4a = r4a.addingProduct(x, b0); r4b = r4b.addingProduct(x, b1)
            x = V(repeating: a5[at])
            r5a = r5a.addingProduct(x, b0); r5b = r5b.addingProduct(x, b1)
            at += ss; pb += 16
        }
    }

    /// self = below + self, `below` a stack entry of row stride `width`.
    @inlinable @inline(__always)
    public mutating func add(below t: UnsafePointer<Float>) {
        let w = V.scalarCount
        r0a = load(t) + r0a; r0b = load(t + w) + r0b
        r1a = load(t + 2 * w) + r1a; r1b = load(t + 3 * w) + r1b
        r2a = load(t + 4 * w) + r2a; r2b = load(t + 5 * w) + r2b
        r3a = load(t + 6 * w) + r3a; r3b = load(t + 7 * w) + r3b
        r4a = load(t + 8 * w) + r4a; r4b = load(t + 9 * w) + r4b
        r5a = load(t + 10 * w) + r5a; r5b = load(t + 11 * w) + r5b
    }

    @inlinable @inline(__always)
    public mutating func add(old c: UnsafePointer<Float>, ld: Int) {
        let old = PairTile(loading: c, ld: ld)
        r0a = old.r0a + r0a; r0b = old.r0b + r0b
        r1a = old.r1a + r1a; r1b = old.r1b + r1b
        r2a = old.r2a + r2a; r2b = old.r2b + r2b
        r3a = old.r3a + r3a; r3b = old.r3b + r3b
        r4a = old.r4a + r4a; r4b = old.r4b + r4b
        r5a = old.r5a + r5a; r5b = old.r5b + r5b
    }
}

/// The 6 × 16 tile of the AVX2 and portable paths.
public typealias Tile = PairTile<SIMD8<Float>>

/// A 6 × 8 tile: the left half of a 16-wide strip (column edges of at most 8, e.g. n = 20 or 40).
@frozen
public struct HalfTile: RegisterTile {
    @inlinable public static var width: Int { 8 }
    @usableFromInline var r0, r1, r2, r3, r4, r5: SIMD8<Float>

    @inlinable @inline(__always)
    public init() {
        let z = SIMD8<Float>()
        (r0, r1, r2, r3, r4, r5) = (z, z, z, z, z, z)
    }

    @inlinable @inline(__always)
    public init(loading c: UnsafePointer<Float>, ld: Int) {
        r0 = load(c); r1 = load(c + ld); r2 = load(c + 2 * ld)
        r3 = load(c + 3 * ld); r4 = load(c + 4 * ld); r5 = load(c + 5 * ld)
    }

    @inlinable @inline(__always)
    public func store(to c: UnsafeMutablePointer<Float>, ld: Int) {
        RegisterTiles.store(r0, c); RegisterTiles.store(r1, c + ld); RegisterTiles.store(r2, c + 2 * ld)
        RegisterTiles.store(r3, c + 3 * ld); RegisterTiles.store(r4, c + 4 * ld); RegisterTiles.store(r5, c + 5 * ld)
    }

    @inlinable @inline(__always)
    public mutating func multiplyAdd(kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, stripStride: Int) {
        var pa = a, pb = b
        for _ in 0..<kc {
            let b0: SIMD8<Float> = load(pb)
            r0 = r0.addingProduct(SIMD8(repeating: pa[0]), b0)
            r1 = r1.addingProduct(SIMD8(repeating: pa[1]), b0)
            r2 = r2.addingProduct(SIMD8(repeating: pa[2]), b0)
            r3 = r3.addingProduct(SIMD8(repeating: pa[3]), b0)
            r4 = r4.addingProduct(SIMD8(repeating: pa[4]), b0)
            r5 = r5.addingProduct(SIMD8(repeating: pa[5]), b0)
            pa += 6; pb += 16
        }
    }

    @inlinable @inline(__always)
    public mutating func multiplyAdd(kc: Int, rows a: UnsafePointer<Float>, rowStride rs: Int, stepStride ss: Int,
                                     _ b: UnsafePointer<Float>, stripStride: Int) {
        let a0 = a, a1 = a + rs, a2 = a + 2 * rs, a3 = a + 3 * rs, a4 = a + 4 * rs, a5 = a + 5 * rs
        var pb = b, at = 0
        for _ in 0..<kc {
            let b0: SIMD8<Float> = load(pb)
            r0 = r0.addingProduct(SIMD8(repeating: a0[at]), b0)
            r1 = r1.addingProduct(SIMD8(repeating: a1[at]), b0)
            r2 = r2.addingProduct(SIMD8(repeating: a2[at]), b0)
            r3 = r3.addingProduct(SIMD8(repeating: a3[at]), b0)
            r4 = r4.addingProduct(SIMD8(repeating: a4[at]), b0)
            r5 = r5.addingProduct(SIMD8(repeating: a5[at]), b0)
            at += ss; pb += 16
        }
    }

    @inlinable @inline(__always)
    public mutating func add(below t: UnsafePointer<Float>) {
        r0 = load(t) + r0; r1 = load(t + 8) + r1; r2 = load(t + 16) + r2
        r3 = load(t + 24) + r3; r4 = load(t + 32) + r4; r5 = load(t + 40) + r5
    }

    @inlinable @inline(__always)
    public mutating func add(old c: UnsafePointer<Float>, ld: Int) {
        let old = HalfTile(loading: c, ld: ld)
        r0 = old.r0 + r0; r1 = old.r1 + r1; r2 = old.r2 + r2
        r3 = old.r3 + r3; r4 = old.r4 + r4; r5 = old.r5 + r5
    }
}
