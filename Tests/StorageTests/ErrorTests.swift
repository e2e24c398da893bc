import XCTest
@testable import Storage

final class ErrorTests: StorageTestCase {
    func testMissingAndNonHDF5Files() throws {
        let missing = tmp("missing.h5")
        assertStorageError(try HDF5File(readingAt: missing), mentions: [missing, "no such file"])
        assertStorageError(try StoredMatrix(file: missing, dataset: "/train/images"), mentions: [missing, "/train/images", "no such file"])

        let text = tmp("text.h5")
        try "just some text, not HDF5\n".write(toFile: text, atomically: false, encoding: .utf8)
        assertStorageError(try HDF5File(readingAt: text), mentions: [text, "not an HDF5 file"])
        assertStorageError(try StoredMatrix(file: text, dataset: "x"), mentions: [text, "/x", "not an HDF5 file"])

        let empty = tmp("empty.h5")
        _ = FileManager.default.createFile(atPath: empty, contents: Data())
        assertStorageError(try HDF5File(readingAt: empty), mentions: [empty, "empty"])
        assertStorageError(try HDF5File(readingAt: dir), mentions: [dir, "directory"])
    }

    func testDatasetShapeAndTypeErrors() throws {
        let path = tmp("shapes.h5")
        let w = try HDF5File(creatingAt: path)
        try w.write((0..<24).map { Float($0) }, shape: [2, 3, 4], to: "/cube")
        try w.write([Float](), shape: [3, 0, 2], to: "/flat")
        try w.write([Float](), shape: [0, 4], to: "/norows")
        try w.write([Float](), shape: [4, 0], to: "/nocolumns")
        try w.write([1] as [Float], shape: [], to: "/scalar")
        try w.writeFixedLengthStrings(["a", "bc"], length: 4, to: "/names")
        try w.write([1, 2] as [Float], shape: [1, 2], to: "/g/ok")
        w.close()
        let expectation = "numeric dataset [samples, features] or [samples, d1, ..., dk]"
        // N-D: rows of d1·…·dk features, flattened row-major like numpy's reshape.
        let cube = try StoredMatrix(file: path, dataset: "/cube")
        XCTAssertEqual([cube.rows, cube.columns], [2, 12])
        XCTAssertEqual(cube.sampleShape, [3, 4])
        var second = [Float](repeating: 0, count: 12)
        [1].withUnsafeBufferPointer { cube.gatherRows($0, scale: 1, into: &second) }
        XCTAssertEqual(second, (12..<24).map { Float($0) })
        assertStorageError(try StoredMatrix(file: path, dataset: "/flat"), mentions: [path, "/flat", "[3, 0, 2]", "no data"])
        assertStorageError(try StoredMatrix(file: path, dataset: "/norows"), mentions: [path, "/norows", "[0, 4]", "at least one row"])
        assertStorageError(try StoredMatrix(file: path, dataset: "/nocolumns"), mentions: [path, "/nocolumns", "[4, 0]"])
        assertStorageError(try StoredMatrix(file: path, dataset: "/scalar"), mentions: [path, "/scalar", "scalar", expectation])
        assertStorageError(try StoredMatrix(file: path, dataset: "/names"), mentions: [path, "/names", expectation])
        assertStorageError(try StoredMatrix(file: path, dataset: "/g"), mentions: [path, "/g", "is a group", "ok"])
        assertStorageError(try StoredMatrix(file: path, dataset: "/g/nope"), mentions: [path, "/g/nope", "no such object", "/g holds: ok"])
        assertStorageError(try StoredMatrix(file: path, dataset: "/cube/x"), mentions: [path, "/cube/x", "no such object"])

        let f = try HDF5File(readingAt: path)
        assertStorageError(try f.elementType(ofDataset: "/names"), mentions: [path, "/names", "fixed-length strings", "expected numbers"])
        assertStorageError(try f.readFloats("/names"), mentions: [path, "/names", "strings"])
        assertStorageError(try f.readFloats("/g"), mentions: [path, "/g", "group"])
        assertStorageError(try f.shape(ofDataset: "/nothing"), mentions: [path, "/nothing", "no such object"])
        assertStorageError(try f.children(ofGroup: "/cube"), mentions: [path, "/cube", "dataset", "expected a group"])
        assertStorageError(try f.children(ofGroup: "/none"), mentions: [path, "/none", "no such object"])
        XCTAssertEqual(try f.shape(ofDataset: "/names"), [2])
    }

    func testDigitsErrors() throws {
        assertStorageError(try StoredMatrix(file: digitsPath, dataset: "/train/labels"), mentions: [digitsPath, "/train/labels", "1-D", "[1500]"])
        assertStorageError(try StoredMatrix(file: digitsPath, dataset: "/train"), mentions: [digitsPath, "/train", "group", "images, labels"])
        assertStorageError(try StoredMatrix(file: digitsPath, dataset: "/train/imagez"), mentions: [digitsPath, "/train/imagez", "images, labels"])
        assertStorageError(try StoredMatrix(file: digitsPath, dataset: "/valid/images"), mentions: [digitsPath, "/valid/images", "/ holds: test, train"])
    }
}
