// Tests of the counter-based random numbers (RandomKey) and the epoch order.

import XCTest
@testable import Models

final class RandomNumberTests: XCTestCase {
    func testUniformMomentsAndRange() {
        let key = RandomKey(seed: 42, stream: .evaluation, 7)
        let n = 100_000
        var sum = 0.0, sumSq = 0.0
        var lo: Float = 1, hi: Float = 0
        var histogram = [Int](repeating: 0, count: 10)
        for i in 0..<n {
            let u = key.uniform(UInt64(i))
            XCTAssert(u >= 0 && u < 1, "uniform(\(i)) = \(u) is outside [0, 1)")
            lo = min(lo, u); hi = max(hi, u)
            sum += Double(u); sumSq += Double(u) * Double(u)
            histogram[min(9, Int(u * 10))] += 1
        }
        let mean = sum / Double(n), variance = sumSq / Double(n) - mean * mean
        // Standard error of the mean: sqrt(1/12 / n) ≈ 0.0009; of the variance ≈ 0.0003.
        XCTAssertEqual(mean, 0.5, accuracy: 0.005)
        XCTAssertEqual(variance, 1.0 / 12.0, accuracy: 0.002)
        XCTAssertLessThan(lo, 1e-3)
        XCTAssertGreaterThan(hi, 1 - 1e-3)
        // Each decile holds 10% ± 5 sigma (sigma = sqrt(n · 0.09) ≈ 95).
        for (d, count) in histogram.enumerated() {
            XCTAssertEqual(Double(count), Double(n) / 10, accuracy: 500, "decile \(d)")
        }
    }

    func testUniformOpenIsInHalfOpenIntervalAboveZero() {
        let key = RandomKey(seed: 3, stream: .sampling)
        for i in 0..<20_000 {
            let u = key.uniformOpen(UInt64(i))
            XCTAssert(u > 0 && u <= 1)
            XCTAssertEqual(u, key.uniform(UInt64(i)) + 0x1p-24)
        }
    }

    func testNormalMoments() {
        let key = RandomKey(seed: 1234, stream: .latentNoise, 99)
        let n = 100_000
        var sum = 0.0, sumSq = 0.0, sum3 = 0.0, sum4 = 0.0, beyond2 = 0
        for i in 0..<n {
            let x = Double(key.normal(UInt64(i)))
            XCTAssert(x.isFinite)
            sum += x; sumSq += x * x; sum3 += x * x * x; sum4 += x * x * x * x
            if abs(x) > 2 { beyond2 += 1 }
        }
        let mean = sum / Double(n), variance = sumSq / Double(n) - mean * mean
        XCTAssertEqual(mean, 0, accuracy: 0.015)        // se ≈ 0.0032
        XCTAssertEqual(variance, 1, accuracy: 0.02)     // se ≈ 0.0045
        XCTAssertEqual(sum3 / Double(n), 0, accuracy: 0.05)    // skewness, se ≈ 0.008
        XCTAssertEqual(sum4 / Double(n), 3, accuracy: 0.1)     // kurtosis, se ≈ 0.03
        // P(|x| > 2) = 0.0455.
        XCTAssertEqual(Double(beyond2) / Double(n), 0.0455, accuracy: 0.004)
    }

    /// Pearson correlation of two sequences.
    private func correlation(_ a: [Double], _ b: [Double]) -> Double {
        let n = Double(a.count)
        let ma = a.reduce(0, +) / n, mb = b.reduce(0, +) / n
        var sab = 0.0, saa = 0.0, sbb = 0.0
        for i in 0..<a.count {
            sab += (a[i] - ma) * (b[i] - mb); saa += (a[i] - ma) * (a[i] - ma); sbb += (b[i] - mb) * (b[i] - mb)
        }
        return sab / (saa * sbb).squareRoot()
    }

    func testStreamsKeysAndCountersAreUncorrelated() {
        let n = 50_000
        func draws(_ key: RandomKey, offset: UInt64 = 0) -> [Double] {
            (0..<n).map { Double(key.uniform(UInt64($0) + offset)) }
        }
        let base = draws(RandomKey(seed: 5, stream: .latentNoise, 0))
        let others: [(String, [Double])] = [
            ("other stream", draws(RandomKey(seed: 5, stream: .inputNoise, 0))),
            ("next sample", draws(RandomKey(seed: 5, stream: .latentNoise, 1))),
            ("second counter b", draws(RandomKey(seed: 5, stream: .latentNoise, 0, 1))),
            ("next seed", draws(RandomKey(seed: 6, stream: .latentNoise, 0))),
            ("shifted counter", draws(RandomKey(seed: 5, stream: .latentNoise, 0), offset: 1)),
        ]
        // |r| of independent sequences: se = 1/sqrt(n) ≈ 0.0045.
        for (name, d) in others {
            XCTAssertNotEqual(d, base, name)
            XCTAssertLessThan(abs(correlation(base, d)), 0.025, name)
        }
        // Normal draws: consecutive counters and neighbouring samples are uncorrelated, in value and in size.
        let key = RandomKey(seed: 9, stream: .latentNoise)
        let normals = (0..<(n + 1)).map { Double(key.normal(UInt64($0))) }
        let nextSample = (0..<n).map { Double(RandomKey(seed: 9, stream: .latentNoise, 1).normal(UInt64($0))) }
        let current = Array(normals.prefix(n)), next = Array(normals.suffix(n))
        XCTAssertLessThan(abs(correlation(current, next)), 0.025)
        XCTAssertLessThan(abs(correlation(current, nextSample)), 0.025)
        XCTAssertLessThan(abs(correlation(current.map { $0 * $0 }, next.map { $0 * $0 })), 0.025)
        XCTAssertLessThan(abs(correlation(current.map { $0 * $0 }, nextSample.map { $0 * $0 })), 0.025)
    }

    func testDrawsArePureFunctionsOfKeyAndCounter() {
        let a = RandomKey(seed: 77, stream: .dataOrder, 3, 4)
        let b = RandomKey(seed: 77, stream: .dataOrder, 3, 4)
        XCTAssertEqual(a.bits, b.bits)
        for i in [0, 1, 17, 1 << 40] as [UInt64] {
            XCTAssertEqual(a.raw(i), b.raw(i))
            XCTAssertEqual(a.normal(i), b.normal(i))
        }
        XCTAssertNotEqual(RandomKey(seed: 77, stream: .dataOrder, 3, 4).bits, RandomKey(seed: 77, stream: .dataOrder, 4, 3).bits)
        XCTAssertNotEqual(RandomKey(seed: 77, stream: .dataOrder).bits, RandomKey(seed: 77, stream: .sampling).bits)
    }

    func testBelowIsUniformOverItsRange() {
        let key = RandomKey(seed: 11, stream: .dataOrder)
        var counts = [Int](repeating: 0, count: 7)
        for i in 0..<70_000 {
            let v = key.below(7, UInt64(i))
            XCTAssert((0..<7).contains(v))
            counts[v] += 1
        }
        for c in counts { XCTAssertEqual(Double(c), 10_000, accuracy: 500) }   // sigma ≈ 93
    }

    func testEpochOrderIsAReproduciblePermutation() {
        for count in [0, 1, 2, 3, 10, 1000] {
            let order = epochOrder(count: count, seed: 2024, epoch: 0)
            XCTAssertEqual(order.sorted(), Array(0..<count), "count \(count)")
            XCTAssertEqual(order, epochOrder(count: count, seed: 2024, epoch: 0))
        }
        let e0 = epochOrder(count: 1000, seed: 2024, epoch: 0)
        let e1 = epochOrder(count: 1000, seed: 2024, epoch: 1)
        let otherSeed = epochOrder(count: 1000, seed: 2025, epoch: 0)
        XCTAssertNotEqual(e0, e1)
        XCTAssertNotEqual(e0, otherSeed)
        XCTAssertNotEqual(e0, Array(0..<1000))
        // A random permutation has about one fixed point; not the identity, not a rotation.
        XCTAssertLessThan(zip(e0, e1).filter { $0 == $1 }.count, 10)
        XCTAssertLessThan(e0.enumerated().filter { $0.offset == $0.element }.count, 10)
    }

    func testEpochOrderIsUnbiased() {
        // Over many epochs, every element lands in every position about equally often.
        let count = 5, epochs = 20_000
        var position = [[Int]](repeating: [Int](repeating: 0, count: count), count: count)
        for e in 0..<epochs {
            for (pos, element) in epochOrder(count: count, seed: 1, epoch: e).enumerated() {
                position[element][pos] += 1
            }
        }
        // Expected 4000 each, sigma ≈ 57.
        for row in position { for c in row { XCTAssertEqual(Double(c), 4000, accuracy: 300) } }
    }
}
