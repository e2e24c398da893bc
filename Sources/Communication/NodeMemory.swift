// The training step's gradients of every rank of a node, and one copy of the parameters, in MPI
// shared-memory windows: when all the ranks of a run share a node, they read each other's gradients
// in place and share the parameters instead of copying them through messages
// (SharedMemoryGradientReduction).
import Atomics
import CMPI
#if canImport(Glibc)
import Glibc
#endif

/// Where a training step keeps its parameters and gradients: this process's own memory, or a
/// `NodeMemory`: its slot of the node's gradients, and the node's one copy of the parameters.
public final class StepBuffers {
    public let parameters: UnsafeMutablePointer<Float>
    public let gradients: UnsafeMutablePointer<Float>
    /// Non-nil when the buffers are this rank's slot of memory shared by every rank of the run.
    let node: NodeMemory?
    /// Why the buffers are private although shared memory was asked for and every rank is on one
    /// node (the window could not be made, on some rank); nil otherwise.
    public let sharedMemoryUnavailable: String?

    init(parameterCount: Int, gradientCount: Int, sharedMemoryUnavailable: String? = nil) {
        self.sharedMemoryUnavailable = sharedMemoryUnavailable
        parameters = .allocate(capacity: max(parameterCount, 1))
        parameters.initialize(repeating: 0, count: max(parameterCount, 1))
        gradients = .allocate(capacity: max(gradientCount, 1))
        gradients.initialize(repeating: 0, count: max(gradientCount, 1))
        node = nil
    }

    init(node: NodeMemory) {
        self.node = node
        sharedMemoryUnavailable = nil
        parameters = node.parameters
        gradients = node.gradients(of: node.rank)
    }

    /// True when the other ranks read these buffers in place: the gradients in the reduction, and
    /// the parameters are one copy for the node, which only their owners (or rank 0) may write.
    public var isShared: Bool { node != nil }

    deinit {
        if node == nil { parameters.deallocate(); gradients.deallocate() }
    }
}

/// One slot per rank of a node in an MPI shared-memory window (`MPI_Win_allocate_shared`): a line of
/// progress counters, then the gradients. Each rank writes only its own slot and its own counters;
/// the others read them once the counters say the values are final. A second window holds the one
/// copy of the parameters that every rank of the node reads (allocated by rank 0).
///
/// The counters only grow, and every rank makes the same sequence of the same steps, so "rank q has
/// done the n-th such step" is "q's counter has reached the value mine reached at my n-th".
final class NodeMemory {
    let rank: Int, size: Int
    private var window: MPI_Win?, parameterWindow: MPI_Win?
    private let slots: [UnsafeMutableRawPointer]
    /// Offset of the gradients in a slot, in bytes (after the counters' cache line).
    private let gradientOffset = 64
    private let slotFloats: Int
    let parameters: UnsafeMutablePointer<Float>

    /// The progress counters of a slot, each cumulative over the run.
    enum Counter: Int {
        case published = 0   // buckets whose gradients are final
        case folded = 1      // buckets whose segment the rank has folded
        case arrived = 2     // barriers reached
    }
    /// This rank's own counts (its counters hold the same values).
    private var counts = [0, 0, 0]

    /// Collective over `node` (every rank of which shares this machine's memory). Makes both windows
    /// on every rank before it checks anything, so that a problem on one rank leaves no other
    /// waiting in a collective; the caller agrees on `problem` before using the memory.
    init(node: MPI_Comm, rank: Int, size: Int, parameterCount: Int, gradientCount: Int) {
        self.rank = rank; self.size = size
        // The slots are back to back (the window is contiguous): slot r starts r slots after slot 0,
        // one stride for every fold. Whole pages per slot, which is no promise of page-aligned slots
        // (Open MPI puts its own state first): each slot starts with room to align its counters'
        // line to 64 bytes, the same amount in every slot.
        let pages = { (bytes: Int) in (bytes + 4095) / 4096 * 4096 }
        let slotBytes = pages(64 + gradientOffset + gradientCount * MemoryLayout<Float>.stride)
        let parameterBytes = rank == 0 ? pages(parameterCount * MemoryLayout<Float>.stride) : 0
        var base: UnsafeMutableRawPointer? = nil, parameterBase: UnsafeMutableRawPointer? = nil
        let rc = MPI_Win_allocate_shared(MPI_Aint(slotBytes), 1, aedist_info_null(), node, &base, &window)
        let parameterRC = MPI_Win_allocate_shared(MPI_Aint(parameterBytes), 1, aedist_info_null(), node,
                                                  &parameterBase, &parameterWindow)
        slotFloats = slotBytes / MemoryLayout<Float>.stride
        var found: [UnsafeMutableRawPointer] = []
        var first: UnsafeMutableRawPointer? = nil
        var problem: String? = nil
        if rc != MPI_SUCCESS || parameterRC != MPI_SUCCESS {
            problem = "MPI_Win_allocate_shared failed on rank \(rank): \(MPICommunicator.errorString(rc != MPI_SUCCESS ? rc : parameterRC))"
        } else {
            for r in 0..<size {
                var bytes: MPI_Aint = 0, unit: Int32 = 0
                var pointer: UnsafeMutableRawPointer? = nil
                MPI_Win_shared_query(window, Int32(r), &bytes, &unit, &pointer)
                guard let pointer, Int(bytes) >= slotBytes, pointer == base!.advanced(by: (r - rank) * slotBytes),
                      Int(bitPattern: pointer) % 8 == 0 else {
                    problem = "rank \(rank): MPI_Win_allocate_shared did not lay the ranks' memory out back to back"
                    break
                }
                found.append(pointer + (64 - Int(bitPattern: pointer) % 64) % 64)
            }
            var bytes: MPI_Aint = 0, unit: Int32 = 0
            MPI_Win_shared_query(parameterWindow, 0, &bytes, &unit, &first)
            if first == nil || Int(bytes) < parameterCount * MemoryLayout<Float>.stride {
                problem = problem ?? "rank \(rank): the node's shared parameters are smaller than asked"
            }
        }
        self.problem = problem
        slots = problem == nil ? found : []
        parameters = (problem == nil ? first! : UnsafeMutableRawPointer.allocate(byteCount: 4, alignment: 4))
            .bindMemory(to: Float.self, capacity: max(parameterCount, 1))
        guard problem == nil else { return }
        if rank == 0 { parameters.initialize(repeating: 0, count: parameterCount) }
        let mine = slots[rank]
        mine.initializeMemory(as: UInt8.self, repeating: 0, count: gradientOffset + gradientCount * MemoryLayout<Float>.stride)
        for c in 0..<3 {
            (mine + 8 * c).bindMemory(to: Int.AtomicRepresentation.self, capacity: 1).initialize(to: .init(0))
        }
    }

    /// Why this rank cannot use the memory; nil when it can.
    let problem: String?

    /// Frees the windows. Collective, so never from a deinit: a rank leaving on an error would wait
    /// here for the others. The communicator calls it at the orderly end (`finish`).
    func free() {
        if window != nil { MPI_Win_free(&window) }
        if parameterWindow != nil { MPI_Win_free(&parameterWindow) }
    }

    func gradients(of r: Int) -> UnsafeMutablePointer<Float> {
        (slots[r] + gradientOffset).assumingMemoryBound(to: Float.self)
    }
    /// Floats from one rank's gradients to the next rank's: the leaf stride of a fold.
    var slotStride: Int { slotFloats }

    private func counter(_ r: Int, _ c: Counter) -> UnsafeAtomic<Int> {
        UnsafeAtomic(at: (slots[r] + 8 * c.rawValue).assumingMemoryBound(to: Int.AtomicRepresentation.self))
    }

    /// Counts one more `c` on this rank and tells the others (after every write before it).
    @discardableResult
    func advance(_ c: Counter) -> Int {
        counts[c.rawValue] += 1
        counter(rank, c).store(counts[c.rawValue], ordering: .releasing)
        return counts[c.rawValue]
    }

    /// This rank's count of `c` so far.
    func count(_ c: Counter) -> Int { counts[c.rawValue] }

    /// Whether rank `r` has counted `value` of `c` (and every write it made before is visible).
    private func reached(_ r: Int, _ c: Counter, _ value: Int) -> Bool {
        counter(r, c).load(ordering: .acquiring) >= value
    }

    /// Waits until rank `r` has counted `value` of `c`. Spins briefly, then yields the core, so that
    /// ranks oversubscribing the cores let the rank they wait for run.
    private func wait(_ r: Int, _ c: Counter, _ value: Int) {
        var spins = 0
        while !reached(r, c, value) {
            spins += 1
            if spins > 200 { sched_yield() }
        }
    }

    /// Whether every other rank has counted `value` of `c`; with `wait`, waits until they have (and
    /// then says true).
    func othersReached(_ c: Counter, _ value: Int, wait waiting: Bool) -> Bool {
        for r in 0..<size where r != rank {
            if waiting { wait(r, c, value) } else if !reached(r, c, value) { return false }
        }
        return true
    }

    /// Every rank of the node has reached this point (and its writes before it are visible).
    func barrier() {
        _ = othersReached(.arrived, advance(.arrived), wait: true)
    }
}
