// Datasets as users write them with h5py (N-D, chunked, compressed, any byte order, integer or
// float) and any batch size: through real launches on copies of the shipped digits.
import Foundation
import Storage
import Training
import XCTest

final class DatasetFormatTests: XCTestCase {
    static let folder = Launcher.temporaryDirectory("formats")

    /// Writes the digits in the forms h5py users write: returns the file paths by name.
    static let files: [String: String] = {
        let digits = Launcher.packageRoot.appendingPathComponent("data/digits.h5").path
        let script = """
        import h5py, numpy as np, sys
        src, out = sys.argv[1], sys.argv[2]
        with h5py.File(src, 'r') as f:
            x, t = f['train/images'][()], f['test/images'][()]
        X, T = x.reshape(-1, 8, 8), t.reshape(-1, 8, 8)
        with h5py.File(out + '/gzip.h5', 'w') as g:        # [N, 8, 8] uint8, gzip + shuffle, chunked
            g.create_dataset('train/images', data=X, chunks=(128, 8, 8), compression='gzip', shuffle=True)
            g.create_dataset('test/images', data=T, chunks=(128, 8, 8), compression='gzip', shuffle=True)
        with h5py.File(out + '/lzf.h5', 'w') as g:         # [N, 8, 8, 1] with lzf
            g.create_dataset('train/images', data=X[..., None], chunks=(100, 8, 8, 1), compression='lzf')
            g.create_dataset('test/images', data=T[..., None], compression='lzf')
        with h5py.File(out + '/bigendian.h5', 'w') as g:   # big-endian float32, already in [0, 1]
            g.create_dataset('train/images', data=(X / 16).astype('>f4'))
            g.create_dataset('test/images', data=(T / 16).astype('>f4'))
        with h5py.File(out + '/wide.h5', 'w') as g:        # [N, 4, 16]: not square, so a picture's shape comes from the file
            g.create_dataset('train/images', data=x.reshape(-1, 4, 16))
            g.create_dataset('test/images', data=t.reshape(-1, 4, 16))
        with h5py.File(out + '/int16.h5', 'w') as g:       # int16 [N, 8, 8], the test split elsewhere
            g.create_dataset('train/images', data=X.astype('<i2'))
        with h5py.File(out + '/int16-test.h5', 'w') as g:
            g.create_dataset('images', data=T.astype('<i2'))
        """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script, digits, folder.path]
        try? p.run(); p.waitUntilExit()
        var out = ["digits": digits]
        for name in ["gzip", "lzf", "bigendian", "int16", "wide"] { out[name] = folder.appendingPathComponent("\(name).h5").path }
        return out
    }()

    func train(_ name: String, _ settings: [String], np: Int, environment: [String: String] = [:]) throws -> LaunchResult {
        let dir = Self.folder.appendingPathComponent("run-\(name)-\(np)-\(UInt32.random(in: 0...UInt32.max))")
        return try Launcher.run(smallRun + ["--run-dir", dir.path, "--threads", "1", "--set", "train.max_steps=6",
                                            "--set", "data.scale=auto"] + settings.flatMap { ["--set", $0] },
                                mpi: Launcher.mpirun(np), timeout: 120, environment: environment)
    }

    func testDatasetsAsH5pyWritesThemTrainTheSameBitsAndDrawWithoutAnImageShape() throws {
        let files = Self.files
        guard FileManager.default.fileExists(atPath: files["lzf"]!) else { throw XCTSkip("h5py is not installed (cluster/test.sh installs it)") }
        var parameters: [String: [String: [Float]]] = [:]
        var checkpoints: [String: String] = [:]
        for name in ["digits", "gzip", "lzf", "bigendian", "int16", "wide"] {
            var settings = ["data.path=\(files[name]!)"]
            if name == "int16" { settings += ["data.test_path=\(Self.folder.appendingPathComponent("int16-test.h5").path)", "data.test=images"] }
            let r = try train(name, settings, np: 2)
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
            XCTAssertNotNil(r.summary?["test_loss"] as? Double, "\(name): no test loss")
            let checkpoint = try XCTUnwrap(r.summary?["checkpoint"] as? String, "\(name): \(r.stdout)")
            parameters[name] = try modelTensors(checkpoint)
            checkpoints[name] = checkpoint
        }
        // The same values in every layout, type and byte order: the same model, bit for bit.
        for name in ["gzip", "lzf", "bigendian", "int16", "wide"] {
            XCTAssertTrue(bitwiseEqual(parameters["digits"]!, parameters[name]!), "\(name) trained other parameters than the 2-D uint8 file")
        }
        // The trailing shape travels with the checkpoint: 8x8 pictures without --image-shape.
        let lzf = try Checkpoint(path: checkpoints["lzf"]!)
        XCTAssertEqual(lzf.config.data.imageShape, [8, 8, 1])
        // Each picture command on the N-D files draws what it draws from the 2-D file with the
        // shape given by hand (--image-shape).
        for command in [["reconstruct", "--count", "6"], ["sample", "--count", "6"], ["interpolate", "--pairs", "2", "--steps", "4"]] {
            for (shape, names) in [("8x8", ["gzip", "lzf"]), ("4x16", ["wide"])] {
            let reference = Self.folder.appendingPathComponent("reference-\(command[0])-\(shape).png").path
            let made = try Launcher.run([command[0], "--checkpoint", checkpoints["digits"]!] + command.dropFirst() + ["--image-shape", shape, "--out", reference])
            XCTAssertEqual(made.status, 0, "digits \(command[0]): \(made.stderr)")
            for name in names {
                let png = Self.folder.appendingPathComponent("\(name)-\(command[0]).png").path
                let r = try Launcher.run([command[0], "--checkpoint", checkpoints[name]!] + command.dropFirst() + ["--out", png])
                XCTAssertEqual(r.status, 0, "\(name) \(command[0]): \(r.stderr)")
                XCTAssertEqual(try pngSize(png).width, try pngSize(reference).width, "\(name) \(command[0])")
                XCTAssertEqual(try pngSize(png).height, try pngSize(reference).height, "\(name) \(command[0])")
            }
            }
        }
    }

    func testAFilterWhosePluginIsMissingIsOneClearError() throws {
        guard FileManager.default.fileExists(atPath: Self.files["lzf"]!) else { throw XCTSkip("h5py is not installed") }
        let r = try train("noplugin", ["data.path=\(Self.files["lzf"]!)"], np: 2, environment: ["HDF5_PLUGIN_PATH": "/nonexistent"])
        XCTAssertEqual(r.status, 1, r.stdout)
        XCTAssertFalse(r.timedOut)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("aedist: error:") }
        XCTAssertEqual(errors.count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("lzf.h5:/train/images: is compressed with a filter this HDF5 cannot read: lzf (filter 32000")
                      && r.stderr.contains("hdf5-plugin-lzf"), r.stderr)
        FaultTests.record("dataset compressed with a filter whose plugin is missing", ["--set data.path=lzf.h5 (HDF5_PLUGIN_PATH=/nonexistent)"],
                          LaunchResult(status: r.status, stdout: "", stderr: r.stderr.replacingOccurrences(of: Self.folder.path + "/", with: ""),
                                       seconds: r.seconds, timedOut: false))
    }

    func testAnyBatchSizeTrainsAtOneRankAndBatch100GivesTheSameBitsAtTwoAndFourRanks() throws {
        var runs: [[String: [Float]]] = []
        for np in [1, 2, 4] {
            let r = try train("b100", ["train.batch_size=100", "train.micro_batch=auto"], np: np)
            XCTAssertEqual(r.status, 0, "np=\(np): \(r.stderr)")
            XCTAssertTrue(r.stdout.contains("global batch 100 (\(100 / np) per rank, micro-batch 25)"), r.stdout)
            runs.append(try modelTensors(try XCTUnwrap(r.summary?["checkpoint"] as? String)))
        }
        XCTAssertTrue(bitwiseEqual(runs[0], runs[1]) && bitwiseEqual(runs[0], runs[2]), "batch 100 trained differently at np = 1, 2, 4")
        let odd = try train("b250", ["train.batch_size=250", "train.micro_batch=auto"], np: 1)
        XCTAssertEqual(odd.status, 0, odd.stderr)
        let refused = try train("b100np3", ["train.batch_size=100", "train.micro_batch=auto"], np: 3)
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("3 ranks cannot split train.batch_size 100 (micro_batch auto = 25)")
                      && refused.stderr.contains("Rank counts that work for this batch: 1, 2, 4;"), refused.stderr)
    }

    /// Width and height from a PNG's IHDR chunk.
    func pngSize(_ path: String) throws -> (width: Int, height: Int) {
        let d = try Data(contentsOf: URL(fileURLWithPath: path))
        func be32(_ o: Int) -> Int { d[o..<(o + 4)].reduce(0) { $0 << 8 | Int($1) } }
        return (be32(16), be32(20))
    }
}
