// Bad input and faults at np = 2 through real launches: one clear message naming the file, key or
// value, a non-zero exit on every rank, and no hang. With AEDIST_FAULT_TABLE=FILE set, each case
// appends its measured row (message, exit status, seconds) to FILE: docs/faults.md is made that way.
import Foundation
import Storage
import XCTest

final class FaultTests: XCTestCase {
    static var fixtures: URL = Launcher.temporaryDirectory("fixtures")

    override class func setUp() {
        super.setUp()
        // Float data: row 3 holds a NaN; a copy with 10 features for the feature-count mismatch; an empty set.
        let path = fixtures.appendingPathComponent("bad.h5").path
        do {
            let file = try HDF5File(creatingAt: path)
            var values = (0..<(40 * 8)).map { Float($0 % 17) / 17 }
            values[3 * 8 + 5] = .nan
            try file.write(values, shape: [40, 8], to: "/nan/images")
            try file.write(Array(values[0..<(8 * 8)]).map { $0.isNaN ? 0 : $0 }, shape: [8, 8], to: "/small/images")
            try file.write((0..<(40 * 8)).map { Float($0 % 5) / 5 }, shape: [40, 8], to: "/good/images")
            try file.write((0..<(40 * 10)).map { Float($0 % 5) / 5 }, shape: [40, 10], to: "/wide/images")
            try file.write((0..<(2 * 3 * 4)).map { Float($0) }, shape: [2, 3, 4], to: "/cube/images")
            try file.write([Float](), shape: [0, 8], to: "/empty/images")
            // Pixels stored as float 0..255 (x.astype('float32')) and signed values: not Bernoulli targets.
            try file.write((0..<(40 * 8)).map { Float($0 % 256) }, shape: [40, 8], to: "/pixels255/images")
            try file.write((0..<(40 * 8)).map { Int16($0 % 33) - 16 }, shape: [40, 8], to: "/signed/images")
            file.close()
        } catch { XCTFail("fixture: \(error)") }
        // A string dataset needs h5py (installed by cluster/test.sh).
        let script = "import h5py; f = h5py.File('\(fixtures.path)/strings.h5', 'w'); f['train/images'] = [[b'a', b'b'], [b'c', b'd']]"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script]
        try? p.run(); p.waitUntilExit()
    }

    /// Runs `aedist train` at np = 2 with these overrides and checks for a failure with `expected` in stderr.
    func expectFailure(_ title: String, _ arguments: [String], expected: String, np: Int = 2,
                       file: StaticString = #filePath, line: UInt = #line) throws {
        let dir = Launcher.temporaryDirectory("fault")
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try Launcher.run(smallRun + ["--run-dir", dir.path, "--threads", "1", "--resume", "never",
                                                  "--set", "train.max_steps=5"] + arguments,
                                      mpi: Launcher.mpirun(np), timeout: 60)
        XCTAssertFalse(result.timedOut, "\(title): hung", file: file, line: line)
        XCTAssertNotEqual(result.status, 0, "\(title): exit 0", file: file, line: line)
        XCTAssertTrue(result.stderr.contains(expected), "\(title): expected '\(expected)' in: \(result.stderr)", file: file, line: line)
        XCTAssertLessThan(result.seconds, 20, "\(title): too slow to fail", file: file, line: line)
        let errorLines = result.stderr.split(separator: "\n").filter { $0.hasPrefix("aedist: error:") }
        XCTAssertEqual(errorLines.count, 1, "\(title): one message expected, got \(errorLines)", file: file, line: line)
        Self.record(title, arguments, result)
    }

    static func record(_ title: String, _ arguments: [String], _ result: LaunchResult) {
        guard let table = ProcessInfo.processInfo.environment["AEDIST_FAULT_TABLE"] else { return }
        let message = result.stderr.split(separator: "\n").first(where: { $0.hasPrefix("aedist: error:") })
            .map(String.init) ?? result.stderr.split(separator: "\n").first.map(String.init) ?? ""
        let shown = message.replacingOccurrences(of: fixtures.path, with: "FIXTURES")
            .replacingOccurrences(of: "|", with: "\\|")
        let args = arguments.joined(separator: " ").replacingOccurrences(of: fixtures.path, with: "FIXTURES")
            .replacingOccurrences(of: "|", with: "\\|")
        let row = "| \(title) | `\(args)` | \(shown) | \(result.status) | \(String(format: "%.1f", result.seconds)) |\n"
        if let handle = FileHandle(forWritingAtPath: table) { handle.seekToEndOfFile(); handle.write(Data(row.utf8)); handle.closeFile() }
        else { _ = FileManager.default.createFile(atPath: table, contents: Data(row.utf8)) }
    }

    var bad: String { Self.fixtures.appendingPathComponent("bad.h5").path }

    func testUnknownKernelChoice() throws {
        let dir = Launcher.temporaryDirectory("kernels")
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try Launcher.run(smallRun + ["--run-dir", dir.path, "--resume", "never"], mpi: Launcher.mpirun(2),
                                      timeout: 60, environment: ["AEDIST_KERNELS": "sse9"])
        XCTAssertFalse(result.timedOut, "hung")
        XCTAssertEqual(result.status, 1)
        let errorLines = result.stderr.split(separator: "\n").filter { $0.hasPrefix("aedist: error:") }
        XCTAssertEqual(errorLines, ["aedist: error: AEDIST_KERNELS=sse9 is not one of auto, portable, avx2, avx512"])
        Self.record("unknown kernel choice", ["AEDIST_KERNELS=sse9 (environment)"], result)
    }

    func testBadDataInputs() throws {
        try expectFailure("missing data file", ["--set", "data.path=/no/such/file.h5"], expected: "/no/such/file.h5")
        try expectFailure("not an HDF5 file", ["--set", "data.path=\(Launcher.packageRoot.path)/README.md"], expected: "README.md")
        try expectFailure("dataset path absent", ["--set", "data.train=train/pixels"], expected: "train/pixels")
        try expectFailure("path is a group", ["--set", "data.train=train"], expected: "group")
        try expectFailure("dataset of one dimension", ["--set", "data.train=train/labels"], expected: "train/labels")
        try expectFailure("empty dataset", ["--set", "data.path=\(bad)", "--set", "data.train=empty/images", "--set", "data.test=null"], expected: "empty/images")
        try expectFailure("NaN in a float dataset", ["--set", "data.path=\(bad)", "--set", "data.train=nan/images", "--set", "data.test=null"], expected: "row 3")
        try expectFailure("fewer rows than the global batch", ["--set", "data.path=\(bad)", "--set", "data.train=small/images", "--set", "data.test=null"], expected: "fewer than train.batch_size 32")
        try expectFailure("test features differ from train", ["--set", "data.path=\(bad)", "--set", "data.train=good/images", "--set", "data.test=wide/images"], expected: "10 features but the train set")
        try expectFailure("float pixels 0..255 with a Bernoulli output", ["--set", "data.path=\(bad)", "--set", "data.train=pixels255/images", "--set", "data.test=null", "--set", "data.scale=auto"],
                          expected: "values range from 0 to 255, which data.scale 1 maps to [0, 255], but model.output: bernoulli needs targets in [0, 1]. Use data.scale: 0.00392157")
        try expectFailure("signed data with a Bernoulli output", ["--set", "data.path=\(bad)", "--set", "data.train=signed/images", "--set", "data.test=null"],
                          expected: "model.output: gaussian")
        try expectFailure("test split absent", ["--set", "data.test=test/pixels"], expected: "or data.test: null (--set data.test=null)")
        try expectFailure("relative data path absent", ["--set", "data.path=no/such/data.h5"],
                          expected: "no/such/data.h5: no such file (a relative path, resolved from the current directory \(Launcher.packageRoot.path))")
        let strings = Self.fixtures.appendingPathComponent("strings.h5").path
        if FileManager.default.fileExists(atPath: strings) {
            try expectFailure("non-numeric dataset (strings)", ["--set", "data.path=\(strings)", "--set", "data.test=null"], expected: "train/images")
        }
    }

    func testBadConfiguration() throws {
        try expectFailure("unknown config key", ["--set", "model.layers=3"], expected: "unknown key 'model.layers'")
        try expectFailure("wrong value type", ["--set", "train.epochs=ten"], expected: "key 'train.epochs': expected an integer ≥ 1, got 'ten'")
        try expectFailure("zero size", ["--set", "model.latent=0"], expected: "key 'model.latent'")
        try expectFailure("negative size", ["--set", "model.encoder=[16,-4]"], expected: "key 'model.encoder'")
        try expectFailure("unknown model kind", ["--set", "model.kind=gan"], expected: "one of ae | vae, got 'gan'")
        try expectFailure("unknown activation", ["--set", "model.activation=swish"], expected: "got 'swish'")
        try expectFailure("unknown optimizer", ["--set", "train.optimizer=rmsprop"], expected: "got 'rmsprop'")
        try expectFailure("unknown noise kind", ["--set", "model.denoise.noise=pink"], expected: "got 'pink'")
        try expectFailure("missing config file", ["--config", "/no/such/run.yaml"], expected: "/no/such/run.yaml")
        try expectFailure("batch not divisible by ranks", ["--set", "train.batch_size=33", "--set", "train.micro_batch=1"], expected: "2 ranks cannot split train.batch_size 33 (micro_batch 1): it does not divide evenly by 2. Rank counts that work for this batch: 1, 33;")
        try expectFailure("run directory not writable", ["--run-dir", "/proc/aedist-run"], expected: "run_dir '/proc/aedist-run'")
        try expectFailure("more memory than available", ["--set", "model.encoder=[100000000]"], expected: "the run needs about")
        try expectFailure("validation fraction out of range", ["--set", "data.validation=1.5"], expected: "key 'data.validation': expected a fraction of the train rows in (0, 1)")
        try expectFailure("validation dataset absent", ["--set", "data.validation=valid/images"], expected: "valid/images")
        try expectFailure("early stopping with nothing to watch", ["--set", "train.early_stopping={patience: 2}", "--set", "data.test=null"],
                          expected: "key 'train.early_stopping': it watches the validation loss (data.validation) or else the test loss (data.test), but both are null")
        try expectFailure("labels of another length", ["--set", "data.labels=test/labels"], expected: "key 'data.labels': 'test/labels' has shape [297]")
        try expectFailure("checkpoint that is not a checkpoint", ["--resume", "\(Launcher.packageRoot.path)/data/digits.h5"], expected: "not a complete aedist checkpoint")
    }

    func testNonFiniteLossStopsWithTheLastGoodCheckpoint() throws {
        try expectFailure("loss becomes NaN or infinite", ["--set", "train.optimizer=sgd", "--set", "train.lr=1e30",
                                                           "--set", "model.output=gaussian", "--set", "train.max_steps=50"],
                          expected: "at step")
    }

    func testKillingOneOfFourRanksEndsTheJobAndTheLastCheckpointResumes() throws {
        let dir = Launcher.temporaryDirectory("rankkill")
        defer { try? FileManager.default.removeItem(at: dir) }
        let args = smallRun + ["--run-dir", dir.path, "--threads", "1", "--set", "train.max_steps=4000", "--set", "train.checkpoint_every=5"]
        let killedAt = Shared(Date())
        let result = try Launcher.run(args, mpi: Launcher.mpirun(4), timeout: 120) { process in
            FaultTests.signalOneRank(of: process, SIGKILL, after: 3, in: dir, sentAt: killedAt)
        }
        let seconds = Date().timeIntervalSince(killedAt.value)
        XCTAssertFalse(result.timedOut, "the job hung after a rank was killed")
        XCTAssertNotEqual(result.status, 0)
        XCTAssertLessThan(seconds, 30, "the job took \(seconds) s to end")
        XCTAssertNil(result.summary?["status"], "the run claims it finished")
        Self.record("one of 4 ranks killed (SIGKILL)", ["(kill -9 of one rank mid-training, np = 4)"],
                    LaunchResult(status: result.status, stdout: result.stdout,
                                 stderr: result.stderr.split(separator: "\n").first(where: { $0.contains("signal") || $0.contains("exited") }).map(String.init) ?? result.stderr,
                                 seconds: seconds, timedOut: false))
        let again = try Launcher.run(args.map { $0 == "train.max_steps=4000" ? "train.max_steps=20" : $0 } + ["--set", "train.max_steps=20"],
                                     mpi: Launcher.mpirun(2), timeout: 60)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("resuming from"), again.stdout)
    }

    func testAStoppedRankEndsTheWholeJobWithinTheStallTimeoutAndTheRunResumes() throws {
        let dir = Launcher.temporaryDirectory("stall")
        defer { try? FileManager.default.removeItem(at: dir) }
        // np = 3, one micro-batch each; a rank stopped with SIGSTOP acts as a hung node.
        let args = smallRun + ["--run-dir", dir.path, "--threads", "1", "--set", "train.batch_size=48", "--set", "train.micro_batch=16",
                               "--set", "train.max_steps=4000", "--set", "train.checkpoint_every=10", "--set", "train.stall_timeout=5"]
        let stoppedAt = Shared(Date()), stopped = Shared(-1)
        let result = try Launcher.run(args, mpi: Launcher.mpirun(3), timeout: 120) { process in
            FaultTests.signalOneRank(of: process, SIGSTOP, after: 4, in: dir, sentAt: stoppedAt, victim: stopped)
        }
        let seconds = Date().timeIntervalSince(stoppedAt.value)
        XCTAssertFalse(result.timedOut, "the job hung after a rank stopped responding")
        XCTAssertEqual(result.status, 69, result.stderr)
        XCTAssertLessThan(seconds, 25, "the job took \(seconds) s to end after the stop (stall timeout 5 s)")
        // (A stop that catches the ranks waiting for a checkpoint write trips that wait's bound instead.)
        XCTAssertTrue(result.stderr.contains("has made no progress for")
                      && (result.stderr.contains("train.stall_timeout: 5.0 s") || result.stderr.contains("checkpoint writes: ")), result.stderr)
        // The ranks still running ask the others over the roll call and name the stopped one, and only it.
        XCTAssertNotEqual(stopped.value, -1, "the stopped rank's number was not found")
        let messages = result.stderr.split(separator: "\n").filter { $0.contains("has made no progress for") }
        XCTAssertFalse(messages.isEmpty)
        let ownMessage = "aedist: error: rank \(stopped.value) on host"
        for m in messages where !m.contains(ownMessage) {
            // (Open MPI continues the stopped rank while it ends the job, so a rank that asks after the
            // first has left may get its answer, in the operation where it was stopped or in this one:
            // it then names it from the first one's farewell.)
            XCTAssertTrue(m.contains("not arrived, as far as this rank can tell: rank \(stopped.value) on host ")
                          && (m.contains("(no answer:") || m.contains("did not answer rank ")), String(m))
            for other in 0..<3 where other != stopped.value { XCTAssertFalse(m.contains("tell: rank \(other)") || m.contains(", rank \(other)"), String(m)) }
        }
        // The stopped rank, continued by mpirun as it ends the job, knows that it was the one stopped.
        for m in messages where m.contains(ownMessage) {
            XCTAssertTrue(m.contains("this rank itself did not run for"), String(m))
        }
        XCTAssertNil(result.summary?["status"], "the run claims it finished")
        Self.record("one of 3 ranks stops responding (SIGSTOP)", ["--set train.stall_timeout=5 (SIGSTOP of one rank mid-training, np = 3)"],
                    LaunchResult(status: result.status, stdout: "",
                                 stderr: result.stderr.split(separator: "\n").first(where: { $0.contains("no progress") }).map(String.init)?
                                    .replacingOccurrences(of: dir.path, with: "RUN") ?? result.stderr,
                                 seconds: seconds, timedOut: false))
        let again = try Launcher.run(args.map { $0 == "train.max_steps=4000" ? "train.max_steps=20" : $0 }, mpi: Launcher.mpirun(3), timeout: 60)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("resuming from"), again.stdout)
    }

    func testCheckpointWriteFailureKeepsEarlierCheckpoints() throws {
        // A small tmpfs as the run directory, filled up after the first checkpoint: a real ENOSPC.
        let mount = Launcher.temporaryDirectory("diskfull")
        defer { _ = try? shellStatus("umount \(mount.path)"); try? FileManager.default.removeItem(at: mount) }
        guard try shellStatus("mount -t tmpfs -o size=8m tmpfs \(mount.path)") == 0 else {
            throw XCTSkip("cannot mount a tmpfs here (not root?)")
        }
        let dir = mount.appendingPathComponent("run")
        let base = smallRun + ["--run-dir", dir.path, "--threads", "1", "--set", "train.checkpoint_every=3"]
        XCTAssertEqual(try Launcher.run(base + ["--set", "train.max_steps=3"]).status, 0)
        let first = dir.appendingPathComponent("checkpoints/step-000000003.h5").path
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: first)[.size] as? Int)
        let free = try XCTUnwrap(FileManager.default.attributesOfFileSystem(forPath: mount.path)[.systemFreeSize] as? Int)
        let filler = mount.appendingPathComponent("filler").path
        XCTAssertTrue(FileManager.default.createFile(atPath: filler, contents: Data(count: max(0, free - size / 2))))
        let failed = try Launcher.run(base + ["--set", "train.max_steps=6"], mpi: Launcher.mpirun(2))
        XCTAssertNotEqual(failed.status, 0)
        XCTAssertFalse(failed.timedOut)
        XCTAssertTrue(failed.stderr.contains("writing checkpoint") && failed.stderr.contains("step-000000006.h5")
                      && failed.stderr.contains("intact"), failed.stderr)
        Self.record("checkpoint write fails (disk full)", ["(run directory on a full tmpfs)"], failed)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("checkpoints").path)
        XCTAssertEqual(names, ["step-000000003.h5"], "the failed write left \(names)")
        try FileManager.default.removeItem(atPath: filler)
        let resumed = try Launcher.run(base + ["--set", "train.max_steps=6"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resuming from \(first)"), resumed.stdout)
    }

    func shellStatus(_ command: String) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-c", command + " 2>/dev/null"]
        try p.run(); p.waitUntilExit()
        return p.terminationStatus
    }

    /// Once `dir` holds `records` progress lines, sends `signal` to one rank (a child of the mpirun
    /// `process` that runs aedist) and notes when in `sentAt` and, in `victim`, which rank; returns at once.
    static func signalOneRank(of process: Process, _ signal: Int32, after records: Int, in dir: URL, sentAt: Shared<Date>,
                              victim: Shared<Int>? = nil) {
        DispatchQueue.global().async {
            ResumeTests.waitForProgress(in: dir, records: records)
            let ranks = FaultTests.children(of: process.processIdentifier).filter { FaultTests.command($0).contains("aedist") }
            if let pid = ranks.last {
                victim?.value = worldRank(of: pid) ?? -1
                sentAt.value = Date()
                kill(pid, signal)
            }
        }
    }

    /// The MPI rank of a process that Open MPI started (OMPI_COMM_WORLD_RANK in its environment).
    static func worldRank(of pid: Int32) -> Int? {
        guard let environment = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return nil }
        return environment.split(separator: 0).lazy.map { String(decoding: $0, as: UTF8.self) }
            .first { $0.hasPrefix("OMPI_COMM_WORLD_RANK=") }.flatMap { Int($0.dropFirst("OMPI_COMM_WORLD_RANK=".count)) }
    }

    static func children(of pid: Int32) -> [Int32] {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
        let direct = text.split(separator: " ").compactMap { Int32($0) }
        return direct + direct.flatMap { children(of: $0) }
    }

    static func command(_ pid: Int32) -> String {
        (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8))?.replacingOccurrences(of: "\0", with: " ") ?? ""
    }
}
