// ComputePool: the threads of one rank's compute and their per-thread scratch (packing buffers).

import Foundation
import RegisterTiles
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Threads for one rank's compute, with per-thread scratch (packing buffers) allocated up front
/// and grown only when a larger shape is first seen, so a steady-state training step allocates nothing.
///
/// `matrixProduct` may be called with the same pool from one thread at a time. A call that finds the
/// pool busy (another thread's call, or a call from inside `parallelFor`) still computes the same
/// bits, on the calling thread with temporary scratch.
public final class ComputePool: @unchecked Sendable {
    /// How many threads `parallelFor` uses at most (the caller and threads - 1 workers).
    public let threads: Int
    /// Whose micro-kernels the products run.
    public let instructionSet: InstructionSet
    let tiles: TileRoutines
    /// Scratch of item `i` (0..<threads) of a product's `parallelFor`; only that item touches it.
    let scratch: [ProductScratch]
    private let lock = NSLock()
    private let team: WorkerTeam?

    /// `instructionSet`: nil takes `InstructionSet.chosen()` (AEDIST_KERNELS, else the best this CPU
    /// has); the command line checks that variable first, so a bad value is reported there.
    public init(threads: Int, instructionSet: InstructionSet? = nil) {
        precondition(threads >= 1, "ComputePool needs at least one thread, got \(threads)")
        self.threads = threads
        let set = instructionSet ?? ((try? InstructionSet.chosen()) ?? .best)
        precondition(InstructionSet.supported.contains(set), "this CPU cannot run the \(set) kernels")
        self.instructionSet = set
        self.tiles = set.routines
        self.scratch = (0..<threads).map { _ in ProductScratch() }
        self.team = threads > 1 ? WorkerTeam(workers: threads - 1) : nil
    }

    deinit { team?.stop() }

    /// Runs body(i) for i in 0..<count on up to `threads` threads (count 1 or threads 1 runs inline).
    /// The calling thread takes part; each item goes to whichever thread claims it first, so an item's
    /// work must not depend on which thread runs it (items index their own scratch). Persistent workers
    /// that spin briefly, then sleep, rather than DispatchQueue.concurrentPerform: a loop of a few
    /// items costs about a microsecond to start, and on a loaded machine libdispatch often ran every
    /// item on the calling thread. A parallelFor from inside a body (or from a second thread while one
    /// runs) runs inline.
    public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        if count <= 0 { return }
        guard count > 1, let team else {
            for i in 0..<count { body(i) }
            return
        }
        team.run(count, body)
    }

    /// Takes the pool for one product; false when it is in use.
    func tryAcquire() -> Bool { lock.try() }
    func release() { lock.unlock() }
}

/// Worker threads for `parallelFor`. `state` packs (generation << 32 | item count << 16 | next item):
/// a loop is published by storing a new generation with item 0; threads claim items by compare-and-swap,
/// which fails once a newer generation is published, so a late worker never runs an item of another loop.
private final class WorkerTeam: @unchecked Sendable {
    private let state = Atomic<UInt64>(0)
    private let finished = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    private let sleepers = Atomic<Int>(0)
    /// The current loop's body; valid while any of its items is unfinished.
    private var job: ((Int) -> Void)?
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// How long an idle worker spins before it sleeps.
    static let spinNanoseconds: UInt64 = 50_000

    init(workers: Int) {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(wake, nil)
        for _ in 0..<workers {
            let thread = Thread { [self] in self.work() }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(wake)
        pthread_mutex_unlock(mutex)
        // The workers hold `self` and exit on their own; the primitives live as long as this object.
    }

    deinit {
        pthread_mutex_destroy(mutex)
        pthread_cond_destroy(wake)
        mutex.deallocate()
        wake.deallocate()
    }

    func run(_ count: Int, _ body: (Int) -> Void) {
        guard count < 1 << 16, busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            for i in 0..<count { body(i) }   // nested or concurrent: inline, same arithmetic
            return
        }
        withoutActuallyEscaping(body) { body in
            job = body
            finished.store(0, ordering: .relaxed)
            let generation = (state.load(ordering: .relaxed) >> 32) &+ 1
            state.store(generation << 32 | UInt64(count) << 16, ordering: .sequentiallyConsistent)
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                pthread_mutex_lock(mutex)
                pthread_cond_broadcast(wake)
                pthread_mutex_unlock(mutex)
            }
            claimItems(generation: generation)
            var spins = 0
            while finished.load(ordering: .acquiring) < count {
                spins += 1
                if spins > 1000 { sched_yield() }
            }
            job = nil
        }
        busy.store(false, ordering: .releasing)
    }

    /// Runs items of loop `generation` until none is left or a newer loop is published.
    private func claimItems(generation: UInt64) {
        while true {
            let s = state.load(ordering: .acquiring)
            if s >> 32 != generation { return }
            let next = Int(s & 0xFFFF), count = Int((s >> 16) & 0xFFFF)
            if next >= count { return }
            guard state.compareExchange(expected: s, desired: s + 1, ordering: .acquiringAndReleasing).exchanged
            else { continue }
            job!(next)
            finished.add(1, ordering: .releasing)
        }
    }

    private func work() {
        var seen: UInt64 = 0
        while true {
            var generation = state.load(ordering: .acquiring) >> 32
            if generation == seen {
                let start = DispatchTime.now().uptimeNanoseconds
                var spins = 0
                while generation == seen {
                    if stopping.load(ordering: .relaxed) { return }
                    spins += 1
                    if spins & 63 == 0 && DispatchTime.now().uptimeNanoseconds - start > WorkerTeam.spinNanoseconds {
                        pthread_mutex_lock(mutex)
                        sleepers.add(1, ordering: .sequentiallyConsistent)
                        while state.load(ordering: .sequentiallyConsistent) >> 32 == seen
                                && !stopping.load(ordering: .sequentiallyConsistent) {
                            pthread_cond_wait(wake, mutex)
                        }
                        sleepers.subtract(1, ordering: .sequentiallyConsistent)
                        pthread_mutex_unlock(mutex)
                    }
                    generation = state.load(ordering: .acquiring) >> 32
                }
            }
            if stopping.load(ordering: .relaxed) { return }
            seen = generation
            claimItems(generation: generation)
        }
    }
}

/// One worker's buffers for `matrixProduct`: packed panels of A and B, an edge tile, the stack of
/// partial tiles of the reduction-chunk tree, and (the first worker's) the leaves of a product run
/// chunk by chunk. Grown (never shrunk) on first use of a larger shape.
final class ProductScratch {
    private(set) var packedA = ProductScratch.allocate(0)
    private(set) var packedB = ProductScratch.allocate(0)
    private(set) var tileStack = ProductScratch.allocate(0)
    private(set) var capacityA = 0
    private(set) var capacityB = 0
    private(set) var capacityStack = 0
    /// The leaves, tree stack and result of a product run chunk by chunk (`productChunkByChunk`).
    private(set) var chunkResults = ProductScratch.allocate(0)
    private(set) var capacityChunkResults = 0
    /// One tile of the widest kind, for edge tiles that are computed in full and copied out in part.
    let edgeTile = ProductScratch.allocate(MicroKernel.mr * MicroKernel.widest)

    /// Makes room for `a` floats of packed A, `b` of packed B and `stackTiles` tiles of tree stack.
    func reserve(a: Int, b: Int, stackTiles: Int) {
        if a > capacityA {
            ProductScratch.free(packedA)
            packedA = ProductScratch.allocate(a)
            capacityA = a
        }
        if b > capacityB {
            ProductScratch.free(packedB)
            packedB = ProductScratch.allocate(b)
            capacityB = b
        }
        let stack = stackTiles * MicroKernel.mr * MicroKernel.widest
        if stack > capacityStack {
            ProductScratch.free(tileStack)
            tileStack = ProductScratch.allocate(stack)
            capacityStack = stack
        }
    }

    /// Makes room for `count` floats of `chunkResults`.
    func reserveChunkResults(_ count: Int) {
        if count > capacityChunkResults {
            ProductScratch.free(chunkResults)
            chunkResults = ProductScratch.allocate(count)
            capacityChunkResults = count
        }
    }

    deinit {
        ProductScratch.free(chunkResults)
        ProductScratch.free(packedA)
        ProductScratch.free(packedB)
        ProductScratch.free(tileStack)
        ProductScratch.free(edgeTile)
    }

    private static func allocate(_ count: Int) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer.allocate(byteCount: max(count, 16) * MemoryLayout<Float>.stride, alignment: 64)
            .bindMemory(to: Float.self, capacity: max(count, 16))
    }

    private static func free(_ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).deallocate()
    }
}
