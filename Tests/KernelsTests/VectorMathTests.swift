// VectorMath (the 8-wide exp, log1p, sigmoid, tanh of the element-wise passes) against Double, and the
// persistent worker team of ComputePool.
import Foundation
import XCTest
@testable import Kernels

final class VectorMathTests: XCTestCase {
    /// Largest error in units of the last place of the Float result, over `inputs`.
    func maxUlpError(_ inputs: [Float], _ f: (SIMD8<Float>) -> SIMD8<Float>, _ reference: (Double) -> Double) -> Double {
        var worst = 0.0
        var i = 0
        while i < inputs.count {
            var v = SIMD8<Float>(repeating: inputs[i])
            for l in 0..<8 where i + l < inputs.count { v[l] = inputs[i + l] }
            let y = f(v)
            for l in 0..<8 where i + l < inputs.count {
                let exact = reference(Double(v[l]))
                let ulp = Double(Float(exact).ulp)
                if ulp > 0 && exact.isFinite { worst = max(worst, abs(Double(y[l]) - exact) / ulp) }
            }
            i += 8
        }
        return worst
    }

    func grid(_ lo: Float, _ hi: Float, _ n: Int) -> [Float] {
        (0...n).map { lo + (hi - lo) * Float($0) / Float(n) }
    }

    func testExpWithinTwoUlp() {
        let inputs = grid(-87, 88, 200_000) + [0, -0.0, 1, -1, 1e-8, -1e-8, 0.5 * Float(M_LN2), -0.5 * Float(M_LN2)]
        XCTAssertLessThanOrEqual(maxUlpError(inputs, VectorMath.exp, Foundation.exp), 2)
        XCTAssertEqual(VectorMath.exp(SIMD8(repeating: 0))[0], 1)
        // Clamped far below: a tiny positive number, never 0, NaN or negative.
        let tiny = VectorMath.exp(SIMD8(repeating: -1000))[0]
        XCTAssert(tiny > 0 && tiny < 2e-38)
        XCTAssert(VectorMath.exp(SIMD8(repeating: 88.7))[0].isFinite)
    }

    func testLog1pOnUnitIntervalWithinTwoUlp() {
        let inputs = grid(0, 1, 200_000) + [1e-30, 1e-20, 1e-10, 6e-8, 1e-4]
        XCTAssertLessThanOrEqual(maxUlpError(inputs, VectorMath.log1pUnit, Foundation.log1p), 2)
        XCTAssertEqual(VectorMath.log1pUnit(SIMD8(repeating: 0))[0], 0)
    }

    func testSigmoidAndTanh() {
        let inputs = grid(-40, 40, 100_000) + [0, 1e-6, -1e-6, 0.2499, 0.25, 0.2501, -0.25]
        XCTAssertLessThanOrEqual(maxUlpError(inputs, VectorMath.sigmoid, { 1 / (1 + Foundation.exp(-$0)) }), 3)
        XCTAssertLessThanOrEqual(maxUlpError(inputs, VectorMath.tanh, Foundation.tanh), 3)
        let t = VectorMath.tanh(SIMD8(-100, -1, -0.0, 0, 1e-3, 0.3, 5, 100))
        XCTAssertEqual(t[0], -1); XCTAssertEqual(t[7], 1)
        XCTAssertEqual(t[2].sign, .minus); XCTAssertEqual(t[3], 0)
    }

    func testLaneSumOrder() {
        let v = SIMD8<Float>(1e8, 1, -1e8, 1, 3, 5, 7, 9)
        let expected = ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
        XCTAssertEqual(VectorMath.laneSum(v).bitPattern, expected.bitPattern)
    }

    func testParallelForRunsEveryItemOnceManyTimes() {
        for threads in [2, 3, 4] {
            let pool = ComputePool(threads: threads)
            let counts = UnsafeMutablePointer<Int>.allocate(capacity: 64)
            defer { counts.deallocate() }
            for round in 0..<2000 {
                let n = 1 + round % 40
                counts.initialize(repeating: 0, count: 64)
                pool.parallelFor(n) { i in counts[i] += 1 }
                for i in 0..<n where counts[i] != 1 {
                    XCTFail("threads \(threads) round \(round): item \(i) ran \(counts[i]) times"); return
                }
                if round % 500 == 0 { usleep(200) }   // let the workers fall asleep sometimes
            }
            // Nested: the inner loop runs inline and completes.
            var inner = [Int](repeating: 0, count: 8)
            inner.withUnsafeMutableBufferPointer { buf in
                let p = buf.baseAddress!
                pool.parallelFor(2) { i in pool.parallelFor(4) { j in p[i * 4 + j] = 1 } }
            }
            XCTAssertEqual(inner, [Int](repeating: 1, count: 8))
        }
    }
}
