// Table-driven CRC-32 over a reflected polynomial: ISO 3309's, which PNG chunks carry, and
// Castagnoli's (CRC-32C), which TensorBoard's event records carry.

public struct CRC32: Sendable {
    /// ISO 3309 / ITU-T V.42 (zlib's crc32, PNG).
    public static let iso = CRC32(polynomial: 0xEDB8_8320)
    /// Castagnoli (CRC-32C, iSCSI; TFRecord framing).
    public static let castagnoli = CRC32(polynomial: 0x82F6_3B78)

    private let table: [UInt32]

    /// `polynomial` in reflected (least significant bit first) form.
    public init(polynomial: UInt32) {
        table = (0..<256).map { n -> UInt32 in
            var c = UInt32(n)
            for _ in 0..<8 { c = (c & 1) != 0 ? polynomial ^ (c >> 1) : c >> 1 }
            return c
        }
    }

    /// The checksum of `bytes`, continuing from `crc` (the checksum of what came before).
    public func checksum<S: Sequence>(_ bytes: S, continuing crc: UInt32 = 0) -> UInt32 where S.Element == UInt8 {
        var c = ~crc
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return ~c
    }
}
