// The run configuration: defaults, overrides, and errors that name the file, key and value.
import Foundation
import Models
import Training
import XCTest

final class RunConfigTests: XCTestCase {
    func write(_ text: String) -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cfg-\(UUID().uuidString).yaml").path
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(text.utf8)))
        return path
    }

    func error(_ body: () throws -> Any) -> String {
        do { _ = try body(); return "no error" } catch { return "\(error)" }
    }

    /// Every shipped configuration loads, and its resolved YAML reads back to the same configuration.
    func testEveryShippedConfigurationLoads() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("configs")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".yaml") }
        XCTAssertGreaterThanOrEqual(files.count, 6)
        for name in files {
            let c = try RunConfig.load(file: folder.appendingPathComponent(name).path)
            XCTAssertEqual(try RunConfig.parse(yaml: c.yaml, origin: name), c, name)
        }
        let steered = try RunConfig.load(file: folder.appendingPathComponent("mnist-vae-steered.yaml").path)
        XCTAssertEqual(steered.data.validation, .fraction(0.1))
        XCTAssertEqual(steered.train.earlyStopping, EarlyStoppingSettings(patience: 3, minDelta: 0.1))
    }

    func testDefaultsMatchTheSpec() throws {
        let c = try RunConfig.load(file: nil)
        XCTAssertEqual(c.model.kind, .vae)
        XCTAssertEqual(c.model.encoder, [512, 256])
        XCTAssertEqual(c.model.latent, 20)
        XCTAssertEqual(c.train.batchSize, 128)
        XCTAssertEqual(c.train.optimizer.lr, 0.001)
        XCTAssertNil(c.train.maxSteps)
        XCTAssertNil(c.data.scale)
        XCTAssertEqual(c.data.test, "test/images")
        XCTAssertNil(c.train.microBatch)
        XCTAssertEqual(c.train.resolvedMicroBatch, 16)
    }

    func testAutomaticMicroBatchSplitsEveryBatchAndDependsOnTheBatchAlone() throws {
        let expected = [128: 16, 100: 25, 250: 125, 256: 16, 1000: 125, 64: 16, 16: 16, 8: 8, 7: 7, 96: 24]
        for (batch, micro) in expected {
            XCTAssertEqual(TrainSettings.automaticMicroBatch(batchSize: batch), micro, "batch \(batch)")
            let c = try RunConfig.load(file: nil, overrides: ["train.batch_size=\(batch)"])
            XCTAssertEqual(c.train.resolvedMicroBatch, micro)
            XCTAssertEqual(try BatchPlan(config: c, worldSize: 1).microBatch, micro, "batch \(batch) must train at np = 1")
        }
        let c = try RunConfig.load(file: nil, overrides: ["train.batch_size=100"])
        for np in [2, 4] { XCTAssertEqual(try BatchPlan(config: c, worldSize: np).perRank, 100 / np) }
        XCTAssertThrowsError(try BatchPlan(config: c, worldSize: 8)) {
            XCTAssertTrue("\($0)".contains("8 ranks cannot split train.batch_size 100 (micro_batch auto = 25)"), "\($0)")
            XCTAssertTrue("\($0)".contains("Rank counts that work for this batch: 1, 2, 4;"), "\($0)")
        }
        // An explicit number keeps its meaning.
        let explicit = try RunConfig.load(file: nil, overrides: ["train.batch_size=100", "train.micro_batch=10"])
        XCTAssertEqual(try BatchPlan(config: explicit, worldSize: 1).microBatch, 10)
    }

    func testFileAndOverrides() throws {
        let path = write("model:\n  kind: ae\n  latent: 7\ntrain:\n  epochs: 3\n")
        let c = try RunConfig.load(file: path, overrides: ["model.encoder=[256, 64]", "data.test=null",
                                                           "model.denoise={noise: masking, level: 0.25}", "train.lr=3e-4"])
        XCTAssertEqual(c.model.kind, .ae)
        XCTAssertEqual(c.model.latent, 7)
        XCTAssertEqual(c.model.encoder, [256, 64])
        XCTAssertNil(c.data.test)
        XCTAssertEqual(c.model.noise, .masking)
        XCTAssertEqual(c.model.noiseLevel, 0.25)
        XCTAssertEqual(c.train.epochs, 3)
        XCTAssertEqual(c.train.optimizer.lr, 3e-4)
        XCTAssertTrue(c.runDirectory.hasPrefix("runs/cfg-"))
    }

    func testResolvedYAMLReadsBackToTheSameConfiguration() throws {
        let c = try RunConfig.load(file: nil, overrides: ["model.kind=ae", "data.scale=0.0625", "train.max_steps=17",
                                                          "data.path='odd: name.h5'", "run_dir=runs/x"])
        let again = try RunConfig.parse(yaml: c.yaml, origin: "test")
        XCTAssertEqual(c, again)
    }

    func testDecoderIsTheMirrorOrAListOfLayers() throws {
        XCTAssertNil(try RunConfig.load(file: nil).model.decoder)
        let c = try RunConfig.load(file: nil, overrides: [
            "model.encoder=[{conv: 8, kernel: 4, stride: 2, padding: 1}, 32]",
            "model.decoder=[32, 392, {conv_transpose: 1, kernel: 4, stride: 2, padding: 1}]"])
        XCTAssertEqual(c.model.decoder, [32, 392, .convTranspose(channels: 1, kernel: 4, stride: 2, padding: 1)])
        XCTAssertEqual(try RunConfig.parse(yaml: c.yaml, origin: "test"), c)
        let back = try RunConfig.parse(yaml: try RunConfig.load(file: nil, overrides: ["model.decoder=mirror"]).yaml, origin: "test")
        XCTAssertNil(back.model.decoder)
        // {dense: N} is the long form of a width; stride and padding take their defaults.
        let long = try RunConfig.load(file: nil, overrides: ["model.encoder=[{dense: 64}, {conv: 8, kernel: 3}]"])
        XCTAssertEqual(long.model.encoder, [64, .conv(channels: 8, kernel: 3, stride: 1, padding: 0)])
        XCTAssertTrue(long.yaml.contains("encoder: [64, {conv: 8, kernel: 3, stride: 1, padding: 0}]"), long.yaml)
        for (override, expected) in [
            ("model.decoder=[{conv: 1, kernel: 3}]",
             "key 'model.decoder': expected in entry 1 a width or {conv_transpose: C, kernel: K, stride: S, padding: P} (stride 1 and padding 0 unless given); a convolution ({conv: ...}) belongs in model.encoder, got [{conv: 1, kernel: 3}]"),
            ("model.encoder=[{conv_transpose: 1, kernel: 3}]", "a transposed convolution ({conv_transpose: ...}) belongs in model.decoder"),
            ("model.encoder=[16, {conv: 1, kernel: 3, dilation: 2}]", "expected in entry 2 only the fields conv, kernel, stride, padding of a convolution (got 'dilation')"),
            ("model.encoder=[{conv: 4, conv_transpose: 1, kernel: 3}]", "expected in entry 1 one layer kind, not conv and conv_transpose"),
            ("model.encoder=[{width: 4}]", "expected in entry 1 a width or {conv: C, kernel: K, stride: S, padding: P}"),
            ("model.encoder=[{conv: 4, kernel: 3, padding: -1}]", "expected an integer ≥ 0 for 'padding' (zero padding) in entry 1"),
            ("model.encoder=[{conv: 4, kernel: two}]", "expected an integer for 'kernel' in entry 1"),
            ("model.encoder=[16, 0]", "expected a width ≥ 1 in entry 2 of a list of layers"),
            ("model.decoder=mirrored", "key 'model.decoder': expected mirror, or a list of layers"),
            ("model.decoder=[{conv_transpose: 1}]", "expected 'kernel' (kernel size) in entry 1, a transposed convolution {conv_transpose: C, kernel: K, stride: S, padding: P}"),
        ] {
            let message = error { try RunConfig.load(file: nil, overrides: [override]) }
            XCTAssertTrue(message.contains(expected), "\(override): \(message)")
        }
    }

    func testUnknownKeyIsNamed() {
        let path = write("model:\n  kind: vae\n  latnet: 3\n")
        let message = error { try RunConfig.load(file: path) }
        XCTAssertTrue(message.contains("unknown key 'model.latnet'"), message)
        XCTAssertTrue(message.contains(path), message)
        let set = error { try RunConfig.load(file: nil, overrides: ["train.epoch=3"]) }
        XCTAssertTrue(set.contains("--set train.epoch=3") && set.contains("unknown key 'train.epoch'"), set)
    }

    func testBadValuesAreNamed() {
        let cases: [(String, String)] = [
            ("train.epochs=0", "key 'train.epochs': expected an integer ≥ 1, got '0'"),
            ("train.batch_size=abc", "key 'train.batch_size': expected an integer ≥ 1, got 'abc'"),
            ("model.kind=gan", "key 'model.kind': expected one of ae | vae, got 'gan'"),
            ("model.activation=gelu", "key 'model.activation': expected one of relu | leaky_relu | tanh | sigmoid | linear"),
            ("train.optimizer=lbfgs", "key 'train.optimizer': expected one of adam | sgd"),
            ("model.denoise.noise=pink", "key 'model.denoise.noise': expected one of none | gaussian | masking | salt_pepper"),
            ("train.lr=-1", "key 'train.lr': expected a number > 0.0"),
            ("model.encoder=12", "key 'model.encoder': expected a list of layers"),
            ("model.latent=2.5", "key 'model.latent': expected an integer"),
            ("train.micro_batch=5", "key 'train.micro_batch': expected auto or a divisor of train.batch_size (128)"),
            ("train.exact_reduction=maybe", "key 'train.exact_reduction': expected true or false, got 'maybe'"),
        ]
        for (override, expected) in cases {
            let message = error { try RunConfig.load(file: nil, overrides: [override]) }
            XCTAssertTrue(message.contains(expected), "\(override): \(message)")
            XCTAssertTrue(message.contains("--set \(override)"), "\(override): \(message)")
        }
    }

    func testMissingAndInvalidFiles() {
        let missing = error { try RunConfig.load(file: "/nonexistent/run.yaml") }
        XCTAssertTrue(missing.contains("'/nonexistent/run.yaml'") && missing.contains("cannot be read"), missing)
        let broken = write("model: [unclosed\n")
        let message = error { try RunConfig.load(file: broken) }
        XCTAssertTrue(message.contains(broken) && message.contains("not valid YAML"), message)
    }
}
