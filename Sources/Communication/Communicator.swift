// The ranks of a run and the collectives the trainer needs. The trainer sees only this protocol;
#if canImport(Glibc)
import Glibc
#endif
// `MPICommunicator` binds it to Open MPI, `SingleProcess` is the one-rank stand-in used by tests.

/// A failed collective or a failure to start the parallel runtime.
public struct CommunicationError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// `combine(leaves, count, length, stride, out)` folds `count` vectors of `length` floats, leaf j at
/// leaves + j·stride, in order, into `out` (which may be one of the leaves).
public typealias TreeCombine = (UnsafePointer<Float>, Int, Int, Int, UnsafeMutablePointer<Float>) -> Void

/// A cross-rank sum of one buffer that overlaps the computation producing it. The buffer is cut into
/// contiguous buckets; the caller starts each bucket, in bucket order, once its values are final and
/// will not change until `finish`, calls `progress` now and then while it computes (the MPI library
/// moves nonblocking collectives only inside MPI calls), and calls `finish` before reading the buffer.
/// Reusable: after `finish`, the next round starts again at bucket 0. Calls come from one thread.
/// A bucket may be `shared` (after `finish` every rank holds its sum) or not: then each rank holds
/// the sum only in its own segment of the bucket (`ownedRanges`), a reduce-scatter, and `gather`
/// later shares the owners' segments of any buffer laid out like this one (the updated parameters).
public protocol GradientReduction: AnyObject {
    var buckets: [Range<Int>] { get }
    /// This rank's segment of each bucket (absolute indices), in bucket order.
    var ownedRanges: [Range<Int>] { get }
    /// Sends bucket `bucket`, which must be the next one in order.
    func start(_ bucket: Int) throws
    /// Lets outstanding messages move and folds whatever has arrived; never blocks.
    func progress() throws
    /// Waits until every bucket (all must have been started) holds the sum over ranks: in full for
    /// a shared bucket, in this rank's segment for the others.
    func finish() throws
    /// Copies every rank's segment of each bucket that is not shared from that rank's `buffer` into
    /// every rank's `buffer` (an all-gather, in place), or into `root`'s alone (a gather: the other
    /// ranks' copies outside their segments stay as they were). Collective; not during a round.
    func gather(_ buffer: UnsafeMutablePointer<Float>, root: Int?) throws
}

/// The reduction of a run with one rank: every bucket already holds the sum.
public final class LocalGradientReduction: GradientReduction {
    public let buckets: [Range<Int>]
    public var ownedRanges: [Range<Int>] { buckets }
    private var next = 0
    public init(buckets: [Range<Int>]) { self.buckets = buckets }
    public func gather(_ buffer: UnsafeMutablePointer<Float>, root: Int?) throws {}
    public func start(_ bucket: Int) throws {
        precondition(bucket == next, "GradientReduction: bucket \(bucket) started out of order (expected \(next))")
        next += 1
    }
    public func progress() throws {}
    public func finish() throws {
        precondition(next == buckets.count, "GradientReduction: finish with \(buckets.count - next) bucket(s) not started")
        next = 0
    }
}

public protocol Communicator: AnyObject {
    /// This process's index in `0..<size`.
    var rank: Int { get }
    /// Number of ranks in the run.
    var size: Int { get }
    /// Ranks sharing this node (used to divide the node's cores between ranks).
    var localSize: Int { get }

    /// Sums `count` floats across ranks with the rank-order pairwise tree of docs/determinism.md,
    /// in place, so that the result does not depend on how the library schedules messages.
    func treeAllreduce(_ buffer: UnsafeMutablePointer<Float>, count: Int, combine: TreeCombine) throws
    /// A reusable, nonblocking form of `treeAllreduce` (or, when `exact` is false, of
    /// `allreduceSum`) over `buffer`, cut into `buckets` that are sent one by one as the caller
    /// finishes them; `shared[b]` false makes bucket b a reduce-scatter (see GradientReduction).
    /// Collective: every rank makes it at the same point, with the same buckets. Each element is
    /// reduced exactly as `treeAllreduce` reduces it, so the results are bitwise the same whatever the buckets.
    func makeGradientReduction(buffer: UnsafeMutablePointer<Float>, buckets: [Range<Int>], shared: [Bool], exact: Bool,
                               combine: @escaping TreeCombine) throws -> GradientReduction
    /// True when every rank of the run is on this node (so they can share memory).
    var sharesOneNode: Bool { get }
    /// The parameters and gradients of a training step. With `sharedMemory` and every rank on one
    /// node, the gradients are this rank's slot of memory all the node's ranks can read, and an
    /// exact `makeGradientReduction` over them reads the other ranks' copies in place instead of
    /// messaging them (same bits); the parameters are the node's one copy, which a rank writes only
    /// in its own segments of a sharded update (or rank 0 alone), `gather` of it being a barrier.
    /// Otherwise both are this process's own memory. Collective.
    func makeStepBuffers(parameterCount: Int, gradientCount: Int, sharedMemory: Bool) throws -> StepBuffers
    /// Element-wise sum of floats across ranks in place, in the library's order (which may vary
    /// with the rank count): only for measuring what the tree reduction costs (`bench step`).
    func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws
    /// Element-wise sum of doubles across ranks (metrics; order may vary in the last bits).
    func allreduceSum(_ values: inout [Double]) throws
    /// Element-wise maximum of integers across ranks.
    func allreduceMax(_ values: inout [Int64]) throws
    /// Element-wise maximum of doubles across ranks (exact: a maximum does not round).
    func allreduceMax(_ values: inout [Double]) throws
    /// All-to-all of bytes: this rank sends `sendCounts[r]` bytes to rank r, taken one rank after
    /// another from `send`, and receives `receiveCounts[r]` bytes from rank r, stored one rank
    /// after another in `receive` (the rows of a step fetched from the ranks that hold them).
    func exchange(send: UnsafeRawPointer, sendCounts: [Int], receive: UnsafeMutableRawPointer, receiveCounts: [Int]) throws
    /// Copies `byteCount` bytes from `root` to every rank.
    func broadcast(_ buffer: UnsafeMutableRawPointer, byteCount: Int, root: Int) throws
    func barrier() throws
    /// Ends every rank of the run at once, after printing `message` on this one.
    func abort(_ message: String, exitCode: Int32) -> Never
    /// Orderly end of the parallel runtime; call once at exit.
    func finish()
}

extension Communicator {
    public var isRoot: Bool { rank == 0 }

    /// Every rank reports whether its part of a phase succeeded; all learn the lowest failing rank
    /// (or nil). Called before a collective that a failing rank would not reach, so no rank waits forever.
    public func firstFailingRank(localFailure: Bool) throws -> Int? {
        var v: [Int64] = [localFailure ? Int64(size - rank) : 0]
        try allreduceMax(&v)
        return v[0] == 0 ? nil : size - Int(v[0])
    }

    /// Every rank's `mine`, in rank order, on every rank (each rank fills its own entry of a sum:
    /// x + 0 is exact).
    public func valuesPerRank(_ mine: Double) throws -> [Double] {
        var values = [Double](repeating: 0, count: size)
        values[rank] = mine
        try allreduceSum(&values)
        return values
    }

    /// Broadcasts a string from `root`.
    public func broadcast(_ text: String, root: Int) throws -> String {
        var length: [Int64] = [rank == root ? Int64(text.utf8.count) : 0]
        try length.withUnsafeMutableBytes { try broadcast($0.baseAddress!, byteCount: 8, root: root) }
        var bytes = rank == root ? Array(text.utf8) : [UInt8](repeating: 0, count: Int(length[0]))
        if !bytes.isEmpty {
            try bytes.withUnsafeMutableBytes { try broadcast($0.baseAddress!, byteCount: $0.count, root: root) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// One rank, no runtime: every collective is the identity.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public var localSize: Int { 1 }
    public func treeAllreduce(_ buffer: UnsafeMutablePointer<Float>, count: Int, combine: TreeCombine) throws {}
    public func makeGradientReduction(buffer: UnsafeMutablePointer<Float>, buckets: [Range<Int>], shared: [Bool], exact: Bool,
                                      combine: @escaping TreeCombine) throws -> GradientReduction {
        LocalGradientReduction(buckets: buckets)
    }
    public var sharesOneNode: Bool { false }
    public func makeStepBuffers(parameterCount: Int, gradientCount: Int, sharedMemory: Bool) throws -> StepBuffers {
        StepBuffers(parameterCount: parameterCount, gradientCount: gradientCount)
    }
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {}
    public func allreduceSum(_ values: inout [Double]) throws {}
    public func allreduceMax(_ values: inout [Int64]) throws {}
    public func allreduceMax(_ values: inout [Double]) throws {}
    public func broadcast(_ buffer: UnsafeMutableRawPointer, byteCount: Int, root: Int) throws {}
    public func exchange(send: UnsafeRawPointer, sendCounts: [Int], receive: UnsafeMutableRawPointer, receiveCounts: [Int]) throws {
        receive.copyMemory(from: send, byteCount: sendCounts[0])
    }
    public func barrier() throws {}
    public func abort(_ message: String, exitCode: Int32) -> Never {
        FileHandleOutput.standardError(message)
        exit(exitCode)
    }
    public func finish() {}
}
