// Exact PCA in parallel (`aedist pca`), the linear-autoencoder baseline: every rank sums its rows and
// their cross-products, one allreduce combines the sums, a symmetric eigensolver gives the components.
// The result is the same bits on any number of ranks or threads (docs/family.md):
// - rows are cut into blocks of `PCA.blockRows` consecutive rows of the data, the same blocks
//   whoever computes them; a block's cross-products come from our matrix product (float, fixed
//   FMA order) on rows centred by the float mean;
// - each block's sums are rounded to a fixed-point grid (2^-s, s from a bound on the total) and
//   added as 64-bit integers, which is exact and so independent of order; the integers cross ranks
//   as three 21-bit limbs in doubles, whose sums are exact too.
// The fixed-point grid is about 2^-61 of the largest possible total, far finer than double precision.
import Communication
import Foundation
import Kernels
import Models
import Storage

public enum PCAFormat {
    public static let name = "aedist-pca"
    public static let version: Int64 = 1
}

/// A fitted PCA: the mean, the leading principal directions and the covariance spectrum.
public struct PCAResult {
    public let features: Int
    public let samples: Int
    /// Column means of the scaled data.
    public let mean: [Double]
    /// `count` unit rows of `features` values, the directions of largest variance first.
    public let components: [Double]
    public let count: Int
    /// Every eigenvalue of the covariance (divisor: samples), largest first.
    public let eigenvalues: [Double]

    public var explainedVariance: [Double] { Array(eigenvalues.prefix(count)) }
    public var totalVariance: Double { eigenvalues.reduce(0, +) }
    /// Mean squared reconstruction error per sample on the fitted rows: the sum of the left-out eigenvalues.
    public var residualVariance: Double { eigenvalues.dropFirst(count).reduce(0, +) }
}

/// Sums of per-block double vectors on a fixed-point grid, exact and therefore order-free.
struct FixedPointSum {
    let shift: Int
    var accumulator: [Int64]

    /// `bound`: an upper bound on the magnitude of every partial and total sum of any element.
    init(count: Int, bound: Double) {
        precondition(bound.isFinite, "FixedPointSum: the bound must be finite")
        if bound > 0 {
            shift = min(1000, 61 - Int(Foundation.ceil(Foundation.log2(bound))))
        } else {
            shift = 0
        }
        accumulator = [Int64](repeating: 0, count: count)
    }

    private var factor: Double { Double(sign: .plus, exponent: shift, significand: 1) }

    mutating func add(_ values: UnsafePointer<Double>) {
        let f = factor
        accumulator.withUnsafeMutableBufferPointer { acc in
            for i in 0..<acc.count { acc[i] &+= Int64((values[i] * f).rounded()) }
        }
    }

    /// The sum over every rank, as doubles.
    func total(_ communicator: Communicator) throws -> [Double] {
        let n = accumulator.count
        let mask: Int64 = (1 << 21) - 1
        var limbs = [Double](repeating: 0, count: 3 * n)
        for i in 0..<n {
            let q = accumulator[i]
            limbs[3 * i] = Double(q & mask)
            limbs[3 * i + 1] = Double((q >> 21) & mask)
            limbs[3 * i + 2] = Double(q >> 42)
        }
        try communicator.allreduceSum(&limbs)   // integers below 2^53: exact in any order
        let inverse = Double(sign: .plus, exponent: -shift, significand: 1)
        return (0..<n).map { i in
            let q = Int64(limbs[3 * i + 2]) << 42 &+ Int64(limbs[3 * i + 1]) << 21 &+ Int64(limbs[3 * i])
            return Double(q) * inverse
        }
    }
}

public enum PCA {
    /// Rows per block of the cross-product sums.
    public static let blockRows = 512

    /// The rows whose blocks rank `rank` of `size` handles in `fit` (what it needs in memory).
    public static func rowsOf(rank: Int, size: Int, rows n: Int) -> Range<Int> {
        let mine = rowRange(count: (n + blockRows - 1) / blockRows, rank: rank, size: size)
        return (mine.lowerBound * blockRows)..<min(n, mine.upperBound * blockRows)
    }

    /// Fits PCA with `components` directions on all rows of `data` (times `scale`), the rows split across ranks.
    public static func fit(data: DataSplit, scale: Float, components: Int, communicator: Communicator,
                           pool: ComputePool) throws -> PCAResult {
        let n = data.rows, d = data.columns
        let blocks = (n + blockRows - 1) / blockRows
        let mine = rowRange(count: blocks, rank: communicator.rank, size: communicator.size)
        let rowsBuffer = FloatBuffer(count: blockRows * d)
        var indices = [Int](repeating: 0, count: blockRows)
        func load(_ block: Int) throws -> Int {
            let first = block * blockRows, count = min(blockRows, n - first)
            try data.forEachPiece(of: first..<(first + count)) { matrix, base, _ in
                for i in 0..<count { indices[i] = first + i - base }
                indices.withUnsafeBufferPointer {
                    matrix.gatherRows(UnsafeBufferPointer(rebasing: $0[0..<count]), scale: scale, into: rowsBuffer.pointer)
                }
            }
            return count
        }

        // Pass 1: per-block column sums (double, row order) and the largest magnitude.
        var blockSums = [[Double]]()
        var largest: Float = 0
        for block in mine {
            let count = try load(block)
            var sums = [Double](repeating: 0, count: d)
            let x = rowsBuffer.pointer
            for r in 0..<count {
                for c in 0..<d {
                    let v = x[r * d + c]
                    sums[c] += Double(v)
                    largest = max(largest, abs(v))
                }
            }
            blockSums.append(sums)
        }
        guard largest.isFinite else {
            throw ConfigError("data '\(data.source)': holds NaN or infinite values; PCA needs finite data")
        }
        var largestBits: [Int64] = [Int64(largest.bitPattern)]   // non-negative floats order like their bits
        try communicator.allreduceMax(&largestBits)
        let maxAbs = Double(Float(bitPattern: UInt32(largestBits[0])))

        var meanSum = FixedPointSum(count: d, bound: Double(n) * maxAbs)
        for sums in blockSums { sums.withUnsafeBufferPointer { meanSum.add($0.baseAddress!) } }
        let mean = try meanSum.total(communicator).map { $0 / Double(n) }
        let centre = mean.map { Float($0) }

        // Pass 2: per-block cross-products of the centred rows (upper triangle), on the fixed-point grid.
        let triangle = d * (d + 1) / 2
        var crossSum = FixedPointSum(count: triangle, bound: Double(n) * 4 * maxAbs * maxAbs)
        let gram = FloatBuffer(count: d * d)
        var upper = [Double](repeating: 0, count: triangle)
        for block in mine {
            let count = try load(block)
            let x = rowsBuffer.pointer
            for r in 0..<count { for c in 0..<d { x[r * d + c] -= centre[c] } }
            matrixProduct(m: d, n: d, k: count, a: x, lda: d, transposeA: true, b: x, ldb: d, transposeB: false,
                          c: gram.pointer, ldc: d, accumulate: false, pool: pool)
            var t = 0
            for i in 0..<d { for j in i..<d { upper[t] = Double(gram.pointer[i * d + j]); t += 1 } }
            upper.withUnsafeBufferPointer { crossSum.add($0.baseAddress!) }
        }
        let cross = try crossSum.total(communicator)

        // Covariance about the true mean: Σ(x - c)(x - c)ᵀ / n - (μ - c)(μ - c)ᵀ.
        var covariance = [Double](repeating: 0, count: d * d)
        var t = 0
        for i in 0..<d {
            for j in i..<d {
                let v = cross[t] / Double(n) - (mean[i] - Double(centre[i])) * (mean[j] - Double(centre[j]))
                covariance[i * d + j] = v
                covariance[j * d + i] = v
                t += 1
            }
        }
        let eigen = SymmetricEigen(symmetric: covariance, n: d)
        return PCAResult(features: d, samples: n, mean: mean, components: Array(eigen.vectors.prefix(components * d)),
                         count: components, eigenvalues: eigen.values.map { max($0, 0) })
    }

    /// The configuration a PCA file carries: the linear autoencoder it is equivalent to.
    public static func configuration(components: Int, dataPath: String, train: String, test: String?,
                                     scale: Float) -> RunConfig {
        var c = RunConfig()
        c.model.kind = .ae
        c.model.encoder = []
        c.model.latent = components
        c.model.activation = .linear
        c.model.output = .gaussian
        c.data.path = dataPath
        c.data.train = train
        c.data.test = test
        c.data.scale = scale
        c.runDirectory = "runs/pca"
        return c
    }

    /// Writes a PCA file atomically (docs/family.md): root attributes `format = "aedist-pca"`,
    /// `format_version`, `samples`, `features`, `components`, `scale`, `source`, `total_variance`,
    /// `config`; datasets /mean [D], /components [K, D], /explained_variance [K],
    /// /explained_variance_ratio [K], /eigenvalues [D] (all float64).
    public static func write(_ result: PCAResult, config: RunConfig, source: String, to path: String) throws {
        try writeAtomically(to: path) { file in
            try file.setAttribute("format", PCAFormat.name)
            try file.setAttribute("format_version", PCAFormat.version)
            try file.setAttribute("samples", Int64(result.samples))
            try file.setAttribute("features", Int64(result.features))
            try file.setAttribute("components", Int64(result.count))
            try file.setAttribute("scale", Double(config.data.scale ?? 1))
            try file.setAttribute("source", source)
            try file.setAttribute("total_variance", result.totalVariance)
            try file.setAttribute("config", config.yaml)
            try file.write(result.mean, shape: [result.features], to: "/mean")
            try file.write(result.components, shape: [result.count, result.features], to: "/components")
            try file.write(result.explainedVariance, shape: [result.count], to: "/explained_variance")
            let total = result.totalVariance
            try file.write(result.explainedVariance.map { total > 0 ? $0 / total : 0 }, shape: [result.count],
                           to: "/explained_variance_ratio")
            try file.write(result.eigenvalues, shape: [result.features], to: "/eigenvalues")
        }
    }

    /// Whether `path` is a PCA file (format attribute "aedist-pca").
    public static func isPCAFile(_ path: String) -> Bool {
        guard let file = try? HDF5File(readingAt: path) else { return false }
        defer { file.close() }
        return file.hasAttribute("format") && (try? file.stringAttribute("format")) == PCAFormat.name
    }

    /// Reads a PCA file as the linear autoencoder it defines: code = W (x - μ), reconstruction = Wᵀ code + μ.
    public static func loadModel(path: String, features: Int) throws -> LoadedModel {
        let file = try HDF5File(readingAt: path)
        defer { file.close() }
        let version = try file.int64Attribute("format_version")
        guard version == PCAFormat.version else {
            throw ConfigError("PCA file '\(path)': format_version \(version) is not supported (this aedist reads \(PCAFormat.version))")
        }
        let config = try RunConfig.parse(yaml: try file.stringAttribute("config"), origin: "PCA file '\(path)' attribute config")
        let shape = try file.shape(ofDataset: "/components")
        guard shape.count == 2, shape[0] == config.model.latent else {
            throw ConfigError("PCA file '\(path)': /components has shape \(shape), expected [\(config.model.latent), features]")
        }
        guard shape[1] == features else {
            throw ConfigError("PCA file '\(path)': fitted on \(shape[1]) features but the data has \(features)")
        }
        let d = shape[1]
        let w = try file.readDoubles("/components")
        let mean = try file.readDoubles("/mean")
        guard mean.count == d else { throw ConfigError("PCA file '\(path)': /mean has \(mean.count) values, expected \(d)") }
        var spec = config.model
        spec.inputs = d
        let (model, parameters) = Autoencoder.principalComponents(spec: spec, components: w, mean: mean)
        return LoadedModel(path: path, config: config, model: model, parameters: parameters)
    }
}
