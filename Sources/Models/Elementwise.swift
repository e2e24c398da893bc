// Element-wise passes of the layers and losses, on raw row-major buffers. Each output element is a
// fixed function of its inputs, and per-row sums run in one fixed order, so results do not depend
// on how rows are split between threads.
#if canImport(Glibc)
import Glibc
#endif
import Kernels

let leakySlope: Float = 0.01

/// Rows per parallel task: enough work per task to amortise dispatch.
@inline(__always)
func rowBlocks(rows: Int, columns: Int) -> Int {
    max(1, min(rows, (rows * columns) / 16_384))
}

/// Splits `rows` into `blocks` near-equal ranges and runs `body(rowRange)` on each.
func forRowBlocks(rows: Int, columns: Int, pool: ComputePool, _ body: (Range<Int>) -> Void) {
    let blocks = min(rowBlocks(rows: rows, columns: columns), pool.threads * 4)
    if blocks <= 1 { body(0..<rows); return }
    pool.parallelFor(blocks) { b in
        body((rows * b / blocks)..<(rows * (b + 1) / blocks))
    }
}

/// out[r, c] = f(out[r, c] + bias[c]) for every row; 8 lanes at a time (VectorMath), the row's last
/// columns through the same 8-lane code on a padded copy, so every element is the same function of its input.
public func addBiasAndActivate(_ out: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>,
                               rows: Int, columns: Int, activation: Activation, pool: ComputePool) {
    typealias V = SIMD8<Float>
    @inline(__always)
    func f(_ v: V) -> V {
        switch activation {
        case .relu: return v.replacing(with: 0, where: v .< 0)
        case .leakyRelu: return v.replacing(with: v * leakySlope, where: v .<= 0)
        case .tanh: return VectorMath.tanh(v)
        case .sigmoid: return VectorMath.sigmoid(v)
        case .linear: return v
        }
    }
    forRowBlocks(rows: rows, columns: columns, pool: pool) { range in
        for r in range {
            let row = out + r * columns
            var c = 0
            while c + 8 <= columns {
                VectorMath.store(f(VectorMath.load(row + c) + VectorMath.load(bias + c)), row + c)
                c += 8
            }
            if c < columns {
                let n = columns - c
                let v = VectorMath.loadPartial(row + c, count: n) + VectorMath.loadPartial(bias + c, count: n)
                VectorMath.storePartial(f(v), row + c, count: n)
            }
        }
    }
}

/// grad *= f'(pre-activation), written in terms of the activation's output y.
public func multiplyByActivationDerivative(_ grad: UnsafeMutablePointer<Float>, output y: UnsafePointer<Float>,
                                           count: Int, activation: Activation, pool: ComputePool) {
    if activation == .linear { return }
    typealias V = SIMD8<Float>
    @inline(__always)
    func df(_ g: V, _ y: V) -> V {
        switch activation {
        case .relu: return g.replacing(with: 0, where: y .<= 0)
        case .leakyRelu: return g.replacing(with: g * leakySlope, where: y .<= 0)
        case .tanh: return g * (1 - y * y)
        case .sigmoid: return g * (y * (1 - y))
        case .linear: return g
        }
    }
    forRowBlocks(rows: (count + 7) / 8, columns: 8, pool: pool) { range in
        for b in range {
            let i = b * 8
            if i + 8 <= count {
                VectorMath.store(df(VectorMath.load(grad + i), VectorMath.load(y + i)), grad + i)
            } else {
                let n = count - i
                let v = df(VectorMath.loadPartial(grad + i, count: n), VectorMath.loadPartial(y + i, count: n))
                VectorMath.storePartial(v, grad + i, count: n)
            }
        }
    }
}

/// Column sums of a rows × columns matrix, rows cut into chunks of `chunk` whose sequential sums
/// are combined with the pairwise tree (docs/determinism.md). `scratch` holds
/// `columnSumsScratchCount(rows:columns:chunk:)` floats.
public func columnSums(_ x: UnsafePointer<Float>, rows: Int, columns: Int, chunk: Int,
                       into out: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
    precondition(chunk > 0 && rows % chunk == 0, "rows must be a multiple of the reduction chunk")
    let leaves = rows / chunk
    let leafSums = scratch
    let treeScratch = scratch + leaves * columns
    for l in 0..<leaves {
        let s = leafSums + l * columns
        s.update(repeating: 0, count: columns)
        for r in (l * chunk)..<((l + 1) * chunk) {
            let row = x + r * columns
            for c in 0..<columns { s[c] += row[c] }
        }
    }
    PairwiseTree.combine(leaves: leafSums, count: leaves, length: columns, into: out, scratch: treeScratch)
}

/// Scratch floats `columnSums` needs.
public func columnSumsScratchCount(rows: Int, columns: Int, chunk: Int) -> Int {
    let leaves = max(rows / max(chunk, 1), 1)
    return (leaves + PairwiseTree.scratchCount(leaves: leaves)) * columns
}

/// Bernoulli output: per-row binary cross-entropy of sigmoid(logits) against targets in [0, 1],
/// computed stably from the logits as max(z, 0) - x·z + log1p(e^-|z|); gradient (sigmoid(z) - x) * scale
/// into `gradient`. Vectorised (VectorMath); a row's sum is 8 lane sums over its columns in order, then
/// the lanes in one fixed order, with or without the gradient.
public func bernoulliLoss(logits: UnsafePointer<Float>, targets: UnsafePointer<Float>, rows: Int, columns: Int,
                          scale: Float, gradient: UnsafeMutablePointer<Float>?, perRow: UnsafeMutablePointer<Float>,
                          pool: ComputePool) {
    typealias V = SIMD8<Float>
    @inline(__always)
    func element(_ z: V, _ x: V, _ g: UnsafeMutablePointer<Float>?, _ n: Int) -> V {
        let e = VectorMath.exp(-VectorMath.abs(z))
        let loss = z.replacing(with: 0, where: z .< 0).addingProduct(-x, z) + VectorMath.log1pUnit(e)
        if let g {
            let r = 1 / (1 + e)
            let p = r.replacing(with: e * r, where: z .< 0)
            let d = (p - x) * scale
            if n == 8 { VectorMath.store(d, g) } else { VectorMath.storePartial(d, g, count: n) }
        }
        return loss
    }
    forRowBlocks(rows: rows, columns: columns, pool: pool) { range in
        for r in range {
            let z = logits + r * columns, x = targets + r * columns
            let g = gradient.map { $0 + r * columns }
            var acc = V()
            var c = 0
            while c + 8 <= columns {
                acc += element(VectorMath.load(z + c), VectorMath.load(x + c), g.map { $0 + c }, 8)
                c += 8
            }
            if c < columns {
                let n = columns - c
                let l = element(VectorMath.loadPartial(z + c, count: n), VectorMath.loadPartial(x + c, count: n),
                                g.map { $0 + c }, n)
                let lanes = SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7)
                acc += l.replacing(with: 0, where: lanes .>= Int32(n))
            }
            perRow[r] = VectorMath.laneSum(acc)
        }
    }
}

/// Gaussian output: per-row squared error; gradient 2 (z - x) * scale. Vectorised like bernoulliLoss.
public func squaredErrorLoss(outputs: UnsafePointer<Float>, targets: UnsafePointer<Float>, rows: Int, columns: Int,
                             scale: Float, gradient: UnsafeMutablePointer<Float>?, perRow: UnsafeMutablePointer<Float>,
                             pool: ComputePool) {
    typealias V = SIMD8<Float>
    forRowBlocks(rows: rows, columns: columns, pool: pool) { range in
        for r in range {
            let z = outputs + r * columns, x = targets + r * columns
            var acc = V()
            var c = 0
            while c + 8 <= columns {
                let d = VectorMath.load(z + c) - VectorMath.load(x + c)
                acc = acc.addingProduct(d, d)
                if let g = gradient { VectorMath.store(2 * d * scale, g + r * columns + c) }
                c += 8
            }
            if c < columns {
                let n = columns - c
                let d = VectorMath.loadPartial(z + c, count: n) - VectorMath.loadPartial(x + c, count: n)
                acc = acc.addingProduct(d, d)   // padded lanes are 0 - 0
                if let g = gradient { VectorMath.storePartial(2 * d * scale, g + r * columns + c, count: n) }
            }
            perRow[r] = VectorMath.laneSum(acc)
        }
    }
}

/// Sum over all elements of (sigmoid(z) - x)^2 or (z - x)^2: the reconstruction's squared error.
public func reconstructionSquaredError(outputs: UnsafePointer<Float>, targets: UnsafePointer<Float>,
                                       rows: Int, columns: Int, sigmoidOutputs: Bool) -> Double {
    var total = 0.0
    for r in 0..<rows {
        var sum: Float = 0
        for c in 0..<columns {
            let z = outputs[r * columns + c]
            let y = sigmoidOutputs ? 1 / (1 + expf(-z)) : z
            let d = y - targets[r * columns + c]
            sum += d * d
        }
        total += Double(sum)
    }
    return total
}
