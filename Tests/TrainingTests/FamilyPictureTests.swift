// PNG files from our own encoder, checked by our own reading of the chunks and by Python's zlib.
import Foundation
import Storage
@testable import Training
import XCTest

final class FamilyPictureTests: XCTestCase {
    /// Splits a PNG into chunks, checking the signature and every CRC.
    func chunks(_ data: [UInt8]) throws -> [(String, [UInt8])] {
        XCTAssertEqual(Array(data.prefix(8)), PNG.signature)
        var out: [(String, [UInt8])] = []
        var i = 8
        func u32(_ o: Int) -> Int { Int(data[o]) << 24 | Int(data[o + 1]) << 16 | Int(data[o + 2]) << 8 | Int(data[o + 3]) }
        while i < data.count {
            let length = u32(i)
            let type = String(decoding: data[(i + 4)..<(i + 8)], as: UTF8.self)
            let body = Array(data[(i + 8)..<(i + 8 + length)])
            let crc = UInt32(u32(i + 8 + length))
            XCTAssertEqual(crc, CRC32.iso.checksum(data[(i + 4)..<(i + 8 + length)]), "CRC of \(type)")
            out.append((type, body))
            i += 12 + length
        }
        return out
    }

    /// Decodes with python3's zlib and struct (a reader that is not ours); returns "W H channels sum".
    func pythonDecode(_ path: String) throws -> String {
        let script = """
        import sys, struct, zlib
        d = open(sys.argv[1], 'rb').read()
        assert d[:8] == b'\\x89PNG\\r\\n\\x1a\\n'
        i, idat, w, h, ct = 8, b'', 0, 0, 0
        while i < len(d):
            n, = struct.unpack('>I', d[i:i+4]); t = d[i+4:i+8]; body = d[i+8:i+8+n]
            assert struct.unpack('>I', d[i+8+n:i+12+n])[0] == zlib.crc32(t + body)
            if t == b'IHDR': w, h, depth, ct = struct.unpack('>IIBB', body[:10])
            if t == b'IDAT': idat += body
            i += 12 + n
        raw = zlib.decompress(idat)
        ch = 3 if ct == 2 else 1
        assert len(raw) == h * (w * ch + 1)
        total = sum(raw[y * (w * ch + 1) + 1:(y + 1) * (w * ch + 1)].count(b'\\x00') for y in range(h))
        print(w, h, ch, sum(raw) , total)
        """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, path]
        let pipe = Pipe(), err = Pipe()
        process.standardOutput = pipe
        process.standardError = err
        try process.run()
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, errText)
        return String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func testPNGIsReadableAndExact() throws {
        let dir = familyScratch("png")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Gray, large enough for several stored deflate blocks (> 65535 bytes), and a small RGB one.
        var gray = PixelImage(width: 301, height: 250, channels: 1)
        for y in 0..<250 { for x in 0..<301 { gray.set(x: x, y: y, [UInt8((x * 7 + y * 3) % 256)]) } }
        var rgb = PixelImage(width: 5, height: 3, channels: 3, fill: 255)
        rgb.set(x: 1, y: 2, [10, 20, 30])
        for (image, name) in [(gray, "gray"), (rgb, "rgb")] {
            let path = dir + "/\(name).png"
            try PNG.write(image, to: path)
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            let parts = try chunks(bytes)
            XCTAssertEqual(parts.map(\.0), ["IHDR", "IDAT", "IEND"])
            let ihdr = parts[0].1
            XCTAssertEqual(Int(ihdr[0]) << 24 | Int(ihdr[1]) << 16 | Int(ihdr[2]) << 8 | Int(ihdr[3]), image.width)
            XCTAssertEqual(Int(ihdr[4]) << 24 | Int(ihdr[5]) << 16 | Int(ihdr[6]) << 8 | Int(ihdr[7]), image.height)
            let sum = image.pixels.reduce(0) { $0 + Int($1) }
            let zeros = image.pixels.filter { $0 == 0 }.count
            XCTAssertEqual(try pythonDecode(path), "\(image.width) \(image.height) \(image.channels) \(sum) \(zeros)")
        }
        XCTAssertEqual(CRC32.iso.checksum(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(CRC32.castagnoli.checksum(Array("123456789".utf8)), 0xE306_9283)   // RFC 3720's check value
        XCTAssertEqual(CRC32.castagnoli.checksum(Array("6789".utf8), continuing: CRC32.castagnoli.checksum(Array("12345".utf8))), 0xE306_9283)
    }

    func testGridsHaveTheDocumentedSize() throws {
        let shape = ImageShape(height: 8, width: 8)
        let zoom = TileGrid.defaultZoom(shape)
        XCTAssertEqual(zoom, 3)
        let images = [Float](repeating: 0.5, count: 10 * 64)
        let grid = Pictures.grid(images, count: 10, shape: shape)   // 4 columns, 3 rows
        XCTAssertEqual(grid.width, 4 * 8 * zoom + 5)
        XCTAssertEqual(grid.height, 3 * 8 * zoom + 4)
        let rec = Pictures.reconstructions(originals: images, outputs: images, count: 10, shape: shape, perRow: 6)
        XCTAssertEqual(rec.width, 6 * 24 + 7)
        XCTAssertEqual(rec.height, 4 * 24 + 5)   // two bands of originals over reconstructions
        XCTAssertThrowsError(try ImageShape.resolve(override: "7x9", dataFile: digitsPath, features: 64)) {
            XCTAssertTrue("\($0)".contains("--image-shape 7x9"), "\($0)")
        }
        XCTAssertEqual(try ImageShape.resolve(override: nil, dataFile: digitsPath, features: 64), shape)
        // A map: white background, label-coloured dots.
        let map = Pictures.map(points: [(0, 0), (1, 1)], labels: [0, 3], size: 64)
        XCTAssertEqual(map.width, 64)
        XCTAssertEqual(Array(map.pixels[(48 * 64 + 16) * 3..<(48 * 64 + 16) * 3 + 3]), Pictures.palette[0])
    }

    func testLatentMapLegendWritesEachLabelBesideItsColour() throws {
        let map = Pictures.map(points: [(0, 0), (1, 1), (0, 1)], labels: [7, 12, 7], size: 160)
        func pixel(_ x: Int, _ y: Int) -> [UInt8] { Array(map.pixels[(y * 160 + x) * 3..<(y * 160 + x) * 3 + 3]) }
        /// The 3×5 glyph drawn at (x, 3), read back from its doubled pixels, one row of bits per line.
        func glyph(at x: Int) -> [UInt8] {
            (0..<5).map { r in (0..<3).reduce(UInt8(0)) { bits, c in bits | (pixel(x + 2 * c, 3 + 2 * r) == [0, 0, 0] ? 4 >> c : 0) } }
        }
        // Entry 1: swatch of label 7 at x 4..13, then "7"; entry 2: swatch of 12 (colour 2), then "1", "2".
        XCTAssertEqual(pixel(6, 6), Pictures.palette[7])
        XCTAssertEqual(glyph(at: 17), [7, 1, 2, 2, 2], "the digit 7")
        let second = 17 + 8 + 9
        XCTAssertEqual(pixel(second + 2, 6), Pictures.palette[2])
        XCTAssertEqual(glyph(at: second + 13), [2, 6, 2, 2, 7], "the digit 1")
        XCTAssertEqual(glyph(at: second + 21), [7, 1, 7, 4, 7], "the digit 2")
    }
}
