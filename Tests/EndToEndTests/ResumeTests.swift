// Checkpoints and exact resume through the real executable: stop anywhere (kill -9, a preemption
// signal, a new end), resume, and finish with the parameters of the run that was never stopped.
import Foundation
import Storage
import XCTest

final class ResumeTests: XCTestCase {
    let steps = 40

    func run(_ dir: URL, _ extra: [String], np: Int = 1, timeout: Double = 120,
             onStart: ((Process) -> Void)? = nil) throws -> LaunchResult {
        try Launcher.run(smallRun + ["--run-dir", dir.path, "--threads", "1", "--set", "train.checkpoint_every=3"] + extra,
                         mpi: np > 1 ? Launcher.mpirun(np) : nil, timeout: timeout, onStart: onStart)
    }

    /// Parameters at the end of an uninterrupted run of `steps` steps.
    func reference(steps: Int) throws -> [String: [Float]] {
        let dir = Launcher.temporaryDirectory("reference")
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try run(dir, ["--set", "train.max_steps=\(steps)", "--resume", "never"])
        XCTAssertEqual(result.status, 0, result.stderr)
        return try modelTensors(try XCTUnwrap(result.summary?["checkpoint"] as? String))
    }

    func testLongerMaxStepsContinuesTheSameRunAcrossRankCounts() throws {
        let straight = try reference(steps: steps)
        for (first, second) in [(2, 4), (2, 1)] {
            let dir = Launcher.temporaryDirectory("extend")
            defer { try? FileManager.default.removeItem(at: dir) }
            let a = try run(dir, ["--set", "train.max_steps=\(steps / 2)"], np: first)
            XCTAssertEqual(a.status, 0, a.stderr)
            let b = try run(dir, ["--set", "train.max_steps=\(steps)"], np: second)
            XCTAssertEqual(b.status, 0, b.stderr)
            XCTAssertTrue(b.stdout.contains("resuming from"), b.stdout)
            let resumed = try modelTensors(try XCTUnwrap(b.summary?["checkpoint"] as? String))
            XCTAssertTrue(bitwiseEqual(straight, resumed), "written at np=\(first), resumed at np=\(second): parameters differ")
        }
    }

    func testKillNineAtRandomMomentsThenResumeIsExact() throws {
        let total = 120
        let straight = try reference(steps: total)
        var generator = SystemRandomNumberGenerator()
        let dir = Launcher.temporaryDirectory("kill9")
        defer { try? FileManager.default.removeItem(at: dir) }
        let metrics = dir.appendingPathComponent("metrics.jsonl").path
        var kills = 0
        for attempt in 0..<4 {
            // Kill once the run has logged a few more records (one per 5 steps), plus up to 20 ms:
            // a moment inside training, not start-up, whatever the machine's speed. With
            // checkpoint_every=1 a checkpoint is being written most of the time, so kills land
            // inside writes too.
            let logged = ((try? String(contentsOfFile: metrics, encoding: .utf8)) ?? "").split(separator: "\n").count
            let target = logged + Int.random(in: 1...4, using: &generator)
            let extra = useconds_t.random(in: 0...20_000, using: &generator)
            let r = try run(dir, ["--set", "train.max_steps=\(total)", "--set", "train.checkpoint_every=1"]) { process in
                DispatchQueue.global().async {
                    ResumeTests.waitForProgress(in: dir, records: target)
                    usleep(extra)
                    if process.isRunning { kill(process.processIdentifier, SIGKILL) }   // never a reused pid
                }
            }
            if r.status == 0 { break }   // finished before the kill
            kills += 1
            XCTAssertFalse(r.timedOut, "attempt \(attempt) hung")
        }
        let finish = try run(dir, ["--set", "train.max_steps=\(total)", "--set", "train.checkpoint_every=1"])
        XCTAssertEqual(finish.status, 0, finish.stderr)
        XCTAssertGreaterThan(kills, 0, "no run was killed: the test did not test anything")
        let resumed = try modelTensors(try XCTUnwrap(finish.summary?["checkpoint"] as? String))
        XCTAssertTrue(bitwiseEqual(straight, resumed), "after \(kills) kills the parameters differ")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("checkpoints").path)
            .filter { !$0.hasPrefix("step-") }
        XCTAssertEqual(leftovers, [], "temporary files left behind")
    }

    func testPreemptionSignalWritesACheckpointAndExits75ThenResumesExactly() throws {
        let total = 600
        let straight = try reference(steps: total)
        for (np, signal) in [(1, SIGTERM), (2, SIGUSR1)] {
            let dir = Launcher.temporaryDirectory("preempt")
            defer { try? FileManager.default.removeItem(at: dir) }
            let first = try run(dir, ["--set", "train.max_steps=\(total)", "--set", "train.checkpoint_every=1000"], np: np) { process in
                DispatchQueue.global().async {
                    // Once training is under way (two progress records), signal twice: mpirun forwards
                    // SIGUSR1 to the ranks, and a second signal must not corrupt anything.
                    ResumeTests.waitForProgress(in: dir, records: 2)
                    if process.isRunning { kill(process.processIdentifier, signal) }
                    usleep(20_000)
                    if process.isRunning { kill(process.processIdentifier, signal) }
                }
            }
            XCTAssertEqual(first.status, 75, "np=\(np): \(first.stdout)\n\(first.stderr)")
            let summary = try XCTUnwrap(first.summary, first.stdout)
            XCTAssertEqual(summary["status"] as? String, "preempted")
            let stoppedAt = try XCTUnwrap(summary["step"] as? Int)
            XCTAssertLessThan(stoppedAt, total, "the signal came after the end; lengthen the run")
            let second = try run(dir, ["--set", "train.max_steps=\(total)", "--set", "train.checkpoint_every=1000"], np: np)
            XCTAssertEqual(second.status, 0, second.stderr)
            XCTAssertEqual(second.summary?["status"] as? String, "completed")
            let resumed = try modelTensors(try XCTUnwrap(second.summary?["checkpoint"] as? String))
            XCTAssertTrue(bitwiseEqual(straight, resumed), "np=\(np): preempted at \(stoppedAt) and resumed: parameters differ")
        }
    }

    /// Blocks until metrics.jsonl in `dir` holds `records` lines (or 60 s pass).
    static func waitForProgress(in dir: URL, records: Int) {
        let path = dir.appendingPathComponent("metrics.jsonl").path
        let start = Date()
        while Date().timeIntervalSince(start) < 60 {
            if let text = try? String(contentsOfFile: path, encoding: .utf8),
               text.split(separator: "\n").count >= records { return }
            usleep(5_000)
        }
    }

    func testDamagedCheckpointsAreSkippedWithAWarning() throws {
        let dir = Launcher.temporaryDirectory("damaged")
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = try run(dir, ["--set", "train.max_steps=9"])
        XCTAssertEqual(a.status, 0, a.stderr)
        let checkpoints = dir.appendingPathComponent("checkpoints")
        let files = try FileManager.default.contentsOfDirectory(atPath: checkpoints.path).sorted()
        XCTAssertEqual(files, ["step-000000003.h5", "step-000000006.h5", "step-000000009.h5"])
        // Newest: truncated. Second newest: one flipped bit in the middle of the data.
        let newest = checkpoints.appendingPathComponent(files[2])
        let bytes = try Data(contentsOf: newest)
        try bytes.prefix(bytes.count / 2).write(to: newest)
        let middle = checkpoints.appendingPathComponent(files[1])
        var flipped = try Data(contentsOf: middle)
        flipped[flipped.count * 3 / 4] ^= 0x10
        try flipped.write(to: middle)
        // A stray temporary file from an interrupted write.
        XCTAssertTrue(FileManager.default.createFile(atPath: checkpoints.appendingPathComponent(".step-000000012.h5.tmp-99999").path,
                                                    contents: Data("partial".utf8)))
        let b = try run(dir, ["--set", "train.max_steps=12"])
        XCTAssertEqual(b.status, 0, b.stderr)
        XCTAssertTrue(b.stderr.contains("skipping checkpoint '\(newest.path)'"), b.stderr)
        XCTAssertTrue(b.stderr.contains("skipping checkpoint '\(middle.path)'"), b.stderr)
        XCTAssertTrue(b.stderr.contains("removed unfinished checkpoint"), b.stderr)
        XCTAssertTrue(b.stdout.contains("resuming from \(checkpoints.path)/step-000000003.h5"), b.stdout)
        let straight = try reference(steps: 12)
        let resumed = try modelTensors(try XCTUnwrap(b.summary?["checkpoint"] as? String))
        XCTAssertTrue(bitwiseEqual(straight, resumed))
    }

    func testCheckpointOfAnotherModelIsAClearError() throws {
        let dir = Launcher.temporaryDirectory("othermodel")
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertEqual(try run(dir, ["--set", "train.max_steps=3"]).status, 0)
        let b = try run(dir, ["--set", "train.max_steps=6", "--set", "model.latent=5"], np: 2)
        XCTAssertNotEqual(b.status, 0)
        XCTAssertFalse(b.timedOut)
        // Exactly the key that differs, with both values.
        XCTAssertTrue(b.stderr.contains("(model.latent: 4 in the checkpoint, 5 now)"), b.stderr)
        XCTAssertTrue(b.stderr.contains("step-000000003.h5"), b.stderr)
    }
}
