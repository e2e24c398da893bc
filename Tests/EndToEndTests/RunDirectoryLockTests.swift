// One run directory, one live run: a second train refuses at once naming the holder, a holder that
// is gone (kill -9, a crashed node, the same batch job requeued) is taken over, and a run whose
// directory was taken over stops before it writes.
import Foundation
import XCTest

final class RunDirectoryLockTests: XCTestCase {
    func train(_ dir: URL, _ extra: [String], np: Int = 1, environment: [String: String] = [:],
               onStart: ((Process) -> Void)? = nil) throws -> LaunchResult {
        try Launcher.run(smallRun + ["--run-dir", dir.path, "--threads", "1"] + extra,
                         mpi: np > 1 ? Launcher.mpirun(np) : nil, timeout: 120, environment: environment, onStart: onStart)
    }

    var host: String { ProcessInfo.processInfo.hostName }

    /// Writes a lock as another run would have, renewed `age` seconds ago.
    func fakeLock(in dir: URL, host: String, pid: Int, job: String?, age: TimeInterval) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let job = job.map { "\"\($0)\"" } ?? "null"
        let path = dir.appendingPathComponent("lock").path
        try "{\"host\":\"\(host)\",\"job\":\(job),\"pid\":\(pid),\"started\":\"earlier\",\"token\":\"0000feed\"}\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-age)], ofItemAtPath: path)
    }

    func testASecondRunOnALiveRunsDirectoryRefusesAtOnceAndTheFirstIsUntouched() throws {
        let dir = Launcher.temporaryDirectory("lock-live")
        defer { try? FileManager.default.removeItem(at: dir) }
        let second = Shared<LaunchResult?>(nil)
        let first = try train(dir, ["--set", "train.max_steps=400", "--set", "train.checkpoint_every=50"]) { process in
            ResumeTests.waitForProgress(in: dir, records: 2)
            second.value = try? self.train(dir, ["--set", "train.max_steps=400"], np: 2)
        }
        XCTAssertEqual(first.status, 0, first.stderr)
        let refused = try XCTUnwrap(second.value)
        XCTAssertEqual(refused.status, 73, refused.stderr)
        XCTAssertLessThan(refused.seconds, 20)
        XCTAssertTrue(refused.stderr.contains("is in use by a live run: process") && refused.stderr.contains("on host \(host)"), refused.stderr)
        XCTAssertEqual(refused.stderr.split(separator: "\n").filter { $0.hasPrefix("aedist: error:") }.count, 1, refused.stderr)
        // The first run's record is its own: one line per logged step, no second run's lines.
        let steps = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
            .split(separator: "\n").filter { $0.contains("\"event\":\"train\"") }.count
        XCTAssertEqual(steps, 400 / 5)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("lock").path), "the lock outlived its run")
        FaultTests.record("a second train on a live run's directory", ["(while another aedist train runs there)"],
                          LaunchResult(status: refused.status, stdout: "", stderr: refused.stderr.replacingOccurrences(of: dir.path, with: "RUN"),
                                       seconds: refused.seconds, timedOut: false))
    }

    func testAStaleLockIsTakenOverAndTheLogSaysWhy() throws {
        let dir = Launcher.temporaryDirectory("lock-stale")
        defer { try? FileManager.default.removeItem(at: dir) }
        // kill -9: the process is gone, on this host.
        let killed = try train(dir, ["--set", "train.max_steps=600", "--set", "train.checkpoint_every=20"]) { process in
            DispatchQueue.global().async {
                ResumeTests.waitForProgress(in: dir, records: 6)
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            }
        }
        XCTAssertEqual(killed.status, SIGKILL)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("lock").path))
        let again = try train(dir, ["--set", "train.max_steps=40"], np: 2)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("taking over run directory \(dir.path) from process") && again.stdout.contains("that process has exited"), again.stdout)

        // Another host: live while its lock is renewed; gone once it is older than 90 s.
        try fakeLock(in: dir, host: "node-17", pid: 4242, job: nil, age: 5)
        let busy = try train(dir, ["--set", "train.max_steps=40"])
        XCTAssertEqual(busy.status, 73, busy.stderr)
        XCTAssertTrue(busy.stderr.contains("process 4242 on host node-17"), busy.stderr)
        try fakeLock(in: dir, host: "node-17", pid: 4242, job: nil, age: 200)
        let taken = try train(dir, ["--set", "train.max_steps=40"])
        XCTAssertEqual(taken.status, 0, taken.stderr)
        XCTAssertTrue(taken.stdout.contains("last renewed"), taken.stdout)

        // The same Slurm job, requeued onto another node: its own earlier lock, renewed or not.
        try fakeLock(in: dir, host: "node-17", pid: 4242, job: "81234", age: 5)
        let requeued = try train(dir, ["--set", "train.max_steps=40"], environment: ["SLURM_JOB_ID": "81234"])
        XCTAssertEqual(requeued.status, 0, requeued.stderr)
        XCTAssertTrue(requeued.stdout.contains("the same batch job 81234, requeued"), requeued.stdout)
    }

    func testARunWhoseDirectoryWasTakenOverStopsBeforeWriting() throws {
        let dir = Launcher.temporaryDirectory("lock-taken")
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try train(dir, ["--set", "train.max_steps=600", "--set", "train.checkpoint_every=25"], np: 2) { process in
            DispatchQueue.global().async {
                ResumeTests.waitForProgress(in: dir, records: 2)
                try? self.fakeLock(in: dir, host: "node-3", pid: 99, job: nil, age: 0)
            }
        }
        XCTAssertEqual(r.status, 73, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("was taken over by process 99 on host node-3"), r.stderr)
        XCTAssertNil(r.summary?["status"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("lock").path), "the new holder's lock was removed")
    }
}
