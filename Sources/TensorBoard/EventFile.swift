// TensorBoard event files: scalars and PNG images as TensorBoard reads them, one Event message per
// record in TFRecord framing (the length as 8 little-endian bytes, its masked CRC-32C, the
// message, the message's masked CRC-32C).
import Foundation
import Storage
import SwiftProtobuf

public final class EventFile {
    public let path: String
    private let handle: FileHandle

    /// The name TensorBoard looks for in a log directory: `events.out.tfevents.SECONDS.HOST`.
    public static func isEventFile(_ name: String) -> Bool { name.hasPrefix("events.out.tfevents.") }

    /// The event files of `directory`, oldest first.
    public static func files(in directory: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter(isEventFile).sorted().map { directory + "/" + $0 }
    }

    /// Opens `directory`'s event file to append to, after cutting it back to the records of steps
    /// up to `step` (0: a new run, a new file); creates the file when there is none.
    public init(directory: String, continuingAfter step: Int) throws {
        var existing = EventFile.files(in: directory)
        if step == 0 {
            for file in existing { try? FileManager.default.removeItem(atPath: file) }
            existing = []
        }
        if let newest = existing.last {
            try EventFile.cut(newest, toStep: step)
            path = newest
        } else {
            let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"
            path = directory + "/events.out.tfevents.\(Int(Date().timeIntervalSince1970)).\(host)"
            var first = Aedist_Tensorboard_Event()
            first.wallTime = Date().timeIntervalSince1970
            first.fileVersion = "brain.Event:2"
            guard FileManager.default.createFile(atPath: path, contents: try EventFile.record(first)) else {
                throw EventFileError("cannot create '\(path)'")
            }
        }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw EventFileError("cannot open '\(path)' for writing") }
        handle.seekToEndOfFile()
        self.handle = handle
    }

    deinit { try? handle.close() }

    /// Scalars of one step, `(tag, value)`.
    public func write(scalars: [(tag: String, value: Double)], step: Int) throws {
        try write(step: step, scalars.map { tag, value in
            var v = Aedist_Tensorboard_Summary.Value()
            v.tag = tag
            v.simpleValue = Float(value)
            return v
        })
    }

    /// A PNG image of one step.
    public func write(image png: Data, width: Int, height: Int, colorChannels: Int, tag: String, step: Int) throws {
        var image = Aedist_Tensorboard_Summary.Image()
        image.width = Int32(width); image.height = Int32(height); image.colorspace = Int32(colorChannels)
        image.encodedImageString = png
        var v = Aedist_Tensorboard_Summary.Value()
        v.tag = tag
        v.image = image
        try write(step: step, [v])
    }

    private func write(step: Int, _ values: [Aedist_Tensorboard_Summary.Value]) throws {
        var event = Aedist_Tensorboard_Event()
        event.wallTime = Date().timeIntervalSince1970
        event.step = Int64(step)
        event.summary.value = values
        try handle.write(contentsOf: EventFile.record(event))
    }

    /// One framed record.
    static func record(_ event: Aedist_Tensorboard_Event) throws -> Data {
        let message = try event.serializedData()
        var length = UInt64(message.count).littleEndian
        let lengthBytes = withUnsafeBytes(of: &length) { Data($0) }
        var out = lengthBytes
        out.append(contentsOf: littleEndian(masked(lengthBytes)))
        out.append(message)
        out.append(contentsOf: littleEndian(masked(message)))
        return out
    }

    /// The events of a file in order, up to its first incomplete or damaged record (a write cut
    /// short), and the byte offset where each ends.
    public static func read(_ path: String) throws -> (events: [Aedist_Tensorboard_Event], ends: [Int]) {
        guard let data = FileManager.default.contents(atPath: path) else { throw EventFileError("cannot read '\(path)'") }
        let bytes = [UInt8](data)
        var events: [Aedist_Tensorboard_Event] = [], ends: [Int] = [], at = 0
        func word(_ i: Int, _ n: Int) -> UInt64 { (0..<n).reduce(UInt64(0)) { $0 | UInt64(bytes[i + $1]) << (8 * UInt64($1)) } }
        while at + 12 <= bytes.count {
            let length = Int(clamping: word(at, 8))
            guard UInt32(word(at + 8, 4)) == masked(bytes[at..<(at + 8)]), length <= bytes.count - at - 16 else { break }
            let message = bytes[(at + 12)..<(at + 12 + length)]
            guard UInt32(word(at + 12 + length, 4)) == masked(message),
                  let event = try? Aedist_Tensorboard_Event(serializedBytes: Array(message)) else { break }
            events.append(event)
            at += 16 + length
            ends.append(at)
        }
        return (events, ends)
    }

    /// Cuts `path` back to its records of steps up to `step` (and its first, the file version),
    /// as a resumed run continues from that step; a damaged tail goes too.
    static func cut(_ path: String, toStep step: Int) throws {
        let (events, ends) = try read(path)
        // Records follow the steps in order: the kept ones are the first.
        let keep = max(1, events.prefix { $0.step <= Int64(step) }.count)
        let end = keep <= ends.count ? ends[keep - 1] : 0
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        guard end != size else { return }
        do {
            let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            try handle.truncate(atOffset: UInt64(end))
        } catch { throw EventFileError("cannot cut '\(path)' back to step \(step): \(error.localizedDescription)") }
    }

    /// TFRecord's masked CRC-32C: rotated right by 15 bits, plus a constant.
    static func masked<S: Sequence>(_ bytes: S) -> UInt32 where S.Element == UInt8 {
        let crc = CRC32.castagnoli.checksum(bytes)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }

    private static func littleEndian(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
}

public struct EventFileError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = "TensorBoard event file: " + description }
}
