// The training loop in-process on the shipped digits data.
import Communication
import Foundation
import Training
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

    func testMissingDataFileIsNamed() throws {
        var options = TrainOptions()
        options.resume = .never
        XCTAssertThrowsError(try Trainer(config: try config(["data.path=/no/such/digits.h5"]), options: options,
                                         communicator: SingleProcess())) { error in
            XCTAssertTrue("\(error)".contains("/no/such/digits.h5"), "\(error)")
        }
    }
}
