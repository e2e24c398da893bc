#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// HDF5 1.10 trusts the object sizes inside a global heap collection (where variable-length strings
/// live) and the global heap is not checksummed: a damaged size there makes the library copy past
/// its buffer (a crash) or loop forever. Before variable-length strings of a file are read, every
/// global heap collection in it is found by its "GCOL" signature and walked the way the library
/// walks it; this returns a description of the first collection that would misbehave, or nil.
///
/// The search is by signature, so a byte run in raw data that looks exactly like a collection header
/// ("GCOL", version 1, zero padding, a size that fits the file) and then fails the walk makes the
/// file's strings unreadable (an error, never a crash). Files with a user block (superblock not at
/// offset 0) are not checked.
func globalHeapProblem(inFileAt path: String) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return "cannot reopen the file to check it" }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { return "cannot stat the file" }
    let fileSize = Int(st.st_size)

    func readBytes(_ count: Int, at offset: Int) -> [UInt8]? {
        guard offset >= 0, count >= 0, offset <= fileSize - count else { return nil }
        var buffer = [UInt8](repeating: 0, count: count)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        return n == count ? buffer : nil
    }
    func littleEndian(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        var v: UInt64 = 0
        for (i, b) in bytes.enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        return v
    }

    // Size of "lengths" from the superblock at offset 0 (versions 0/1: byte 14; 2/3: byte 10).
    guard let superblock = readBytes(16, at: 0),
          superblock[0..<8].elementsEqual([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]) else { return nil }
    let lengthSize: Int
    switch superblock[8] {
    case 0, 1: lengthSize = Int(superblock[14])
    case 2, 3: lengthSize = Int(superblock[10])
    default: return nil
    }
    guard [2, 4, 8].contains(lengthSize) else { return nil }
    let headerSize = 8 + lengthSize        // "GCOL", version, 3 reserved, collection size
    let objectHeaderSize = 8 + lengthSize  // index, references, 4 reserved, object size

    /// Walks one collection at `start` like H5HG__cache_heap_deserialize; nil when it is sound
    /// or not a collection header at all.
    func check(collectionAt start: Int) -> String? {
        guard let header = readBytes(headerSize, at: start), header[4] == 1,
              header[5] == 0, header[6] == 0, header[7] == 0 else { return nil }
        let declared = littleEndian(header[8..<headerSize])
        guard declared >= UInt64(headerSize), declared <= UInt64(fileSize - start) else { return nil }
        let size = Int(declared)
        var position = headerSize
        var objects = 0
        while position < size {
            if position + objectHeaderSize > size { break }  // a tail too small for an object: free space
            guard let object = readBytes(objectHeaderSize, at: start + position) else {
                return "global heap collection at byte \(start) cannot be read"
            }
            let index = UInt16(object[0]) | UInt16(object[1]) << 8
            let objectSize = littleEndian(object[8..<objectHeaderSize])
            let remaining = UInt64(size - position)
            let need: UInt64
            if index > 0 {
                guard objectSize <= remaining else {
                    return "global heap collection at byte \(start): object \(index) claims \(objectSize) bytes, only \(remaining) remain"
                }
                need = UInt64(objectHeaderSize) + (objectSize + 7) / 8 * 8
            } else {
                need = objectSize
            }
            guard need >= UInt64(objectHeaderSize), need <= remaining else {
                return "global heap collection at byte \(start): object \(index) at offset \(position) has an impossible size \(objectSize)"
            }
            position += Int(need)
            objects += 1
            if objects > size / objectHeaderSize + 1 { return "global heap collection at byte \(start) does not end" }
        }
        return nil
    }

    // Scan for the signature in 1 MiB blocks that overlap by 3 bytes.
    let signature: [UInt8] = Array("GCOL".utf8)
    let block = 1 << 20
    var buffer = [UInt8](repeating: 0, count: block + 3)
    var offset = 0
    while offset < fileSize {
        let want = min(block + 3, fileSize - offset)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(offset)) }
        guard n == want else { return "cannot read the file to check it" }
        var candidates: [Int] = []
        buffer.withUnsafeBufferPointer { b in
            var i = 0
            while i + 4 <= n {
                if b[i] == signature[0], b[i + 1] == signature[1], b[i + 2] == signature[2], b[i + 3] == signature[3] {
                    candidates.append(offset + i)
                }
                i += 1
            }
        }
        for c in candidates {
            if let problem = check(collectionAt: c) { return problem }
        }
        offset += block
    }
    return nil
}
