// A convolutional VAE on the digits' 8x8 images keeps every guarantee of the dense models: the same
// bits at any rank count, thread count and kernel path, an exact resume at another rank count, and
// the model-family commands (encode, sample, reconstruct beside PCA, interpolate) on its checkpoints.
import Foundation
import Kernels
import XCTest

final class ConvolutionalModelTests: XCTestCase {
    static let encoder = "model.encoder=[{conv: 6, kernel: 3, stride: 2, padding: 1}, {conv: 8, kernel: 3, stride: 1, padding: 1}, 16]"
    let settings = ["--set", encoder, "--set", "model.denoise.noise=masking", "--set", "model.denoise.level=0.1",
                    "--set", "model.sparsity.l1=0.01"]

    /// Trains to `steps` in `dir` (resuming what is there) at np x threads; the summary's checkpoint.
    func train(_ dir: URL, steps: Int, np: Int, threads: Int, environment: [String: String] = [:],
               extra: [String] = []) throws -> (String, LaunchResult) {
        let r = try Launcher.run(smallRun + settings + extra + ["--set", "train.max_steps=\(steps)", "--run-dir", dir.path, "--threads", "\(threads)"],
                                 mpi: Launcher.mpirun(np), timeout: 240, environment: environment)
        XCTAssertEqual(r.status, 0, r.stderr)
        return (try XCTUnwrap(r.summary?["checkpoint"] as? String, r.stdout), r)
    }

    func testSameBitsAtEveryRankThreadCountAndKernelPathAndAcrossAResume() throws {
        let root = Launcher.temporaryDirectory("conv")
        defer { try? FileManager.default.removeItem(at: root) }
        let (reference, first) = try train(root.appendingPathComponent("np1"), steps: 12, np: 1, threads: 1)
        XCTAssertTrue(first.stdout.contains("vae 8x8x1-4x4x6-4x4x8-16-(4)-16-4x4x8-4x4x6-8x8x1"), first.stdout)
        let p1 = try modelTensors(reference)
        XCTAssertEqual(p1["encoder.0.weight"]?.count, 6 * 1 * 3 * 3)
        XCTAssertEqual(p1["decoder.out.weight"]?.count, 6 * 1 * 3 * 3)
        let runs: [(Int, Int, [String: String])] = [(2, 1, [:]), (4, 1, [:]), (2, 2, [:])]
            + InstructionSet.supported.map { (2, 2, [InstructionSet.environmentKey: $0.rawValue]) }
        for (np, threads, environment) in runs {
            let (checkpoint, _) = try train(root.appendingPathComponent("np\(np)t\(threads)\(environment.values.first ?? "")"),
                                            steps: 12, np: np, threads: threads, environment: environment)
            XCTAssertTrue(bitwiseEqual(p1, try modelTensors(checkpoint)), "np \(np) x \(threads) threads \(environment): other bits than np 1")
        }
        // 6 steps at np 2, resumed at np 4 to 12: the straight run's bits.
        let resumed = root.appendingPathComponent("resumed")
        _ = try train(resumed, steps: 6, np: 2, threads: 1)
        let (last, second) = try train(resumed, steps: 12, np: 4, threads: 1)
        XCTAssertTrue(second.stdout.contains("resuming from"), second.stdout)
        XCTAssertTrue(bitwiseEqual(p1, try modelTensors(last)), "resumed at np 4: other bits than the straight run")
    }

    func testFamilyCommandsRunOnAConvolutionalCheckpoint() throws {
        let dir = Launcher.temporaryDirectory("conv-family")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (checkpoint, _) = try train(dir.appendingPathComponent("run"), steps: 20, np: 1, threads: 2)
        let digits = Launcher.packageRoot.appendingPathComponent("data/digits.h5").path
        let pca = dir.appendingPathComponent("pca.h5").path
        XCTAssertEqual(try Launcher.run(["pca", "--data", digits, "--components", "4", "--out", pca]).status, 0)
        let out = { (name: String) in dir.appendingPathComponent(name).path }
        for command in [["encode", "--checkpoint", checkpoint, "--out", out("codes.h5"), "--map", out("map.png")],
                        ["sample", "--checkpoint", checkpoint, "--count", "16", "--out", out("samples.png")],
                        ["reconstruct", "--checkpoint", checkpoint, "--checkpoint", pca, "--count", "8", "--out", out("recon.png")],
                        ["interpolate", "--checkpoint", checkpoint, "--pairs", "2", "--steps", "5", "--out", out("path.png")],
                        ["eval", "--checkpoint", checkpoint, "--json"]] {
            let r = try Launcher.run(command, mpi: Launcher.mpirun(2))
            XCTAssertEqual(r.status, 0, "\(command[0]): \(r.stderr)")
        }
        for picture in ["map.png", "samples.png", "recon.png", "path.png"] {
            let size = (try? FileManager.default.attributesOfItem(atPath: out(picture))[.size] as? Int) ?? 0
            XCTAssertGreaterThan(size, 100, picture)
        }
    }

    /// model.decoder: the mirror written out trains to the mirror's bits; another decoder (one
    /// transposed convolution from a dense 4x4x8 image) trains, resumes and samples at its shapes.
    func testAnExplicitDecoder() throws {
        let root = Launcher.temporaryDirectory("conv-decoder")
        defer { try? FileManager.default.removeItem(at: root) }
        let (mirror, _) = try train(root.appendingPathComponent("mirror"), steps: 8, np: 1, threads: 1)
        let spelled = "model.decoder=[16, 128, {conv_transpose: 6, kernel: 3, stride: 1, padding: 1}, {conv_transpose: 1, kernel: 3, stride: 2, padding: 1}]"
        let (explicit, _) = try train(root.appendingPathComponent("explicit"), steps: 8, np: 1, threads: 1,
                                      extra: ["--set", spelled])
        XCTAssertTrue(bitwiseEqual(try modelTensors(mirror), try modelTensors(explicit)), "the mirror written out trained to other bits")
        let other = ["--set", "model.decoder=[32, 128, {conv_transpose: 1, kernel: 4, stride: 2, padding: 1}]"]
        let dir = root.appendingPathComponent("other")
        let (_, first) = try train(dir, steps: 4, np: 2, threads: 1, extra: other)
        XCTAssertTrue(first.stdout.contains("vae 8x8x1-4x4x6-4x4x8-16-(4)-32-4x4x8-8x8x1"), first.stdout)
        let (checkpoint, second) = try train(dir, steps: 8, np: 2, threads: 1, extra: other)
        XCTAssertTrue(second.stdout.contains("resuming from"), second.stdout)
        XCTAssertEqual(try modelTensors(checkpoint)["decoder.out.weight"]?.count, 8 * 1 * 4 * 4)
        let samples = root.appendingPathComponent("samples.png").path
        let r = try Launcher.run(["sample", "--checkpoint", checkpoint, "--count", "4", "--out", samples])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: samples), r.stdout)
        // A decoder that does not reach the data names the key, on every rank.
        let bad = try Launcher.run(smallRun + settings + ["--set", "model.decoder=[16, 60]", "--run-dir", root.appendingPathComponent("bad").path],
                                   mpi: Launcher.mpirun(2))
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("key 'model.decoder': the last entry gives the data: expected width 64, got 60"), bad.stderr)
    }

    func testAConvolutionWithoutAnImageShapeIsAClearError() throws {
        let dir = Launcher.temporaryDirectory("conv-noshape")
        defer { try? FileManager.default.removeItem(at: dir) }
        // A dense layer before the convolution leaves it no image.
        let r = try Launcher.run(smallRun + ["--set", "model.encoder=[16, {conv: 4, kernel: 3}]", "--run-dir", dir.path],
                                 mpi: Launcher.mpirun(2))
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("model.encoder") && r.stderr.contains("entry 2"), r.stderr)
        let bad = try Launcher.run(smallRun + ["--set", "model.encoder=[{conv: 4, kernel: 3, stride: 0}]", "--run-dir", dir.path])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("'stride'"), bad.stderr)
        let big = try Launcher.run(smallRun + ["--set", "model.encoder=[{conv: 4, kernel: 11}]", "--run-dir", dir.path])
        XCTAssertNotEqual(big.status, 0)
        XCTAssertTrue(big.stderr.contains("kernel 11") && big.stderr.contains("8x8x1"), big.stderr)
    }
}
