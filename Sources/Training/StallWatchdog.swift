// No hang, ever: a thread on every rank watches the collective work in progress (a training step,
// an evaluation pass) and ends this process when it makes no progress for too long, so that a rank
// that stopped responding (a hung node, a dead link) does not keep the allocation until its limit.
// Before it ends, it asks the other ranks over the roll call where they are, and names the ones
// that have not arrived.
import Communication
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Exit status of a rank that gave up on a stalled collective (EX_UNAVAILABLE).
public let stalledExitCode: Int32 = 69

public final class StallWatchdog: @unchecked Sendable {
    /// nil: automatic, max(60 s, 20 × the slowest step so far).
    let configured: Double?
    let rank: Int
    let host = ProcessInfo.processInfo.hostName
    private let lock = NSLock()
    private var operation: String?
    private var started = Date()
    /// This watch's bound in units of steps (an evaluation pass covers many steps' worth of rows).
    private var steps = 1.0
    private var step = 0
    private var slowestStep = 0.0
    private var lastCheckpoint: String?
    /// Watching a checkpoint write (rank 0 writes, the others wait for it): its own bound, from
    /// the slowest write so far (the first: 10 minutes), so a slow file system does not trip it
    /// but a rank that stops meanwhile still ends the job.
    private var writing = false
    private var slowestWrite = 0.0
    private var rollCall: RollCall?
    /// When the watchdog thread last ran, and the longest pause of this process since the watched
    /// operation began: a stopped (SIGSTOP) or frozen rank sees its own pause once it runs again.
    private var lastCheck = Date()
    private var paused = 0.0

    public init(timeout: Double?, rank: Int) {
        configured = timeout
        self.rank = rank
        let thread = Thread { [weak self] in
            while let watchdog = self {
                watchdog.check()
                if let rollCall = watchdog.attachedRollCall {
                    rollCall.serve(for: 0.25) { watchdog.report() }
                } else {
                    Thread.sleep(forTimeInterval: 0.25)
                }
            }
        }
        thread.stackSize = 1 << 16
        thread.start()
    }

    /// Lets the other ranks ask this one where it is, and this one ask them when it sees a stall.
    public func attach(_ rollCall: RollCall) {
        lock.lock(); self.rollCall = rollCall; lock.unlock()
    }

    private var attachedRollCall: RollCall? {
        lock.lock(); defer { lock.unlock() }
        return rollCall
    }

    /// What this rank is doing, for the roll call.
    private func report() -> RankReport {
        lock.lock(); defer { lock.unlock() }
        return RankReport(rank: rank, operation: operation ?? "", step: step, seconds: Date().timeIntervalSince(started))
    }

    /// The time after which the watched operation counts as stalled.
    var limit: Double {
        let base = configured ?? max(60, 20 * slowestStep * steps)
        return writing ? max(base, slowestWrite > 0 ? 20 * slowestWrite : 600) : base
    }

    /// Starts watching `operation` of step `step` (`steps`: how many steps' worth of work it is).
    public func begin(_ operation: String, step: Int, steps: Double = 1) {
        lock.lock(); defer { lock.unlock() }
        self.operation = operation; self.step = step; self.steps = max(1, steps); started = Date(); writing = false; paused = 0
    }

    /// Starts watching the checkpoint write of step `step`.
    public func beginCheckpoint(step: Int) {
        begin("the checkpoint write (rank 0 writing, every rank waiting for it)", step: step)
        lock.lock(); writing = true; lock.unlock()
    }

    /// Stops watching; a training step's duration feeds the automatic bound.
    public func end(stepSeconds: Double? = nil, checkpoint: String? = nil) {
        lock.lock(); defer { lock.unlock() }
        if writing { slowestWrite = max(slowestWrite, Date().timeIntervalSince(started)); writing = false }
        operation = nil
        if let s = stepSeconds { slowestStep = max(slowestStep, s) }
        if let checkpoint { lastCheckpoint = checkpoint }
    }

    private func check() {
        lock.lock()
        let now = Date()
        if now.timeIntervalSince(lastCheck) > 3 { paused = max(paused, now.timeIntervalSince(lastCheck)) }   // it runs every 0.25 s
        lastCheck = now
        guard let operation else { lock.unlock(); return }
        let waited = now.timeIntervalSince(started), bound = limit
        let (step, checkpoint, writingNow, pausedFor) = (self.step, lastCheckpoint, writing, paused)
        lock.unlock()
        guard waited > bound else { return }
        let rollCall = attachedRollCall
        let missing = pausedFor > 0
            ? (text: "this rank itself did not run for \(Int(pausedFor)) s (stopped, or its host frozen), so the others gave up on it", ranks: [Int]())
            : rollCall.map { r in Self.notArrived(r.ask(window: 2) { report() }, peers: r.peers, rank: rank, operation: operation, step: step) }
        let text = "aedist: error: rank \(rank) on host \(host): \(operation) of step \(step + 1) has made no progress for \(Int(waited)) s (\(writingNow ? "checkpoint writes: \(Int(bound)) s" : "train.stall_timeout: " + (configured.map { "\($0) s" } ?? "auto, \(Int(bound)) s"))); \(missing?.text ?? "another rank, its host or the network between them has stopped responding"). This process ends with status \(stalledExitCode); the last checkpoint is \(checkpoint ?? "none (no checkpoint written yet)"), and resuming from it continues the run\n"
        FileHandle.standardError.write(Data(text.utf8))
        var farewell = report()
        farewell.absent = missing?.ranks ?? []
        rollCall?.leave(farewell)
        _exit(stalledExitCode)   // the collective cannot be left any other way; mpirun then ends the other ranks
    }

    /// The ranks that have not arrived at `operation` of `step`, as far as the answers tell: those
    /// that did not answer, those elsewhere in the run, and those that a rank already ending found missing.
    static func notArrived(_ answers: [Int: RankReport], peers: [RollCall.Peer], rank: Int, operation: String, step: Int) -> (text: String, ranks: [Int]) {
        var absent: [(rank: Int, text: String)] = []
        var missedBy: [Int: Int] = [:]   // a rank that a leaving rank missed -> the lowest such leaving rank
        for a in answers.values.sorted(by: { $0.rank < $1.rank }) where a.leaving {
            for m in a.absent where missedBy[m] == nil { missedBy[m] = a.rank }
        }
        for r in peers.indices where r != rank {
            let who = "rank \(r) on host \(peers[r].host)"
            guard let a = answers[r] else { absent.append((r, "\(who) (no answer: stopped, or its host or the network to it down)")); continue }
            if a.operation == operation && a.step == step {   // there too, waiting (or giving up) like this one
                if let reporter = missedBy[r] { absent.append((r, "\(who) (did not answer rank \(reporter))")) }
                continue
            }
            let whereItIs = a.operation.isEmpty ? "between operations after step \(a.step + 1)" : "in \(a.operation) of step \(a.step + 1) for \(Int(a.seconds)) s"
            absent.append((r, "\(who) (\(whereItIs)" + (missedBy[r].map { "; did not answer rank \($0)" } ?? "") + ")"))
        }
        if absent.isEmpty {
            return ("every other rank answers and waits in the same operation, so the messages between the ranks are not getting through", [])
        }
        let listed = absent.prefix(8).map(\.text).joined(separator: ", ") + (absent.count > 8 ? " and \(absent.count - 8) more" : "")
        return ("not arrived, as far as this rank can tell: " + listed, absent.map(\.rank))
    }
}
