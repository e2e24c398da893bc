// Several hosts on one machine (Tests/testbed/hosts.sh: network namespaces, a bridge, Open MPI over
// TCP only): training across hosts gives the same bits as on one, and faults on a remote host end
// the whole job within a bound instead of hanging it.
import Foundation
import XCTest

final class MultiHostTests: XCTestCase {
    static let bed = Launcher.temporaryDirectory("hosts")
    static let script = Launcher.packageRoot.appendingPathComponent("Tests/testbed/hosts.sh").path
    static var ready = false

    static func shell(_ arguments: [String], timeout: Double = 60) -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = arguments
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        guard (try? p.run()) != nil else { return (127, "cannot start bash") }
        let data = Shared(Data())
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { data.value = pipe.fileHandleForReading.readDataToEndOfFile(); done.signal() }
        // Reaped here with waitpid: Foundation's own notice of the exit did not always come when
        // the script had started daemons (the test then waited forever on a zombie).
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0, code: Int32 = -1
        while Date() < deadline {
            let r = waitpid(p.processIdentifier, &status, WNOHANG)
            if r == p.processIdentifier { code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f); break }
            if r < 0 { code = p.isRunning ? -1 : p.terminationStatus; break }
            usleep(20_000)
        }
        if code == -1 { kill(p.processIdentifier, SIGKILL); _ = waitpid(p.processIdentifier, &status, 0); code = 137 }
        // A daemon that inherited the pipe would hold it open: take what came within 5 s.
        _ = done.wait(timeout: .now() + 5)
        return (code, String(decoding: data.value, as: UTF8.self))
    }

    override class func setUp() {
        super.setUp()
        _ = shell([script, "down", bed.path])
        let up = shell([script, "up", bed.path, "3"])
        ready = up.status == 0
        if !ready { print("multi-host test bed not available: \(up.output)") }
    }

    override class func tearDown() {
        _ = shell([script, "down", bed.path])
        try? FileManager.default.removeItem(at: bed)
        super.tearDown()
    }

    override func setUpWithError() throws {
        guard Self.ready else { throw XCTSkip("network namespaces are not available (needs root and iproute2)") }
    }

    /// Open MPI settings of the test bed (TCP over the bridge, daemons through its agent), plus the
    /// out-of-band keepalive that our launchers set so that mpirun notices a dead link.
    var environment: [String: String] {
        var env: [String: String] = [:]
        let text = (try? String(contentsOfFile: Self.bed.appendingPathComponent("env").path, encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") {
            for pair in line.replacingOccurrences(of: "export ", with: "").split(separator: " ") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                if kv.count == 2 { env[String(kv[0])] = String(kv[1]) }
            }
        }
        for (k, v) in ["oob_tcp_keepalive_time": "5", "oob_tcp_keepalive_intvl": "2", "oob_tcp_keepalive_probes": "3"] {
            env["OMPI_MCA_" + k] = v
        }
        return env
    }

    /// `aedist ARGS` under mpirun started on host 1, one rank per host of `hosts`.
    func launch(_ arguments: [String], hosts: Int, timeout: Double = 120, onStart: ((Process) -> Void)? = nil) throws -> LaunchResult {
        let mpi = [Self.script, "run", Self.bed.path, "1", "mpirun", "--hostfile", Self.bed.appendingPathComponent("hostfile").path,
                   "--map-by", "node", "--bind-to", "none", "-np", "\(hosts)"]
        // Open MPI's daemons leave the launch's process group: past the time limit, end every
        // process on every host, or the launch would wait for their end of its output pipes.
        let cleanup = DispatchWorkItem { for i in 1...3 { for pid in self.processes(on: i) { kill(pid, SIGKILL) } } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout + 2, execute: cleanup)
        defer { cleanup.cancel() }
        return try Launcher.run(arguments, mpi: ["bash"] + mpi, timeout: timeout, environment: environment, onStart: onStart)
    }

    /// Bytes that crossed host `i`'s link (both directions) in the test bed `bed`.
    static func linkBytesOfHost(_ i: Int, bed: URL) -> Int {
        let r = shell([script, "run", bed.path, "\(i)", "cat", "/sys/class/net/eth0/statistics/rx_bytes", "/sys/class/net/eth0/statistics/tx_bytes"])
        return r.output.split(separator: "\n").compactMap { Int($0) }.reduce(0, +)
    }

    func linkBytes(_ i: Int) -> Int { Self.linkBytesOfHost(i, bed: Self.bed) }

    /// Every process on host `i` (Open MPI's daemon among them).
    func processes(on i: Int) -> [Int32] {
        let r = Self.shell(["-c", "ip netns pids aedist-$(printf '%s' '\(Self.bed.path)' | cksum | awk '{ print $1 % 1000000 }')-h\(i)"])
        return r.output.split(separator: "\n").compactMap { Int32($0) }
    }

    /// aedist processes running on host `i`.
    func ranks(on i: Int) -> [Int32] {
        processes(on: i).filter { FaultTests.command($0).contains("aedist train") }
    }

    func testTrainingAcrossHostsGivesTheSameBitsAsOnOneHost() throws {
        let here = Launcher.temporaryDirectory("mh-local"), across = Launcher.temporaryDirectory("mh-across")
        defer { for d in [here, across] { try? FileManager.default.removeItem(at: d) } }
        let settings = ["--set", "train.max_steps=12", "--threads", "1", "--resume", "never"]
        let local = try Launcher.run(smallRun + settings + ["--run-dir", here.path], mpi: Launcher.mpirun(2))
        XCTAssertEqual(local.status, 0, local.stderr)
        let before = linkBytes(2)
        let remote = try launch(smallRun + settings + ["--run-dir", across.path], hosts: 2)
        XCTAssertEqual(remote.status, 0, remote.stderr)
        XCTAssertEqual(remote.summary?["world_size"] as? Int, 2)
        // One host reduces in shared memory, two hosts by messages: the same bits.
        XCTAssertTrue(local.stdout.contains("gradients reduced in shared memory"), local.stdout)
        XCTAssertTrue(remote.stdout.contains("gradients reduced by MPI messages (the ranks span nodes)"), remote.stdout)
        // 12 steps of a 2-rank gradient exchange, the parameter gathers and the evaluation.
        XCTAssertGreaterThan(linkBytes(2) - before, 100_000, "no traffic between the hosts: did the ranks run on one?")
        XCTAssertTrue(bitwiseEqual(try modelTensors(try XCTUnwrap(local.summary?["checkpoint"] as? String)),
                                   try modelTensors(try XCTUnwrap(remote.summary?["checkpoint"] as? String))),
                      "two hosts over TCP trained other parameters than one host")
    }

    /// Runs a long training on 3 hosts, applies `fault` to host 3 once it is under way, and checks
    /// that every process on every host has exited within `bound` seconds, then that it resumes.
    func faultEndsTheJob(_ title: String, bound: Double, status expected: Int32?, stallTimeout: Int = 5, message expectedMessage: String? = nil,
                         fault: @escaping (_ victim: Int32) -> Void) throws {
        let dir = Launcher.temporaryDirectory("mh-fault")
        defer { try? FileManager.default.removeItem(at: dir) }
        let args = smallRun + ["--run-dir", dir.path, "--threads", "1", "--set", "train.batch_size=48", "--set", "train.micro_batch=16",
                               "--set", "train.max_steps=100000", "--set", "train.checkpoint_every=10", "--set", "train.stall_timeout=\(stallTimeout)"]
        let faultAt = Shared(Date())
        let result = try launch(args, hosts: 3, timeout: 150) { _ in
            DispatchQueue.global().async {
                ResumeTests.waitForProgress(in: dir, records: 4)
                if let victim = self.ranks(on: 3).first { faultAt.value = Date(); fault(victim) }
            }
        }
        // Every process on every host: the launch returned, so mpirun is gone; the ranks and daemons too?
        var left: [Int32] = []
        for _ in 0..<100 {
            left = (1...3).flatMap { processes(on: $0) }
            if left.isEmpty { break }
            usleep(100_000)
        }
        let seconds = Date().timeIntervalSince(faultAt.value)
        _ = Self.shell([Self.script, "link", Self.bed.path, "3", "up"])
        for pid in left { kill(pid, SIGKILL) }
        XCTAssertFalse(result.timedOut, "\(title): the job hung")
        XCTAssertEqual(left, [], "\(title): processes left running")
        if let expected { XCTAssertEqual(result.status, expected, "\(title): \(result.stderr)") } else { XCTAssertNotEqual(result.status, 0) }
        XCTAssertLessThan(seconds, bound, "\(title): \(seconds) s until every process had exited")
        XCTAssertNil(result.summary?["status"], "\(title): the run claims it finished")
        let message = result.stderr.split(separator: "\n").first { $0.contains("aedist: error") || $0.contains("exited on signal") || $0.contains("lost communication") }
        if let expectedMessage { XCTAssertTrue(result.stderr.contains(expectedMessage), "\(title): \(result.stderr)") }
        FaultTests.record(title, ["(3 emulated hosts over TCP, stall_timeout \(stallTimeout) s, Open MPI keepalive 5 s + 3 x 2 s)"],
                          LaunchResult(status: result.status, stdout: "", stderr: message.map { String($0).replacingOccurrences(of: dir.path, with: "RUN") } ?? result.stderr,
                                       seconds: seconds, timedOut: false))
        let again = try launch(args.map { $0 == "train.max_steps=100000" ? "train.max_steps=30" : $0 }, hosts: 3, timeout: 90)
        XCTAssertEqual(again.status, 0, "\(title): resume: \(again.stderr)")
        XCTAssertTrue(again.stdout.contains("resuming from"), again.stdout)
    }

    func testARankKilledOnARemoteHostEndsTheJob() throws {
        try faultEndsTheJob("remote rank killed (SIGKILL)", bound: 30, status: nil) { kill($0, SIGKILL) }
    }

    func testARemoteRankThatStopsRespondingEndsTheJob() throws {
        // The ranks on hosts 1 and 2 name the one on host 3 as the rank that has not arrived.
        try faultEndsTheJob("remote rank stopped (SIGSTOP)", bound: 30, status: 69, message: "-h3 (no answer:") { kill($0, SIGSTOP) }
    }

    func testARemoteHostsLinkGoingDownEndsTheJob() throws {
        // mpirun's keepalive (about 11 s) notices first and ends the job. (A watchdog that fired
        // first would have mpirun send to the dead host's daemon, and unacknowledged data holds
        // TCP's keepalive off: then mpirun takes TCP's retransmission limit, about 15 minutes.)
        try faultEndsTheJob("remote host's link down", bound: 30, status: nil, stallTimeout: 30) { _ in
            _ = Self.shell([Self.script, "link", Self.bed.path, "3", "down"])
        }
    }

    func testAWholeRemoteHostGoneEndsTheJob() throws {
        try faultEndsTheJob("remote host gone (all its processes killed)", bound: 30, status: nil) { _ in
            for pid in self.processes(on: 3) { kill(pid, SIGKILL) }
        }
    }

    /// On one link (host 3's), 1 % of the packets each way dropped, or every packet leaving host 3
    /// held 50 ms: the job slows but completes, with the bits of an unimpaired run.
    func testPacketLossAndDelayOnOneLinkSlowTheJobButItEndsWithTheSameBits() throws {
        let args = smallRun + ["--threads", "1", "--set", "train.batch_size=48", "--set", "train.micro_batch=16", "--set", "train.max_steps=30", "--resume", "never"]
        func run(_ name: String) throws -> ([String: [Float]], LaunchResult) {
            let dir = Launcher.temporaryDirectory("mh-\(name)")
            defer { try? FileManager.default.removeItem(at: dir) }
            let r = try launch(args + ["--run-dir", dir.path], hosts: 3, timeout: 240)
            XCTAssertFalse(r.timedOut, "\(name): hung")
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
            return (try modelTensors(try XCTUnwrap(r.summary?["checkpoint"] as? String, "\(name): \(r.stdout)")), r)
        }
        let (clean, cleanRun) = try run("clean")
        for (kind, value) in [("loss", "1"), ("delay", "50")] {
            let set = Self.shell([Self.script, "impair", Self.bed.path, "3", kind, value], timeout: 120)
            XCTAssertEqual(set.status, 0, set.output)
            defer { _ = Self.shell([Self.script, "impair", Self.bed.path, "3", "clear"]) }
            let (impaired, r) = try run(kind)
            XCTAssertTrue(bitwiseEqual(clean, impaired), "\(kind) on one link: other parameters than without it")
            if kind == "loss" {
                let dropped = Int(Self.shell([Self.script, "impair", Self.bed.path, "3", "dropped"]).output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
                XCTAssertGreaterThan(dropped, 0, "the loss rules dropped no packet")
            } else {
                XCTAssertGreaterThan(r.seconds, cleanRun.seconds + 1, "50 ms on every packet did not slow the job: was the delay applied?")
            }
            let title = kind == "loss" ? "1 % packet loss each way on one host's link" : "50 ms delay on every packet leaving one host"
            FaultTests.record(title, ["(3 emulated hosts over TCP, 30 steps; unimpaired: \(String(format: "%.1f", cleanRun.seconds)) s)"],
                              LaunchResult(status: r.status, stdout: "", stderr: "completed, the same bits as unimpaired", seconds: r.seconds, timedOut: false))
        }
    }

    /// cluster/pbs.sh as a PBS mom starts it, on host 1 of the test bed: PBS_NODEFILE naming hosts
    /// 1 and 2, PBS_O_WORKDIR, PBS_JOBID, the job's -v variables, and a `qsub` on PATH that
    /// records its arguments (no PBS server is packaged here). Returns the exit status and output.
    func pbsJob(_ dir: URL, extra: String, onStart: (() -> Void)? = nil) -> (status: Int32, output: String) {
        let nodes = dir.appendingPathComponent("nodefile"), bin = dir.appendingPathComponent("bin")
        try? FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        let hostfile = (try? String(contentsOfFile: Self.bed.appendingPathComponent("hostfile").path, encoding: .utf8)) ?? ""
        let names = hostfile.split(separator: "\n").prefix(2).map { $0.split(separator: " ")[0] }
        try? (names.joined(separator: "\n") + "\n").write(to: nodes, atomically: true, encoding: .utf8)
        let qsub = bin.appendingPathComponent("qsub")
        try? "#!/bin/sh\necho \"$@\" >> '\(dir.path)/qsub.calls'\necho 124.testserver\n".write(to: qsub, atomically: true, encoding: .utf8)
        chmod(qsub.path, 0o755)
        var env = environment.map { "\($0.key)=\($0.value)" }
        env += ["PBS_NODEFILE=\(nodes.path)", "PBS_O_WORKDIR=\(Launcher.packageRoot.path)", "PBS_JOBID=123.testserver",
                "PBS_JOBNAME=aedist", "PBS_ENVIRONMENT=PBS_BATCH", "PATH=\(bin.path):/usr/local/bin:/usr/bin:/bin",
                "AEDIST=\(Launcher.executable.path)", "THREADS=1", "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
                "CONFIG=\(Launcher.packageRoot.appendingPathComponent("configs/digits-vae.yaml").path)", "EXTRA=\(extra)"]
        if let onStart { DispatchQueue.global().async(execute: onStart) }
        return Self.shell([Self.script, "run", Self.bed.path, "1", "env"] + env
                          + ["bash", Launcher.packageRoot.appendingPathComponent("cluster/pbs.sh").path], timeout: 120)
    }

    func testThePBSScriptRunsOnTheNodefilesHostsAndTheWalltimeSignalGivesACheckpointAResubmissionAndTheSameBits() throws {
        let straightDir = Launcher.temporaryDirectory("pbs-straight"), cycledDir = Launcher.temporaryDirectory("pbs-cycled")
        defer { for d in [straightDir, cycledDir] { try? FileManager.default.removeItem(at: d) } }
        func extra(_ dir: URL) -> String {
            "--set model.encoder=[24] --set train.max_steps=400 --set train.checkpoint_every=1000 --resume auto --run-dir \(dir.appendingPathComponent("run").path)"
        }
        let before = linkBytes(2)
        let straight = pbsJob(straightDir, extra: extra(straightDir))
        XCTAssertEqual(straight.status, 0, straight.output)
        XCTAssertTrue(straight.output.contains("\"world_size\":2"), straight.output)
        XCTAssertGreaterThan(linkBytes(2) - before, 100_000, "no traffic reached host 2: did both ranks run on host 1?")
        // PBS sends SIGTERM to the job's shell before the walltime kill.
        let cycled = pbsJob(cycledDir, extra: extra(cycledDir)) {
            ResumeTests.waitForProgress(in: cycledDir.appendingPathComponent("run"), records: 3)
            for pid in self.processes(on: 1) where FaultTests.command(pid).contains("cluster/pbs.sh") { kill(pid, SIGTERM) }
        }
        XCTAssertEqual(cycled.status, 75, cycled.output)
        XCTAssertTrue(cycled.output.contains("\"status\":\"preempted\"") && cycled.output.contains("resubmitting"), cycled.output)
        let calls = (try? String(contentsOf: cycledDir.appendingPathComponent("qsub.calls"), encoding: .utf8)) ?? ""
        XCTAssertTrue(calls.contains("-v CONFIG=") && calls.contains("cluster/pbs.sh") && calls.contains("train.max_steps=400"), "qsub: \(calls)")
        // The resubmitted job, as PBS would start it.
        let resumed = pbsJob(cycledDir, extra: extra(cycledDir))
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.output.contains("resuming from"), resumed.output)
        let last = "run/checkpoints/step-000000400.h5"
        XCTAssertTrue(bitwiseEqual(try modelTensors(straightDir.appendingPathComponent(last).path),
                                   try modelTensors(cycledDir.appendingPathComponent(last).path)),
                      "stopped by the walltime signal and resubmitted under pbs.sh: other parameters than the straight job")
    }
}
