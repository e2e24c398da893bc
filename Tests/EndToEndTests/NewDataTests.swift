// A trained model applied to new data: any file whose rows have the model's feature count (and
// image shape) is encoded and reconstructed with the checkpoint's scale and normalization; other
// rows are refused with a message naming both shapes; --beside writes each split's codes in the
// group of its own dataset.
import Foundation
import Storage
import XCTest

final class NewDataTests: XCTestCase {
    func testEncodeAndReconstructTakeAnyFileOfTheModelsRowsAndRefuseOthers() throws {
        let root = Launcher.temporaryDirectory("newdata")
        defer { try? FileManager.default.removeItem(at: root) }
        let run = root.appendingPathComponent("run")
        // Normalized inputs: the new rows must go through the checkpoint's statistics too.
        let trained = try Launcher.run(smallRun + ["--set", "data.normalize=standard", "--set", "model.output=gaussian",
                                                   "--set", "train.max_steps=40", "--threads", "1", "--run-dir", run.path])
        XCTAssertEqual(trained.status, 0, trained.stderr)
        let checkpoint = try XCTUnwrap(trained.summary?["checkpoint"] as? String)

        // The digits' test rows as another program would write them: float32 [N, 8, 8] in a group of
        // its own, with labels beside; and rows that do not fit the model.
        let source = try HDF5File(readingAt: Launcher.packageRoot.appendingPathComponent("data/digits.h5").path)
        let test = try source.readInt64s("/test/images").map { Float($0) }
        let labels = try source.readInt64s("/test/labels")
        source.close()
        let n = test.count / 64
        let new = root.appendingPathComponent("new.h5").path
        do {
            let file = try HDF5File(creatingAt: new)
            try file.write(test, shape: [n, 8, 8], to: "/experiment/cells")
            try file.write(labels, shape: [n], to: "/experiment/labels")
            try file.write(Array(test[..<(n * 60)]), shape: [n, 60], to: "/narrow/rows")
            try file.write(test, shape: [n, 4, 16], to: "/wide/cells")
            file.close()
        }
        func codes(_ path: String, _ dataset: String) throws -> [Float] {
            let f = try HDF5File(readingAt: path)
            defer { f.close() }
            return try f.readFloats(dataset)
        }
        let reference = root.appendingPathComponent("reference.h5").path, other = root.appendingPathComponent("other.h5").path
        XCTAssertEqual(try Launcher.run(["encode", "--checkpoint", checkpoint, "--split", "test", "--out", reference]).status, 0)
        let r = try Launcher.run(["encode", "--checkpoint", checkpoint, "--data", new, "--split", "experiment/cells", "--out", other])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try codes(other, "/mean"), try codes(reference, "/mean"))
        XCTAssertEqual(try codes(other, "/logvar"), try codes(reference, "/logvar"))
        XCTAssertEqual(try codes(other, "/labels"), labels.map(Float.init), "the labels beside the rows")
        let pictures = ["reference.png": ["--split", "test"], "other.png": ["--data", new, "--split", "experiment/cells"]]
        for (name, args) in pictures {
            let made = try Launcher.run(["reconstruct", "--checkpoint", checkpoint, "--count", "8", "--out", root.appendingPathComponent(name).path] + args)
            XCTAssertEqual(made.status, 0, made.stderr)
        }
        XCTAssertEqual(try Data(contentsOf: root.appendingPathComponent("other.png")), try Data(contentsOf: root.appendingPathComponent("reference.png")))

        for (dataset, expected) in [
            ("narrow/rows", "data '\(new):/narrow/rows': rows of 60 features, but the model in '\(checkpoint)' was trained on rows of 64 features"),
            ("wide/cells", "data '\(new):/wide/cells': rows of shape [4, 16], but the model in '\(checkpoint)' was trained on images of shape [8, 8]"),
        ] {
            for command in ["encode", "reconstruct"] {
                let refused = try Launcher.run([command, "--checkpoint", checkpoint, "--data", new, "--split", dataset,
                                                "--out", root.appendingPathComponent(command == "encode" ? "x.h5" : "x.png").path])
                XCTAssertEqual(refused.status, 1, "\(command) \(dataset)")
                XCTAssertTrue(refused.stderr.contains(expected), refused.stderr)
            }
        }

        // --beside: each split's codes in its dataset's group, as the input file names it.
        let beside = root.appendingPathComponent("beside.h5").path
        let both = try Launcher.run(["encode", "--checkpoint", checkpoint, "--data", new, "--split", "experiment/cells", "--split", "/narrow/rows",
                                     "--beside", "--out", beside])
        XCTAssertEqual(both.status, 1, "narrow rows do not fit")
        XCTAssertFalse(FileManager.default.fileExists(atPath: beside), "nothing written")
        let one = try Launcher.run(["encode", "--checkpoint", checkpoint, "--split", "train", "--split", "test", "--beside", "--out", beside])
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssertEqual(try codes(beside, "/test/mean"), try codes(reference, "/mean"))
        XCTAssertEqual(try codes(beside, "/train/mean").count, 1500 * 4)
        XCTAssertEqual(try codes(beside, "/test/labels"), labels.map(Float.init))
        let flat = try Launcher.run(["encode", "--checkpoint", checkpoint, "--split", "train", "--split", "test", "--out", beside])
        XCTAssertEqual(flat.status, 64, "several splits without --beside is a usage error")
        XCTAssertTrue(flat.stderr.contains("several --split go into one file with --beside"), flat.stderr)
    }
}
