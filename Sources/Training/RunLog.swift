// What a run logs as it trains (rank 0): one JSON object per event in metrics.jsonl, and the
// same numbers as TensorBoard scalars ("train/loss", "validation/kl", ...) with the epoch's pictures
// as images in the run directory's TensorBoard event file. A resumed run first cuts both back to
// its checkpoint's step, so its record is the uninterrupted run's.
import Foundation
import Storage
import TensorBoard

final class RunLog {
    private let metrics: FileHandle?
    /// nil on ranks other than 0, and after a failed write (warned once: the run goes on, as a
    /// rank that stopped here alone would leave the others waiting).
    private var events: EventFile?

    static func metricsPath(runDirectory: String) -> String { runDirectory + "/metrics.jsonl" }

    /// Opens the run directory's logs (creating them) to continue after `step`; on ranks other
    /// than 0 (`enabled` false) it logs nothing.
    init(runDirectory: String, continuingAfter step: Int, enabled: Bool) throws {
        guard enabled else { metrics = nil; events = nil; return }
        let path = RunLog.metricsPath(runDirectory: runDirectory)
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw ConfigError("run directory: cannot create '\(path)'")
            }
        }
        metrics = FileHandle(forWritingAtPath: path)
        metrics?.seekToEndOfFile()
        do { events = try EventFile(directory: runDirectory, continuingAfter: step) }
        catch { throw ConfigError("run directory '\(runDirectory)': \(error)") }
    }

    /// Keys of a metrics object that are not measurements.
    static let bookkeeping: Set<String> = ["event", "step", "epoch", "seconds", "run_id"]

    /// Logs `object` (its "event" and "step" name it) as a metrics line and its numbers as scalars.
    func append(_ object: [String: Any]) {
        metrics?.write(Data((Console.encode(object) + "\n").utf8))
        guard let kind = object["event"] as? String, let step = object["step"] as? Int else { return }
        let scalars = object.filter { !RunLog.bookkeeping.contains($0.key) }.compactMap { key, value -> (tag: String, value: Double)? in
            (value as? Double).map { ("\(kind)/\(key)", $0) } ?? (value as? Int).map { ("\(kind)/\(key)", Double($0)) }
        }.sorted { $0.tag < $1.tag }
        writeEvents { try $0.write(scalars: scalars, step: step) }
    }

    /// Logs a picture as a TensorBoard image.
    func append(_ picture: PixelImage, tag: String, step: Int) {
        writeEvents { try $0.write(image: picture.pngData, width: picture.width, height: picture.height, colorChannels: picture.channels, tag: tag, step: step) }
    }

    /// Whether TensorBoard events are being written (rank 0, no failure so far).
    var writesEvents: Bool { events != nil }

    private func writeEvents(_ body: (EventFile) throws -> Void) {
        guard let events else { return }
        do { try body(events) } catch {
            FileHandle.standardError.write(Data("warning: \(error); no more TensorBoard events are written in this run (metrics.jsonl goes on)\n".utf8))
            self.events = nil
        }
    }

    /// Cuts `path` back to what a run that continues from `step` must keep: the lines of run
    /// `runID` (or of no run id, written before ids existed) up to that step. Lines logged after
    /// the checkpoint would otherwise appear twice. Step 0 empties the file (a new run).
    static func cutMetrics(path: String, toStep step: Int, runID: String) throws {
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
    deinit { try? metrics?.close() }
}

