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

/// out[r, c] = f(out[r, c] + bias[c]) for every row.
public func addBiasAndActivate(_ out: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>,
                               rows: Int, columns: Int, activation: Activation, pool: ComputePool) {
    forRowBlocks(rows: rows, columns: columns, pool: pool) { range in
        for r in range {
            let row = out + r * columns
            switch activation {
            case .relu:
                for c in 0..<columns { row[c] = max(row[c] + bias[c], 0) }
            case .leakyRelu:
                for c in 0..<columns { let v = row[c] + bias[c]; row[c] = v > 0 ? v : leakySlope * v }
            case .tanh:
                for c in 0..<columns { row[c] = tanhf(row[c] + bias[c]) }
            case .sigmoid:
                for c in 0..<columns { row[c] = 1 / (1 + expf(-(row[c] + bias[c]))) }
            case .linear:
                for c in 0..<columns { row[c] += bias[c] }
            }
        }
    }
}

/// grad *= f'(pre-activation), written in terms of the activation's output y.
public func multiplyByActivationDerivative(_ grad: UnsafeMutablePointer<Float>, output y: UnsafePointer<Float>,
                                           count: Int, activation: Activation, pool: ComputePool) {
    if activation == .linear { return }
    forRowBlocks(rows: count, columns: 1, pool: pool) { range in
        switch activation {
        case .relu: for i in range where y[i] <= 0 { grad[i] = 0 }
        case .leakyRelu: for i in range where y[i] <= 0 { grad[i] *= leakySlope }
        case .tanh: for i in range { grad[i] *= 1 - y[i] * y[i] }
        case .sigmoid: for i in range { grad[i] *= y[i] * (1 - y[i]) }
        case .linear: break
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
/// computed stably from the logits; gradient (sigmoid(z) - x) * scale into `gradient`.
public func bernoulliLoss(logits: UnsafePointer<Float>, targets: UnsafePointer<Float>, rows: Int, columns: Int,
                          scale: Float, gradient: UnsafeMutablePointer<Float>?, perRow: UnsafeMutablePointer<Float>,
                          pool: ComputePool) {
    forRowBlocks(rows: rows, columns: columns, pool: pool) { range in
        for r in range {
            let z = logits + r * columns, x = targets + r * columns
            var sum: Float = 0
            for c in 0..<columns {
                let e = expf(-abs(z[c]))
                sum += max(z[c], 0) - x[c] * z[c] + log1pf(e)
                if let g = gradient {
                    let p = z[c] >= 0 ? 1 / (1 + e) : e / (1 + e)
                    g[r * columns + c] = (p - x[c]) * scale
                }
            }
            perRow[r] = sum
        }
    }
}

/// Gaussian output: per-row squared error; gradient 2 (z - x) * scale.
public func squaredErrorLoss(outputs: UnsafePointer<Float>, targets: UnsafePointer<Float>, rows: Int, columns: Int,
                             scale: Float, gradient: UnsafeMutablePointer<Float>?, perRow: UnsafeMutablePointer<Float>,
                             pool: ComputePool) {
    forRowBlocks(rows: rows, columns: columns, pool: pool) { range in
        for r in range {
            let z = outputs + r * columns, x = targets + r * columns
            var sum: Float = 0
            for c in 0..<columns {
                let d = z[c] - x[c]
                sum += d * d
                if let g = gradient { g[r * columns + c] = 2 * d * scale }
            }
            perRow[r] = sum
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
