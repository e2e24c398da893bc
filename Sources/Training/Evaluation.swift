// Loss of a model on a data split, the work split across ranks by contiguous row ranges.
import Communication
import Kernels
import Models
import Storage

public struct EvaluationResult: Sendable {
    public var samples: Int
    /// Mean per-sample loss: the negative ELBO for a VAE (reconstruction + kl_weight * KL + penalty).
    public var loss: Double
    public var reconstruction: Double
    public var kl: Double
    public var msePerFeature: Double
    /// Mean |code| over samples and code units (AE: the code; VAE: the means).
    public var codeMeanActivation: Double
    /// Fraction of code values with |code| < `nearZeroCode`.
    public var codeNearZeroFraction: Double
}

/// The threshold below which a code value counts as near zero in `codeNearZeroFraction`.
public let nearZeroCode = 0.05

/// Rows `[start, end)` of `count` that rank `rank` of `size` handles.
public func rowRange(count: Int, rank: Int, size: Int) -> Range<Int> {
    (count * rank / size)..<(count * (rank + 1) / size)
}

/// Rows per block of an evaluation's sums: each block is summed in row order by one rank.
let evaluationBlockRows = 1024

/// The rows rank `rank` of `size` evaluates: its `rowRange` of the evaluation's blocks. An evaluated
/// split that is sharded holds just these on each rank.
public func evaluationRows(count: Int, rank: Int, size: Int) -> Range<Int> {
    let blocks = rowRange(count: (count + evaluationBlockRows - 1) / evaluationBlockRows, rank: rank, size: size)
    return min(count, blocks.lowerBound * evaluationBlockRows)..<min(count, blocks.upperBound * evaluationBlockRows)
}

/// The mean losses of `model` over all rows of `data`, the same bits at any rank count: the rows
/// are cut into blocks of `evaluationBlockRows`, each rank takes its `rowRange` of the blocks and
/// sums each block in row order (batches of the workspace's capacity from the block's start, so
/// the same batches whatever the residency), and every rank adds the block sums in block order.
public func evaluate(model: Autoencoder, parameters: FloatBuffer, data: DataSplit, input: InputMapping,
                     seed: UInt64, workspace: Workspace, communicator: Communicator, pool: ComputePool) throws -> EvaluationResult {
    let terms = 6   // loss, reconstruction, kl, squared error, Σ|code|, near-zero count
    let blocks = (data.rows + evaluationBlockRows - 1) / evaluationBlockRows
    var blockSums = [Double](repeating: 0, count: blocks * terms)
    let z = model.spec.latent
    var indices = [Int](repeating: 0, count: workspace.capacity)
    for block in rowRange(count: blocks, rank: communicator.rank, size: communicator.size) {
        let rows = (block * evaluationBlockRows)..<min(data.rows, (block + 1) * evaluationBlockRows)
        var sums = [Double](repeating: 0, count: terms)
        try data.forEachPiece(of: rows, pieceRows: evaluationBlockRows) { matrix, base, piece in
        var start = piece.lowerBound
        while start < piece.upperBound {
            let rows = min(workspace.capacity, piece.upperBound - start)
            for i in 0..<rows { indices[i] = start + i - base }
            indices.withUnsafeBufferPointer {
                input.gather(matrix, rows: UnsafeBufferPointer(rebasing: $0[0..<rows]), into: workspace.input.pointer)
            }
            // Fixed latent noise per row, so the estimate is the same on any rank count.
            let noise = NoiseSource(seed: seed, firstSample: UInt64(start), latentStream: .evaluation, corruptInputs: false)
            model.forward(parameters, workspace, rows: rows, noise: noise, pool: pool)
            for r in 0..<rows {
                sums[0] += Double(model.loss(workspace, row: r))
                sums[1] += Double(workspace.reconstruction.pointer[r])
                sums[2] += Double(workspace.kl.pointer[r])
                for j in 0..<z {
                    let v = Double(abs(workspace.code(row: r, unit: j)))
                    sums[4] += v
                    if v < nearZeroCode { sums[5] += 1 }
                }
            }
            sums[3] += reconstructionSquaredError(outputs: workspace.outputs, targets: workspace.input.pointer, rows: rows,
                                                  columns: model.spec.inputs, sigmoidOutputs: model.spec.output == .bernoulli)
            start += rows
        }
        }
        blockSums.replaceSubrange((block * terms)..<((block + 1) * terms), with: sums)
    }
    try communicator.allreduceSum(&blockSums)   // each block's sums come from one rank: x + 0 is exact
    var sums = [Double](repeating: 0, count: terms)
    for block in 0..<blocks { for t in 0..<terms { sums[t] += blockSums[block * terms + t] } }
    let n = Double(max(data.rows, 1))
    return EvaluationResult(samples: data.rows, loss: sums[0] / n, reconstruction: sums[1] / n, kl: sums[2] / n,
                            msePerFeature: sums[3] / (n * Double(model.spec.inputs)),
                            codeMeanActivation: sums[4] / (n * Double(z)), codeNearZeroFraction: sums[5] / (n * Double(z)))
}
