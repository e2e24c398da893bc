// Schedules through real launches: the same bits at any rank count and across a resume, and the
// learning rate and KL weight of each logged step in metrics.jsonl.
import Foundation
import XCTest

final class ScheduleRunTests: XCTestCase {
    static let schedules = ["--set", "train.lr_schedule={kind: cosine, warmup_steps: 10, min_lr: 0.0001}",
                            "--set", "model.kl_schedule={kind: linear, warmup_steps: 30}", "--set", "train.max_steps=40"]

    func train(_ dir: URL, np: Int, _ extra: [String] = [], resume: String = "never") throws -> LaunchResult {
        let r = try Launcher.run(smallRun + Self.schedules + extra + ["--run-dir", dir.path, "--threads", "1", "--resume", resume],
                                 mpi: Launcher.mpirun(np), timeout: 120)
        XCTAssertEqual(r.status, 0, r.stderr)
        return r
    }

    func metrics(_ dir: URL) throws -> [[String: Any]] {
        try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").compactMap {
            let o = try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            return o?["event"] as? String == "train" ? o : nil
        }
    }

    func testSchedulesGiveTheSameBitsAtAnyRankCountAndAcrossAResumeAndAreLogged() throws {
        let a = Launcher.temporaryDirectory("sched-np1"), b = Launcher.temporaryDirectory("sched-np2"), c = Launcher.temporaryDirectory("sched-resumed")
        defer { for d in [a, b, c] { try? FileManager.default.removeItem(at: d) } }
        // The straight run keeps its checkpoints of steps 10, 20, 30, 40; another run directory
        // resumes from step 20's at another rank count. (A cosine schedule spans the run's length:
        // stopping early by a smaller train.max_steps would be another schedule.)
        _ = try train(a, np: 1, ["--set", "train.checkpoint_every=10", "--set", "train.keep_checkpoints=10"])
        _ = try train(b, np: 2)
        let resumed = try train(c, np: 2, resume: a.appendingPathComponent("checkpoints/step-000000020.h5").path)
        XCTAssertTrue(resumed.stdout.contains("resuming from"), resumed.stdout)
        let last = "checkpoints/step-000000040.h5"
        let reference = try modelTensors(a.appendingPathComponent(last).path)
        XCTAssertTrue(bitwiseEqual(reference, try modelTensors(b.appendingPathComponent(last).path)), "np = 2 differs from np = 1")
        XCTAssertTrue(bitwiseEqual(reference, try modelTensors(c.appendingPathComponent(last).path)), "resumed from step 20 at np = 2: differs")
        // A constant schedule trains other bits: the schedule is in effect.
        let constant = Launcher.temporaryDirectory("sched-constant")
        defer { try? FileManager.default.removeItem(at: constant) }
        _ = try Launcher.run(smallRun + ["--set", "train.max_steps=40", "--run-dir", constant.path, "--threads", "1"], mpi: Launcher.mpirun(1))
        XCTAssertFalse(bitwiseEqual(reference, try modelTensors(constant.appendingPathComponent(last).path)))
        // Logged every 5 steps: the rate and the weight of the step logged (step N is index N - 1).
        let logged = try metrics(a)
        XCTAssertEqual(logged.map { $0["step"] as? Int }, [5, 10, 15, 20, 25, 30, 35, 40])
        let lr = 0.002, min = 0.0001   // configs/digits-vae.yaml's lr
        for event in logged {
            let step = try XCTUnwrap(event["step"] as? Int) - 1
            let expected = step < 10 ? lr * Double(step + 1) / 10 : min + (lr - min) * 0.5 * (1 + cos(Double.pi * Double(step - 10) / 29))
            XCTAssertEqual(try XCTUnwrap(event["lr"] as? Double), expected, accuracy: 1e-7 * lr, "lr at step \(step + 1)")
            XCTAssertEqual(try XCTUnwrap(event["kl_weight"] as? Double), Swift.min(1, Double(step + 1) / 30), accuracy: 1e-6)
        }
        let straight = Dictionary(uniqueKeysWithValues: logged.map { ($0["step"] as! Int, $0["lr"] as! Double) })
        for event in try metrics(c) {
            let step = try XCTUnwrap(event["step"] as? Int)
            if let expected = straight[step] { XCTAssertEqual(event["lr"] as? Double, expected, "the resumed run's rate at step \(step)") }
        }
    }
}
