// No hang, ever: a thread on every rank watches the collective work in progress (a training step,
// an evaluation pass) and ends this process when it makes no progress for too long, so that a rank
// that stopped responding (a hung node, a dead link) does not keep the allocation until its limit.
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

    public init(timeout: Double?, rank: Int) {
        configured = timeout
        self.rank = rank
        let thread = Thread { [weak self] in
            while let watchdog = self {
                watchdog.check()
                Thread.sleep(forTimeInterval: 0.25)
            }
        }
        thread.stackSize = 1 << 16
        thread.start()
    }

    /// The time after which the watched operation counts as stalled.
    var limit: Double {
        let base = configured ?? max(60, 20 * slowestStep * steps)
        return writing ? max(base, slowestWrite > 0 ? 20 * slowestWrite : 600) : base
    }

    /// Starts watching `operation` of step `step` (`steps`: how many steps' worth of work it is).
    public func begin(_ operation: String, step: Int, steps: Double = 1) {
        lock.lock(); defer { lock.unlock() }
        self.operation = operation; self.step = step; self.steps = max(1, steps); started = Date(); writing = false
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
        guard let operation else { lock.unlock(); return }
        let waited = Date().timeIntervalSince(started), bound = limit
        let (step, checkpoint, writingNow) = (self.step, lastCheckpoint, writing)
        lock.unlock()
        guard waited > bound else { return }
        let text = "aedist: error: rank \(rank) on host \(host): \(operation) of step \(step + 1) has made no progress for \(Int(waited)) s (\(writingNow ? "checkpoint writes: \(Int(bound)) s" : "train.stall_timeout: " + (configured.map { "\($0) s" } ?? "auto, \(Int(bound)) s"))); another rank, its host or the network between them has stopped responding. This process ends with status \(stalledExitCode); the last checkpoint is \(checkpoint ?? "none (no checkpoint written yet)"), and resuming from it continues the run\n"
        FileHandle.standardError.write(Data(text.utf8))
        _exit(stalledExitCode)   // the collective cannot be left any other way; mpirun then ends the other ranks
    }
}
