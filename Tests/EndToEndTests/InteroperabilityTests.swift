// A checkpoint read by h5py + numpy alone (docs/read_checkpoint.py) gives the codes `aedist encode` gives.
import Foundation
import Storage
import XCTest

final class InteroperabilityTests: XCTestCase {
    func testH5pyReaderMatchesAedistEncode() throws {
        try TestTools.require(["python3", "-c", "import h5py, numpy"], "h5py")
        // The third model normalizes its inputs: the reader applies /normalization too. The last two
        // are convolutional (the digits' 8x8 image shape): the reader runs their kernels in numpy.
        let dense = ["--set", "model.encoder=[24,12]"]
        let conv = ["--set", "model.encoder=[{conv: 4, kernel: 3, stride: 2, padding: 1}, {conv: 6, kernel: 2, stride: 1, padding: 0}, 12]"]
        for (kind, extra) in [("ae", dense), ("vae", dense), ("vae", dense + ["--set", "data.normalize=standard", "--set", "model.output=gaussian"]),
                              ("ae", conv), ("vae", conv)] {
            let dir = Launcher.temporaryDirectory("interop-\(kind)")
            defer { try? FileManager.default.removeItem(at: dir) }
            let trained = try Launcher.run(smallRun + extra + ["--set", "model.kind=\(kind)",
                                                       "--set", "model.activation=tanh", "--set", "train.max_steps=30",
                                                       "--run-dir", dir.path])
            XCTAssertEqual(trained.status, 0, trained.stderr)
            let checkpoint = try XCTUnwrap(trained.summary?["checkpoint"] as? String)
            let codes = dir.appendingPathComponent("codes.h5").path
            let encoded = try Launcher.run(["encode", "--checkpoint", checkpoint, "--split", "test", "--out", codes])
            XCTAssertEqual(encoded.status, 0, encoded.stderr)

            let npz = dir.appendingPathComponent("reference.npz").path
            let python = Process()
            python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            python.arguments = ["python3", Launcher.packageRoot.appendingPathComponent("docs/read_checkpoint.py").path,
                                checkpoint, Launcher.packageRoot.appendingPathComponent("data/digits.h5").path, "test/images", npz]
            let err = Pipe()
            python.standardError = err
            try python.run(); python.waitUntilExit()
            XCTAssertEqual(python.terminationStatus, 0, String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))

            // Compare in Python too (numpy reads the .npz, h5py the codes).
            let compare = Process()
            compare.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            compare.arguments = ["python3", "-c", """
            import sys, h5py, numpy as np
            ref = np.load(sys.argv[1]); f = h5py.File(sys.argv[2], "r")
            ours = f["mean"][()] if "mean" in f else f["codes"][()]
            assert ours.shape == ref["code"].shape, (ours.shape, ref["code"].shape)
            worst = float(np.abs(ours - ref["code"]).max())
            if "logvar" in f:
                worst = max(worst, float(np.abs(f["logvar"][()] - ref["logvar"]).max()))
            print(worst)
            sys.exit(0 if worst <= 1e-5 else 1)
            """, npz, codes]
            let out = Pipe()
            compare.standardOutput = out
            compare.standardError = out
            try compare.run(); compare.waitUntilExit()
            let report = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            XCTAssertEqual(compare.terminationStatus, 0, "\(kind): largest difference \(report)")
        }
    }
}
