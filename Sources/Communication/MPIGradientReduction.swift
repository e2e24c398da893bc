// The nonblocking, bucketed form of MPICommunicator's tree reduction (GradientReduction): the step
// sends each layer's gradients while backward computes the layers below it.
import CMPI

/// Exact: per bucket, MPI_Ialltoallv gives rank s every rank's copy of its segment of the bucket;
/// once they have arrived, rank s folds them in rank order with the same tree as `treeAllreduce`, and
/// an in-place MPI_Iallgatherv shares the folded segments. Each element meets the same copies in the
/// same order as in `treeAllreduce`, only the messages are cut differently, so the sums are bitwise
/// the same. Not exact: MPI_Iallreduce per bucket.
///
/// A bucket that is not `shared` stops after the fold (a reduce-scatter: this rank holds the sum of
/// its segment); `gather` later runs the all-gather (or, given a root, the gather) for those buckets
/// on another buffer. Not exact: every rank holds the whole sum anyway, and `gather` still shares the
/// owners' segments. With the node's one copy of the parameters in shared memory (`sharedParameters`)
/// `finish` ends with a barrier, so that no owner updates them while another rank still reads them,
/// and `gather` of them is a barrier.
///
/// The all-to-alls and the all-gathers run on two duplicates of the world communicator: MPI matches
/// nonblocking collectives by their order on a communicator, and one rank may start bucket b's
/// all-gather before bucket b+1's all-to-all while another starts it after. On each duplicate the
/// order is the bucket order on every rank.
final class MPIGradientReduction: GradientReduction {
    let buckets: [Range<Int>]
    let ownedRanges: [Range<Int>]
    private let shared: [Bool]
    private let rank: Int, size: Int
    private let buffer: UnsafeMutablePointer<Float>
    private let exact: Bool
    private let combine: TreeCombine
    private var exchange: MPI_Comm?   // all-to-alls (exact) or allreduces
    private var gathering: MPI_Comm?  // all-gathers (exact, and `gather`)
    /// Per bucket, 4·size counts and offsets: the bucket's segments (sent, then gathered), relative to
    /// the bucket's start, and this rank's incoming copies in `receive`. MPI reads them until completion.
    private let layout: UnsafeMutablePointer<Int32>
    /// Each bucket's incoming copies of this rank's segment, back to back.
    private let receive: UnsafeMutablePointer<Float>
    private let receiveOffsets: [Int]
    /// The node's one copy of the parameters, when the ranks share it (NodeMemory): its owners have
    /// written their segments in place, and `gather` of it only waits for them.
    private let sharedParameters: UnsafeMutablePointer<Float>?
    private let exchangeRequests: UnsafeMutablePointer<MPI_Request?>
    private let gatherRequests: UnsafeMutablePointer<MPI_Request?>
    /// Buckets started, exchanged (all-to-all or allreduce complete, exact: folded and gather started),
    /// and gathered, in bucket order: gathered ≤ exchanged ≤ started.
    private var started = 0, exchanged = 0, gathered = 0

    init(world: MPI_Comm, rank: Int, size: Int, buffer: UnsafeMutablePointer<Float>, buckets: [Range<Int>],
         shared: [Bool], exact: Bool, combine: @escaping TreeCombine, sharedParameters: UnsafeMutablePointer<Float>? = nil) throws {
        precondition(shared.count == buckets.count, "GradientReduction: one shared flag per bucket")
        self.rank = rank; self.size = size; self.buffer = buffer; self.buckets = buckets; self.shared = shared
        ownedRanges = buckets.map { bucket in
            let mine = rankSegment(rank, of: bucket.count, ranks: size)
            return (bucket.lowerBound + mine.offset)..<(bucket.lowerBound + mine.offset + mine.length)
        }
        self.exact = exact; self.combine = combine; self.sharedParameters = sharedParameters
        layout = .allocate(capacity: max(4 * size * buckets.count, 1))
        var offsets: [Int] = [], total = 0
        for (b, bucket) in buckets.enumerated() {
            precondition(bucket.count <= Int(Int32.max), "GradientReduction: bucket \(b) is too large for MPI counts")
            fillSegmentLayout(layout + 4 * size * b, count: bucket.count, rank: rank, ranks: size)
            let mine = rankSegment(rank, of: bucket.count, ranks: size)
            offsets.append(total)
            total += exact ? mine.length * size : 0
        }
        receiveOffsets = offsets
        receive = .allocate(capacity: max(total, 1))
        exchangeRequests = .allocate(capacity: max(buckets.count, 1))
        exchangeRequests.initialize(repeating: aedist_request_null(), count: max(buckets.count, 1))
        gatherRequests = .allocate(capacity: max(buckets.count, 1))
        gatherRequests.initialize(repeating: aedist_request_null(), count: max(buckets.count, 1))
        try check(MPI_Comm_dup(world, &exchange), "MPI_Comm_dup")
        try check(MPI_Comm_dup(world, &gathering), "MPI_Comm_dup")
    }

    deinit {
        var finalised: Int32 = 0
        MPI_Finalized(&finalised)
        if finalised == 0 {
            if exchange != nil { MPI_Comm_free(&exchange) }
            if gathering != nil { MPI_Comm_free(&gathering) }
        }
        layout.deallocate(); receive.deallocate()
        exchangeRequests.deallocate(); gatherRequests.deallocate()
    }

    private func check(_ rc: Int32, _ what: String) throws {
        try checkMPI(rc, what, rank: rank)
    }

    func start(_ b: Int) throws {
        precondition(b == started, "GradientReduction: bucket \(b) started out of order (expected \(started))")
        let bucket = buckets[b], l = layout + 4 * size * b
        if exact {
            try check(MPI_Ialltoallv(buffer + bucket.lowerBound, l, l + size, aedist_float(),
                                     receive + receiveOffsets[b], l + 2 * size, l + 3 * size, aedist_float(),
                                     exchange, exchangeRequests + b), "MPI_Ialltoallv")
        } else {
            try check(MPI_Iallreduce(aedist_in_place(), buffer + bucket.lowerBound, Int32(bucket.count), aedist_float(),
                                     aedist_op_sum(), exchange, exchangeRequests + b), "MPI_Iallreduce")
        }
        started += 1
    }

    /// Exact: folds this rank's segment of bucket `b` (its all-to-all is complete) and starts the gather.
    private func foldAndGather(_ b: Int) throws {
        guard exact else { return }
        let bucket = buckets[b], l = layout + 4 * size * b
        let mine = rankSegment(rank, of: bucket.count, ranks: size)
        combine(receive + receiveOffsets[b], size, mine.length, mine.length, buffer + bucket.lowerBound + mine.offset)
        guard shared[b] else { return }   // its request stays null: MPI_Test and MPI_Wait see it done
        try check(MPI_Iallgatherv(aedist_in_place(), 0, aedist_float(), buffer + bucket.lowerBound, l, l + size,
                                  aedist_float(), gathering, gatherRequests + b), "MPI_Iallgatherv")
    }

    func progress() throws {
        // MPI_Test on the oldest outstanding request runs the library's progress engine (which moves
        // every outstanding collective) and says whether that bucket can be folded. MPI_Testall would
        // say nothing until all are complete.
        var done: Int32 = 0
        while exchanged < started {
            try check(MPI_Test(exchangeRequests + exchanged, &done, aedist_status_ignore()), "MPI_Test")
            if done == 0 { break }
            try foldAndGather(exchanged)
            exchanged += 1
        }
        while exact && gathered < exchanged {
            try check(MPI_Test(gatherRequests + gathered, &done, aedist_status_ignore()), "MPI_Test")
            if done == 0 { break }
            gathered += 1
        }
    }

    func finish() throws {
        precondition(started == buckets.count, "GradientReduction: finish with \(buckets.count - started) bucket(s) not started")
        while exchanged < started {
            try check(MPI_Wait(exchangeRequests + exchanged, aedist_status_ignore()), "MPI_Wait")
            try foldAndGather(exchanged)
            exchanged += 1
        }
        while exact && gathered < exchanged {
            try check(MPI_Wait(gatherRequests + gathered, aedist_status_ignore()), "MPI_Wait")
            gathered += 1
        }
        if sharedParameters != nil { try check(MPI_Barrier(gathering), "MPI_Barrier") }
        started = 0; exchanged = 0; gathered = 0
    }

    func gather(_ target: UnsafeMutablePointer<Float>, root: Int?) throws {
        precondition(started == 0, "GradientReduction: gather during a round")
        if target == sharedParameters { return try check(MPI_Barrier(gathering), "MPI_Barrier") }
        var pending = 0
        for (b, bucket) in buckets.enumerated() where !shared[b] {
            let l = layout + 4 * size * b, base = target + bucket.lowerBound
            if let root {
                let mine = rankSegment(rank, of: bucket.count, ranks: size)
                let send = rank == root ? aedist_in_place() : UnsafeMutableRawPointer(base + mine.offset)
                try check(MPI_Igatherv(send, Int32(mine.length), aedist_float(), base, l, l + size, aedist_float(),
                                       Int32(root), gathering, gatherRequests + pending), "MPI_Igatherv")
            } else {
                try check(MPI_Iallgatherv(aedist_in_place(), 0, aedist_float(), base, l, l + size,
                                          aedist_float(), gathering, gatherRequests + pending), "MPI_Iallgatherv")
            }
            pending += 1
        }
        try check(MPI_Waitall(Int32(pending), gatherRequests, aedist_statuses_ignore()), "MPI_Waitall")
    }
}
