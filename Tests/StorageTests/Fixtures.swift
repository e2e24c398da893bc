import Foundation
import XCTest
@testable import Storage

/// A fresh temporary directory per test, removed afterwards.
class StorageTestCase: XCTestCase {
    var dir: String = ""

    override func setUpWithError() throws {
        dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("storage-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    func tmp(_ name: String) -> String { (dir as NSString).appendingPathComponent(name) }

    /// The repository's data/digits.h5.
    var digitsPath: String {
        let here = URL(fileURLWithPath: #filePath)
        return here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("data/digits.h5").path
    }

    /// Asserts `body` throws a StorageError whose message contains every string in `mentions`.
    func assertStorageError<T>(_ body: @autoclosure () throws -> T, mentions: [String],
                               file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try body()
            XCTFail("expected a StorageError mentioning \(mentions)", file: file, line: line)
        } catch let error as StorageError {
            for m in mentions {
                XCTAssertTrue(error.description.contains(m), "message \"\(error.description)\" does not mention \"\(m)\"",
                              file: file, line: line)
            }
        } catch {
            XCTFail("expected a StorageError, got \(error)", file: file, line: line)
        }
    }
}
