// This rank's rows of each training step, in batch order, wherever the train rows live. Every
// residency hands the same rows, in their stored type, to the same conversion: the same bits.
import Communication
import Foundation
import Storage

/// Which positions of which epoch's order a step takes.
struct StepLayout {
    let plan: BatchPlan
    let rank: Int
    let stepsPerEpoch: Int

    /// The epoch of `step` and the positions of its whole global batch.
    func batch(_ step: Int) -> (epoch: Int, positions: Range<Int>) {
        let first = (step % stepsPerEpoch) * plan.global
        return (step / stepsPerEpoch, first..<(first + plan.global))
    }

    /// The epoch of `step` and the positions of this rank's rows of it.
    func mine(_ step: Int) -> (epoch: Int, positions: Range<Int>) {
        let (epoch, all) = batch(step)
        let first = all.lowerBound + rank * plan.perRank
        return (epoch, first..<(first + plan.perRank))
    }
}

protocol StepRows: AnyObject {
    /// Calls `body` with a matrix holding this rank's rows of `step` and their indices in it, in
    /// batch order. Collective for sharded rows: every rank calls it for the same step.
    func withRows(step: Int, _ body: (StoredMatrix, UnsafeBufferPointer<Int>) -> Void) throws
}

/// The step rows of `training` (the train dataset, or the rows a validation fraction leaves of it),
/// read from `training`'s whole dataset wherever `residency` keeps it.
func makeStepRows(_ training: DataSplit, whole split: DataSplit, residency: Residency, config: RunConfig, plan: BatchPlan,
                  communicator: Communicator) -> StepRows {
    precondition(split.selection == nil)
    let layout = StepLayout(plan: plan, rank: communicator.rank, stepsPerEpoch: training.rows / plan.global)
    let order = { EpochOrder(count: training.rows, data: config.data, chunkRows: split.chunkRows, seed: config.train.seed,
                             selection: training.selection) }
    switch residency {
    case .replicated, .auto: return ReplicatedRows(split, layout, order())
    case .sharded: return ShardedRows(split, layout, order(), communicator)
    case .streamed: return StreamedRows(split, layout, order)
    }
}

/// Every row in memory: the step's rows are indexed where they are.
final class ReplicatedRows: StepRows {
    let split: DataSplit, layout: StepLayout, order: EpochOrder
    var indices: [Int]

    init(_ split: DataSplit, _ layout: StepLayout, _ order: EpochOrder) {
        precondition(split.held?.rows == split.rows, "replicated rows need the whole split in memory")
        self.split = split; self.layout = layout; self.order = order
        indices = [Int](repeating: 0, count: layout.plan.perRank)
    }

    func withRows(step: Int, _ body: (StoredMatrix, UnsafeBufferPointer<Int>) -> Void) throws {
        let (epoch, positions) = layout.mine(step)
        indices.withUnsafeMutableBufferPointer { order.rows(epoch: epoch, positions: positions, into: $0.baseAddress!) }
        indices.withUnsafeBufferPointer { body(split.held!, $0) }
    }
}

/// Each rank holds the rows `rowRange` gives it; a step's rows travel from their holders in one
/// all-to-all exchange of stored bytes (every rank knows the whole order, so no request is sent).
final class ShardedRows: StepRows {
    let split: DataSplit, layout: StepLayout, order: EpochOrder, communicator: Communicator
    let staging: StoredMatrix
    private var batch: [Int]
    private let send: UnsafeMutableRawPointer, receive: UnsafeMutableRawPointer
    private let slots: [Int]

    init(_ split: DataSplit, _ layout: StepLayout, _ order: EpochOrder, _ communicator: Communicator) {
        precondition(split.held != nil, "sharded rows need the rank's shard in memory")
        self.split = split; self.layout = layout; self.order = order; self.communicator = communicator
        staging = StoredMatrix(staging: layout.plan.perRank, like: split.reader)
        batch = [Int](repeating: 0, count: layout.plan.global)
        send = .allocate(byteCount: max(1, layout.plan.global * split.reader.rowBytes), alignment: 16)
        receive = .allocate(byteCount: max(1, layout.plan.perRank * split.reader.rowBytes), alignment: 16)
        slots = Array(0..<layout.plan.perRank)
    }

    deinit { send.deallocate(); receive.deallocate() }

    /// The rank whose shard holds `row`.
    private func holder(_ row: Int) -> Int {
        let n = split.rows, size = communicator.size
        var r = min(size - 1, row * size / n)
        while rowRange(count: n, rank: r, size: size).lowerBound > row { r -= 1 }
        while rowRange(count: n, rank: r, size: size).upperBound <= row { r += 1 }
        return r
    }

    func withRows(step: Int, _ body: (StoredMatrix, UnsafeBufferPointer<Int>) -> Void) throws {
        let (epoch, positions) = layout.batch(step)
        batch.withUnsafeMutableBufferPointer { order.rows(epoch: epoch, positions: positions, into: $0.baseAddress!) }
        let size = communicator.size, per = layout.plan.perRank, bytes = staging.rowBytes
        let me = communicator.rank, shard = split.held!, base = split.heldFrom
        var sendCounts = [Int](repeating: 0, count: size), receiveCounts = [Int](repeating: 0, count: size)
        var at = 0
        for destination in 0..<size {
            for slot in (destination * per)..<((destination + 1) * per) where holder(batch[slot]) == me {
                (send + at).copyMemory(from: shard.rawRow(batch[slot] - base), byteCount: bytes)
                at += bytes
                sendCounts[destination] += bytes
            }
        }
        let holders = (0..<per).map { holder(batch[me * per + $0]) }
        for h in holders { receiveCounts[h] += bytes }
        try communicator.exchange(send: send, sendCounts: sendCounts, receive: receive, receiveCounts: receiveCounts)
        // Each holder's rows arrive in this rank's batch order: deal them back into their slots.
        var next = [Int](repeating: 0, count: size)
        var offset = 0
        for r in 0..<size { next[r] = offset; offset += receiveCounts[r] }
        for (slot, h) in holders.enumerated() {
            staging.rawRow(slot).copyMemory(from: receive + next[h], byteCount: bytes)
            next[h] += bytes
        }
        slots.withUnsafeBufferPointer { body(staging, $0) }
    }
}

/// No rows in memory: a reader thread reads the rows of the next `depth` steps from the file
/// while the current one computes. 16 steps of slack hide the first step of a `blocks` window,
/// which reads all its blocks (MNIST: 16 chunks, about 55 ms, against 5 ms per step at np = 2). With `data.shuffle: blocks` it reads whole blocks (aligned to
/// the file's chunks) and keeps the few that the current windows use, so each chunk is read and
/// decompressed once per epoch; with `rows` it reads each step's rows in one selection.
final class StreamedRows: StepRows {
    static let depth = 16
    let layout: StepLayout
    private let state: StreamState
    private let slots: [Int]

    init(_ split: DataSplit, _ layout: StepLayout, _ makeOrder: () -> EpochOrder) {
        self.layout = layout
        state = StreamState(split: split, layout: layout, order: makeOrder(), depth: StreamedRows.depth)
        slots = Array(0..<layout.plan.perRank)
        let state = self.state
        let thread = Thread { state.run() }
        thread.name = "aedist-reader"
        thread.start()
    }

    deinit { state.stop() }

    func withRows(step: Int, _ body: (StoredMatrix, UnsafeBufferPointer<Int>) -> Void) throws {
        let matrix = try state.take(step)
        slots.withUnsafeBufferPointer { body(matrix, $0) }
        state.release(step)
    }
}

/// What the reader thread and the training thread share, under one condition lock.
final class StreamState: @unchecked Sendable {
    let split: DataSplit, layout: StepLayout, order: EpochOrder
    let buffers: [StoredMatrix]
    private let condition = NSCondition()
    /// The step each buffer holds (nil: free or being filled).
    private var ready: [Int?]
    /// The next step to read, the step being consumed, and a count of restarts (a jump in steps).
    private var next = 0, wanted = 0, generation = 0
    private var failure: Error?
    private var stopping = false, stopped = false
    /// blocks: the blocks read, most recently used last.
    private var blocks: [(index: Int, rows: StoredMatrix)] = []
    private var indices: [Int]

    init(split: DataSplit, layout: StepLayout, order: EpochOrder, depth: Int) {
        self.split = split; self.layout = layout; self.order = order
        buffers = (0..<depth).map { _ in StoredMatrix(staging: layout.plan.perRank, like: split.reader) }
        ready = Array(repeating: nil, count: depth)
        indices = [Int](repeating: 0, count: layout.plan.perRank)
    }

    /// The buffer holding `step`'s rows, once read. A step other than the one after the last
    /// taken (the first step, a resume) restarts the reader there.
    func take(_ step: Int) throws -> StoredMatrix {
        condition.lock()
        defer { condition.unlock() }
        if step != wanted {
            wanted = step; next = step; generation += 1
            ready = Array(repeating: nil, count: buffers.count)
            failure = nil
            condition.broadcast()
        }
        while ready[step % buffers.count] != step {
            if let failure { throw failure }
            condition.wait()
        }
        return buffers[step % buffers.count]
    }

    func release(_ step: Int) {
        condition.lock()
        ready[step % buffers.count] = nil
        wanted = step + 1
        condition.broadcast()
        condition.unlock()
    }

    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while !stopped { condition.wait() }
        condition.unlock()
    }

    /// The reader thread: fills the buffer of step `next` while it is free and within `depth` of
    /// the step being consumed.
    func run() {
        condition.lock()
        while true {
            while !stopping && (failure != nil || next >= wanted + buffers.count || ready[next % buffers.count] != nil) {
                condition.wait()
            }
            if stopping { break }
            let (step, g) = (next, generation)
            condition.unlock()
            var error: Error?
            do { try read(step, into: buffers[step % buffers.count]) } catch let e { error = e }
            condition.lock()
            guard g == generation else { continue }   // restarted meanwhile: the rows are not wanted
            if let error { failure = error } else { ready[step % buffers.count] = step; next = step + 1 }
            condition.broadcast()
        }
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    private func read(_ step: Int, into out: StoredMatrix) throws {
        let (epoch, positions) = layout.mine(step)
        indices.withUnsafeMutableBufferPointer { order.rows(epoch: epoch, positions: positions, into: $0.baseAddress!) }
        guard order.kind == .blocks else { return try split.fill(out, rows: indices) }
        let b = order.blockRows, bytes = out.rowBytes
        for (slot, row) in indices.enumerated() {
            let block = row / b
            let rows: StoredMatrix
            if let i = blocks.lastIndex(where: { $0.index == block }) {
                rows = blocks[i].rows
                if i != blocks.count - 1 { blocks.append(blocks.remove(at: i)) }
            } else {
                rows = try StoredMatrix(split.reader, rows: (block * b)..<min(split.rows, (block + 1) * b))
                blocks.append((block, rows))
                // A step's rows come from at most two windows: keep those, drop the least recent.
                if blocks.count > 2 * order.window + 2 { blocks.removeFirst() }
            }
            out.rawRow(slot).copyMemory(from: rows.rawRow(row - block * b), byteCount: bytes)
        }
    }
}
