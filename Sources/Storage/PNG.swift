// A minimal PNG writer with no dependencies: 8-bit grayscale or RGB, filter 0 on every scanline,
// the zlib stream made of stored (uncompressed) deflate blocks, with our own CRC-32 and Adler-32.
// Files are larger than a compressing encoder's, but every PNG reader accepts them.
import Foundation

/// An 8-bit image in memory: `channels` 1 (gray) or 3 (RGB), row-major, `width * height * channels` bytes.
public struct PixelImage: Sendable {
    public let width: Int
    public let height: Int
    public let channels: Int
    public var pixels: [UInt8]

    /// A blank image filled with `fill` (per channel).
    public init(width: Int, height: Int, channels: Int, fill: UInt8 = 0) {
        precondition(width > 0 && height > 0 && (channels == 1 || channels == 3),
                     "PixelImage: invalid size \(width)x\(height)x\(channels)")
        self.width = width; self.height = height; self.channels = channels
        pixels = [UInt8](repeating: fill, count: width * height * channels)
    }

    /// Sets pixel (x, y) to `value` (one byte per channel); outside the image: nothing happens.
    public mutating func set(x: Int, y: Int, _ value: [UInt8]) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let o = (y * width + x) * channels
        for c in 0..<channels { pixels[o + c] = value[c % value.count] }
    }

    /// The PNG encoding of this image.
    public var pngData: Data { PNG.encode(self) }
}

public enum PNG {
    public static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// The PNG file of `image`: signature, IHDR, one IDAT, IEND.
    public static func encode(_ image: PixelImage) -> Data {
        var out = Data(signature)
        var header = [UInt8]()
        header += bigEndian(UInt32(image.width))
        header += bigEndian(UInt32(image.height))
        header += [8, image.channels == 3 ? 2 : 0, 0, 0, 0]   // depth 8; gray or truecolour; deflate; filter 0; no interlace
        appendChunk("IHDR", header, to: &out)
        // Scanlines, each led by its filter type byte (0: none).
        let stride = image.width * image.channels
        var raw = [UInt8]()
        raw.reserveCapacity((stride + 1) * image.height)
        image.pixels.withUnsafeBufferPointer { p in
            for y in 0..<image.height {
                raw.append(0)
                raw += p[(y * stride)..<((y + 1) * stride)]
            }
        }
        appendChunk("IDAT", zlibStored(raw), to: &out)
        appendChunk("IEND", [], to: &out)
        return out
    }

    /// Writes `image` as a PNG file at `path` (through a temporary file renamed into place).
    public static func write(_ image: PixelImage, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        do { try encode(image).write(to: url, options: .atomic) } catch {
            throw StorageError("\(path): cannot write the PNG file (\(error.localizedDescription))")
        }
    }

    /// A zlib stream (RFC 1950) of stored deflate blocks (RFC 1951, BTYPE 00) holding `bytes`.
    public static func zlibStored(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]   // deflate, 32 KiB window; FCHECK makes 0x7801 a multiple of 31
        let maxBlock = 65_535
        var start = 0
        repeat {
            let n = min(maxBlock, bytes.count - start)
            let final: UInt8 = start + n == bytes.count ? 1 : 0
            out.append(final)   // BFINAL, BTYPE = 00 (stored); the rest of the byte is padding
            out += [UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            out += bytes[start..<(start + n)]
            start += n
        } while start < bytes.count
        out += bigEndian(adler32(bytes))
        return out
    }

    /// Adler-32 (RFC 1950) of `bytes`.
    public static func adler32(_ bytes: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        var i = 0
        while i < bytes.count {
            let end = min(bytes.count, i + 5552)   // the largest run before the sums can overflow
            while i < end { a += UInt32(bytes[i]); b += a; i += 1 }
            a %= 65_521; b %= 65_521
        }
        return (b << 16) | a
    }

    private static func bigEndian(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }

    private static func appendChunk(_ type: String, _ body: [UInt8], to out: inout Data) {
        let typeBytes = Array(type.utf8)
        out.append(contentsOf: bigEndian(UInt32(body.count)))
        out.append(contentsOf: typeBytes)
        out.append(contentsOf: body)
        out.append(contentsOf: bigEndian(CRC32.iso.checksum(body, continuing: CRC32.iso.checksum(typeBytes))))
    }
}
