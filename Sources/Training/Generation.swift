// What a trained model produces besides its loss: latent codes (`encode`), reconstructions,
// draws from a VAE's prior (`sample`), latent interpolations, and the importance-sampled
// likelihood of `eval --importance-samples`. Rows are split across ranks by contiguous ranges and
// shared back with `shareRows`; every random draw is keyed by (seed, stream, sample number), so the
// results do not depend on the rank or thread count.
import Communication
import Foundation
import Kernels
import Models
import Storage

/// The split a command reads: a data file, the dataset inside it (opened, its rows read as they
/// are needed) and the scale to model units.
public struct ChosenSplit {
    public let file: String
    public let dataset: String
    public let data: DataSplit
    public let scale: Float

    /// Opens `dataPath` (default: the model's data file) at `split` (train, test, or a dataset path;
    /// default the test set, else train) with the model's scale (a trained model's configuration
    /// holds the number its run resolved `auto` to).
    public init(config: RunConfig, dataPath: String?, split: String?) throws {
        dataset = datasetPath(split: split, config: config)
        file = dataFile(split: split, config: config, dataPath: dataPath)
        data = try DataSplit(file: file, dataset: dataset) { _ in nil }
        scale = config.data.scale ?? Datasets.earlierAutomaticScale(data.elementType)
    }

    /// Rows `indices`, in that order (one read of the file).
    public func rows(_ indices: [Int]) throws -> StoredMatrix { try data.gather(indices) }

    /// Rows of this split as inputs of `model` (its normalization after the scale).
    public func input(for model: LoadedModel) -> InputMapping {
        InputMapping(scale: scale, normalization: model.normalization)
    }

    /// The picture shape of one row: the data's own N-D shape, else the model's `data.image_shape`.
    public func pictureShape(config: RunConfig) -> [Int]? {
        data.sampleShape.count >= 2 ? data.sampleShape : config.data.imageShape
    }

    /// Labels beside the images (`train/images` → `train/labels`), when the file has them for every row.
    public func labels() -> [Int]? {
        let path = dataset.hasPrefix("/") ? String(dataset.dropFirst()) : dataset
        var parts = path.split(separator: "/").map(String.init)
        guard !parts.isEmpty else { return nil }
        parts[parts.count - 1] = "labels"
        guard let f = try? HDF5File(readingAt: file) else { return nil }
        defer { f.close() }
        let name = "/" + parts.joined(separator: "/")
        guard f.kind(of: name) == .dataset, let values = try? f.readInt64s(name), values.count == data.rows else { return nil }
        return values.map { Int($0) }
    }
}

/// Combines per-rank row blocks into the whole matrix on every rank: each rank fills its rows
/// `range` of a zero matrix and a double allreduce adds them; x + 0 is exact, so the result is the
/// rows bit for bit whatever the order of the sum.
public func shareRows(_ local: [Float], range: Range<Int>, total: Int, width: Int,
                      communicator: Communicator) throws -> [Float] {
    precondition(local.count == range.count * width)
    if communicator.size == 1 { return local }
    var all = [Double](repeating: 0, count: total * width)
    for i in 0..<local.count { all[range.lowerBound * width + i] = Double(local[i]) }
    try communicator.allreduceSum(&all)
    return all.map { Float($0) }
}

/// The model's output in data units: sigmoid of the logits (Bernoulli) or the means (Gaussian), in place.
func toDataUnits(_ values: UnsafeMutablePointer<Float>, count: Int, output: OutputDistribution) {
    if output == .bernoulli { for i in 0..<count { values[i] = 1 / (1 + expf(-values[i])) } }
}

/// Decodes `rows` latent vectors (`rows × latent`) into `rows × inputs` outputs in data units.
public func decode(model: Autoencoder, parameters: FloatBuffer, latent: [Float], rows: Int,
                   pool: ComputePool) -> [Float] {
    let z = model.spec.latent, d = model.spec.inputs
    precondition(latent.count == rows * z)
    var out = [Float](repeating: 0, count: rows * d)
    let ws = Workspace(model: model, capacity: min(256, max(rows, 1)))
    var start = 0
    while start < rows {
        let n = min(ws.capacity, rows - start)
        latent.withUnsafeBufferPointer { model.decode(parameters, latent: $0.baseAddress! + start * z, rows: n, ws, pool: pool) }
        toDataUnits(ws.outputs, count: n * d, output: model.spec.output)
        out.withUnsafeMutableBufferPointer { ($0.baseAddress! + start * d).update(from: ws.outputs, count: n * d) }
        start += n
    }
    return out
}

/// What the encoder gives for rows `indices`: the code (AE, PCA) or means then log-variances (VAE),
/// `model.codeWidth` values per row; with `reconstructions`, also the decoded means in data units
/// (VAE: decoded from the means, no latent noise) and the scaled inputs, both in scaled data units
/// (a normalization undone).
public func encode(model: Autoencoder, parameters: FloatBuffer, data: StoredMatrix, input: InputMapping, indices: [Int],
                   pool: ComputePool, reconstructions: Bool = false)
    -> (codes: [Float], inputs: [Float], outputs: [Float]) {
    let width = model.codeWidth, d = model.spec.inputs
    let ws = Workspace(model: model, capacity: 256)
    var codes = [Float](repeating: 0, count: indices.count * width)
    var inputs = [Float](), outputs = [Float]()
    if reconstructions {
        inputs = [Float](repeating: 0, count: indices.count * d)
        outputs = inputs
    }
    var start = 0
    while start < indices.count {
        let n = min(ws.capacity, indices.count - start)
        indices.withUnsafeBufferPointer {
            input.gather(data, rows: UnsafeBufferPointer(rebasing: $0[start..<(start + n)]), into: ws.input.pointer)
        }
        let noise = NoiseSource(seed: 0, firstSample: UInt64(start), sampleLatent: false, corruptInputs: false)
        model.forward(parameters, ws, rows: n, noise: noise, pool: pool)
        codes.withUnsafeMutableBufferPointer { ($0.baseAddress! + start * width).update(from: ws.codes, count: n * width) }
        if reconstructions {
            toDataUnits(ws.outputs, count: n * d, output: model.spec.output)
            input.toData(ws.outputs, rows: n)
            input.toData(ws.input.pointer, rows: n)
            inputs.withUnsafeMutableBufferPointer { ($0.baseAddress! + start * d).update(from: ws.input.pointer, count: n * d) }
            outputs.withUnsafeMutableBufferPointer { ($0.baseAddress! + start * d).update(from: ws.outputs, count: n * d) }
        }
        start += n
    }
    return (codes, inputs, outputs)
}

/// The latent vector the decoder uses for an encoded row: the code (AE) or the mean (VAE).
func latentPart(_ codes: [Float], rows: Int, model: Autoencoder) -> [Float] {
    model.spec.kind == .vae ? model.splitCodes(codes, rows: rows).mean : codes
}

/// Draws from the prior: row i of the latent is N(0, I) keyed by (seed, sampling stream, i).
public func priorDraws(count: Int, latent z: Int, seed: UInt64, rows: Range<Int>) -> [Float] {
    var out = [Float](repeating: 0, count: rows.count * z)
    for (r, i) in rows.enumerated() {
        let key = RandomKey(seed: seed, stream: .sampling, UInt64(i))
        for j in 0..<z { out[r * z + j] = key.normal(UInt64(j)) }
    }
    return out
}

/// `count` samples of a VAE decoded from its prior; every rank gets all of them.
public func samplePrior(model: Autoencoder, parameters: FloatBuffer, count: Int, seed: UInt64, input: InputMapping,
                        communicator: Communicator, pool: ComputePool) throws -> (latent: [Float], images: [Float]) {
    let range = rowRange(count: count, rank: communicator.rank, size: communicator.size)
    let z = priorDraws(count: count, latent: model.spec.latent, seed: seed, rows: range)
    var images = decode(model: model, parameters: parameters, latent: z, rows: range.count, pool: pool)
    input.toData(&images, rows: range.count)
    return (try shareRows(z, range: range, total: count, width: model.spec.latent, communicator: communicator),
            try shareRows(images, range: range, total: count, width: model.spec.inputs, communicator: communicator))
}

/// Linear paths in latent space between the codes of `pairs` (row a, row b): `steps` decoded points
/// per pair from a's code (t = 0) to b's (t = 1), row-major [pairs × steps, inputs]; also the originals.
public func interpolate(model: Autoencoder, parameters: FloatBuffer, data: StoredMatrix, input: InputMapping,
                        pairs: [(Int, Int)], steps: Int, pool: ComputePool)
    -> (path: [Float], starts: [Float], ends: [Float]) {
    let z = model.spec.latent
    let a = encode(model: model, parameters: parameters, data: data, input: input, indices: pairs.map { $0.0 },
                   pool: pool, reconstructions: true)
    let b = encode(model: model, parameters: parameters, data: data, input: input, indices: pairs.map { $0.1 },
                   pool: pool, reconstructions: true)
    let za = latentPart(a.codes, rows: pairs.count, model: model), zb = latentPart(b.codes, rows: pairs.count, model: model)
    var latent = [Float](repeating: 0, count: pairs.count * steps * z)
    for p in 0..<pairs.count {
        for s in 0..<steps {
            let t = steps == 1 ? 0 : Float(s) / Float(steps - 1)
            for j in 0..<z {
                latent[(p * steps + s) * z + j] = (1 - t) * za[p * z + j] + t * zb[p * z + j]
            }
        }
    }
    var path = decode(model: model, parameters: parameters, latent: latent, rows: pairs.count * steps, pool: pool)
    input.toData(&path, rows: pairs.count * steps)
    return (path, a.inputs, b.inputs)
}

/// The importance-weighted estimate of -log p(x) averaged over the rows of `data` (Burda et al.'s
/// IWAE bound): per row, K draws z_k ~ q(z|x) and log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x),
/// then -log((1/K) Σ_k exp(log w_k)) computed stably (log-sum-exp about the largest weight).
/// log p(x|z) is minus the model's reconstruction term (Bernoulli: exact; Gaussian: minus the squared
/// error, i.e. up to the same constant as the ELBO the loss reports). K = 1 is the one-sample ELBO;
/// the estimate is never above the negative ELBO in expectation and tightens as K grows.
/// Draw k of row i is keyed by (seed, evaluation stream, k) and i.
public func importanceSampledNLL(model: Autoencoder, parameters: FloatBuffer, data: DataSplit, input: InputMapping,
                                 samples k: Int, seed: UInt64, communicator: Communicator,
                                 pool: ComputePool) throws -> Double {
    try importanceSampledLikelihood(model: model, parameters: parameters, data: data, input: input, samples: k,
                                    seed: seed, communicator: communicator, pool: pool).nll
}

/// The importance-sampled NLL and, from the same draws, the Monte-Carlo negative ELBO (the mean of
/// -log w_k). Per row, log-mean-exp ≥ mean (Jensen), so `nll` ≤ `negativeELBO` always.
public func importanceSampledLikelihood(model: Autoencoder, parameters: FloatBuffer, data: DataSplit, input: InputMapping,
                                        samples k: Int, seed: UInt64, communicator: Communicator,
                                        pool: ComputePool) throws -> (nll: Double, negativeELBO: Double) {
    precondition(model.spec.kind == .vae && k >= 1)
    let z = model.spec.latent
    let ws = Workspace(model: model, capacity: 256)
    let range = evaluationRows(count: data.rows, rank: communicator.rank, size: communicator.size)   // the rows eval holds
    var indices = [Int](repeating: 0, count: ws.capacity)
    var logWeights = [Double](repeating: 0, count: ws.capacity * k)
    var total = [0.0, 0.0]
    try data.forEachPiece(of: range, pieceRows: 32 * ws.capacity) { matrix, base, piece in
    var start = piece.lowerBound
    while start < piece.upperBound {
        let rows = min(ws.capacity, piece.upperBound - start)
        for i in 0..<rows { indices[i] = start + i - base }
        indices.withUnsafeBufferPointer {   // forward() reads the clean input and leaves it as it is
            input.gather(matrix, rows: UnsafeBufferPointer(rebasing: $0[0..<rows]), into: ws.input.pointer)
        }
        for draw in 0..<k {
            let drawSeed = RandomKey(seed: seed, stream: .evaluation, 0x1A5E_ED00, UInt64(draw)).bits
            let noise = NoiseSource(seed: drawSeed, firstSample: UInt64(start), latentStream: .evaluation,
                                    sampleLatent: true, corruptInputs: false)
            model.forward(parameters, ws, rows: rows, noise: noise, pool: pool)
            let sampled = ws.latent
            for r in 0..<rows {
                let key = RandomKey(seed: drawSeed, stream: .evaluation, UInt64(start + r))
                var logPriorOverPosterior = 0.0
                for j in 0..<z {
                    let e = Double(key.normal(UInt64(j)))
                    let v = Double(sampled[r * z + j]), lv = Double(ws.logVariance(row: r, unit: j))
                    logPriorOverPosterior += -0.5 * v * v + 0.5 * e * e + 0.5 * lv
                }
                logWeights[r * k + draw] = -Double(ws.reconstruction.pointer[r]) + logPriorOverPosterior
            }
        }
        for r in 0..<rows {
            let w = logWeights[(r * k)..<((r + 1) * k)]
            let m = w.max()!
            var s = 0.0
            for v in w { s += Foundation.exp(v - m) }
            total[0] += -(m + Foundation.log(s) - Foundation.log(Double(k)))
            total[1] += -w.reduce(0, +) / Double(k)
        }
        start += rows
    }
    }
    try communicator.allreduceSum(&total)
    let n = Double(max(data.rows, 1))
    return (total[0] / n, total[1] / n)
}
