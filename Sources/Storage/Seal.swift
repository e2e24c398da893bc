// A seal at the end of a file: a 24-byte trailer holding a digest of every byte before it. HDF5
// ignores bytes past its end-of-file address, so a sealed HDF5 file stays readable by any HDF5
// reader (h5py included). Checking the seal before handing a file to libhdf5 keeps damaged files
// away from it: libhdf5 1.10 can crash, not just fail, on corrupted metadata.
import Foundation

/// "AESEAL01" + digest (UInt64, little-endian) + sealed length (UInt64, little-endian).
private let sealMagic = Array("AESEAL01".utf8)
private let sealSize = 24

/// FNV-1a over 64-bit words (then the remaining bytes): any change confined to one word changes
/// the digest, since each step is a bijection of the state.
func sealDigest(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    var i = 0
    while i + 8 <= bytes.count {
        h = (h ^ bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0x100_0000_01B3
        i += 8
    }
    while i < bytes.count { h = (h ^ UInt64(bytes[i])) &* 0x100_0000_01B3; i += 1 }
    return h
}

/// Appends the seal to the file at `path`.
public func appendSeal(toFileAt path: String) throws {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw StorageError("\(path): cannot read to seal it")
    }
    let digest = data.withUnsafeBytes { sealDigest($0) }
    var trailer = sealMagic
    withUnsafeBytes(of: digest.littleEndian) { trailer += $0 }
    withUnsafeBytes(of: UInt64(data.count).littleEndian) { trailer += $0 }
    guard let handle = FileHandle(forWritingAtPath: path) else { throw StorageError("\(path): cannot open to seal it") }
    defer { try? handle.close() }
    do {
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(trailer))
    } catch {
        throw StorageError("\(path): writing the seal failed: \(error.localizedDescription)")
    }
}

/// Whether the file ends with a seal trailer (valid or not).
public func hasSeal(fileAt path: String) -> Bool {
    guard let handle = FileHandle(forReadingAtPath: path) else { return false }
    defer { try? handle.close() }
    guard let size = try? handle.seekToEnd(), size >= UInt64(sealSize) else { return false }
    try? handle.seek(toOffset: size - UInt64(sealSize))
    guard let tail = try? handle.read(upToCount: 8) else { return false }
    return Array(tail) == sealMagic
}

/// Throws unless the file ends with a seal that matches its contents.
public func verifySeal(ofFileAt path: String) throws {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw StorageError("\(path): cannot be read (does it exist?)")
    }
    guard data.count >= sealSize, Array(data.suffix(sealSize).prefix(8)) == sealMagic else {
        throw StorageError("\(path): no seal at the end of the file (truncated or damaged, or a file aedist did not write)")
    }
    let ok = data.withUnsafeBytes { raw -> Bool in
        let body = UnsafeRawBufferPointer(rebasing: raw[0..<(raw.count - sealSize)])
        let digest = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: raw.count - 16, as: UInt64.self))
        let length = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: raw.count - 8, as: UInt64.self))
        return length == UInt64(body.count) && digest == sealDigest(body)
    }
    guard ok else { throw StorageError("\(path): the seal does not match the contents: the file is damaged") }
}
