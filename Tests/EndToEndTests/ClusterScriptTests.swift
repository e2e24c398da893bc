// The batch scripts in cluster/: they parse, and the local launcher survives a signal-driven
// stop-and-resume cycle with the same final parameters as an uninterrupted run.
import Foundation
import XCTest

final class ClusterScriptTests: XCTestCase {
    func shell(_ arguments: [String], environment: [String: String] = [:], timeout: Double = 120,
               onStart: ((Process) -> Void)? = nil) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = arguments
        process.currentDirectoryURL = Launcher.packageRoot
        process.environment = Launcher.childEnvironment.merging(environment) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        onStart?(process)
        let deadline = Date().addingTimeInterval(timeout)
        let data = Shared(Data())
        let reader = DispatchQueue(label: "read")
        let done = DispatchSemaphore(value: 0)
        reader.async { data.value = pipe.fileHandleForReading.readDataToEndOfFile(); done.signal() }
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { process.terminate(); kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        done.wait()
        return (process.terminationStatus, String(decoding: data.value, as: UTF8.self))
    }

    func testBatchScriptsParse() throws {
        for script in ["cluster/slurm.sbatch", "cluster/pbs.sh", "cluster/local.sh", "cluster/setup.sh",
                       "cluster/quickstart.sh", "cluster/test.sh"] {
            let r = try shell(["-n", script])
            XCTAssertEqual(r.status, 0, "\(script): \(r.output)")
        }
    }

    func testLocalLauncherStopsOnSignalAndResumesToTheSameParameters() throws {
        let total = 600
        let args = Array(smallRun.dropFirst()) + ["--set", "train.max_steps=\(total)", "--set", "train.checkpoint_every=1000"]
        let reference = Launcher.temporaryDirectory("launcher-ref")
        let dir = Launcher.temporaryDirectory("launcher")
        defer { for d in [reference, dir] { try? FileManager.default.removeItem(at: d) } }
        let env = ["AEDIST": Launcher.executable.path]
        let straight = try shell(["cluster/local.sh", "-n", "2", "-t", "1", "--"] + args + ["--run-dir", reference.path], environment: env)
        XCTAssertEqual(straight.status, 0, straight.output)

        let stopped = try shell(["cluster/local.sh", "-n", "2", "-t", "1", "--"] + args + ["--run-dir", dir.path], environment: env) { process in
            DispatchQueue.global().async {
                ResumeTests.waitForProgress(in: dir, records: 2)
                // Ctrl-C: SIGINT to the launcher's whole process group when it leads one (as a
                // terminal's foreground job does), else to the launcher alone.
                let pid = process.processIdentifier
                if process.isRunning { kill(getpgid(pid) == pid ? -pid : pid, SIGINT) }
            }
        }
        XCTAssertEqual(stopped.status, 75, "Ctrl-C on the launcher: " + stopped.output)
        XCTAssertTrue(stopped.output.contains("\"status\":\"preempted\""), stopped.output)
        let resumed = try shell(["cluster/local.sh", "-n", "2", "-t", "1", "--"] + args + ["--run-dir", dir.path], environment: env)
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.output.contains("resuming from"), resumed.output)
        let last = String(format: "checkpoints/step-%09d.h5", total)
        XCTAssertTrue(bitwiseEqual(try modelTensors(reference.appendingPathComponent(last).path),
                                   try modelTensors(dir.appendingPathComponent(last).path)))
    }
}
