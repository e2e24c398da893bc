// TensorBoard event files read back by the tensorboard package's own reader: every number of
// metrics.jsonl as a scalar at its step, the epoch's pictures as PNG images, and after a resume from
// an earlier checkpoint (the logs ran ahead of it) the same events as the run that never stopped.
import Foundation
import XCTest

final class TensorBoardTests: XCTestCase {
    /// The events of a run directory as the tensorboard package reads them: scalars (tag, step,
    /// value) in file order, and images (tag, step, width, height, the PNG's own width and height).
    func read(_ dir: URL) throws -> (scalars: [(String, Int, Double)], images: [[Any]]) {
        let text = try TestTools.python("""
        import glob, json, struct, sys
        from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
        files = glob.glob(sys.argv[1] + "/events.out.tfevents.*")
        assert len(files) == 1, files
        scalars, images = [], []
        for event in LegacyEventFileLoader(files[0]).Load():   # the records as written, not migrated
            for v in event.summary.value:
                if v.HasField("image"):
                    png = v.image.encoded_image_string
                    assert png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
                    w, h = struct.unpack(">II", png[16:24])
                    images.append([v.tag, event.step, v.image.width, v.image.height, w, h])
                else:
                    assert v.HasField("simple_value"), v
                    scalars.append([v.tag, event.step, v.simple_value])
        print(json.dumps({"scalars": scalars, "images": images}))
        """, [dir.path])
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let scalars = (object["scalars"] as? [[Any]] ?? []).map { ($0[0] as! String, $0[1] as! Int, ($0[2] as! NSNumber).doubleValue) }
        return (scalars, object["images"] as? [[Any]] ?? [])
    }

    /// What metrics.jsonl says the scalars must be: each line's numbers under "EVENT/KEY" at its step.
    func expected(_ dir: URL) throws -> [(String, Int, Double)] {
        try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").flatMap { line -> [(String, Int, Double)] in
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let event = o["event"] as! String, step = o["step"] as! Int
            return o.filter { !["event", "step", "epoch", "seconds", "run_id"].contains($0.key) }
                .map { ("\(event)/\($0.key)", step, ($0.value as! NSNumber).doubleValue) }
                .sorted { $0.0 < $1.0 }
        }
    }

    func testEventFilesHoldTheMetricsAndPicturesAndAResumeCutsThemBack() throws {
        try TestTools.require(["python3", "-c", "import tensorboard"], "the tensorboard Python package")
        let root = Launcher.temporaryDirectory("tensorboard")
        defer { try? FileManager.default.removeItem(at: root) }
        let settings = ["--set", "data.validation=0.2", "--set", "train.epochs=3", "--set", "train.checkpoint_every=20",
                        "--set", "train.keep_checkpoints=20", "--threads", "1"]
        let straight = root.appendingPathComponent("straight")
        let r = try Launcher.run(smallRun + settings + ["--run-dir", straight.path], timeout: 180)
        XCTAssertEqual(r.status, 0, r.stderr)
        let events = try read(straight), wanted = try expected(straight)
        XCTAssertEqual(events.scalars.count, wanted.count)
        for (got, want) in zip(events.scalars, wanted) {
            XCTAssertEqual(got.0, want.0); XCTAssertEqual(got.1, want.1)
            XCTAssertEqual(Float(got.2), Float(want.2), "\(want.0) at step \(want.1)")   // TensorBoard keeps float32
        }
        let tags = Set(events.scalars.map(\.0))
        for tag in ["train/loss", "train/recon", "train/kl", "train/lr", "train/kl_weight", "train/samples_per_second",
                    "validation/loss", "validation/kl", "test/loss", "test/mse_per_feature"] {
            XCTAssertTrue(tags.contains(tag), "no \(tag) in \(tags.sorted())")
        }
        // At each epoch's end (37 steps of 32 rows): 8 test digits over their reconstructions (tiles of 24
        // pixels with 1-pixel gaps: 8 x 25 + 1 by 2 x 25 + 1), and 16 draws (4 x 25 + 1 square).
        let pictures = events.images.map { "\($0[0]) \($0[1]) \($0[2])x\($0[3]) \($0[4])x\($0[5])" }
        XCTAssertEqual(pictures, [37, 74, 111].flatMap { ["images/reconstructions \($0) 201x51 201x51", "images/samples \($0) 101x101 101x101"] })

        // Resumed from step 40's checkpoint, the logs having run ahead to step 111: cut back to 40,
        // then the same events again (throughput aside, a timing).
        let resumed = root.appendingPathComponent("resumed")
        try FileManager.default.copyItem(at: straight, to: resumed)
        for name in try FileManager.default.contentsOfDirectory(atPath: resumed.appendingPathComponent("checkpoints").path)
        where name.hasPrefix("step-") && name > "step-000000040.h5" {
            try FileManager.default.removeItem(at: resumed.appendingPathComponent("checkpoints/" + name))
        }
        let again = try Launcher.run(smallRun + settings + ["--run-dir", resumed.path], timeout: 180)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("resuming from"), again.stdout)
        let second = try read(resumed)
        func timeless(_ s: [(String, Int, Double)]) -> [String] { s.filter { !$0.0.hasSuffix("samples_per_second") }.map { "\($0.0) \($0.1) \(Float($0.2))" } }
        XCTAssertEqual(timeless(second.scalars), timeless(events.scalars))
        XCTAssertEqual(second.images.map { "\($0[0]) \($0[1])" }, events.images.map { "\($0[0]) \($0[1])" })
    }
}
