// The tree reduction of GradientReduction for ranks that share one node: no messages, each rank
// reads the others' gradients where they lie (NodeMemory).

/// Exact, and the same bits as MPIGradientReduction: rank s folds its segment of each bucket from
/// every rank's gradients in rank order, with the same tree, straight out of their slots, into its
/// own slot. What the messages did (the all-to-all's copies in and out, the all-gathers) is gone:
/// - a bucket that is `shared` is then copied by every rank from its owners' slots;
/// - a bucket that is not is left as a reduce-scatter: each rank updates its segments of the node's
///   one copy of the parameters, and `gather` of the parameters is a barrier.
/// `finish` ends with a barrier, so that no rank writes its next step's gradients while another
/// still reads this step's. `gather` of any other buffer (the optimizer state, for a checkpoint)
/// goes through `messages`, the MPI form.
final class SharedMemoryGradientReduction: GradientReduction {
    let buckets: [Range<Int>]
    let ownedRanges: [Range<Int>]
    private let shared: [Bool]
    private let node: NodeMemory
    private let combine: TreeCombine
    private let messages: GradientReduction
    /// Buckets started, folded (this rank's segment), and copied (shared buckets' other segments),
    /// in bucket order: copied ≤ folded ≤ started.
    private var started = 0, folded = 0, copied = 0
    /// The counters' values at this round's bucket 0.
    private var publishedBase = 0, foldedBase = 0

    init(node: NodeMemory, buckets: [Range<Int>], shared: [Bool], combine: @escaping TreeCombine,
         messages: GradientReduction) {
        precondition(shared.count == buckets.count, "GradientReduction: one shared flag per bucket")
        self.node = node; self.buckets = buckets; self.shared = shared
        self.combine = combine; self.messages = messages
        ownedRanges = messages.ownedRanges
        publishedBase = node.count(.published); foldedBase = node.count(.folded)
    }

    func start(_ b: Int) throws {
        precondition(b == started, "GradientReduction: bucket \(b) started out of order (expected \(started))")
        node.advance(.published)
        started += 1
    }

    /// Folds bucket `folded` when every rank has published it (`wait`: blocks until they have).
    private func fold(wait: Bool) -> Bool {
        let b = folded
        guard node.othersReached(.published, publishedBase + b + 1, wait: wait) else { return false }
        let mine = ownedRanges[b]
        let leaves = node.gradients(of: 0) + mine.lowerBound
        combine(leaves, node.size, mine.count, node.slotStride, node.gradients(of: node.rank) + mine.lowerBound)
        node.advance(.folded)
        folded += 1
        return true
    }

    /// Copies the other ranks' folded segments of bucket `copied` if it is shared (`wait`: blocks
    /// until its owners have folded them).
    private func copy(wait: Bool) -> Bool {
        let b = copied
        if shared[b] {
            guard node.othersReached(.folded, foldedBase + b + 1, wait: wait) else { return false }
            let bucket = buckets[b], mine = node.gradients(of: node.rank)
            for r in 0..<node.size where r != node.rank {
                let segment = rankSegment(r, of: bucket.count, ranks: node.size)
                let at = bucket.lowerBound + segment.offset
                (mine + at).update(from: node.gradients(of: r) + at, count: segment.length)
            }
        }
        copied += 1
        return true
    }

    func progress() throws {
        while folded < started && fold(wait: false) {}
        while copied < folded && copy(wait: false) {}
    }

    func finish() throws {
        precondition(started == buckets.count, "GradientReduction: finish with \(buckets.count - started) bucket(s) not started")
        while folded < started { _ = fold(wait: true) }
        while copied < folded { _ = copy(wait: true) }
        node.barrier()
        started = 0; folded = 0; copied = 0
        publishedBase = node.count(.published); foldedBase = node.count(.folded)
    }

    func gather(_ target: UnsafeMutablePointer<Float>, root: Int?) throws {
        precondition(started == 0, "GradientReduction: gather during a round")
        guard target == node.parameters else { return try messages.gather(target, root: root) }
        // Every owner has written its segments once every rank has arrived. An owner writes them
        // again only after the next round's `finish`, which every rank reaches after its forward and
        // backward have read them.
        node.barrier()
    }
}
