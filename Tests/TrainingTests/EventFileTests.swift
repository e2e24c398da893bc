// TensorBoard event files: records read back, a damaged tail (a write cut short) dropped, and the
// cut back to a step that a resumed run makes.
import Foundation
@testable import TensorBoard
import XCTest

final class EventFileTests: XCTestCase {
    func testRecordsReadBackAndACutKeepsTheStepsUpToItAndDropsADamagedTail() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("events-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let file = try EventFile(directory: dir, continuingAfter: 0)
            for step in 1...5 { try file.write(scalars: [("train/loss", Double(10 - step)), ("train/lr", 0.5)], step: step) }
        }
        let path = try XCTUnwrap(EventFile.files(in: dir).first)
        var (events, _) = try EventFile.read(path)
        XCTAssertEqual(events.first?.fileVersion, "brain.Event:2")
        XCTAssertEqual(events.dropFirst().map(\.step), [1, 2, 3, 4, 5])
        XCTAssertEqual(events[2].summary.value.map(\.tag), ["train/loss", "train/lr"])
        XCTAssertEqual(events[2].summary.value[0].simpleValue, 8)

        // Half a record at the end, as a write that a kill cut short leaves: reading stops before it.
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data([0x20, 0, 0, 0, 0, 0, 0, 0, 1, 2]))
        try handle.close()
        XCTAssertEqual(try EventFile.read(path).events.count, 6)

        // A run resumed from step 3 continues the same file after its records up to step 3.
        do {
            let file = try EventFile(directory: dir, continuingAfter: 3)
            XCTAssertEqual(file.path, path)
            try file.write(scalars: [("train/loss", 1)], step: 4)
        }
        (events, _) = try EventFile.read(path)
        XCTAssertEqual(events.dropFirst().map(\.step), [1, 2, 3, 4])
        XCTAssertEqual(events.last?.summary.value.first?.simpleValue, 1)
        let size = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        XCTAssertEqual(try EventFile.read(path).ends.last, size, "nothing after the last record")

        // A flipped byte inside a record ends the good part there.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count - 10] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try EventFile.read(path).events.count, 4)

        // A new run (step 0) starts a new file.
        _ = try EventFile(directory: dir, continuingAfter: 0)
        XCTAssertEqual(EventFile.files(in: dir).count, 1)
        XCTAssertEqual(try EventFile.read(EventFile.files(in: dir)[0]).events.count, 1)
    }
}
