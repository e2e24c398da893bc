// Validation and early stopping through real launches: a validation fraction holds out the same
// rows at any rank count and residency, and training on the rows left is training on a file of
// just those rows; early stopping keeps the best model, stops with status stopped_early (exit 0),
// decides the same after a resume at another rank count, and a resume of a stopped run changes nothing.
import Foundation
import Storage
import Training
import XCTest

final class SteeringTests: XCTestCase {
    static let validation = ["--set", "data.validation=0.2", "--set", "train.epochs=2"]

    func train(_ dir: URL, np: Int, _ extra: [String], resume: String = "never") throws -> LaunchResult {
        let r = try Launcher.run(smallRun + extra + ["--run-dir", dir.path, "--threads", "1", "--resume", resume],
                                 mpi: Launcher.mpirun(np), timeout: 180)
        XCTAssertEqual(r.status, 0, r.stderr)
        return r
    }

    func events(_ dir: URL, _ kind: String) throws -> [[String: Any]] {
        try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").compactMap {
            let o = try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            return o?["event"] as? String == kind ? o : nil
        }
    }

    func newest(_ dir: URL) throws -> String {
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("checkpoints").path)
        return dir.appendingPathComponent("checkpoints/" + names.filter { $0.hasPrefix("step-") }.sorted().last!).path
    }

    /// The digits' train rows split as 0.2 with seed 0 splits them, written as two files.
    func splitFiles(_ root: URL) throws -> (train: String, validation: String) {
        let source = try HDF5File(readingAt: Launcher.packageRoot.appendingPathComponent("data/digits.h5").path)
        let images = try source.readInt64s("/train/images").map { UInt8($0) }
        let test = try source.readInt64s("/test/images").map { UInt8($0) }
        source.close()
        let held = HeldOutRows(rows: images.count / 64, unit: 1, fraction: 0.2, seed: 0)
        func rows(_ selection: RowSelection) -> [UInt8] { (0..<selection.count).flatMap { images[(selection.physical($0) * 64)..<((selection.physical($0) + 1) * 64)] } }
        let paths = (root.appendingPathComponent("kept.h5").path, root.appendingPathComponent("held.h5").path)
        for (path, selection) in [(paths.0, held.training), (paths.1, held.validation)] {
            let file = try HDF5File(creatingAt: path)
            try file.write(rows(selection), shape: [selection.count, 64], to: "/train/images")
            try file.write(test, shape: [test.count / 64, 64], to: "/test/images")
            file.close()
        }
        return paths
    }

    func testAValidationFractionIsTheSameRowsAtAnyRankCountAndResidencyAndTrainingSkipsThem() throws {
        let root = Launcher.temporaryDirectory("validation")
        defer { try? FileManager.default.removeItem(at: root) }
        let files = try splitFiles(root)
        let dirs = ["np1", "np2-sharded", "np3-streamed", "kept-only"].map { root.appendingPathComponent($0) }
        let first = try train(dirs[0], np: 1, Self.validation)
        XCTAssertTrue(first.stdout.contains("1200 training rows"), first.stdout)
        _ = try train(dirs[1], np: 2, Self.validation + ["--set", "data.residency=sharded"])
        _ = try train(dirs[2], np: 3, Self.validation + ["--set", "data.residency=streamed", "--set", "train.batch_size=48",
                                                         "--set", "train.micro_batch=16"])
        // The rows left, in a file of their own, without a validation split: the same run.
        _ = try train(dirs[3], np: 1, ["--set", "train.epochs=2", "--set", "data.path=\(files.train)"])
        let reference = try modelTensors(try newest(dirs[0]))
        XCTAssertTrue(bitwiseEqual(reference, try modelTensors(try newest(dirs[1]))), "np = 2 sharded differs")
        XCTAssertTrue(bitwiseEqual(reference, try modelTensors(try newest(dirs[3]))), "training on the rows left differs")
        let losses = try events(dirs[0], "validation").map { $0["loss"] as! Double }
        XCTAssertEqual(losses.count, 2)
        XCTAssertEqual(try events(dirs[1], "validation").map { $0["loss"] as! Double }, losses, "the validation loss at np = 2")
        XCTAssertNotEqual(losses, try events(dirs[0], "test").map { $0["loss"] as! Double })
        // Batch 48 is another run, but the held-out rows are the same: eval of its model on the
        // held-out file gives its logged validation loss; the validation loss is the same at np 3 and np 1.
        let streamed = try events(dirs[2], "validation").last!["loss"] as! Double
        let eval = try Launcher.run(["eval", "--checkpoint", try newest(dirs[2]), "--data", files.validation, "--split", "train/images", "--json"])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(eval.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(report["loss"] as? Double, streamed, "eval on the held-out rows is the validation loss")
        XCTAssertEqual(report["samples"] as? Int, 300)
        let again = root.appendingPathComponent("np1-streamed-48")
        _ = try train(again, np: 1, Self.validation + ["--set", "train.batch_size=48", "--set", "train.micro_batch=16"])
        XCTAssertTrue(bitwiseEqual(try modelTensors(try newest(again)), try modelTensors(try newest(dirs[2]))), "np = 3 streamed differs from np = 1")
        XCTAssertEqual(try events(again, "validation").last!["loss"] as? Double, streamed)
    }

    func testAValidationDatasetIsEvaluatedLikeTheTestSplit() throws {
        let dir = Launcher.temporaryDirectory("validation-dataset")
        defer { try? FileManager.default.removeItem(at: dir) }
        // The test rows named as the validation dataset too: the two losses of each epoch are one number.
        let r = try train(dir, np: 2, ["--set", "data.validation=test/images", "--set", "train.epochs=2", "--set", "data.residency=sharded"])
        XCTAssertTrue(r.stdout.contains("1500 training rows"), r.stdout)
        let validation = try events(dir, "validation").map { $0["loss"] as! Double }
        XCTAssertEqual(validation.count, 2)
        XCTAssertEqual(validation, try events(dir, "test").map { $0["loss"] as! Double })
    }

    func testPatienceRunningOutAtTheLastEpochIsACompletedRunAndStaysOne() throws {
        let dir = Launcher.temporaryDirectory("early-last")
        defer { try? FileManager.default.removeItem(at: dir) }
        // No later epoch beats the first by 1e9: patience 2 runs out at epoch 3, the last.
        let settings = ["--set", "data.validation=0.2", "--set", "train.epochs=3", "--set", "train.early_stopping={patience: 2, min_delta: 1e9}"]
        let first = try train(dir, np: 1, settings)
        XCTAssertEqual(first.summary?["status"] as? String, "completed", first.stdout)
        XCTAssertEqual(first.summary?["best_checkpoint"] as? String, dir.appendingPathComponent("checkpoints/best.h5").path)
        let again = try train(dir, np: 1, settings, resume: "auto")
        XCTAssertEqual(again.summary?["status"] as? String, "completed", again.stdout)
        XCTAssertTrue(again.stdout.contains("already at step 111 of 111; nothing to train"), again.stdout)
    }

    func testEarlyStoppingKeepsTheBestStopsDecidesTheSameAfterAResumeAndAStoppedRunStaysStopped() throws {
        let root = Launcher.temporaryDirectory("early")
        defer { try? FileManager.default.removeItem(at: root) }
        // min_delta 0.3 nats: the small model soon improves by less and stops within 20 epochs.
        let settings = ["--set", "data.validation=0.2", "--set", "train.epochs=20", "--set", "train.early_stopping={patience: 2, min_delta: 0.3}",
                        "--set", "train.keep_checkpoints=100"]
        let straight = root.appendingPathComponent("straight")
        let r = try train(straight, np: 1, settings)
        let summary = try XCTUnwrap(r.summary)
        XCTAssertEqual(summary["status"] as? String, "stopped_early", r.stdout)
        let stopStep = try XCTUnwrap(summary["step"] as? Int)
        XCTAssertLessThan(stopStep, 20 * 37, "it did not stop early")
        XCTAssertTrue(r.stdout.contains("aedist: stopping early"), r.stdout)
        // best.h5 is the model of the last epoch whose validation loss fell below the best before
        // it by more than min_delta; the run stopped 2 epochs after it.
        let validation = try events(straight, "validation")
        let losses = validation.map { $0["loss"] as! Double }
        var bestIndex = 0
        for (i, loss) in losses.enumerated() where loss < losses[bestIndex] - 0.3 { bestIndex = i }
        XCTAssertEqual(bestIndex, losses.count - 3, "\(losses)")
        XCTAssertTrue(losses[(bestIndex + 1)...].allSatisfy { $0 >= losses[bestIndex] - 0.3 })
        let bestStep = validation[bestIndex]["step"] as! Int
        let best = straight.appendingPathComponent("checkpoints/best.h5").path
        XCTAssertEqual(summary["best_checkpoint"] as? String, best)
        XCTAssertTrue(bitwiseEqual(try modelTensors(best), try modelTensors(straight.appendingPathComponent(String(format: "checkpoints/step-%09d.h5", bestStep)).path)))
        XCTAssertEqual(try Checkpoint(path: best).progress.step, bestStep)

        // Resumed at np = 2 from the checkpoint after the best epoch's: the same decisions, the same bits.
        let resumed = root.appendingPathComponent("resumed")
        let from = straight.appendingPathComponent(String(format: "checkpoints/step-%09d.h5", bestStep + 37)).path
        let second = try train(resumed, np: 2, settings, resume: from)
        XCTAssertEqual(second.summary?["status"] as? String, "stopped_early", second.stdout)
        XCTAssertEqual(second.summary?["step"] as? Int, stopStep)
        XCTAssertTrue(bitwiseEqual(try modelTensors(try newest(resumed)), try modelTensors(try newest(straight))))
        XCTAssertEqual(try events(resumed, "validation").last?["loss"] as? Double, losses.last)

        // The same run directory resumed from the epoch before the best one (a user's choice): the
        // best.h5 written by the steps it redoes is set aside with a warning, and the run keeps the
        // same best model again.
        XCTAssertGreaterThan(bestStep, 37)
        let rewound = root.appendingPathComponent("rewound")
        try FileManager.default.copyItem(at: straight, to: rewound)
        let third = try train(rewound, np: 1, settings, resume: rewound.appendingPathComponent(String(format: "checkpoints/step-%09d.h5", bestStep - 37)).path)
        let aside = rewound.appendingPathComponent(String(format: "checkpoints/best-step-%09d.h5", bestStep)).path
        XCTAssertTrue(third.stderr.contains("warning: moved \(rewound.path)/checkpoints/best.h5 to \(aside): its step \(bestStep) is not the best so far of the run resumed at step \(bestStep - 37)"), third.stderr)
        XCTAssertEqual(third.summary?["step"] as? Int, stopStep)
        XCTAssertTrue(bitwiseEqual(try modelTensors(rewound.appendingPathComponent("checkpoints/best.h5").path), try modelTensors(best)))
        XCTAssertTrue(bitwiseEqual(try modelTensors(aside), try modelTensors(best)), "kept, not lost")

        // A stopped run resumed with the same settings changes nothing and exits 0.
        let files = ["metrics.jsonl", "summary.json", "config.yaml"]
        func snapshot() throws -> [Data] {
            try files.map { try Data(contentsOf: straight.appendingPathComponent($0)) }
                + [Data(try FileManager.default.contentsOfDirectory(atPath: straight.appendingPathComponent("checkpoints").path).sorted().joined().utf8)]
        }
        let before = try snapshot()
        let again = try train(straight, np: 1, settings, resume: "auto")
        XCTAssertEqual(again.summary?["status"] as? String, "stopped_early")
        XCTAssertEqual(again.summary?["test_loss"] as? Double, summary["test_loss"] as? Double)
        XCTAssertTrue(again.stdout.contains("this run stopped early at step \(stopStep)"), again.stdout)
        XCTAssertEqual(try snapshot(), before, "resuming a stopped run changed its files")
    }
}
