// Agreement between ranks around work that can fail on some ranks only (reading files, creating
// directories): every rank runs its part, then all learn whether any failed, so no rank is left
// waiting in a collective that a failed rank never reaches.
import Communication

/// A failure already agreed between ranks; `message` is set on the one rank that reports it.
public struct RunFailure: Error, CustomStringConvertible {
    public let message: String?
    public let exitCode: Int32
    public var description: String { message ?? "failed on another rank" }
}

/// Runs `body` on every rank; when it throws on any rank, every rank throws a `RunFailure`, and the
/// lowest failing rank's carries the message (prefixed with its rank when there are several).
public func agreeing<T>(_ communicator: Communicator, _ body: () throws -> T) throws -> T {
    var result: Result<T, Error>
    do { result = .success(try body()) } catch { result = .failure(error) }
    let failed: Bool
    if case .failure = result { failed = true } else { failed = false }
    if let first = try communicator.firstFailingRank(localFailure: failed) {
        // Every rank ends with the failing rank's exit status (a run directory in use is not 1).
        var code: Int32 = 1
        if first == communicator.rank, case .failure(let error) = result, let e = error as? RunFailure { code = e.exitCode }
        try withUnsafeMutableBytes(of: &code) { try communicator.broadcast($0.baseAddress!, byteCount: 4, root: first) }
        if first == communicator.rank, case .failure(let error) = result {
            if let e = error as? RunFailure { throw e }
            // Rank 0's failures are usually everyone's (same file, same config): no prefix then.
            let prefix = communicator.rank > 0 ? "rank \(communicator.rank): " : ""
            throw RunFailure(message: prefix + "\(error)", exitCode: code)
        }
        throw RunFailure(message: nil, exitCode: code)
    }
    return try result.get()
}

/// Runs `body` on rank 0 only (writing a shared file, printing); every rank learns whether it
/// worked, so a failure on rank 0 ends all ranks together.
public func onRoot(_ communicator: Communicator, _ body: () throws -> Void) throws {
    try agreeing(communicator) { if communicator.isRoot { try body() } }
}
