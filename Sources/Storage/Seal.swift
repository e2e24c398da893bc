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
func sealDigest(_ bytes: UnsafeRawBufferPointer, continuing state: UInt64 = 0xCBF2_9CE4_8422_2325) -> UInt64 {
    var h = state
    var i = 0
    while i + 8 <= bytes.count {
        h = (h ^ bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0x100_0000_01B3
        i += 8
    }
    while i < bytes.count { h = (h ^ UInt64(bytes[i])) &* 0x100_0000_01B3; i += 1 }
    return h
}

/// The digest of the first `length` bytes of an open file, read in pieces of 1 MiB (a multiple of
/// 8, so the words are those of one pass over the whole), so that sealing or checking a large
/// checkpoint does not hold it in memory.
private func sealDigest(of handle: FileHandle, length: UInt64, path: String) throws -> UInt64 {
    try handle.seek(toOffset: 0)
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    var done: UInt64 = 0
    while done < length {
        let n = Int(min(length - done, 1 << 20))
        guard let piece = try handle.read(upToCount: n), piece.count == n else {
            throw StorageError("\(path): ended after \(done) of \(length) bytes while reading it")
        }
        h = piece.withUnsafeBytes { sealDigest($0, continuing: h) }
        done += UInt64(n)
    }
    return h
}

/// Appends the seal to the file at `path`.
public func appendSeal(toFileAt path: String) throws {
    guard let handle = FileHandle(forUpdatingAtPath: path) else { throw StorageError("\(path): cannot open to seal it") }
    defer { try? handle.close() }
    do {
        let length = try handle.seekToEnd()
        let digest = try sealDigest(of: handle, length: length, path: path)
        var trailer = sealMagic
        withUnsafeBytes(of: digest.littleEndian) { trailer += $0 }
        withUnsafeBytes(of: length.littleEndian) { trailer += $0 }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(trailer))
    } catch let error as StorageError {
        throw error
    } catch {
        throw StorageError("\(path): sealing it failed: \(error.localizedDescription)")
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
    guard let handle = FileHandle(forReadingAtPath: path), let size = try? handle.seekToEnd() else {
        throw StorageError("\(path): cannot be read (does it exist?)")
    }
    defer { try? handle.close() }
    let noSeal = StorageError("\(path): no seal at the end of the file (truncated or damaged, or a file aedist did not write)")
    guard size >= UInt64(sealSize) else { throw noSeal }
    try handle.seek(toOffset: size - UInt64(sealSize))
    guard let trailer = try handle.read(upToCount: sealSize), trailer.count == sealSize,
          Array(trailer.prefix(8)) == sealMagic else { throw noSeal }
    let digest = trailer.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
    let length = trailer.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self)) }
    let body = size - UInt64(sealSize)
    guard length == body, digest == (try sealDigest(of: handle, length: body, path: path)) else {
        throw StorageError("\(path): the seal does not match the contents: the file is damaged")
    }
}
