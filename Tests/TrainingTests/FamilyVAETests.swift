// The VAE's generative side on a small trained digits VAE: importance-sampled likelihood, draws
// from the prior, encoding.
import Communication
import Foundation
import Kernels
import Models
import Storage
@testable import Training
import XCTest

final class FamilyVAETests: XCTestCase {
    /// One small VAE trained once for every test of this class.
    static let trained: Result<String, Error> = Result {
        let dir = familyScratch("vae")
        var options = TrainOptions()
        options.threads = 2
        let config = try RunConfig.load(file: familyRoot + "/configs/digits-vae.yaml", overrides: [
            "data.path=\(digitsPath)", "run_dir=\(dir)", "model.encoder=[32]", "model.latent=4",
            "train.epochs=15", "train.log_every=100000", "train.checkpoint_every=100000", "train.keep_checkpoints=1",
        ])
        let summary = try Trainer(config: config, options: options, communicator: SingleProcess()).run()
        guard let path = summary.checkpoint else { throw ConfigError("no checkpoint written") }
        return path
    }

    override class func tearDown() {
        if case .success(let path) = trained {   // .../run/checkpoints/step-N.h5: remove the run directory
            let run = URL(fileURLWithPath: path).deletingLastPathComponent().deletingLastPathComponent()
            try? FileManager.default.removeItem(at: run)
        }
        super.tearDown()
    }

    func testImportanceSamplingTightensTheBound() throws {
        let path = try Self.trained.get()
        let pool = ComputePool(threads: 2)
        let loaded = try loadModel(checkpointPath: path, features: 64)
        let test = try DataSplit(file: digitsPath, dataset: "test/images")
        func estimate(_ k: Int) throws -> (nll: Double, negativeELBO: Double) {
            try importanceSampledLikelihood(model: loaded.model, parameters: loaded.parameters, data: test, input: InputMapping(scale: 0.0625),
                                            samples: k, seed: 0, communicator: SingleProcess(), pool: pool)
        }
        let report = try evaluateCheckpoint(path: path, dataPath: nil, split: "test", threads: 2, importanceSamples: 20,
                                            communicator: SingleProcess())
        let elbo = report.result.loss   // negative ELBO, analytic KL (kl_weight 1)
        let one = try estimate(1), five = try estimate(5), fifty = try estimate(50)
        XCTAssertEqual(try XCTUnwrap(report.nllIS), try estimate(20).nll, "eval reports the same estimate")
        // K = 1 is the one-sample ELBO; with the same draws the estimate is never above the ELBO (Jensen).
        XCTAssertEqual(one.nll, one.negativeELBO, accuracy: 1e-9)
        XCTAssertLessThan(five.nll, five.negativeELBO)
        XCTAssertLessThan(fifty.nll, fifty.negativeELBO)
        // The many-draw Monte-Carlo ELBO agrees with eval's (analytic KL); the bound tightens with K.
        XCTAssertEqual(fifty.negativeELBO, elbo, accuracy: 0.25)
        XCTAssertLessThan(fifty.nll, elbo)
        XCTAssertLessThan(five.nll, one.nll)
        XCTAssertLessThan(fifty.nll, five.nll)
        XCTAssertTrue(report.json.contains("\"nll_is\""), report.json)
        XCTAssertEqual(try estimate(5).nll, five.nll, "draws are reproducible")
        // Only a VAE has a likelihood to estimate.
        let pcaDirectory = familyScratch("is-pca")
        defer { try? FileManager.default.removeItem(atPath: pcaDirectory) }
        let pca = pcaDirectory + "/pca.h5"
        let train = try DataSplit(file: digitsPath, dataset: "train/images")
        try PCA.write(try PCA.fit(data: train, scale: 0.0625, components: 4, communicator: SingleProcess(), pool: pool),
                      config: PCA.configuration(components: 4, dataPath: digitsPath, train: "train/images", test: nil, scale: 0.0625),
                      source: "digits", to: pca)
        XCTAssertThrowsError(try evaluateCheckpoint(path: pca, dataPath: nil, split: nil, threads: 1, importanceSamples: 5,
                                                    communicator: SingleProcess())) {
            XCTAssertTrue("\($0)".contains("needs a VAE"), "\($0)")
        }
    }

    func testPriorSamplesAndCodes() throws {
        let path = try Self.trained.get()
        let pool = ComputePool(threads: 2)
        let loaded = try loadModel(checkpointPath: path, features: 64)
        let a = try samplePrior(model: loaded.model, parameters: loaded.parameters, count: 9, seed: 4, input: InputMapping(scale: 1),
                                communicator: SingleProcess(), pool: pool)
        let b = try samplePrior(model: loaded.model, parameters: loaded.parameters, count: 9, seed: 4, input: InputMapping(scale: 1),
                                communicator: SingleProcess(), pool: pool)
        let c = try samplePrior(model: loaded.model, parameters: loaded.parameters, count: 9, seed: 5, input: InputMapping(scale: 1),
                                communicator: SingleProcess(), pool: pool)
        XCTAssertEqual(a.images, b.images)
        XCTAssertNotEqual(a.images, c.images)
        XCTAssertEqual(a.images.count, 9 * 64)
        XCTAssertTrue(a.images.allSatisfy { $0 >= 0 && $0 <= 1 }, "Bernoulli means")
        // Standard normal latents: mean near 0, variance near 1 over many draws.
        let z = priorDraws(count: 4000, latent: 4, seed: 1, rows: 0..<4000)
        let mean = z.reduce(0, +) / Float(z.count), variance = z.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(z.count)
        XCTAssertEqual(mean, 0, accuracy: 0.03)
        XCTAssertEqual(variance, 1, accuracy: 0.05)
        // Codes: means then log-variances; decoding the means gives the reconstructions.
        let test = try StoredMatrix(file: digitsPath, dataset: "test/images")
        let e = encode(model: loaded.model, parameters: loaded.parameters, data: test, input: InputMapping(scale: 0.0625), indices: [3, 4, 5],
                       pool: pool, reconstructions: true)
        XCTAssertEqual(e.codes.count, 3 * 8)
        let means = latentPart(e.codes, rows: 3, model: loaded.model)
        let decoded = decode(model: loaded.model, parameters: loaded.parameters, latent: means, rows: 3, pool: pool)
        for i in 0..<decoded.count { XCTAssertEqual(decoded[i], e.outputs[i], accuracy: 1e-5) }
        // Interpolation ends decode the two codes.
        let line = interpolate(model: loaded.model, parameters: loaded.parameters, data: test, input: InputMapping(scale: 0.0625),
                               pairs: [(3, 4)], steps: 5, pool: pool)
        for i in 0..<64 {
            XCTAssertEqual(line.path[i], decoded[i], accuracy: 1e-5)
            XCTAssertEqual(line.path[4 * 64 + i], decoded[64 + i], accuracy: 1e-5)
        }
    }
}
