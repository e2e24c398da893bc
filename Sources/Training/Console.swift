// What a run prints: on rank 0 only, progress lines to stdout, warnings and errors to stderr.
import Foundation

public final class Console: @unchecked Sendable {
    public let enabled: Bool
    let isTerminal: Bool
    private var liveLine = false

    public init(rank: Int) {
        enabled = rank == 0
        isTerminal = isatty(STDOUT_FILENO) != 0 && !Console.underLauncher
    }

    /// mpirun (and srun) give each rank a pseudo-terminal even when their own output goes to a
    /// file, so a rank cannot tell whether a person is watching: under a launcher, plain lines.
    static var underLauncher: Bool {
        let env = ProcessInfo.processInfo.environment
        return ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"].contains { env[$0] != nil }
    }

    /// A line of progress (on a terminal it redraws in place when `live`).
    public func progress(_ text: String, live: Bool = false) {
        guard enabled else { return }
        if isTerminal && live {
            FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + text).utf8))
            liveLine = true
        } else {
            endLiveLine()
            print(text)
            fflush(stdout)
        }
    }

    public func warn(_ text: String) {
        guard enabled else { return }
        endLiveLine()
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    /// One JSON object on its own line (the summary is the last line of stdout).
    public func json(_ object: [String: Any]) {
        guard enabled else { return }
        endLiveLine()
        print(Console.encode(object))
        fflush(stdout)
    }

    private func endLiveLine() {
        if liveLine { print(""); liveLine = false }
    }

    static func encode(_ object: [String: Any]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}

func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    if s >= 3600 { return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) }
    if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
    return "\(s)s"
}
