// The project's own cluster/slurm.sbatch on a real Slurm (Tests/testbed/slurm.sh: munge, slurmctld
// and two slurmd nodes on emulated hosts), only the counts overridden on the sbatch command line.
import Foundation
import XCTest

final class SlurmTests: XCTestCase {
    static let bed = Launcher.temporaryDirectory("slurm")
    static let script = Launcher.packageRoot.appendingPathComponent("Tests/testbed/slurm.sh").path
    static var ready = false

    override class func setUp() {
        super.setUp()
        _ = MultiHostTests.shell([script, "down", bed.path])
        let up = MultiHostTests.shell([script, "up", bed.path, "3"], timeout: 180)
        ready = up.status == 0
        if !ready { print("Slurm test bed not available: \(up.output)") }
    }

    override class func tearDown() {
        _ = MultiHostTests.shell([script, "down", bed.path])
        try? FileManager.default.removeItem(at: bed)
        super.tearDown()
    }

    override func setUpWithError() throws {
        guard Self.ready else { throw XCTSkip("the Slurm test bed could not start (needs root, iproute2 and Debian's slurm packages)") }
    }

    /// A Slurm client command on the controller's host, from `directory`, with the hosts' MPI settings.
    func slurm(_ arguments: [String], in directory: URL? = nil, environment: [String: String] = [:]) -> (status: Int32, output: String) {
        // A crashing rank's Swift backtrace without the image list, so its frames stay in view.
        var env = ["AEDIST=\(Launcher.executable.path)", "SWIFT_BACKTRACE=images=none,registers=none"]
        let text = (try? String(contentsOfFile: Self.bed.appendingPathComponent("env").path, encoding: .utf8)) ?? ""
        env += text.split(separator: "\n").flatMap { $0.replacingOccurrences(of: "export ", with: "").split(separator: " ").map(String.init) }
        env += environment.map { "\($0.key)=\($0.value)" }
        let cd = directory.map { "cd '\($0.path)' && " } ?? ""
        let quoted = arguments.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        return MultiHostTests.shell([Self.script, "run", Self.bed.path, "bash", "-c", cd + "env " + env.joined(separator: " ") + " " + quoted])
    }

    /// Submits cluster/slurm.sbatch unchanged (2 nodes, 1 task each, 1 CPU per task) from `directory`.
    func submit(_ trainArguments: [String], in directory: URL, environment: [String: String] = [:],
                sbatch options: [String] = []) throws -> String {
        let r = slurm(["sbatch", "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1"] + options + [
                       Launcher.packageRoot.appendingPathComponent("cluster/slurm.sbatch").path,
                       Launcher.packageRoot.appendingPathComponent("configs/digits-vae.yaml").path,
                       "--set", "data.path=\(Launcher.packageRoot.appendingPathComponent("data/digits.h5").path)"] + trainArguments,
                      in: directory, environment: environment)
        let id = r.output.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        XCTAssertEqual(r.status, 0, r.output)
        return try XCTUnwrap(id.flatMap { Int($0) }.map(String.init), r.output)
    }

    /// `scontrol show job` fields of `job` (JobState, Restarts, ExitCode, ...).
    func job(_ id: String) -> [String: String] {
        var fields: [String: String] = [:]
        for token in slurm(["scontrol", "show", "job", id]).output.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let kv = token.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { fields[String(kv[0])] = String(kv[1]) }
        }
        return fields
    }

    /// Waits until `job` has ended (COMPLETED, FAILED, CANCELLED, TIMEOUT) and returns its fields.
    func finished(_ id: String, timeout: Double = 150) -> [String: String] {
        let start = Date()
        var fields = job(id)
        while Date().timeIntervalSince(start) < timeout {
            if let state = fields["JobState"], ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"].contains(state) { break }
            usleep(500_000)
            fields = job(id)
        }
        return fields
    }

    /// The job's output, and last (where a long failure message gets cut) its state and the lines that
    /// tell what went wrong: errors, a crash's frames, the stop and resume lines.
    func output(_ directory: URL, _ id: String) -> String {
        let text = (try? String(contentsOf: directory.appendingPathComponent("aedist-aedist-\(id).out"), encoding: .utf8)) ?? ""
        let fields = job(id)
        let telling = text.split(separator: "\n").filter { line in
            ["error", "crash", "Fatal", "***", "srun:", "aedist: stop", "resuming", "requeue", "\"status\"", " at /"].contains { line.contains($0) }
        }.suffix(40)
        let short = "\n--- in short: job \(id) \(fields["JobState"] ?? "?"), restarts \(fields["Restarts"] ?? "?"), exit code \(fields["ExitCode"] ?? "?")\n" + telling.joined(separator: "\n")
        // AEDIST_SLURM_TRANSCRIPTS=DIR keeps each job's output and `scontrol show job` (for cluster/README.md).
        if let keep = ProcessInfo.processInfo.environment["AEDIST_SLURM_TRANSCRIPTS"] {
            try? (text + "\n--- scontrol show job \(id)\n" + slurm(["scontrol", "show", "job", id]).output).write(toFile: "\(keep)/\(name.filter { $0.isLetter })-\(id).txt", atomically: true, encoding: .utf8)
        }
        return text + short
    }

    func testTheBatchScriptRunsOnBothNodesAndAWarningSignalGivesACheckpointARequeueAndTheSameBits() throws {
        let straightDir = Launcher.temporaryDirectory("slurm-straight"), cycledDir = Launcher.temporaryDirectory("slurm-cycled")
        defer { for d in [straightDir, cycledDir] { try? FileManager.default.removeItem(at: d) } }
        let settings = ["--set", "model.encoder=[24]", "--set", "train.max_steps=600", "--set", "train.checkpoint_every=1000"]
        let node3 = MultiHostTests.linkBytesOfHost(3, bed: Self.bed)
        let straight = try submit(settings + ["--run-dir", straightDir.appendingPathComponent("run").path], in: straightDir)
        let cycled = try submit(settings + ["--run-dir", cycledDir.appendingPathComponent("run").path], in: cycledDir)
        // The warning signal Slurm sends before a time limit, once training is under way.
        ResumeTests.waitForProgress(in: cycledDir.appendingPathComponent("run"), records: 4)
        let signal = slurm(["scancel", "-b", "-s", "USR1", cycled])
        XCTAssertEqual(signal.status, 0, signal.output)

        let a = finished(straight), b = finished(cycled)
        let (outA, outB) = (output(straightDir, straight), output(cycledDir, cycled))
        XCTAssertEqual(a["JobState"], "COMPLETED", outA)
        XCTAssertEqual(b["JobState"], "COMPLETED", outB)
        XCTAssertEqual(b["Restarts"], "1", "the signalled job was not requeued once: \(outB)")
        XCTAssertTrue(outB.contains("\"status\":\"preempted\"") && outB.contains("requeueing job \(cycled)") && outB.contains("resuming from"), outB)
        XCTAssertTrue(outA.contains("\"world_size\":2"), outA)
        XCTAssertGreaterThan(MultiHostTests.linkBytesOfHost(3, bed: Self.bed) - node3, 100_000, "no traffic reached node n3")
        let last = "run/checkpoints/step-000000600.h5"
        XCTAssertTrue(bitwiseEqual(try modelTensors(straightDir.appendingPathComponent(last).path),
                                   try modelTensors(cycledDir.appendingPathComponent(last).path)),
                      "signalled, requeued and resumed under Slurm: other parameters than the straight job")
    }

    func testSrunWithoutAnMPIPluginStaysAClearError() throws {
        let dir = Launcher.temporaryDirectory("slurm-nompi")
        defer { try? FileManager.default.removeItem(at: dir) }
        let id = try submit(["--set", "train.max_steps=30", "--run-dir", dir.appendingPathComponent("run").path], in: dir,
                            environment: ["AEDIST_SRUN_MPI": "none"])
        let fields = finished(id, timeout: 90)
        let out = output(dir, id)
        XCTAssertEqual(fields["JobState"], "FAILED", out)
        XCTAssertTrue(out.contains("SLURM's PMI support") || out.contains("PMI"), out)
    }

    /// The parameters a straight run of `settings` ends with: 2 ranks under mpirun on this host,
    /// as the batch script runs them (1 thread per rank); any rank count gives the same bits.
    func straightParameters(_ settings: [String], steps: Int) throws -> [String: [Float]] {
        let dir = Launcher.temporaryDirectory("slurm-reference")
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try Launcher.run(["train", "--config", Launcher.packageRoot.appendingPathComponent("configs/digits-vae.yaml").path,
                                  "--set", "data.path=\(Launcher.packageRoot.appendingPathComponent("data/digits.h5").path)",
                                  "--threads", "1", "--run-dir", dir.path] + settings,
                                 mpi: Launcher.mpirun(2), timeout: 300)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try modelTensors(dir.appendingPathComponent(String(format: "checkpoints/step-%09d.h5", steps)).path)
    }

    func testPreemptionByAHigherPriorityPartitionRequeuesTheJobAndItEndsWithTheSameBits() throws {
        let dir = Launcher.temporaryDirectory("slurm-preempted")
        defer { try? FileManager.default.removeItem(at: dir) }
        let settings = ["--set", "model.encoder=[24]", "--set", "train.max_steps=600", "--set", "train.checkpoint_every=1000"]
        let id = try submit(settings + ["--run-dir", dir.appendingPathComponent("run").path], in: dir)
        ResumeTests.waitForProgress(in: dir.appendingPathComponent("run"), records: 4)
        // Every CPU of both nodes, in the partition of the higher tier: main's job must give way.
        let urgent = slurm(["sbatch", "--partition=urgent", "--nodes=2", "--ntasks-per-node=2", "--output=/dev/null", "--wrap", "sleep 2"], in: dir)
        XCTAssertEqual(urgent.status, 0, urgent.output)
        let fields = finished(id, timeout: 240)
        let out = output(dir, id)
        XCTAssertEqual(fields["JobState"], "COMPLETED", out)
        XCTAssertGreaterThanOrEqual(Int(fields["Restarts"] ?? "") ?? 0, 1, "the preempted job was not requeued: \(out)")
        XCTAssertTrue(out.contains("aedist: stop signal at") && out.contains("\"status\":\"preempted\"") && out.contains("resuming from"), out)
        XCTAssertTrue(bitwiseEqual(try straightParameters(settings, steps: 600),
                                   try modelTensors(dir.appendingPathComponent("run/checkpoints/step-000000600.h5").path)),
                      "preempted, requeued and resumed: other parameters than a straight run")
    }

    /// A real time limit: --time=2 (minutes) with the warning 90 s before it, so it arrives 30 to
    /// 60 s into each run (Slurm checks limits every 30 s); the training needs more than one run.
    /// About 3 minutes: .ci/run runs it after the suite (AEDIST_SLURM_TIME_LIMIT_TEST=1).
    func testARealTimeLimitWarningGivesACheckpointARequeueAndTheSameBits() throws {
        guard ProcessInfo.processInfo.environment["AEDIST_SLURM_TIME_LIMIT_TEST"] == "1" else {
            throw XCTSkip("about 3 minutes: set AEDIST_SLURM_TIME_LIMIT_TEST=1 (.ci/run does)")
        }
        let dir = Launcher.temporaryDirectory("slurm-time-limit")
        defer { try? FileManager.default.removeItem(at: dir) }
        let steps = 3000   // about 2 minutes of training here (880 steps took over 30 s)
        let settings = ["--set", "model.encoder=[24]", "--set", "train.epochs=1000", "--set", "train.max_steps=\(steps)",
                        "--set", "train.checkpoint_every=100000"]
        let id = try submit(settings + ["--run-dir", dir.appendingPathComponent("run").path], in: dir,
                            sbatch: ["--time=2", "--signal=B:USR1@90"])
        let fields = finished(id, timeout: 600)
        let out = output(dir, id)
        XCTAssertEqual(fields["JobState"], "COMPLETED", out)
        XCTAssertGreaterThanOrEqual(Int(fields["Restarts"] ?? "") ?? 0, 1, "the job was not requeued at its time limit: \(out)")
        XCTAssertTrue(out.contains("aedist: stop signal at") && out.contains("requeueing job \(id)") && out.contains("resuming from"), out)
        XCTAssertTrue(bitwiseEqual(try straightParameters(settings, steps: steps),
                                   try modelTensors(dir.appendingPathComponent(String(format: "run/checkpoints/step-%09d.h5", steps)).path)),
                      "stopped at the time limit, requeued and resumed: other parameters than a straight run")
    }
}

