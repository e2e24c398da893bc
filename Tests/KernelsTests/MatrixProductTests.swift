// Tests of matrixProduct: accuracy against a double-precision reference over odd shapes and strides,
// bitwise invariance to threads and to the other rows of a call, and the reduction-chunk tree. Each
// test runs on every micro-kernel path this CPU supports (InstructionSet), and the paths must agree
// bit for bit.

import XCTest
@testable import Kernels

/// A small deterministic generator (SplitMix64), so failures reproduce.
struct TestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.count))
    }
    mutating func float() -> Float { Float(Double(next() >> 11) / Double(1 << 53) * 2 - 1) }
    mutating func floats(_ count: Int) -> [Float] { (0..<count).map { _ in float() } }
}

/// One product's operands, stored with the given leading dimensions.
struct ProductCase {
    let m: Int, n: Int, k: Int
    let transposeA: Bool, transposeB: Bool
    let lda: Int, ldb: Int, ldc: Int
    var a: [Float], b: [Float], c: [Float]

    init(m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, extra: Int, rng: inout TestRandom) {
        self.m = m; self.n = n; self.k = k
        self.transposeA = transposeA; self.transposeB = transposeB
        let aRows = transposeA ? k : m, aCols = transposeA ? m : k
        let bRows = transposeB ? n : k, bCols = transposeB ? k : n
        lda = max(1, aCols + (extra > 0 ? rng.int(0...extra) : 0))
        ldb = max(1, bCols + (extra > 0 ? rng.int(0...extra) : 0))
        ldc = max(1, n + (extra > 0 ? rng.int(0...extra) : 0))
        a = rng.floats(max(1, aRows * lda))
        b = rng.floats(max(1, bRows * ldb))
        c = rng.floats(max(1, m * ldc))
    }

    func opA(_ i: Int, _ p: Int) -> Float { transposeA ? a[p * lda + i] : a[i * lda + p] }
    func opB(_ p: Int, _ j: Int) -> Float { transposeB ? b[j * ldb + p] : b[p * ldb + j] }

    /// Runs matrixProduct on a copy of c and returns it.
    func run(accumulate: Bool, chunk: Int = 0, pool: ComputePool, rowOffset: Int = 0, rows: Int? = nil) -> [Float] {
        var out = c
        let rows = rows ?? m
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { pc in
                    let aStart = transposeA ? rowOffset : rowOffset * lda
                    matrixProduct(m: rows, n: n, k: k,
                                  a: pa.baseAddress! + aStart, lda: lda, transposeA: transposeA,
                                  b: pb.baseAddress!, ldb: ldb, transposeB: transposeB,
                                  c: pc.baseAddress! + rowOffset * ldc, ldc: ldc,
                                  accumulate: accumulate, reductionChunk: chunk, pool: pool)
                }
            }
        }
        return out
    }
}

/// Pools of 1, 2, 3 and 4 threads running one instruction set's micro-kernels.
struct PathPools {
    let set: InstructionSet
    let one, two, three, four: ComputePool
    init(_ set: InstructionSet) {
        self.set = set
        one = ComputePool(threads: 1, instructionSet: set)
        two = ComputePool(threads: 2, instructionSet: set)
        three = ComputePool(threads: 3, instructionSet: set)
        four = ComputePool(threads: 4, instructionSet: set)
    }
    /// One per path this CPU supports.
    static let all = InstructionSet.supported.map(PathPools.init)
}

final class MatrixProductTests: XCTestCase {

    /// Checks every element against a double-precision reference (and the padding columns untouched).
    func checkAccuracy(_ t: ProductCase, accumulate: Bool, pool: ComputePool, file: StaticString = #filePath, line: UInt = #line) {
        let out = t.run(accumulate: accumulate, pool: pool)
        let tolerance = 1e-5 * Double(max(1, t.k)).squareRoot()
        for i in 0..<t.m {
            for j in 0..<t.ldc {
                let got = Double(out[i * t.ldc + j])
                if j >= t.n {
                    XCTAssertEqual(out[i * t.ldc + j], t.c[i * t.ldc + j], "column past n was written", file: file, line: line)
                    continue
                }
                var sum = accumulate ? Double(t.c[i * t.ldc + j]) : 0
                var magnitude = abs(sum)
                for p in 0..<t.k {
                    let term = Double(t.opA(i, p)) * Double(t.opB(p, j))
                    sum += term
                    magnitude += abs(term)
                }
                if abs(got - sum) > tolerance * max(magnitude, 1e-30) {
                    XCTFail("\(pool.instructionSet) m=\(t.m) n=\(t.n) k=\(t.k) tA=\(t.transposeA) tB=\(t.transposeB) acc=\(accumulate) "
                            + "C[\(i),\(j)] = \(got), expected \(sum)", file: file, line: line)
                    return
                }
            }
        }
    }

    func testAccuracyAllVariantsOddShapes() {
        for pools in PathPools.all {
            var rng = TestRandom(seed: 1)
            let sizes = [1, 2, 3, 5, 6, 7, 13, 16, 17, 31, 33, 47, 70]
            for transposeA in [false, true] {
                for transposeB in [false, true] {
                    for trial in 0..<40 {
                        let m = sizes[rng.int(0...sizes.count - 1)]
                        let n = sizes[rng.int(0...sizes.count - 1)]
                        let k = sizes[rng.int(0...sizes.count - 1)]
                        let t = ProductCase(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB,
                                            extra: trial % 2 == 0 ? 0 : 9, rng: &rng)
                        checkAccuracy(t, accumulate: trial % 3 == 0, pool: trial % 2 == 0 ? pools.one : pools.two)
                    }
                }
            }
        }
    }

    func testAccuracyAcrossBlockBoundaries() {
        for pools in PathPools.all {
            // k past one packed k block, rows past one packed row block, columns past one column strip.
            var rng = TestRandom(seed: 2)
            for (m, n, k) in [(150, 40, 300), (7, 19, 513), (145, 33, 257)] {
                for transposeA in [false, true] {
                    for transposeB in [false, true] {
                        let t = ProductCase(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB,
                                            extra: 5, rng: &rng)
                        checkAccuracy(t, accumulate: transposeA, pool: pools.two)
                    }
                }
            }
        }
    }

    func testZeroK() {
        for pools in PathPools.all {
            var rng = TestRandom(seed: 3)
            let t = ProductCase(m: 3, n: 4, k: 0, transposeA: false, transposeB: false, extra: 2, rng: &rng)
            let kept = t.run(accumulate: true, pool: pools.one)
            XCTAssertEqual(kept, t.c)
            let zeroed = t.run(accumulate: false, pool: pools.one)
            for i in 0..<3 {
                for j in 0..<t.ldc {
                    XCTAssertEqual(zeroed[i * t.ldc + j], j < 4 ? 0 : t.c[i * t.ldc + j])
                }
            }
        }
    }

    func testThreadInvarianceBitwise() {
        for pools in PathPools.all {
            var rng = TestRandom(seed: 4)
                        for (m, n, k) in [(64, 150, 96), (61, 200, 37), (200, 20, 64), (50, 70, 300)] {
                for (transposeA, transposeB) in [(false, false), (true, false), (false, true)] {
                    let t = ProductCase(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB,
                                        extra: 3, rng: &rng)
                    for accumulate in [false, true] {
                        for chunk in [0, k % 16 == 0 ? 16 : 0] {
                            let reference = t.run(accumulate: accumulate, chunk: chunk, pool: pools.one)
                            for pool in [pools.two, pools.three, pools.four] {
                                let out = t.run(accumulate: accumulate, chunk: chunk, pool: pool)
                                XCTAssertTrue(out.elementsEqual(reference, by: { $0.bitPattern == $1.bitPattern }),
                                              "\(pools.set) threads=\(pool.threads) m=\(m) n=\(n) k=\(k) tA=\(transposeA) tB=\(transposeB)")
                            }
                        }
                    }
                }
            }
        }
    }

    func testRowIndependenceBitwise() {
        for pools in PathPools.all {
            var rng = TestRandom(seed: 5)
            for (transposeA, transposeB) in [(false, false), (true, false), (false, true), (true, true)] {
                let t = ProductCase(m: 40, n: 37, k: 300, transposeA: transposeA, transposeB: transposeB,
                                    extra: 3, rng: &rng)
                let whole = t.run(accumulate: true, pool: pools.two)
                for row in [0, 5, 6, 17, 39] {
                    let single = t.run(accumulate: true, pool: pools.one, rowOffset: row, rows: 1)
                    for j in 0..<t.n {
                        XCTAssertEqual(single[row * t.ldc + j].bitPattern, whole[row * t.ldc + j].bitPattern,
                                       "row \(row) col \(j) tA=\(transposeA) tB=\(transposeB)")
                    }
                }
                // And a slice of rows in the middle.
                let slice = t.run(accumulate: true, pool: pools.one, rowOffset: 7, rows: 11)
                for i in 7..<18 {
                    for j in 0..<t.n {
                        XCTAssertEqual(slice[i * t.ldc + j].bitPattern, whole[i * t.ldc + j].bitPattern)
                    }
                }
            }
        }
    }

    /// The reduction-chunk product equals separate chunk products combined with PairwiseTree.combine.
    func testReductionChunkMatchesSeparateChunksAndTree() {
        for pools in PathPools.all {
            var rng = TestRandom(seed: 6)
            // n = 20, 40 and 1 read A in place (wide and 8-wide tiles) on the AVX-512 path, the partial
            // last strip packed; the others (16-wide tiles, or n > 64) pack A.
            let shapes: [(Int, Int, Bool, Bool)] = [(37, 45, true, false), (6, 16, true, false),
                                                    (13, 70, false, false), (20, 9, false, true), (1, 1, true, true),
                                                    (37, 20, true, false), (25, 40, false, true), (19, 1, false, false)]
            for (m, n, transposeA, transposeB) in shapes {
                for chunks in [1, 2, 3, 4, 5, 8] {
                    // 260: a chunk longer than the plain product's k block.
                    // 260 and 140 with two or more chunks: k past 512, long chunks, run chunk by chunk.
                    for chunk in [1, 7, 16] + (m * n <= 100 && chunks <= 3 ? [260] : []) + (chunks >= 4 && chunks <= 5 ? [140] : []) {
                        let k = chunks * chunk
                        let t = ProductCase(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB,
                                            extra: 4, rng: &rng)
                        // Separate calls, one per chunk, into back-to-back leaves of m × n.
                        var leaves = [Float](repeating: 0, count: chunks * m * n)
                        t.a.withUnsafeBufferPointer { pa in
                            t.b.withUnsafeBufferPointer { pb in
                                leaves.withUnsafeMutableBufferPointer { pl in
                                    for q in 0..<chunks {
                                        let aStart = transposeA ? q * chunk * t.lda : q * chunk
                                        let bStart = transposeB ? q * chunk : q * chunk * t.ldb
                                        matrixProduct(m: m, n: n, k: chunk,
                                                      a: pa.baseAddress! + aStart, lda: t.lda, transposeA: transposeA,
                                                      b: pb.baseAddress! + bStart, ldb: t.ldb, transposeB: transposeB,
                                                      c: pl.baseAddress! + q * m * n, ldc: n,
                                                      accumulate: false, pool: pools.one)
                                    }
                                }
                            }
                        }
                        var tree = [Float](repeating: 0, count: m * n)
                        var scratch = [Float](repeating: 0, count: PairwiseTree.scratchCount(leaves: chunks) * m * n)
                        leaves.withUnsafeBufferPointer { pl in
                            tree.withUnsafeMutableBufferPointer { pt in
                                scratch.withUnsafeMutableBufferPointer { ps in
                                    PairwiseTree.combine(leaves: pl.baseAddress!, count: chunks, length: m * n,
                                                         into: pt.baseAddress!, scratch: ps.baseAddress!)
                                }
                            }
                        }
                        for accumulate in [false, true] {
                            let pool = accumulate ? pools.two : pools.one
                            let out = t.run(accumulate: accumulate, chunk: chunk, pool: pool)
                            var mismatch = 0
                            for i in 0..<m {
                                for j in 0..<t.ldc {
                                    let old = t.c[i * t.ldc + j]
                                    let expected = j >= n ? old : (accumulate ? old + tree[i * n + j] : tree[i * n + j])
                                    if out[i * t.ldc + j].bitPattern != expected.bitPattern { mismatch += 1 }
                                }
                            }
                            XCTAssertEqual(mismatch, 0, "m=\(m) n=\(n) chunks=\(chunks) chunk=\(chunk) acc=\(accumulate)")
                        }
                        // With several chunks, the tree differs from the plain chain somewhere (the test can see the tree).
                        if chunks >= 3 && chunk == 16 && m * n > 100 {
                            let plain = t.run(accumulate: false, pool: pools.one)
                            XCTAssertFalse(plain.elementsEqual(t.run(accumulate: false, chunk: chunk, pool: pools.one)),
                                           "chunked product is bitwise the plain chain: tree not applied?")
                        }
                    }
                }
            }
        }
    }

    func testTrainingShapesAgainstReference() {
        for pools in PathPools.all {
            // The three training products at a small batch: forward X·Wᵀ, input gradient dY·W, weight gradient dYᵀ·X.
            var rng = TestRandom(seed: 7)
            let batch = 32, input = 50, output = 40
            let forward = ProductCase(m: batch, n: output, k: input, transposeA: false, transposeB: true, extra: 0, rng: &rng)
            checkAccuracy(forward, accumulate: false, pool: pools.two)
            let inputGradient = ProductCase(m: batch, n: input, k: output, transposeA: false, transposeB: false, extra: 0, rng: &rng)
            checkAccuracy(inputGradient, accumulate: false, pool: pools.two)
            let weightGradient = ProductCase(m: output, n: input, k: batch, transposeA: true, transposeB: false, extra: 0, rng: &rng)
            checkAccuracy(weightGradient, accumulate: true, pool: pools.two)
        }
    }

    func testBusyPoolGivesSameBits() {
        for pools in PathPools.all {
            // A nested call (from inside parallelFor on the same pool) falls back and computes the same bits.
            var rng = TestRandom(seed: 8)
            let t = ProductCase(m: 30, n: 50, k: 40, transposeA: false, transposeB: true, extra: 2, rng: &rng)
            let reference = t.run(accumulate: false, pool: pools.two)
            var results = [[Float]](repeating: [], count: 2)
            results.withUnsafeMutableBufferPointer { r in
                let out = r.baseAddress!
                pools.two.parallelFor(2) { i in
                    out[i] = t.run(accumulate: false, pool: pools.two)
                }
            }
            for out in results {
                XCTAssertTrue(out.elementsEqual(reference, by: { $0.bitPattern == $1.bitPattern }))
            }
        }
    }

    /// Every path gives the same bits, on shapes that use each tile: 32-wide (n ≥ 24 left in a panel),
    /// 16-wide, 8-wide edges, bottom-edge rows, k past one block, several column panels, and the chunk tree.
    func testPathsAgreeBitwise() {
        print("micro-kernel paths on this CPU: \(InstructionSet.supported.map(\.rawValue))")
        var rng = TestRandom(seed: 9)
        let shapes = [(13, 24, 40), (6, 32, 7), (29, 33, 300), (61, 70, 64), (7, 100, 17), (128, 20, 64),
                      (17, 520, 33), (40, 2100, 16), (13, 56, 48)]   // 56: a full and a partial 32-wide tile
        for (m, n, k) in shapes {
            for (transposeA, transposeB) in [(false, false), (true, false), (false, true), (true, true)] {
                let t = ProductCase(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, extra: 3, rng: &rng)
                for accumulate in [false, true] {
                    for chunk in [0] + (k % 16 == 0 ? [16] : []) {
                        let reference = t.run(accumulate: accumulate, chunk: chunk, pool: PathPools.all[0].one)
                        for pools in PathPools.all.dropFirst() {
                            for pool in [pools.one, pools.three] {
                                let out = t.run(accumulate: accumulate, chunk: chunk, pool: pool)
                                XCTAssertTrue(out.elementsEqual(reference, by: { $0.bitPattern == $1.bitPattern }),
                                              "\(pools.set) differs from \(PathPools.all[0].set): m=\(m) n=\(n) k=\(k) "
                                              + "tA=\(transposeA) tB=\(transposeB) acc=\(accumulate) chunk=\(chunk)")
                            }
                        }
                    }
                }
            }
        }
    }

    func testInstructionSetChoice() throws {
        let key = InstructionSet.environmentKey
        XCTAssertEqual(try InstructionSet.chosen(environment: [:]), InstructionSet.best)
        XCTAssertEqual(try InstructionSet.chosen(environment: [key: "auto"]), InstructionSet.best)
        XCTAssertEqual(try InstructionSet.chosen(environment: [key: "portable"]), .portable)
        XCTAssertThrowsError(try InstructionSet.chosen(environment: [key: "sse9"])) { error in
            XCTAssertTrue("\(error)".contains("AEDIST_KERNELS=sse9 is not one of"), "\(error)")
        }
        for set in InstructionSet.allCases where !InstructionSet.supported.contains(set) {
            XCTAssertThrowsError(try InstructionSet.chosen(environment: [key: set.rawValue]))
        }
        XCTAssertEqual(InstructionSet.supported.first, .portable)
        #if arch(x86_64)
        // This package's x86-64 build needs AVX2 (CPUFeatures stops the process without it).
        XCTAssertTrue(InstructionSet.supported.contains(.avx2))
        #endif
    }
}
