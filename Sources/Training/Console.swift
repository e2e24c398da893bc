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

/// Appends JSON lines to `metrics.jsonl` (rank 0 only).
final class MetricsLog {
    private let handle: FileHandle?
    init(path: String, enabled: Bool) throws {
        guard enabled else { handle = nil; return }
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw ConfigError("run directory: cannot create '\(path)'")
            }
        }
        handle = FileHandle(forWritingAtPath: path)
        handle?.seekToEndOfFile()
    }
    func append(_ object: [String: Any]) {
        handle?.write(Data((Console.encode(object) + "\n").utf8))
    }

    /// Cuts `path` back to what a run that continues from `step` must keep: the lines of run
    /// `runID` (or of no run id, written before ids existed) up to that step. Lines logged after
    /// the checkpoint would otherwise appear twice. Step 0 empties the file (a new run).
    static func cut(path: String, toStep step: Int, runID: String) throws {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return }
        let kept = text.split(separator: "\n").filter { line in
            guard step > 0, let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else { return false }
            let id = object["run_id"] as? String
            return (id == nil || id == runID) && ((object["step"] as? Int).map { $0 <= step } ?? false)
        }
        guard kept.count != text.split(separator: "\n").count else { return }
        do { try kept.map { $0 + "\n" }.joined().write(toFile: path, atomically: true, encoding: .utf8) }
        catch { throw ConfigError("run directory: cannot rewrite '\(path)': \(error.localizedDescription)") }
    }
    deinit { try? handle?.close() }
}

func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    if s >= 3600 { return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) }
    if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
    return "\(s)s"
}
