// SIGTERM / SIGUSR1 (what Slurm sends before a time limit with --signal) and SIGINT (Ctrl-C) ask
// the run to stop after the current step and write a checkpoint; the handler only sets a flag that
// the training loop reads.
#if canImport(Glibc)
import Glibc
#endif

nonisolated(unsafe) private var stopSignal: sig_atomic_t = 0

public enum Preemption {
    /// Exit status of a run that stopped on a signal after writing its checkpoint (EX_TEMPFAIL:
    /// "try again"; the batch scripts requeue on it).
    public static let exitCode: Int32 = 75

    public static func install() {
        let handler: @convention(c) (Int32) -> Void = { sig in stopSignal = sig }
        signal(SIGTERM, handler)
        signal(SIGUSR1, handler)
        signal(SIGINT, handler)
    }

    /// The signal received so far, or 0.
    public static var requested: Int32 { stopSignal }
}
