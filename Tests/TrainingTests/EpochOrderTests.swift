// The orders of an epoch (data.shuffle) and data.residency: auto's choice.
import Models
@testable import Training
import XCTest

final class EpochOrderTests: XCTestCase {
    func testRowsOrderIsTheSeededPermutation() {
        let order = EpochOrder(count: 1000, kind: .rows, blockRows: 64, window: 4, seed: 7)
        for epoch in [0, 3] {
            let expected = epochOrder(count: 1000, seed: 7, epoch: epoch)
            XCTAssertEqual((0..<1000).map { order.row(epoch: epoch, position: $0) }, expected)
        }
    }

    func testBlocksOrderIsAPermutationWhoseWindowsHoldWholeBlocks() {
        // 1000 rows in blocks of 64: 15 full blocks and one of 40, windows of 4 blocks.
        let order = EpochOrder(count: 1000, kind: .blocks, blockRows: 64, window: 4, seed: 7)
        for epoch in [0, 1] {
            let rows = (0..<1000).map { order.row(epoch: epoch, position: $0) }
            XCTAssertEqual(rows.sorted(), Array(0..<1000), "epoch \(epoch) is not a permutation")
            // Consecutive positions stay within one window of 4 blocks: each window's rows are whole blocks.
            var start = 0, windows = 0, seen = Set<Int>()
            for p in 0..<1000 {
                seen.insert(rows[p] / 64)
                XCTAssertLessThanOrEqual(seen.count, 4, "epoch \(epoch): window \(windows) mixes more than 4 blocks")
                let members = seen.reduce(0) { $0 + min(64, 1000 - $1 * 64) }
                if seen.count == 4 && members == p + 1 - start {
                    XCTAssertEqual(rows[start...p].sorted(), seen.sorted().flatMap { ($0 * 64)..<min(1000, ($0 + 1) * 64) })
                    start = p + 1; windows += 1; seen = []
                }
            }
            XCTAssertEqual(start, 1000)
            XCTAssertEqual(windows, 4)
            XCTAssertNotEqual(rows, Array(0..<1000), "rows were not shuffled")
        }
        let again = EpochOrder(count: 1000, kind: .blocks, blockRows: 64, window: 4, seed: 7)
        XCTAssertEqual((0..<1000).map { again.row(epoch: 1, position: $0) }, (0..<1000).map { order.row(epoch: 1, position: $0) })
        XCTAssertNotEqual((0..<1000).map { order.row(epoch: 0, position: $0) }, (0..<1000).map { order.row(epoch: 1, position: $0) })
    }

    func testAutomaticResidencyFollowsTheMemoryAvailable() throws {
        let root = TrainingTests.root.path
        let config = try RunConfig.load(file: root + "/configs/digits-vae.yaml", overrides: ["data.path=\(root)/data/digits.h5"])
        var estimate = try MemoryEstimate(config: config, perRankBatch: 64)
        let all = estimate.allDataBytes, fixed = estimate.modelBytes + estimate.activationBytes
        XCTAssertGreaterThan(all, 100_000)   // the digits: 1797 rows of 64 bytes
        func choice(available: Int, ranks: Int = 4) -> Residency {
            estimate.residency(.auto, ranks: ranks, ranksOnNode: ranks, blockRows: nil, window: 16, available: available).0
        }
        // Each of 4 ranks gets a quarter; the data and model must fit in half of it.
        XCTAssertEqual(choice(available: 8 * (all + fixed)), .replicated)
        XCTAssertEqual(choice(available: 8 * (all / 4 + fixed) + 64), .sharded)
        XCTAssertEqual(choice(available: 8 * fixed + 64), .streamed)
        XCTAssertEqual(estimate.residency(.sharded, ranks: 4, ranksOnNode: 4, blockRows: nil, window: 16, available: 1).0, .sharded)
        XCTAssertEqual(estimate.dataBytes, (all + 3) / 4)
    }
}
