import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Temporary files of `writeAtomically` calls in progress in this process: never removed as strays.
private final class ActiveTemporaryFiles: @unchecked Sendable {
    private let lock = NSLock()
    private var paths: Set<String> = []
    func insert(_ p: String) { lock.lock(); paths.insert(p); lock.unlock() }
    func remove(_ p: String) { lock.lock(); paths.remove(p); lock.unlock() }
    func contains(_ p: String) -> Bool { lock.lock(); defer { lock.unlock() }; return paths.contains(p) }
}
private let activeTemporaryFiles = ActiveTemporaryFiles()

private func errnoText(_ e: Int32) -> String { String(cString: strerror(e)) }

/// fsync of a file or directory by path.
private func syncPath(_ path: String, directory: Bool) throws {
    let fd = open(path, directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY)
    guard fd >= 0 else { throw StorageError("\(path): cannot open to sync (\(errnoText(errno)))") }
    defer { close(fd) }
    guard fsync(fd) == 0 else { throw StorageError("\(path): fsync failed (\(errnoText(errno)))") }
}

/// Writes a file so that a crash at any moment leaves either the old file (or none) or the complete
/// new one: `body` writes into `DIR/.NAME.tmp-PID` in the same directory, the file is flushed,
/// closed, fsync'd, renamed over `path`, and the directory is fsync'd. On any error the temporary
/// file is removed and the error rethrown. Two concurrent calls for the same `path` in one process
/// are not supported (they share the temporary name). `sealed`: append a seal (Seal.swift) before
/// the file is synced and renamed, so readers can check it is whole before parsing it.
public func writeAtomically(to path: String, sealed: Bool = false, _ body: (HDF5File) throws -> Void) throws {
    let url = URL(fileURLWithPath: path)
    let directory = url.deletingLastPathComponent().path
    let name = url.lastPathComponent
    let temporary = (directory as NSString).appendingPathComponent(".\(name).tmp-\(getpid())")
    activeTemporaryFiles.insert(temporary)
    defer { activeTemporaryFiles.remove(temporary) }
    var file: HDF5File?
    do {
        let f = try HDF5File(creatingAt: temporary)
        file = f
        try body(f)
        if f.isOpen {  // `body` may have closed it itself
            try f.flush()
            try f.closeChecked()
        }
        file = nil
        if sealed { try appendSeal(toFileAt: temporary) }
        try syncPath(temporary, directory: false)
        guard rename(temporary, path) == 0 else {
            throw StorageError("\(path): cannot rename \(temporary) over it (\(errnoText(errno)))")
        }
        try syncPath(directory, directory: true)
    } catch {
        file?.close()
        unlink(temporary)
        throw error
    }
}

/// Removes leftover temporary files of `writeAtomically` (named `.NAME.tmp-DIGITS`) in a directory,
/// e.g. after a crash; returns their names, sorted. Files of `writeAtomically` calls still running in
/// this process are kept; call it only where no other process is writing into the directory.
public func removeStrayTemporaryFiles(in directory: String) -> [String] {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
    var removed: [String] = []
    for name in names.sorted() where isTemporaryName(name) {
        let full = (directory as NSString).appendingPathComponent(name)
        guard !activeTemporaryFiles.contains(full) else { continue }
        var st = stat()
        guard lstat(full, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
        if unlink(full) == 0 { removed.append(name) }
    }
    return removed
}

/// `.NAME.tmp-DIGITS` with a non-empty NAME.
func isTemporaryName(_ name: String) -> Bool {
    guard name.hasPrefix("."), let marker = name.range(of: ".tmp-", options: .backwards) else { return false }
    let pid = name[marker.upperBound...]
    let stemStart = name.index(after: name.startIndex)
    return marker.lowerBound > stemStart && !pid.isEmpty && pid.allSatisfy { $0 >= "0" && $0 <= "9" }
}
