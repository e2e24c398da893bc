// One run directory, one live run: rank 0 holds RUN_DIR/lock while it trains. A second run on the
// directory refuses at once, naming the holder; a holder that is gone (killed, its node crashed,
// or the same batch job requeued) is recognised and taken over, and the log says so.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Who holds a run directory: one JSON line in RUN_DIR/lock, its modification time the heartbeat.
struct LockHolder: Equatable {
    var host: String
    var pid: Int32
    /// The batch job (SLURM_JOB_ID, else PBS_JOBID), so a requeued job recognises its own lock.
    var job: String?
    var token: String
    var started: String
    /// Under mpirun: the launcher process that started this rank. A rank whose launcher has exited
    /// is being torn down (mpirun ends its ranks after one fails), so its lock is as good as free.
    var launcher: Int32?

    static func current() -> LockHolder {
        let env = ProcessInfo.processInfo.environment
        return LockHolder(host: ProcessInfo.processInfo.hostName, pid: getpid(),
                          job: env["SLURM_JOB_ID"] ?? env["PBS_JOBID"],
                          token: String(format: "%016llx", UInt64.random(in: 0...UInt64.max)),
                          started: ISO8601DateFormatter().string(from: Date()),
                          launcher: Console.underLauncher ? getppid() : nil)
    }

    var json: String {
        Console.encode(["host": host, "pid": Int(pid), "job": job.map { $0 as Any } ?? NSNull(), "token": token, "started": started,
                        "launcher": launcher.map { Int($0) as Any } ?? NSNull()])
    }

    init(host: String, pid: Int32, job: String?, token: String, started: String, launcher: Int32? = nil) {
        self.host = host; self.pid = pid; self.job = job; self.token = token; self.started = started; self.launcher = launcher
    }

    init?(json text: String) {
        guard let o = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any],
              let host = o["host"] as? String, let pid = o["pid"] as? Int, let token = o["token"] as? String else { return nil }
        self.init(host: host, pid: Int32(pid), job: o["job"] as? String, token: token, started: o["started"] as? String ?? "?",
                  launcher: (o["launcher"] as? Int).map { Int32($0) })
    }

    var described: String { "process \(pid) on host \(host)" + (job.map { " (job \($0))" } ?? "") + ", started \(started)" }
}

/// Exit status of a run refused because another live run holds its run directory (EX_CANTCREAT).
public let runDirectoryInUseExitCode: Int32 = 73

final class RunLock: @unchecked Sendable {
    let path: String
    let holder: LockHolder
    /// A holder whose heartbeat is older than this, on another host, is taken to be gone.
    static let staleAfter: TimeInterval = 90
    static let heartbeat: TimeInterval = 15
    private var timer: DispatchSourceTimer?

    /// Takes the lock of `runDirectory`, or throws naming the live holder. `log` receives one line
    /// when a stale lock is taken over.
    init(runDirectory: String, log: (String) -> Void) throws {
        path = runDirectory + "/lock"
        let me = LockHolder.current()
        holder = me
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            let age = RunLock.heartbeatAge(path)
            if let other = LockHolder(json: text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                if let reason = RunLock.gone(other, age: age, me: me) {
                    log("aedist: taking over run directory \(runDirectory) from \(other.described): \(reason)")
                } else {
                    throw RunFailure(message: "run_dir '\(runDirectory)' is in use by a live run: \(other.described) (its lock \(path) was renewed \(Int(age)) s ago). Wait for it to end, stop it, or train into another --run-dir", exitCode: runDirectoryInUseExitCode)
                }
            } else {
                log("aedist: replacing unreadable lock \(path)")
            }
        }
        do { try (me.json + "\n").write(toFile: path, atomically: true, encoding: .utf8) }
        catch { throw ConfigError("run_dir '\(runDirectory)': cannot write its lock '\(path)': \(error.localizedDescription)") }
        // Two runs that took a stale lock at the same moment: the rename that came last wins.
        guard try holds() else {
            throw RunFailure(message: "run_dir '\(runDirectory)' was taken by another run starting at the same moment; train into another --run-dir", exitCode: runDirectoryInUseExitCode)
        }
        let timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now() + RunLock.heartbeat, repeating: RunLock.heartbeat)
        let p = path
        timer.setEventHandler { _ = utimensat(AT_FDCWD, p, nil, 0) }
        timer.resume()
        self.timer = timer
    }

    /// Why `other` no longer holds its lock, or nil while it may still be running.
    static func gone(_ other: LockHolder, age: TimeInterval, me: LockHolder) -> String? {
        if let job = other.job, job == me.job { return "the same batch job \(job), requeued" }
        if other.host == me.host {
            if kill(other.pid, 0) != 0 && errno == ESRCH { return "that process has exited" }
            // /proc/PID/stat: "pid (name) state ppid ...": a zombie has exited; an orphaned rank is ending.
            let stat = (try? String(contentsOfFile: "/proc/\(other.pid)/stat", encoding: .utf8)) ?? ""
            let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
            if fields.first == "Z" || fields.first == "X" { return "that process has exited" }
            if let launcher = other.launcher, fields.count > 1, Int32(fields[1]) != launcher {
                return "its launcher (process \(launcher)) has exited, and mpirun is ending its ranks"
            }
            let command = (try? String(contentsOfFile: "/proc/\(other.pid)/cmdline", encoding: .utf8)) ?? ""
            if !command.isEmpty && !command.contains("aedist") { return "process \(other.pid) is no longer aedist" }
            return nil
        }
        return age > staleAfter ? "its lock was last renewed \(Int(age)) s ago (more than \(Int(staleAfter)) s: host or process gone)" : nil
    }

    static func heartbeatAge(_ path: String) -> TimeInterval {
        var st = stat()
        guard stat(path, &st) == 0 else { return .infinity }
        let modified = Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9
        return max(0, Date().timeIntervalSince1970 - modified)
    }

    /// Whether the lock file still names this process (another run may have taken it over).
    func holds() throws -> Bool {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
              let current = LockHolder(json: text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return false }
        return current.token == holder.token
    }

    /// Before writing into the run directory: stop if another run has taken it over.
    func check(runDirectory: String) throws {
        guard try holds() else {
            let now = (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { LockHolder(json: $0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            throw RunFailure(message: "run_dir '\(runDirectory)' was taken over by \(now?.described ?? "another run") while this run was not renewing its lock; stopping without writing, so the two runs do not interleave checkpoints", exitCode: runDirectoryInUseExitCode)
        }
    }

    /// Gives the directory up (only while the lock is still this run's).
    func release() {
        timer?.cancel()
        timer = nil
        if (try? holds()) == true { unlink(path) }
    }

    deinit { release() }
}
