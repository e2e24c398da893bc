// A minimal PNG writer: 8-bit grayscale or RGB, filter 0 on every scanline, the image data
// deflated by zlib.
import CZlib
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
        appendChunk("IDAT", zlibStream(raw), to: &out)
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

    /// The zlib stream (RFC 1950) of `bytes`, deflated at zlib's default level.
    public static func zlibStream(_ bytes: [UInt8]) -> [UInt8] {
        var length = compressBound(uLong(bytes.count))
        var out = [UInt8](repeating: 0, count: Int(length))
        let status = compress2(&out, &length, bytes, uLong(bytes.count), Z_DEFAULT_COMPRESSION)
        precondition(status == Z_OK, "zlib compress2 failed (\(status))")   // only out of memory, with a bound-sized buffer
        return Array(out.prefix(Int(length)))
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
