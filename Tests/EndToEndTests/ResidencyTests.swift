// data.residency never changes results: every residency at every rank count, both epoch orders,
// and a run stopped while streamed that resumes sharded at another rank count.
import Foundation
import XCTest

final class ResidencyTests: XCTestCase {
    /// 60 steps of batch 32 cross the first epoch's end; blocks of 100 rows in windows of 3 make
    /// `shuffle: blocks` differ from `rows` on the digits' train split.
    static let order = ["--set", "data.block_rows=100", "--set", "data.shuffle_window=3"]

    func train(np: Int, residency: String, shuffle: String, steps: Int = 60, runDirectory: URL? = nil,
               resume: String = "never") throws -> (parameters: [String: [Float]], result: LaunchResult) {
        let dir = runDirectory ?? Launcher.temporaryDirectory("residency-\(residency)-\(shuffle)-\(np)")
        defer { if runDirectory == nil { try? FileManager.default.removeItem(at: dir) } }
        let result = try Launcher.run(smallRun + Self.order
                                      + ["--set", "train.max_steps=\(steps)", "--set", "data.residency=\(residency)",
                                         "--set", "data.shuffle=\(shuffle)", "--run-dir", dir.path, "--threads", "1",
                                         "--resume", resume],
                                      mpi: Launcher.mpirun(np), timeout: 120)
        XCTAssertFalse(result.timedOut, "\(residency) \(shuffle) np=\(np) timed out")
        XCTAssertEqual(result.status, 0, "\(residency) \(shuffle) np=\(np): \(result.stderr)")
        let summary = try XCTUnwrap(result.summary, "no summary: \(result.stdout) \(result.stderr)")
        XCTAssertEqual(summary["step"] as? Int, steps)
        return (try modelTensors(try XCTUnwrap(summary["checkpoint"] as? String)), result)
    }

    func testEveryResidencyAtOneTwoAndFourRanksTrainsTheSameBits() throws {
        let reference = try train(np: 1, residency: "replicated", shuffle: "rows").parameters
        XCTAssertFalse(reference.isEmpty)
        for residency in ["replicated", "sharded", "streamed"] {
            for np in [1, 2, 4] where !(residency == "replicated" && np == 1) {
                let (p, result) = try train(np: np, residency: residency, shuffle: "rows")
                XCTAssertTrue(result.stdout.contains("aedist: data \(residency) (as configured)"), result.stdout)
                XCTAssertTrue(bitwiseEqual(reference, p), "\(residency) at np=\(np) differs from replicated at np=1")
            }
        }
    }

    func testStreamedEqualsReplicatedInBothOrdersAndTheOrdersDiffer() throws {
        let rows = try train(np: 2, residency: "replicated", shuffle: "rows").parameters
        let blocks = try train(np: 2, residency: "replicated", shuffle: "blocks").parameters
        XCTAssertFalse(bitwiseEqual(rows, blocks), "shuffle: blocks trained the same bits as rows: the order did not change")
        XCTAssertTrue(bitwiseEqual(rows, try train(np: 2, residency: "streamed", shuffle: "rows").parameters))
        XCTAssertTrue(bitwiseEqual(blocks, try train(np: 2, residency: "streamed", shuffle: "blocks").parameters))
        XCTAssertTrue(bitwiseEqual(blocks, try train(np: 4, residency: "sharded", shuffle: "blocks").parameters))
        XCTAssertTrue(bitwiseEqual(blocks, try train(np: 1, residency: "streamed", shuffle: "blocks").parameters))
    }

    func testStoppedMidEpochWhileStreamedResumesShardedAtAnotherRankCountWithTheStraightRunsBits() throws {
        for shuffle in ["blocks", "rows"] {
            let straight = try train(np: 1, residency: "replicated", shuffle: shuffle).parameters
            let dir = Launcher.temporaryDirectory("residency-resume-\(shuffle)")
            defer { try? FileManager.default.removeItem(at: dir) }
            _ = try train(np: 2, residency: "streamed", shuffle: shuffle, steps: 30, runDirectory: dir)   // step 30 of 46 per epoch
            let (resumed, result) = try train(np: 4, residency: "sharded", shuffle: shuffle, runDirectory: dir, resume: "auto")
            XCTAssertTrue(result.stdout.contains("resuming from") && result.stdout.contains("at step 30"), result.stdout)
            XCTAssertTrue(result.stdout.contains("data.residency streamed → sharded"), result.stdout)
            XCTAssertTrue(bitwiseEqual(straight, resumed), "\(shuffle): streamed np=2 to step 30, then sharded np=4, differs from a straight run")
        }
    }

    func testTheOrderMayNotChangeOnResume() throws {
        let dir = Launcher.temporaryDirectory("residency-order")
        defer { try? FileManager.default.removeItem(at: dir) }
        _ = try train(np: 1, residency: "streamed", shuffle: "blocks", steps: 10, runDirectory: dir)
        let result = try Launcher.run(smallRun + Self.order + ["--set", "train.max_steps=20", "--set", "data.shuffle=rows",
                                                                "--run-dir", dir.path, "--resume", "auto"], timeout: 60)
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("data.shuffle: blocks in the checkpoint, rows now"), result.stderr)
    }
}
