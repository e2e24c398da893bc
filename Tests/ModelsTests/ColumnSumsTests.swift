// columnSums (Elementwise.swift): sequential sums over each chunk of rows, combined with the
// binary-counter pairwise tree, compared bitwise with a naive implementation of that grouping.

import XCTest
import Kernels
@testable import Models

final class ColumnSumsTests: XCTestCase {
    /// The pairwise tree of docs/determinism.md, written naively: push each leaf with its count, merge the
    /// two topmost while their counts are equal (left + right), then fold from the top (below + acc).
    func naiveTree(_ leaves: [[Float]]) -> [Float] {
        var stack: [(sum: [Float], count: Int)] = []
        for leaf in leaves {
            stack.append((leaf, 1))
            while stack.count >= 2 && stack[stack.count - 1].count == stack[stack.count - 2].count {
                let right = stack.removeLast(), left = stack.removeLast()
                stack.append((zip(left.sum, right.sum).map { $0 + $1 }, left.count + right.count))
            }
        }
        var acc = stack.removeLast().sum
        while let below = stack.popLast() { acc = zip(below.sum, acc).map { $0 + $1 } }
        return acc
    }

    func columnSumsOf(_ x: [Float], rows: Int, columns: Int, chunk: Int) -> [Float] {
        var out = [Float](repeating: .nan, count: columns)
        var scratch = [Float](repeating: .nan, count: columnSumsScratchCount(rows: rows, columns: columns, chunk: chunk))
        out.withUnsafeMutableBufferPointer { o in
            scratch.withUnsafeMutableBufferPointer { s in
                columnSums(x, rows: rows, columns: columns, chunk: chunk, into: o.baseAddress!, scratch: s.baseAddress!)
            }
        }
        return out
    }

    /// Values of widely different sizes, so that every regrouping of a sum changes its bits.
    func values(_ count: Int, seed: UInt64) -> [Float] {
        let key = RandomKey(seed: seed, stream: .evaluation)
        return (0..<count).map { i in
            let u = key.uniform(UInt64(2 * i)), e = key.below(20, UInt64(2 * i + 1))
            return (2 * u - 1) * Float(1 << e)
        }
    }

    func testAgainstNaivePairwiseTree() {
        let columns = 11
        for chunk in [1, 2, 3, 4] {
            for leaves in [1, 2, 3, 5, 6, 8, 13] {
                let rows = chunk * leaves
                let x = values(rows * columns, seed: UInt64(chunk * 100 + leaves))
                var chunkSums: [[Float]] = []
                for l in 0..<leaves {
                    var s = [Float](repeating: 0, count: columns)
                    for r in (l * chunk)..<((l + 1) * chunk) { for c in 0..<columns { s[c] += x[r * columns + c] } }
                    chunkSums.append(s)
                }
                let expected = naiveTree(chunkSums)
                let got = columnSumsOf(x, rows: rows, columns: columns, chunk: chunk)
                XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern), "chunk \(chunk) leaves \(leaves)")
            }
        }
    }

    func testGroupingIsTheTreeNotSequential() {
        // Five chunks of one row: ((a+b)+(c+d))+e. With a = 2^24, b = c = d = 1, e = 0 the sequential
        // sum loses every 1 (2^24) while the tree keeps c + d (2^24 + 2).
        let x: [Float] = [16_777_216, 1, 1, 1, 0]
        XCTAssertEqual(columnSumsOf(x, rows: 5, columns: 1, chunk: 1), [16_777_218])
        // Three chunks: (a+b)+c.
        XCTAssertEqual(columnSumsOf([1, 16_777_216, 1], rows: 3, columns: 1, chunk: 1), [16_777_216])
        XCTAssertEqual(naiveTree([[1], [16_777_216], [1]]), [16_777_216])
        // One chunk of five rows is one sequential sum.
        XCTAssertEqual(columnSumsOf(x, rows: 5, columns: 1, chunk: 5), [16_777_216])
        // Many columns, one row per chunk: each column on its own.
        let wide: [Float] = (0..<(3 * 40)).map { (i: Int) -> Float in Float(i % 40) + Float(i / 40) * 0.5 }
        let sums = columnSumsOf(wide, rows: 3, columns: 40, chunk: 1)
        for c in 0..<40 { let expected: Float = 3 * Float(c) + 1.5; XCTAssertEqual(sums[c], expected) }
    }

    func testScratchCountIsEnough() {
        // Scratch floats beyond the documented count must not be touched.
        let rows = 12, columns = 5, chunk = 2
        let x = values(rows * columns, seed: 4)
        let count = columnSumsScratchCount(rows: rows, columns: columns, chunk: chunk)
        XCTAssertGreaterThanOrEqual(count, (6 + PairwiseTree.scratchCount(leaves: 6)) * columns)
        var scratch = [Float](repeating: -1, count: count + 16)
        var out = [Float](repeating: 0, count: columns)
        out.withUnsafeMutableBufferPointer { o in
            scratch.withUnsafeMutableBufferPointer { s in
                columnSums(x, rows: rows, columns: columns, chunk: chunk, into: o.baseAddress!, scratch: s.baseAddress!)
            }
        }
        XCTAssertEqual(Array(scratch[count...]), [Float](repeating: -1, count: 16))
    }
}
