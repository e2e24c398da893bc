// The model-family commands through the real executable: pca and encode give the same bits on 1 and
// 2 ranks; reconstruct and sample write PNGs of the documented size; bad inputs are named.
import Foundation
import Storage
import XCTest

final class FamilyCommandTests: XCTestCase {
    func pngSize(_ path: String) throws -> (Int, Int) {
        let d = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertEqual(Array(d[0..<8]), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        XCTAssertEqual(String(decoding: d[12..<16], as: UTF8.self), "IHDR")
        func u32(_ o: Int) -> Int { Int(d[o]) << 24 | Int(d[o + 1]) << 16 | Int(d[o + 2]) << 8 | Int(d[o + 3]) }
        return (u32(16), u32(20))
    }

    func testPCAAndEncodeDoNotDependOnTheRankCount() throws {
        let dir = Launcher.temporaryDirectory("family")
        defer { try? FileManager.default.removeItem(at: dir) }
        var files: [[Double]] = [], codes: [[Float]] = []
        for np in [1, 2] {
            let out = dir.appendingPathComponent("pca\(np).h5").path
            let r = try Launcher.run(["pca", "--data", "data/digits.h5", "--components", "6", "--scale", "0.0625",
                                      "--out", out, "--threads", "1"], mpi: Launcher.mpirun(np))
            XCTAssertEqual(r.status, 0, r.stderr)
            let f = try HDF5File(readingAt: out)
            files.append(try f.readDoubles("/components") + f.readDoubles("/eigenvalues") + f.readDoubles("/mean"))
            f.close()
            let codesPath = dir.appendingPathComponent("codes\(np).h5").path
            let e = try Launcher.run(["encode", "--checkpoint", out, "--split", "train", "--out", codesPath],
                                     mpi: Launcher.mpirun(np))
            XCTAssertEqual(e.status, 0, e.stderr)
            let c = try HDF5File(readingAt: codesPath)
            XCTAssertEqual(try c.shape(ofDataset: "/codes"), [1500, 6])
            XCTAssertEqual(try c.readInt64s("/labels").count, 1500)
            codes.append(try c.readFloats("/codes"))
            c.close()
        }
        XCTAssertEqual(files[0], files[1], "PCA on 1 and 2 ranks")
        XCTAssertEqual(codes[0], codes[1], "codes on 1 and 2 ranks")

        // eval accepts the PCA file; reconstruct draws it (digits: 8x8 tiles magnified 3x).
        let pca = dir.appendingPathComponent("pca1.h5").path
        let eval = try Launcher.run(["eval", "--checkpoint", pca, "--json"])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        XCTAssertTrue(eval.stdout.contains("\"mse_per_feature\""), eval.stdout)
        let png = dir.appendingPathComponent("rec.png").path
        let rec = try Launcher.run(["reconstruct", "--checkpoint", pca, "--count", "5", "--out", png])
        XCTAssertEqual(rec.status, 0, rec.stderr)
        let (w, h) = try pngSize(png)
        XCTAssertEqual(w, 5 * 24 + 6)
        XCTAssertEqual(h, 2 * 24 + 3)
        // sample needs a VAE; a wrong picture size is named.
        let s = try Launcher.run(["sample", "--checkpoint", pca, "--count", "4", "--out", dir.appendingPathComponent("s.png").path])
        XCTAssertNotEqual(s.status, 0)
        XCTAssertTrue(s.stderr.contains("needs a VAE"), s.stderr)
        let bad = try Launcher.run(["reconstruct", "--checkpoint", pca, "--image-shape", "4x4", "--out", png])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--image-shape 4x4"), bad.stderr)
    }

    func testSampleWritesPicturesAndArrays() throws {
        let dir = Launcher.temporaryDirectory("family-sample")
        defer { try? FileManager.default.removeItem(at: dir) }
        let train = try Launcher.run(smallRun + ["--set", "train.max_steps=20", "--run-dir", dir.appendingPathComponent("run").path,
                                                 "--resume", "never"])
        XCTAssertEqual(train.status, 0, train.stderr)
        let checkpoint = try XCTUnwrap(train.summary?["checkpoint"] as? String)
        let png = dir.appendingPathComponent("s.png").path, h5 = dir.appendingPathComponent("s.h5").path
        var r = try Launcher.run(["sample", "--checkpoint", checkpoint, "--count", "10", "--seed", "3", "--out", png],
                                 mpi: Launcher.mpirun(2))
        XCTAssertEqual(r.status, 0, r.stderr)
        let (w, h) = try pngSize(png)
        XCTAssertEqual(w, 4 * 24 + 5)
        XCTAssertEqual(h, 3 * 24 + 4)
        r = try Launcher.run(["sample", "--checkpoint", checkpoint, "--count", "10", "--seed", "3", "--out", h5])
        XCTAssertEqual(r.status, 0, r.stderr)
        let f = try HDF5File(readingAt: h5)
        XCTAssertEqual(try f.shape(ofDataset: "/samples"), [10, 64])
        XCTAssertEqual(try f.shape(ofDataset: "/latent"), [10, 4])
        f.close()
        r = try Launcher.run(["interpolate", "--checkpoint", checkpoint, "--pairs", "2", "--steps", "6",
                              "--out", dir.appendingPathComponent("i.png").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let (iw, ih) = try pngSize(dir.appendingPathComponent("i.png").path)
        XCTAssertEqual(iw, 8 * 24 + 9)
        XCTAssertEqual(ih, 2 * 24 + 3)
        r = try Launcher.run(["encode", "--checkpoint", checkpoint, "--out", dir.appendingPathComponent("c.h5").path,
                              "--map", dir.appendingPathComponent("map.png").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let codes = try HDF5File(readingAt: dir.appendingPathComponent("c.h5").path)
        XCTAssertEqual(try codes.shape(ofDataset: "/mean"), [297, 4])
        XCTAssertEqual(try codes.shape(ofDataset: "/logvar"), [297, 4])
        codes.close()
        XCTAssertEqual(try pngSize(dir.appendingPathComponent("map.png").path).0, 512)
        r = try Launcher.run(["sample", "--checkpoint", checkpoint, "--out", dir.appendingPathComponent("s.jpg").path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("s.jpg"), r.stderr)
    }
}
