import XCTest
@testable import Storage

final class RoundTripTests: StorageTestCase {
    /// Writes `values` (3 x 4) of each type, reads them through readFloats, readDoubles and StoredMatrix.
    func check<T: StorageScalar & Equatable>(_ values: [T], _ type: ElementType, file line: UInt = #line) throws {
        XCTAssertEqual(values.count, 12)
        let path = tmp("\(type.rawValue).h5")
        let w = try HDF5File(creatingAt: path)
        try w.write(values, shape: [3, 4], to: "/data/\(type.rawValue)")
        w.close()
        let f = try HDF5File(readingAt: path)
        XCTAssertEqual(try f.elementType(ofDataset: "/data/\(type.rawValue)"), type, line: line)
        XCTAssertEqual(try f.shape(ofDataset: "/data/\(type.rawValue)"), [3, 4], line: line)
        XCTAssertEqual(try f.readFloats("/data/\(type.rawValue)"), values.map(\.floatValue), line: line)
        XCTAssertEqual(try f.readConverted("/data/\(type.rawValue)", as: T.self, expected: "x").values, values, line: line)
        f.close()
        let m = try StoredMatrix(file: path, dataset: "data/\(type.rawValue)")
        XCTAssertEqual(m.elementType, type, line: line)
        XCTAssertEqual(m.rows, 3, line: line)
        XCTAssertEqual(m.columns, 4, line: line)
        var out = [Float](repeating: .nan, count: 12)
        [2, 0, 1].withUnsafeBufferPointer { idx in out.withUnsafeMutableBufferPointer { m.gatherRows(idx, scale: 0.5, into: $0.baseAddress!) } }
        let expected = [2, 0, 1].flatMap { r in values[r * 4 ..< r * 4 + 4].map { $0.floatValue * 0.5 } }
        XCTAssertEqual(out, expected, line: line)
    }

    func testEveryElementType() throws {
        try check([Int8.min, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, Int8.max], .int8)
        try check([UInt8.min, 1, 2, 3, 4, 5, 6, 7, 8, 9, 200, UInt8.max], .uint8)
        try check([Int16.min, -300, 0, 1, 2, 3, 4, 5, 6, 7, 8, Int16.max], .int16)
        try check([UInt16.min, 1, 2, 3, 4, 5, 6, 7, 8, 9, 40000, UInt16.max], .uint16)
        try check([Int32.min, -70000, 0, 1, 2, 3, 4, 5, 6, 7, 8, Int32.max], .int32)
        try check([UInt32.min, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3_000_000_000, UInt32.max], .uint32)
        try check([Int64.min, -1 << 40, 0, 1, 2, 3, 4, 5, 6, 7, 8, Int64.max], .int64)
        try check([UInt64.min, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1 << 63, UInt64.max], .uint64)
        try check([-Float.greatestFiniteMagnitude, -1.5, 0, 0.25, 1e-30, 3, 4, 5, 6, 7, 8, 1e30], .float32)
        try check([-1e300, -1.5, 0, 0.25, 1e-300, 3, 4, 5, 6, 7, 8, 1e10], .float64)
    }

    func testConcreteWritesAndReads() throws {
        let path = tmp("concrete.h5")
        let w = try HDF5File(creatingAt: path)
        let floats: [Float] = (0..<6).map { Float($0) * 0.5 - 1 }
        try floats.withUnsafeBufferPointer { try w.write($0, shape: [2, 3], to: "model/encoder.0.weight") }
        try w.write([Float](repeating: 7, count: 3), shape: [3], to: "model/encoder.0.bias")
        try w.write([1.0, 2.5, -3.25] as [Double], shape: [3], to: "/optimizer/m")
        try w.write([Int64.min, 0, Int64.max] as [Int64], shape: [3], to: "/optimizer/state/step")
        try w.write([0, UInt64.max] as [UInt64], shape: [2], to: "rng")
        try w.write([1, 2, 255] as [UInt8], shape: [3, 1], to: "bytes")
        try w.write([Double](arrayLiteral: 42), shape: [], to: "scalar")
        try w.write([Float](), shape: [0, 4], to: "empty")
        try w.createGroup("/a/b/c")
        try w.createGroup("/a/b/c")  // idempotent
        try w.flush()
        // Replacing a dataset with another shape and type.
        try w.write([5, 6] as [Int64], shape: [2], to: "/optimizer/m")
        try w.write([9, 9] as [Int64], shape: [2], to: "/optimizer/m")
        w.close()
        w.close()  // idempotent

        let f = try HDF5File(readingAt: path)
        XCTAssertEqual(try f.readFloats("/model/encoder.0.weight"), floats)
        XCTAssertEqual(try f.shape(ofDataset: "/model/encoder.0.weight"), [2, 3])
        XCTAssertEqual(try f.readFloats("/model/encoder.0.bias"), [7, 7, 7])
        XCTAssertEqual(try f.readInt64s("/optimizer/m"), [9, 9])
        XCTAssertEqual(try f.readDoubles("/optimizer/m"), [9, 9])
        XCTAssertEqual(try f.readInt64s("/optimizer/state/step"), [Int64.min, 0, Int64.max])
        XCTAssertEqual(try f.readUInt64s("rng"), [0, UInt64.max])
        XCTAssertEqual(try f.readUInt64s("bytes"), [1, 2, 255])
        XCTAssertEqual(try f.readInt64s("bytes"), [1, 2, 255])
        XCTAssertEqual(try f.shape(ofDataset: "bytes"), [3, 1])
        XCTAssertEqual(try f.readDoubles("scalar"), [42])
        XCTAssertEqual(try f.shape(ofDataset: "scalar"), [])
        XCTAssertEqual(try f.readFloats("empty"), [])
        XCTAssertEqual(try f.shape(ofDataset: "empty"), [0, 4])
        XCTAssertEqual(f.kind(of: "/a/b/c"), .group)
        XCTAssertEqual(try f.children(ofGroup: "/"), ["a", "bytes", "empty", "model", "optimizer", "rng", "scalar"])
        XCTAssertEqual(try f.children(ofGroup: "/model"), ["encoder.0.bias", "encoder.0.weight"])
        XCTAssertEqual(try f.children(ofGroup: "/a/b/c"), [])
        // Conversions that would lose information are refused.
        assertStorageError(try f.readInt64s("rng"), mentions: [path, "/rng", "Int64"])
        assertStorageError(try f.readUInt64s("/optimizer/state/step"), mentions: [path, "/optimizer/state/step", "negative"])
        assertStorageError(try f.readInt64s("/model/encoder.0.bias"), mentions: [path, "/model/encoder.0.bias", "float32", "integers"])
        // Read-only files refuse writes.
        assertStorageError(try f.write([1] as [Float], shape: [1], to: "x"), mentions: [path, "/x", "reading only"])
        f.close()
        assertStorageError(try f.readFloats("/rng"), mentions: [path, "/rng", "closed"])
        XCTAssertNil(f.kind(of: "/rng"))
    }

    func testAttributes() throws {
        let path = tmp("attributes.h5")
        let w = try HDF5File(creatingAt: path)
        try w.write([1, 2] as [Float], shape: [2], to: "/model/w")
        try w.setAttribute("format", "aedist-checkpoint")
        try w.setAttribute("unicode", "µ-Gauß ✓ 数字")
        try w.setAttribute("empty", "")
        let yaml = String(repeating: "model:\n  latent: 32\n", count: 5000)  // 100 KB
        try w.setAttribute("config", yaml)
        try w.setAttribute("format_version", Int64(3))
        try w.setAttribute("step", Int64.min)
        try w.setAttribute("lr", 1e-3)
        try w.setAttribute("shape", [Int64(8), 8, -1])
        try w.setAttribute("nothing", [Int64]())
        try w.setAttribute("note", "on a dataset", at: "/model/w")
        try w.setAttribute("count", Int64(2), at: "model")
        try w.setAttribute("step", Int64(12))  // replaces
        try w.setAttribute("lr", "now a string")  // replaces with another type
        try w.setFixedLengthStringAttribute("fixed", "fixed-length")
        assertStorageError(try w.setAttribute("x", Int64(1), at: "/no/such"), mentions: [path, "/no/such", "'x'"])
        w.close()

        let f = try HDF5File(readingAt: path)
        XCTAssertEqual(try f.stringAttribute("format"), "aedist-checkpoint")
        XCTAssertEqual(try f.stringAttribute("unicode"), "µ-Gauß ✓ 数字")
        XCTAssertEqual(try f.stringAttribute("empty"), "")
        XCTAssertEqual(try f.stringAttribute("config"), yaml)
        XCTAssertEqual(try f.stringAttribute("fixed"), "fixed-length")
        XCTAssertEqual(try f.int64Attribute("format_version"), 3)
        XCTAssertEqual(try f.doubleAttribute("format_version"), 3)
        XCTAssertEqual(try f.int64Attribute("step"), 12)
        XCTAssertEqual(try f.stringAttribute("lr"), "now a string")
        XCTAssertEqual(try f.int64ArrayAttribute("shape"), [8, 8, -1])
        XCTAssertEqual(try f.int64ArrayAttribute("nothing"), [])
        XCTAssertEqual(try f.int64ArrayAttribute("step"), [12])
        XCTAssertEqual(try f.stringAttribute("note", at: "model/w"), "on a dataset")
        XCTAssertEqual(try f.int64Attribute("count", at: "/model"), 2)
        XCTAssertTrue(f.hasAttribute("note", at: "/model/w"))
        XCTAssertFalse(f.hasAttribute("note"))
        XCTAssertEqual(try f.attributeNames(), ["config", "empty", "fixed", "format", "format_version", "lr", "nothing", "shape", "step", "unicode"])
        XCTAssertEqual(try f.attributeNames(at: "/model/w"), ["note"])
        XCTAssertEqual(try f.attributeText("shape"), "[8, 8, -1]")
        XCTAssertEqual(try f.attributeText("step"), "12")
        XCTAssertEqual(try f.attributeText("format"), "aedist-checkpoint")
        assertStorageError(try f.stringAttribute("step"), mentions: [path, "'step'", "64-bit integers", "expected a string"])
        assertStorageError(try f.doubleAttribute("format"), mentions: [path, "'format'", "string", "number"])
        assertStorageError(try f.int64Attribute("missing", at: "/model"), mentions: [path, "/model", "'missing'"])

        // Doubles round-trip exactly.
        let g = try HDF5File(creatingAt: tmp("double.h5"))
        try g.setAttribute("x", 0.1 + 0.2)
        XCTAssertEqual(try g.doubleAttribute("x"), 0.1 + 0.2)
        g.close()
    }

    func testWriteErrors() throws {
        let path = tmp("bad-writes.h5")
        let w = try HDF5File(creatingAt: path)
        assertStorageError(try w.write([1, 2, 3] as [Float], shape: [2, 2], to: "/m"), mentions: [path, "/m", "[2, 2]", "3 were given"])
        assertStorageError(try w.write([1] as [Float], shape: [-1], to: "/m"), mentions: [path, "/m"])
        try w.write([1] as [Float], shape: [1], to: "/d")
        assertStorageError(try w.write([1] as [Float], shape: [1], to: "/d/below"), mentions: [path, "/d/below"])
        assertStorageError(try w.createGroup("/d"), mentions: [path, "/d", "dataset"])
        try w.createGroup("/g")
        assertStorageError(try w.write([1] as [Float], shape: [1], to: "/g"), mentions: [path, "/g", "group"])
        w.close()
        assertStorageError(try HDF5File(creatingAt: tmp("no/such/dir/x.h5")), mentions: ["no/such/dir"])
    }

    func testInMemoryMatrixAndNonFinite() throws {
        let m = StoredMatrix(rows: 3, columns: 2, floats: [1, 2, 3, .nan, 5, 6])
        XCTAssertEqual(m.source, "<memory>")
        XCTAssertEqual(m.firstNonFiniteRow(), 1)
        var out = [Float](repeating: 0, count: 4)
        [2, 0].withUnsafeBufferPointer { idx in out.withUnsafeMutableBufferPointer { m.gatherRows(idx, scale: 2, into: $0.baseAddress!) } }
        XCTAssertEqual(out, [10, 12, 2, 4])
        XCTAssertNil(StoredMatrix(rows: 1, columns: 2, floats: [1, 2]).firstNonFiniteRow())

        let path = tmp("nonfinite.h5")
        let w = try HDF5File(creatingAt: path)
        try w.write([1, 2, 3, 4, 5, -.infinity] as [Double], shape: [3, 2], to: "d")
        try w.write([1, 2, 3, 4] as [Int64], shape: [2, 2], to: "i")
        w.close()
        XCTAssertEqual(try StoredMatrix(file: path, dataset: "d").firstNonFiniteRow(), 2)
        XCTAssertNil(try StoredMatrix(file: path, dataset: "i").firstNonFiniteRow())
    }

    /// A large (256 Ki floats) dataset writes and reads back exactly, stored contiguous and uncompressed.
    func testLargeDataset() throws {
        let path = tmp("large.h5")
        let n = 1 << 18
        let values = (0..<n).map { Float($0 % 1000) * 0.001 }
        try writeAtomically(to: path) { f in try f.write(values, shape: [512, 512], to: "/model/big") }
        let f = try HDF5File(readingAt: path)
        XCTAssertEqual(try f.readFloats("/model/big"), values)
        let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        XCTAssertGreaterThanOrEqual(size, n * 4)  // contiguous, uncompressed
    }
}

final class ConcurrencyTests: StorageTestCase {
    /// HDF5 calls from many threads at once are serialised by the module: no crash, right values.
    func testParallelReadersAndWriters() throws {
        let digits = digitsPath
        let directory = dir
        let failures = NSLock()
        var messages: [String] = []
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            do {
                let path = (directory as NSString).appendingPathComponent("parallel-\(i).h5")
                try writeAtomically(to: path) { f in
                    try f.setAttribute("name", "file \(i)")
                    try f.write([Float](repeating: Float(i), count: 64), shape: [8, 8], to: "/model/w")
                }
                let r = try HDF5File(readingAt: path)
                let d = try HDF5File(readingAt: digits)
                for _ in 0..<5 {
                    guard try r.stringAttribute("name") == "file \(i)",
                          try r.readFloats("/model/w") == [Float](repeating: Float(i), count: 64),
                          try d.stringAttribute("pixel_dtype").count > 0,
                          try d.shape(ofDataset: "/test/images") == [297, 64] else {
                        throw StorageError("wrong values in thread \(i)")
                    }
                }
                _ = try StoredMatrix(file: digits, dataset: "/test/images")
            } catch {
                failures.lock(); messages.append("\(error)"); failures.unlock()
            }
        }
        XCTAssertEqual(messages, [])
    }
}
