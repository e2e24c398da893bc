// PairwiseTree: the binary-counter pairwise tree that groups every sum over micro-batches
// (docs/determinism.md). The matrix product's reduction chunks fuse the same tree (MatrixProduct.swift).

/// The one definition of the pairwise tree (docs/determinism.md), for callers that combine whole vectors:
/// combines `count` vectors of length `length`, leaf j at leaves + j*stride (`stride` defaults to
/// `length`: back to back), into `result`, element by element, with the binary-counter tree. `result`
/// may be one of the leaves (each element is written after every leaf's element was read). `scratch`
/// holds at least PairwiseTree.scratchCount(leaves: count) * length floats. Vectorised.
///
/// The tree: walk the leaves in order keeping a stack of partial sums; push each leaf, and while the two
/// topmost entries cover equally many leaves, pop them and push `left + right`. After leaf t (counting
/// from 1) that is `t.trailingZeroBitCount` merges. At the end fold from the top:
/// `acc = top; acc = below + acc; ...`. Zero leaves give zeros.
public enum PairwiseTree {
    /// Stack entries the tree needs for `leaves` leaves: ⌊log2(leaves)⌋ + 1 (0 for no leaves).
    public static func scratchCount(leaves: Int) -> Int {
        leaves <= 0 ? 0 : Int.bitWidth - leaves.leadingZeroBitCount
    }

    /// Elements combined per pass, so the stack entries of one pass stay in the L1 cache.
    static let segment = 2048

    public static func combine(leaves: UnsafePointer<Float>, count: Int, length: Int, stride: Int? = nil,
                               into result: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        precondition(count >= 0 && length >= 0, "PairwiseTree.combine: negative count or length")
        let stride = stride ?? length
        if length == 0 { return }
        if count == 0 {
            result.update(repeating: 0, count: length)
            return
        }
        if count == 1 {
            result.update(from: leaves, count: length)
            return
        }
        if count == 2 {   // the tree is one addition (two ranks' copies): one pass instead of three
            add(leaves, leaves + stride, into: result, count: length)
            return
        }
        var start = 0
        while start < length {
            let n = min(segment, length - start)
            var depth = 0
            for t in 1...count {
                let leaf = leaves + (t - 1) * stride + start
                var merges = t.trailingZeroBitCount
                if merges == 0 {
                    (scratch + depth * length + start).update(from: leaf, count: n)
                    depth += 1
                } else {
                    // Pop the top as `left`, the new leaf is `right`; then keep merging down.
                    let top = scratch + (depth - 1) * length + start
                    add(UnsafePointer(top), leaf, into: top, count: n)
                    merges -= 1
                    while merges > 0 {
                        let below = scratch + (depth - 2) * length + start
                        add(UnsafePointer(below), UnsafePointer(below + length), into: below, count: n)
                        depth -= 1
                        merges -= 1
                    }
                }
            }
            // Fold from the top: acc = top; acc = below + acc; ...
            let out = result + start
            if depth == 1 {
                out.update(from: scratch + start, count: n)
            } else {
                add(UnsafePointer(scratch + (depth - 2) * length + start),
                    UnsafePointer(scratch + (depth - 1) * length + start), into: out, count: n)
                var s = depth - 3
                while s >= 0 {
                    add(UnsafePointer(scratch + s * length + start), UnsafePointer(out), into: out, count: n)
                    s -= 1
                }
            }
            start += n
        }
    }

    /// The same tree over scalars (for small sums like per-micro-batch losses).
    public static func sum(_ values: UnsafeBufferPointer<Float>) -> Float {
        let count = values.count
        if count == 0 { return 0 }
        return withUnsafeTemporaryAllocation(of: Float.self, capacity: Int.bitWidth) { stack in
            var depth = 0
            for t in 1...count {
                var acc = values[t - 1]
                var merges = t.trailingZeroBitCount
                while merges > 0 {
                    depth -= 1
                    acc = stack[depth] + acc
                    merges -= 1
                }
                stack[depth] = acc
                depth += 1
            }
            var acc = stack[depth - 1]
            var s = depth - 2
            while s >= 0 {
                acc = stack[s] + acc
                s -= 1
            }
            return acc
        }
    }

    /// out[i] = x[i] + y[i]; `out` may be `x` or `y`.
    @inline(__always)
    static func add(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>,
                    into out: UnsafeMutablePointer<Float>, count: Int) {
        let rx = UnsafeRawPointer(x), ry = UnsafeRawPointer(y), ro = UnsafeMutableRawPointer(out)
        var i = 0
        while i + 8 <= count {
            let v = rx.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                + ry.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            ro.storeBytes(of: v, toByteOffset: i * 4, as: SIMD8<Float>.self)
            i += 8
        }
        while i < count {
            out[i] = x[i] + y[i]
            i += 1
        }
    }
}
