import XCTest
@testable import Storage

/// Reads the real data/digits.h5 (written by h5py: chunked, gzip, variable-length UTF-8 strings).
final class DigitsTests: StorageTestCase {
    // From `h5dump -d /train/images -s 0,0 -c 4,64 data/digits.h5`.
    static let rows: [[UInt8]] = [
        [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8, 0,
         0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0],
        [0, 0, 0, 12, 13, 5, 0, 0, 0, 0, 0, 11, 16, 9, 0, 0, 0, 0, 3, 15, 16, 6, 0, 0, 0, 7, 15, 16, 16, 2, 0, 0,
         0, 0, 1, 16, 16, 3, 0, 0, 0, 0, 1, 16, 16, 6, 0, 0, 0, 0, 1, 16, 16, 6, 0, 0, 0, 0, 0, 11, 16, 10, 0, 0],
        [0, 0, 0, 4, 15, 12, 0, 0, 0, 0, 3, 16, 15, 14, 0, 0, 0, 0, 8, 13, 8, 16, 0, 0, 0, 0, 1, 6, 15, 11, 0, 0,
         0, 1, 8, 13, 15, 1, 0, 0, 0, 9, 16, 16, 5, 0, 0, 0, 0, 3, 13, 16, 16, 11, 5, 0, 0, 0, 0, 3, 11, 16, 9, 0],
        [0, 0, 7, 15, 13, 1, 0, 0, 0, 8, 13, 6, 15, 4, 0, 0, 0, 2, 1, 13, 13, 0, 0, 0, 0, 0, 2, 15, 11, 1, 0, 0,
         0, 0, 0, 1, 12, 12, 1, 0, 0, 0, 0, 0, 1, 10, 8, 0, 0, 0, 8, 4, 5, 14, 9, 0, 0, 0, 7, 13, 13, 9, 0, 0],
    ]

    func testShapeTypeAndAttributes() throws {
        let f = try HDF5File(readingAt: digitsPath)
        defer { f.close() }
        XCTAssertEqual(try f.shape(ofDataset: "/train/images"), [1500, 64])
        XCTAssertEqual(try f.shape(ofDataset: "test/images"), [297, 64])
        XCTAssertEqual(try f.shape(ofDataset: "/train/labels"), [1500])
        XCTAssertEqual(try f.elementType(ofDataset: "/train/images"), .uint8)
        XCTAssertEqual(f.kind(of: "/train"), .group)
        XCTAssertEqual(f.kind(of: "/train/images"), .dataset)
        XCTAssertNil(f.kind(of: "/train/nothing"))
        XCTAssertNil(f.kind(of: "/nothing/at/all"))
        XCTAssertNil(f.kind(of: "/train/images/below"))
        XCTAssertEqual(try f.children(ofGroup: "/"), ["test", "train"])
        XCTAssertEqual(try f.children(ofGroup: "/train"), ["images", "labels"])
        XCTAssertEqual(try f.int64ArrayAttribute("image_shape"), [8, 8])
        XCTAssertEqual(try f.int64Attribute("num_features"), 64)
        XCTAssertEqual(try f.int64Attribute("num_samples", at: "/train"), 1500)
        XCTAssertEqual(try f.int64ArrayAttribute("label_counts", at: "/train").count, 10)
        XCTAssertTrue(f.hasAttribute("name"))
        XCTAssertFalse(f.hasAttribute("no_such_attribute"))
        XCTAssertFalse(f.hasAttribute("name", at: "/no/such/object"))
        XCTAssertEqual(try f.stringAttribute("license"), "CC BY 4.0 (UCI ML repository); scikit-learn itself BSD-3-Clause")
        XCTAssertEqual(try f.doubleAttribute("num_classes"), 10)
        XCTAssertEqual(try f.attributeText("image_shape"), "[8, 8]")
        XCTAssertEqual(try f.attributeText("num_classes"), "10")
        XCTAssertTrue(try f.attributeNames().contains("image_shape"))
        assertStorageError(try f.int64Attribute("name"), mentions: [digitsPath, "'name'", "string", "integer"])
        assertStorageError(try f.int64Attribute("image_shape"), mentions: [digitsPath, "2 values", "one integer"])
        assertStorageError(try f.stringAttribute("missing"), mentions: [digitsPath, "'missing'"])
        let labels = try f.readInt64s("/train/labels")
        XCTAssertEqual(labels.count, 1500)
        XCTAssertTrue(labels.allSatisfy { (0...9).contains($0) })
        let first = try f.readFloats("/train/images")
        XCTAssertEqual(first.count, 1500 * 64)
        XCTAssertEqual(Array(first.prefix(64)), Self.rows[0].map(Float.init))
    }

    func testStoredMatrixGather() throws {
        let m = try StoredMatrix(file: digitsPath, dataset: "train/images")
        XCTAssertEqual(m.rows, 1500)
        XCTAssertEqual(m.columns, 64)
        XCTAssertEqual(m.elementType, .uint8)
        XCTAssertEqual(m.source, "\(digitsPath):/train/images")
        XCTAssertNil(m.firstNonFiniteRow())
        let order = [2, 0, 3, 1, 0]
        var out = [Float](repeating: -1, count: order.count * 64)
        order.withUnsafeBufferPointer { idx in
            out.withUnsafeMutableBufferPointer { m.gatherRows(idx, scale: 1.0 / 16, into: $0.baseAddress!) }
        }
        for (k, r) in order.enumerated() {
            XCTAssertEqual(Array(out[k * 64 ..< (k + 1) * 64]), Self.rows[r].map { Float($0) / 16 }, "gathered row \(k) (source row \(r))")
        }
        XCTAssertTrue(out.allSatisfy { $0 >= 0 && $0 <= 1 })
        // The last row is reachable.
        var last = [Float](repeating: 0, count: 64)
        [1499].withUnsafeBufferPointer { idx in last.withUnsafeMutableBufferPointer { m.gatherRows(idx, scale: 1, into: $0.baseAddress!) } }
        XCTAssertTrue(last.contains { $0 != 0 })
    }
}
