// Runs the built `aedist` executable, alone or under mpirun, with a time limit so that a hang
// fails the test instead of stalling CI.
import Foundation
import XCTest

struct LaunchResult {
    let status: Int32
    let stdout: String
    let stderr: String
    let seconds: Double
    let timedOut: Bool
    /// The last line of stdout parsed as JSON (the run summary).
    var summary: [String: Any]? {
        guard let line = stdout.split(separator: "\n").last,
              let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) else { return nil }
        return object as? [String: Any]
    }
}

enum Launcher {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// The aedist executable built beside the test bundle.
    static var executable: URL {
        if let path = ProcessInfo.processInfo.environment["AEDIST_BINARY"] { return URL(fileURLWithPath: path) }
        return Bundle.main.bundleURL.appendingPathComponent("aedist")
    }

    /// The environment for a child: without the variables MPI_Init left in this process (a child
    /// mpirun that inherits them exits 1 with no message), with Open MPI's root permission.
    static var childEnvironment: [String: String] {
        var env = ProcessInfo.processInfo.environment.filter {
            !($0.key.hasPrefix("OMPI_") || $0.key.hasPrefix("PMIX_") || $0.key.hasPrefix("OPAL_"))
        }
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        return env
    }

    /// mpirun flags for `np` ranks on this small machine.
    static func mpirun(_ np: Int, extra: [String] = []) -> [String] {
        ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", "\(np)"] + extra
    }

    /// Runs `aedist ARGS` (under `mpi` when given) in `directory`, killing it after `timeout` seconds.
    /// `onStart` receives the process, e.g. to send it a signal.
    @discardableResult
    static func run(_ arguments: [String], mpi: [String]? = nil, in directory: URL? = nil, timeout: Double = 120,
                    environment: [String: String] = [:], onStart: ((Process) -> Void)? = nil) throws -> LaunchResult {
        let process = Process()
        if let mpi {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = mpi + [executable.path] + arguments
        } else {
            process.executableURL = executable
            process.arguments = arguments
        }
        process.environment = childEnvironment.merging(environment) { _, new in new }
        process.currentDirectoryURL = directory ?? packageRoot
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        let outData = Shared(Data()), errData = Shared(Data())
        let group = DispatchGroup()
        group.enter(); group.enter()
        DispatchQueue.global().async { outData.value = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        DispatchQueue.global().async { errData.value = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let start = Date()
        try process.run()
        onStart?(process)
        var timedOut = false
        while process.isRunning {
            if Date().timeIntervalSince(start) > timeout {
                timedOut = true
                kill(-process.processIdentifier, SIGKILL)
                process.terminate()
                kill(process.processIdentifier, SIGKILL)
                break
            }
            usleep(20_000)
        }
        process.waitUntilExit()
        group.wait()
        return LaunchResult(status: process.terminationStatus,
                            stdout: String(decoding: outData.value, as: UTF8.self),
                            stderr: String(decoding: errData.value, as: UTF8.self),
                            seconds: Date().timeIntervalSince(start), timedOut: timedOut)
    }

    /// A fresh temporary directory.
    static func temporaryDirectory(_ name: String) -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("aedist-test-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// A value written on one thread and read on another after a wait (group, semaphore) orders them.
final class Shared<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); stored = newValue; lock.unlock() }
    }
}

/// Small, fast training settings on the shipped digits data.
let smallRun: [String] = [
    "train",
    "--config", "configs/digits-vae.yaml",
    "--set", "model.encoder=[24]", "--set", "model.latent=4",
    "--set", "train.batch_size=32", "--set", "train.micro_batch=8",
    "--set", "train.log_every=5", "--set", "train.checkpoint_every=1000",
]

/// Tools some tests need beside aedist (h5py, tensorboard, a headless chromium): cluster/test.sh
/// installs them and sets AEDIST_REQUIRE_TEST_TOOLS=1, so that in CI a missing tool fails the
/// test; an ad-hoc `swift test` without them skips it.
enum TestTools {
    /// Runs `command`; throws XCTSkip (or fails, under cluster/test.sh) when it does not exit 0.
    static func require(_ command: [String], _ what: String) throws {
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = command
        probe.standardOutput = FileHandle.nullDevice
        probe.standardError = FileHandle.nullDevice
        try probe.run(); probe.waitUntilExit()
        guard probe.terminationStatus != 0 else { return }
        if ProcessInfo.processInfo.environment["AEDIST_REQUIRE_TEST_TOOLS"] == "1" {
            XCTFail("\(what) is missing, but cluster/test.sh should have installed it")
            throw TestToolMissing()
        }
        throw XCTSkip("\(what) is not installed (cluster/test.sh installs it)")
    }

    /// Runs `python3 -c script args...`; returns its standard output, failing the test on a non-zero exit.
    static func python(_ script: String, _ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", script] + arguments
        let out = Pipe(), err = Pipe()
        python.standardOutput = out
        python.standardError = err
        let outData = Shared(Data())
        let reading = DispatchGroup()
        reading.enter()
        DispatchQueue.global().async { outData.value = out.fileHandleForReading.readDataToEndOfFile(); reading.leave() }
        try python.run()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        python.waitUntilExit(); reading.wait()
        XCTAssertEqual(python.terminationStatus, 0, String(decoding: errors, as: UTF8.self), file: file, line: line)
        return String(decoding: outData.value, as: UTF8.self)
    }
}

struct TestToolMissing: Error {}
