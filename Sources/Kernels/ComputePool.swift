// ComputePool: the threads of one rank's compute and their per-thread scratch (packing buffers).

import Dispatch
import Foundation

/// Threads for one rank's compute, with per-thread scratch (packing buffers) allocated up front
/// and grown only when a larger shape is first seen, so a steady-state training step allocates nothing.
///
/// `matrixProduct` may be called with the same pool from one thread at a time. A call that finds the
/// pool busy (another thread's call, or a call from inside `parallelFor`) still computes the same
/// bits, on the calling thread with temporary scratch.
public final class ComputePool: @unchecked Sendable {
    /// How many threads `parallelFor` uses at most.
    public let threads: Int
    /// Scratch of item `i` (0..<threads) of a product's `parallelFor`; only that item touches it.
    let scratch: [ProductScratch]
    private let lock = NSLock()

    public init(threads: Int) {
        precondition(threads >= 1, "ComputePool needs at least one thread, got \(threads)")
        self.threads = threads
        self.scratch = (0..<threads).map { _ in ProductScratch() }
    }

    /// Runs body(i) for i in 0..<count on up to `threads` threads (DispatchQueue.concurrentPerform; count 1 or threads 1 runs inline).
    /// With more items than threads, worker w runs items w, w + threads, w + 2·threads, ... in order.
    public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        if count <= 0 { return }
        if count == 1 || threads == 1 {
            for i in 0..<count { body(i) }
            return
        }
        let workers = min(count, threads)
        withoutActuallyEscaping(body) { body in
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                var i = w
                while i < count {
                    body(i)
                    i += workers
                }
            }
        }
    }

    /// Takes the pool for one product; false when it is in use.
    func tryAcquire() -> Bool { lock.try() }
    func release() { lock.unlock() }
}

/// One worker's buffers for `matrixProduct`: packed panels of A and B, an edge tile and the stack of
/// partial tiles of the reduction-chunk tree. Grown (never shrunk) on first use of a larger shape.
final class ProductScratch {
    private(set) var packedA = ProductScratch.allocate(0)
    private(set) var packedB = ProductScratch.allocate(0)
    private(set) var tileStack = ProductScratch.allocate(0)
    private(set) var capacityA = 0
    private(set) var capacityB = 0
    private(set) var capacityStack = 0
    /// One MR × NR tile, for edge tiles that are computed in full and copied out in part.
    let edgeTile = ProductScratch.allocate(MicroKernel.mr * MicroKernel.nr)

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
        let stack = stackTiles * MicroKernel.mr * MicroKernel.nr
        if stack > capacityStack {
            ProductScratch.free(tileStack)
            tileStack = ProductScratch.allocate(stack)
            capacityStack = stack
        }
    }

    deinit {
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
