// Open MPI behind the Communicator protocol, through the CMPI shim.
import CMPI
#if canImport(Glibc)
import Glibc
#endif

/// Writes a line to standard error without buffering (messages must survive an abort).
enum FileHandleOutput {
    static func standardError(_ message: String) {
        let line = message.hasSuffix("\n") ? message : message + "\n"
        _ = line.withCString { fputs($0, stderr) }
        fflush(stderr)
    }
}

/// Rank `i`'s share of `count` elements cut into `ranks` nearly equal contiguous segments: the unit
/// each rank folds in the tree reduction.
func rankSegment(_ i: Int, of count: Int, ranks: Int) -> (offset: Int, length: Int) {
    let base = count / ranks, extra = count % ranks
    let offset = i * base + min(i, extra)
    return (offset, base + (i < extra ? 1 : 0))
}

/// The counts and offsets of the exact reduction over `count` elements at `rank` of `ranks`, into
/// `layout` (4·ranks entries): each rank's segment (what this rank sends, and later gathers), then
/// this rank's segment as it arrives from every rank (what it receives, back to back).
func fillSegmentLayout(_ layout: UnsafeMutablePointer<Int32>, count: Int, rank: Int, ranks: Int) {
    let mine = rankSegment(rank, of: count, ranks: ranks)
    for i in 0..<ranks {
        let s = rankSegment(i, of: count, ranks: ranks)
        layout[i] = Int32(s.length); layout[ranks + i] = Int32(s.offset)
        layout[2 * ranks + i] = Int32(mine.length); layout[3 * ranks + i] = Int32(i * mine.length)
    }
}

/// Throws when an MPI call did not succeed (the communicators return errors instead of aborting).
func checkMPI(_ rc: Int32, _ what: String, rank: Int) throws {
    if rc != MPI_SUCCESS { throw CommunicationError("\(what) failed on rank \(rank): \(MPICommunicator.errorString(rc))") }
}

public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    public let localSize: Int
    private let world: MPI_Comm
    // Reused between calls so a training step allocates nothing.
    private var receive: UnsafeMutablePointer<Float>?
    private var receiveCapacity = 0
    // treeAllreduce's counts and offsets (send, receive, gather), computed once per buffer length.
    private var layout: UnsafeMutablePointer<Int32>?
    private var layoutCount = -1
    /// The ranks of this node, all of the run's (nil when the run spans nodes, or has one rank).
    private var node: MPI_Comm?
    /// The step buffers made in shared memory, which `makeGradientReduction` recognises by their
    /// gradients; freed in `finish`.
    private var nodeMemories: [NodeMemory] = []

    /// Initialises MPI (as a singleton when started without mpirun).
    public init() throws {
        var provided: Int32 = 0
        var argc: Int32 = 0
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
        var initialised: Int32 = 0
        MPI_Initialized(&initialised)
        if initialised == 0 {
            // FUNNELED: every MPI call, the nonblocking reduction's included, comes from this thread;
            // compute threads never call MPI.
            let rc = MPI_Init_thread(&argc, &argv, Int32(MPI_THREAD_FUNNELED), &provided)
            if rc != MPI_SUCCESS { throw CommunicationError("MPI_Init_thread failed: \(Self.errorString(rc))") }
        }
        world = aedist_comm_world()
        MPI_Comm_set_errhandler(world, aedist_errors_return())
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(world, &r)
        MPI_Comm_size(world, &s)
        rank = Int(r); size = Int(s)
        var local: MPI_Comm? = nil
        MPI_Comm_split_type(world, Int32(MPI_COMM_TYPE_SHARED), r, aedist_info_null(), &local)
        var ls: Int32 = 1
        if local != nil { MPI_Comm_size(local, &ls) }
        localSize = Int(ls)
        // Kept when every rank is on this node: then the step's buffers can live in shared memory.
        if local != nil && localSize == size && size > 1 { node = local } else if local != nil { MPI_Comm_free(&local) }
    }

    static func errorString(_ code: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
        var length: Int32 = 0
        MPI_Error_string(code, &buffer, &length)
        return String(cString: buffer)
    }

    private func check(_ rc: Int32, _ what: String) throws {
        try checkMPI(rc, what, rank: rank)
    }

    private func segment(_ i: Int, of count: Int) -> (offset: Int, length: Int) {
        rankSegment(i, of: count, ranks: size)
    }

    public var sharesOneNode: Bool { node != nil }

    public func makeStepBuffers(parameterCount: Int, gradientCount: Int, sharedMemory: Bool) throws -> StepBuffers {
        guard sharedMemory, let node else { return StepBuffers(parameterCount: parameterCount, gradientCount: gradientCount) }
        let memory = NodeMemory(node: node, rank: rank, size: size, parameterCount: parameterCount, gradientCount: gradientCount)
        // Every rank learns whether any could not use the memory (this also orders every rank's
        // zeroed counters before anyone reads them); then all fall back to their own buffers alike.
        // A memory that some rank cannot use is left to MPI_Finalize: freeing it is collective.
        if let first = try firstFailingRank(localFailure: memory.problem != nil) {
            let reason = first == rank ? memory.problem! : "rank \(first) could not map the node's shared memory"
            return StepBuffers(parameterCount: parameterCount, gradientCount: gradientCount, sharedMemoryUnavailable: reason)
        }
        nodeMemories.append(memory)
        return StepBuffers(node: memory)
    }

    public func makeGradientReduction(buffer: UnsafeMutablePointer<Float>, buckets: [Range<Int>], shared: [Bool], exact: Bool,
                                      combine: @escaping TreeCombine) throws -> GradientReduction {
        if size == 1 { return LocalGradientReduction(buckets: buckets) }
        let memory = nodeMemories.first { buffer == $0.gradients(of: rank) }
        if exact, let memory {
            // Messages only for `gather` of buffers outside the node's memory (the optimizer state).
            let messages = try MPIGradientReduction(world: world, rank: rank, size: size, buffer: buffer, buckets: buckets,
                                                    shared: shared, exact: false, combine: combine)
            return SharedMemoryGradientReduction(node: memory, buckets: buckets, shared: shared, combine: combine,
                                                 messages: messages)
        }
        return try MPIGradientReduction(world: world, rank: rank, size: size, buffer: buffer, buckets: buckets,
                                        shared: shared, exact: exact, combine: combine, sharedParameters: memory?.parameters)
    }

    public func treeAllreduce(_ buffer: UnsafeMutablePointer<Float>, count: Int, combine: TreeCombine) throws {
        if size == 1 || count == 0 { return }
        // All-to-all: rank s receives every rank's copy of segment s, folds them in rank order, then
        // an all-gather shares the folded segments (docs/determinism.md).
        let mine = segment(rank, of: count)
        let needed = mine.length * size
        if needed > receiveCapacity {
            receive?.deallocate()
            receive = .allocate(capacity: max(needed, 1))
            receiveCapacity = needed
        }
        if layoutCount != count {
            if layout == nil { layout = .allocate(capacity: 4 * size) }
            fillSegmentLayout(layout!, count: count, rank: rank, ranks: size)
            layoutCount = count
        }
        let l = layout!
        let into = receive!
        try check(MPI_Alltoallv(buffer, l, l + size, aedist_float(),
                                into, l + 2 * size, l + 3 * size, aedist_float(), world), "MPI_Alltoallv")
        combine(into, size, mine.length, mine.length, buffer + mine.offset)
        try check(MPI_Allgatherv(aedist_in_place(), 0, aedist_float(), buffer, l, l + size,
                                 aedist_float(), world), "MPI_Allgatherv")
    }

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        if size == 1 || count == 0 { return }
        try check(MPI_Allreduce(aedist_in_place(), buffer, Int32(count), aedist_float(), aedist_op_sum(), world),
                  "MPI_Allreduce")
    }

    public func allreduceSum(_ values: inout [Double]) throws { try allreduce(&values, aedist_double(), aedist_op_sum()) }
    public func allreduceMax(_ values: inout [Int64]) throws { try allreduce(&values, aedist_int64(), aedist_op_max()) }
    public func allreduceMax(_ values: inout [Double]) throws { try allreduce(&values, aedist_double(), aedist_op_max()) }

    /// In-place element-wise `op` of `values` (of MPI type `type`) across ranks.
    private func allreduce<T>(_ values: inout [T], _ type: MPI_Datatype, _ op: MPI_Op) throws {
        if size == 1 || values.isEmpty { return }
        let n = Int32(values.count)
        try values.withUnsafeMutableBufferPointer {
            try check(MPI_Allreduce(aedist_in_place(), $0.baseAddress, n, type, op, world), "MPI_Allreduce")
        }
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, byteCount: Int, root: Int) throws {
        if size == 1 { return }
        var offset = 0
        while offset < byteCount {   // counts are 32-bit
            let n = min(byteCount - offset, Int(Int32.max))
            try check(MPI_Bcast(buffer + offset, Int32(n), aedist_byte(), Int32(root), world), "MPI_Bcast")
            offset += n
        }
    }

    public func exchange(send: UnsafeRawPointer, sendCounts: [Int], receive: UnsafeMutableRawPointer, receiveCounts: [Int]) throws {
        precondition(sendCounts.count == size && receiveCounts.count == size)
        guard (sendCounts + receiveCounts).reduce(0, +) < Int(Int32.max) else {
            throw CommunicationError("rank \(rank): MPI_Alltoallv: more than 2 GiB in one exchange")
        }
        func layout(_ counts: [Int]) -> (counts: [Int32], offsets: [Int32]) {
            var offsets: [Int32] = [], at = 0
            for c in counts { offsets.append(Int32(at)); at += c }
            return (counts.map { Int32($0) }, offsets)
        }
        let (s, r) = (layout(sendCounts), layout(receiveCounts))
        try check(MPI_Alltoallv(send, s.counts, s.offsets, aedist_byte(), receive, r.counts, r.offsets, aedist_byte(), world),
                  "MPI_Alltoallv")
    }

    public func barrier() throws { try check(MPI_Barrier(world), "MPI_Barrier") }

    public func abort(_ message: String, exitCode: Int32) -> Never {
        FileHandleOutput.standardError(message)
        MPI_Abort(world, exitCode)
        exit(exitCode)
    }

    public func finish() {
        var finalised: Int32 = 0
        MPI_Finalized(&finalised)
        if finalised == 0 {
            for memory in nodeMemories { memory.free() }
            nodeMemories = []
            if node != nil { MPI_Comm_free(&node) }
            MPI_Finalize()
        }
    }
}
