// The training loop in-process on the shipped digits data.
import Communication
import Models
import Foundation
@testable import Training
import XCTest

final class TrainingTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func config(_ overrides: [String]) throws -> RunConfig {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("train-\(UUID().uuidString)").path
        return try RunConfig.load(file: Self.root.appendingPathComponent("configs/digits-vae.yaml").path,
                                  overrides: ["data.path=\(Self.root.path)/data/digits.h5", "run_dir=\(dir)",
                                              "model.encoder=[32]", "train.log_every=1000"] + overrides)
    }

    func testTrainingLowersTheTestLoss() throws {
        var options = TrainOptions()
        options.threads = 2
        options.resume = .never
        for kind in ["vae", "ae"] {
            let untrained = try Trainer(config: try config(["model.kind=\(kind)", "train.max_steps=1", "train.lr=1e-9"]),
                                        options: options, communicator: SingleProcess()).run()
            let trained = try Trainer(config: try config(["model.kind=\(kind)", "train.epochs=6"]),
                                      options: options, communicator: SingleProcess()).run()
            let before = try XCTUnwrap(untrained.testLoss), after = try XCTUnwrap(trained.testLoss)
            XCTAssertEqual(trained.status, "completed")
            XCTAssertLessThan(after, 0.8 * before, "\(kind): test loss \(before) -> \(after)")
        }
    }

    func testKLSparsityTargetSetsTheMeanCodeActivation() throws {
        var options = TrainOptions()
        options.threads = 2
        options.resume = .never
        var means: [Float: Double] = [:]
        for target: Float in [0.05, 0.5] {
            let config = try config(["model.kind=ae", "model.latent=16", "train.epochs=8", "data.test=null",
                                     "model.sparsity={l1: 0.0, target: \(target), kl_weight: 2.0}"])
            let trainer = try Trainer(config: config, options: options, communicator: SingleProcess())
            _ = try trainer.run()
            let result = try trainer.evaluateTraining()
            means[target] = result.codeMeanActivation
        }
        XCTAssertLessThan(means[0.05]!, 0.12, "\(means)")
        XCTAssertGreaterThan(means[0.5]!, 0.3, "\(means)")
    }

    func testGradientClippingBoundsTheUpdate() throws {
        // Plain SGD (no momentum) at lr 1: one update moves the parameters by exactly the clipped gradient.
        var options = TrainOptions()
        options.threads = 1
        options.resume = .never
        var moved: [String: Double] = [:]
        for clip in ["null", "0.01"] {
            let config = try config(["train.optimizer=sgd", "train.momentum=0", "train.lr=1.0", "train.max_steps=1",
                                     "train.clip_grad_norm=\(clip)", "data.test=null"])
            var spec = config.model
            spec.inputs = 64
            let model = Autoencoder(spec: spec)
            let initial = FloatBuffer(count: model.parameterCount)
            model.initialise(initial, seed: config.train.seed)
            let summary = try Trainer(config: config, options: options, communicator: SingleProcess()).run()
            let trained = try loadModel(checkpointPath: try XCTUnwrap(summary.checkpoint), features: 64).parameters
            var squares = 0.0
            for i in 0..<model.parameterCount { let d = Double(trained.pointer[i] - initial.pointer[i]); squares += d * d }
            moved[clip] = squares.squareRoot()
        }
        XCTAssertEqual(moved["0.01"]!, 0.01, accuracy: 1e-4, "\(moved)")
        XCTAssertGreaterThan(moved["null"]!, 0.1, "\(moved)")
    }

    func testMissingDataFileIsNamed() throws {
        var options = TrainOptions()
        options.resume = .never
        XCTAssertThrowsError(try Trainer(config: try config(["data.path=/no/such/digits.h5"]), options: options,
                                         communicator: SingleProcess())) { error in
            XCTAssertTrue("\(error)".contains("/no/such/digits.h5"), "\(error)")
        }
    }

    func testANegativeLossIsImpossibleAndNamed() {
        XCTAssertNil(impossibleLoss(reconstruction: 0, kl: 0))
        XCTAssertNil(impossibleLoss(reconstruction: -1e-5, kl: -1e-6), "rounding below zero is not garbage")
        XCTAssertTrue(impossibleLoss(reconstruction: -1e20, kl: 0)?.contains("negative reconstruction loss") ?? false)
        XCTAssertTrue(impossibleLoss(reconstruction: 3, kl: -0.5)?.contains("negative KL") ?? false)
    }
}
