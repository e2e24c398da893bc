// Tests of PairwiseTree: the grouping on hand-made values, combine against sum, and ComputePool.parallelFor.

import XCTest
@testable import Kernels

final class PairwiseTreeTests: XCTestCase {
    func combine(_ leaves: [Float], length: Int) -> [Float] {
        let count = leaves.count / length
        var result = [Float](repeating: .nan, count: length)
        var scratch = [Float](repeating: .nan, count: max(1, PairwiseTree.scratchCount(leaves: count) * length))
        leaves.withUnsafeBufferPointer { l in
            result.withUnsafeMutableBufferPointer { r in
                scratch.withUnsafeMutableBufferPointer { s in
                    PairwiseTree.combine(leaves: l.baseAddress!, count: count, length: length,
                                         into: r.baseAddress!, scratch: s.baseAddress!)
                }
            }
        }
        return result
    }

    func testScratchCount() {
        XCTAssertEqual(PairwiseTree.scratchCount(leaves: 0), 0)
        XCTAssertEqual(PairwiseTree.scratchCount(leaves: 1), 1)
        XCTAssertEqual(PairwiseTree.scratchCount(leaves: 2), 2)
        XCTAssertEqual(PairwiseTree.scratchCount(leaves: 3), 2)
        XCTAssertEqual(PairwiseTree.scratchCount(leaves: 7), 3)
        XCTAssertEqual(PairwiseTree.scratchCount(leaves: 8), 4)
    }

    func testGroupingOfFiveLeaves() {
        // Five leaves group as ((a+b)+(c+d))+e. With a = 2^24, b = c = d = 1, e = 0:
        // sequential ((((a+b)+c)+d)+e) loses each 1 (ties to even) and gives 2^24;
        // the tree gives a+b = 2^24, c+d = 2, 2^24 + 2 = 16777218.
        let a: Float = 16_777_216
        let values: [Float] = [a, 1, 1, 1, 0]
        let sequential = values.reduce(0, +)
        XCTAssertEqual(sequential, 16_777_216)
        XCTAssertEqual(combine(values, length: 1), [16_777_218])
        values.withUnsafeBufferPointer { XCTAssertEqual(PairwiseTree.sum($0), 16_777_218) }
    }

    func testGroupingOfThreeLeavesFoldsFromTheTop() {
        // Three leaves: stack [(a+b), c], fold gives (a+b) + c, not a + (b+c).
        // a = 1, b = 2^-24, c = 2^-24: (1 + 2^-24) = 1 (ties to even), + 2^-24 = 1; a + (b + c) = 1 + 2^-23.
        let tiny = Float(sign: .plus, exponent: -24, significand: 1)
        let values: [Float] = [1, tiny, tiny]
        XCTAssertEqual(combine(values, length: 1), [1])
        values.withUnsafeBufferPointer { XCTAssertEqual(PairwiseTree.sum($0), 1) }
        // Six leaves: stack [(a+b)+(c+d), (e+f)], fold = ((a+b)+(c+d)) + (e+f).
        let six: [Float] = [1, tiny, 0, 0, tiny, tiny]
        // (1+tiny) = 1; (0+0) = 0; 1 + 0 = 1; (tiny + tiny) = 2^-23; 1 + 2^-23 exactly representable.
        XCTAssertEqual(combine(six, length: 1), [1 + 2 * tiny])
    }

    func testCombineIsElementwiseSum() {
        // Vectors long enough for the SIMD path, a tail, and more than one segment; every leaf count 0...17.
        var rng = TestRandom(seed: 11)
        for length in [1, 7, 8, 19, 2048 + 13] {
            for count in 0...17 {
                let leaves = rng.floats(count * length).map { $0 * Float(1 << rng.int(0...20)) }
                let result = combine(leaves, length: length)
                for e in Swift.stride(from: 0, to: length, by: max(1, length / 50)) {
                    let column = (0..<count).map { leaves[$0 * length + e] }
                    let expected = column.withUnsafeBufferPointer { PairwiseTree.sum($0) }
                    XCTAssertEqual(result[e].bitPattern, expected.bitPattern,
                                   "length \(length) count \(count) element \(e)")
                }
            }
        }
    }

    func testStridedLeavesWithTheResultInOneOfThem() {
        // How the shared-memory reduction folds: leaf j lies one rank's slot (`stride`) after leaf j-1,
        // and the result overwrites the folding rank's own leaf. Same bits as back-to-back leaves.
        var rng = TestRandom(seed: 13)
        for (length, count) in [(1, 2), (19, 2), (2048 + 13, 3), (100, 5), (4100, 8)] {
            let stride = length + 37
            var slots = rng.floats(count * stride).map { $0 * Float(1 << rng.int(0...20)) }
            let packed = (0..<count).flatMap { Array(slots[($0 * stride)..<($0 * stride + length)]) }
            let expected = combine(packed, length: length)
            for mine in Set([0, count - 1]) {
                var copy = slots
                var scratch = [Float](repeating: .nan, count: PairwiseTree.scratchCount(leaves: count) * length)
                copy.withUnsafeMutableBufferPointer { c in
                    scratch.withUnsafeMutableBufferPointer { s in
                        PairwiseTree.combine(leaves: c.baseAddress!, count: count, length: length, stride: stride,
                                             into: c.baseAddress! + mine * stride, scratch: s.baseAddress!)
                    }
                }
                XCTAssertEqual(copy[(mine * stride)..<(mine * stride + length)].map(\.bitPattern), expected.map(\.bitPattern),
                               "length \(length) count \(count) result in leaf \(mine)")
                // Nothing outside the result moved.
                copy.replaceSubrange((mine * stride)..<(mine * stride + length), with: slots[(mine * stride)..<(mine * stride + length)])
                XCTAssertEqual(copy.map(\.bitPattern), slots.map(\.bitPattern))
            }
            slots.removeAll()
        }
    }

    func testSumMatchesExplicitTree() {
        // Eleven leaves: ((((0+1)+(2+3))+((4+5)+(6+7))) + ((8+9) + 10)), folded from the top.
        var rng = TestRandom(seed: 12)
        let v = rng.floats(11).map { $0 * Float(1 << rng.int(0...24)) }
        let top = (v[8] + v[9]) + v[10]
        let expected = (((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]))) + top
        v.withUnsafeBufferPointer { XCTAssertEqual(PairwiseTree.sum($0).bitPattern, expected.bitPattern) }
        XCTAssertEqual(combine(v, length: 1)[0].bitPattern, expected.bitPattern)
    }

    func testParallelForRunsEveryIndexOnce() {
        for threads in [1, 2, 3] {
            let pool = ComputePool(threads: threads)
            for count in [0, 1, 2, 7] {
                var hits = [Int](repeating: 0, count: count)
                hits.withUnsafeMutableBufferPointer { h in
                    let p = h.baseAddress
                    pool.parallelFor(count) { i in p![i] += 1 }
                }
                XCTAssertEqual(hits, [Int](repeating: 1, count: count))
            }
        }
    }
}
