// PCA (exact, through the eigensolver and the fixed-point sums) and the linear autoencoder that
// must reach the same reconstruction error.
import Communication
import Foundation
import Kernels
import Models
import Storage
@testable import Training
import XCTest

/// A scratch directory on tmpfs when there is one (checkpoints fsync).
func familyScratch(_ name: String) -> String {
    let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    let dir = base + "/aedist-family-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

let familyRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
let digitsPath = familyRoot + "/data/digits.h5"

final class FamilyPCATests: XCTestCase {
    func testEigenSolverDiagonalisesSymmetricMatrices() {
        // A random symmetric matrix, one with repeated and zero eigenvalues, and 1 x 1.
        let n = 23
        let key = RandomKey(seed: 7, stream: .evaluation)
        var a = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in i..<n { let v = Double(key.normal(UInt64(i * n + j))); a[i * n + j] = v; a[j * n + i] = v } }
        var b = [Double](repeating: 0, count: 6 * 6)
        for (i, v) in [3.0, 0, 3, 1, 0, 3].enumerated() { b[i * 6 + i] = v }
        for (m, size) in [(a, n), (b, 6), ([5.0], 1)] {
            let e = SymmetricEigen(symmetric: m, n: size)
            XCTAssertEqual(e.values, e.values.sorted(by: >))
            for i in 0..<size {
                let v = Array(e.vectors[(i * size)..<((i + 1) * size)])
                for r in 0..<size {
                    var av = 0.0
                    for c in 0..<size { av += m[r * size + c] * v[c] }
                    XCTAssertEqual(av, e.values[i] * v[r], accuracy: 1e-10, "A v = λ v, vector \(i) row \(r)")
                }
                for j in 0..<size {
                    var dot = 0.0
                    for c in 0..<size { dot += v[c] * e.vectors[j * size + c] }
                    XCTAssertEqual(dot, i == j ? 1 : 0, accuracy: 1e-12, "orthonormal \(i), \(j)")
                }
            }
        }
        XCTAssertEqual(SymmetricEigen(symmetric: b, n: 6).values, [3, 3, 3, 1, 0, 0])
    }

    func testFixedPointSumsDoNotDependOnTheSplit() throws {
        let key = RandomKey(seed: 3, stream: .evaluation)
        var blocks: [[Double]] = []
        for b in 0..<40 {
            var row: [Double] = []
            for i in 0..<5 { row.append(Double(key.normal(UInt64(b * 5 + i))) * pow(10.0, Double(i - 2))) }
            blocks.append(row)
        }
        func total(_ cut: [Int]) throws -> [Double] {
            // Per "rank" accumulators over contiguous block ranges, their integers added as the allreduce would.
            var parts: [FixedPointSum] = []
            var start = 0
            for end in cut + [blocks.count] {
                var s = FixedPointSum(count: 5, bound: 1000)
                for b in start..<end { blocks[b].withUnsafeBufferPointer { s.add($0.baseAddress!) } }
                parts.append(s); start = end
            }
            var combined = FixedPointSum(count: 5, bound: 1000)
            for p in parts { for i in 0..<5 { combined.accumulator[i] += p.accumulator[i] } }
            return try combined.total(SingleProcess())
        }
        let one = try total([])
        XCTAssertEqual(one, try total([17]))
        XCTAssertEqual(one, try total([1, 2, 30, 31]))
        for i in 0..<5 { XCTAssertEqual(one[i], blocks.map { $0[i] }.reduce(0, +), accuracy: 1e-12) }
    }

    /// PCA of the digits: its reconstruction error on the training rows, through `eval` of the PCA file,
    /// is the sum of the left-out eigenvalues.
    func testPCAErrorIsTheTailOfTheSpectrum() throws {
        let dir = familyScratch("pca")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let data = try DataSplit(file: digitsPath, dataset: "train/images")
        let result = try PCA.fit(data: data, scale: 0.0625, components: 8, communicator: SingleProcess(), pool: ComputePool(threads: 2))
        let config = PCA.configuration(components: 8, dataPath: digitsPath, train: "train/images", test: "test/images", scale: 0.0625)
        let path = dir + "/pca.h5"
        try PCA.write(result, config: config, source: data.source, to: path)
        XCTAssertTrue(PCA.isPCAFile(path))
        XCTAssertEqual(result.eigenvalues.count, 64)
        XCTAssertEqual(result.totalVariance, 4.689, accuracy: 0.001)
        // Mean and first component are consistent with the data.
        var m0 = 0.0
        var row = [Float](repeating: 0, count: 64)
        for r in 0..<data.rows {
            [r].withUnsafeBufferPointer { data.held!.gatherRows($0, scale: 0.0625, into: &row) }
            m0 += Double(row[27])
        }
        XCTAssertEqual(result.mean[27], m0 / Double(data.rows), accuracy: 1e-12)
        let train = try evaluateCheckpoint(path: path, dataPath: nil, split: "train", threads: 2, communicator: SingleProcess())
        XCTAssertEqual(train.result.loss, result.residualVariance, accuracy: 1e-4 * result.residualVariance)
        XCTAssertEqual(train.result.msePerFeature, result.residualVariance / 64, accuracy: 1e-4 * result.residualVariance / 64)
        let test = try evaluateCheckpoint(path: path, dataPath: nil, split: nil, threads: 2, communicator: SingleProcess())
        XCTAssertEqual(test.split, "test/images")
        XCTAssertGreaterThan(test.result.loss, train.result.loss)
        // More components, less error.
        let k16 = try PCA.fit(data: data, scale: 0.0625, components: 16, communicator: SingleProcess(), pool: ComputePool(threads: 1))
        XCTAssertLessThan(k16.residualVariance, result.residualVariance)
        XCTAssertEqual(k16.eigenvalues, result.eigenvalues, "the spectrum does not depend on K or the thread count")
    }

    /// A linear autoencoder (encoder [], linear, gaussian) spans the first K principal directions at its
    /// optimum: trained on the digits, its test error comes within 1% of PCA's at the same K.
    func testLinearAutoencoderReachesPCA() throws {
        let dir = familyScratch("linear")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let data = try DataSplit(file: digitsPath, dataset: "train/images")
        let pca = try PCA.fit(data: data, scale: 0.0625, components: 8, communicator: SingleProcess(), pool: ComputePool(threads: 2))
        let pcaPath = dir + "/pca.h5"
        try PCA.write(pca, config: PCA.configuration(components: 8, dataPath: digitsPath, train: "train/images",
                                                     test: "test/images", scale: 0.0625),
                      source: data.source, to: pcaPath)
        let pcaTest = try evaluateCheckpoint(path: pcaPath, dataPath: nil, split: "test", threads: 2, communicator: SingleProcess())
        var options = TrainOptions()
        options.threads = 2
        var summary: TrainSummary?
        // Adam with a falling learning rate (resuming with a new lr), the same run directory.
        for (epochs, lr) in [(30, "0.01"), (45, "0.001"), (55, "0.0001")] {
            let config = try RunConfig.load(file: familyRoot + "/configs/digits-ae.yaml", overrides: [
                "data.path=\(digitsPath)", "run_dir=\(dir)/run", "model.encoder=[]", "model.activation=linear",
                "model.output=gaussian", "model.latent=8", "train.epochs=\(epochs)", "train.lr=\(lr)",
                "train.log_every=100000", "train.checkpoint_every=100000", "train.keep_checkpoints=1",
            ])
            summary = try Trainer(config: config, options: options, communicator: SingleProcess()).run()
        }
        let ae = try evaluateCheckpoint(path: try XCTUnwrap(summary?.checkpoint), dataPath: nil, split: "test",
                                        threads: 2, communicator: SingleProcess())
        let ratio = ae.result.msePerFeature / pcaTest.result.msePerFeature
        XCTAssertLessThan(abs(ratio - 1), 0.01, "linear AE \(ae.result.msePerFeature) vs PCA \(pcaTest.result.msePerFeature)")
    }
}
