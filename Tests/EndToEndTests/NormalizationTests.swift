// data.normalize: per-feature statistics of the train split, the same bits at any rank count, kept
// in the checkpoint and applied (and undone) by the commands that read data.
import Foundation
import Storage
import Training
import XCTest

final class NormalizationTests: XCTestCase {
    /// A table whose 30 features live on scales from 1e-3 to 1e3 (like scikit-learn's breast-cancer
    /// set): three latent factors, mixed linearly, each feature scaled and shifted by its own power of ten.
    static let table: String = {
        let path = Launcher.temporaryDirectory("normalize").appendingPathComponent("wide.h5").path
        var state: UInt64 = 12345
        func uniform() -> Double { state = state &* 6364136223846793005 &+ 1442695040888963407; return Double(state >> 11) / Double(1 << 53) }
        func normal() -> Double { (-2 * log(max(uniform(), 1e-300))).squareRoot() * cos(2 * .pi * uniform()) }
        let n = 700, d = 30
        let mixing = (0..<(3 * d)).map { _ in normal() }
        var values = [Double](repeating: 0, count: n * d)
        for r in 0..<n {
            let z = (0..<3).map { _ in normal() }
            for j in 0..<d {
                let unit = pow(10, Double(j) / 5 - 3)
                values[r * d + j] = ((0..<3).reduce(0) { $0 + z[$1] * mixing[$1 * d + j] } + 0.1 * normal()) * unit + 10 * unit
            }
        }
        do {
            let file = try HDF5File(creatingAt: path)
            try file.write(Array(values[0..<(600 * d)]), shape: [600, d], to: "/train/x")
            try file.write(Array(values[(600 * d)...]), shape: [100, d], to: "/test/x")
            file.close()
        } catch { XCTFail("fixture: \(error)") }
        return path
    }()

    func train(_ name: String, _ settings: [String], np: Int) throws -> LaunchResult {
        let dir = Launcher.temporaryDirectory("norm-\(name)")
        return try Launcher.run(["train", "--run-dir", dir.path, "--threads", "1", "--resume", "never",
                                 "--set", "data.path=\(Self.table)", "--set", "data.train=train/x", "--set", "data.test=test/x",
                                 "--set", "model.kind=ae", "--set", "model.encoder=[16]", "--set", "model.latent=3",
                                 "--set", "train.batch_size=48", "--set", "train.micro_batch=16", "--set", "train.log_every=5"]
                                + settings.flatMap { ["--set", $0] }, mpi: Launcher.mpirun(np), timeout: 120)
    }

    func normalization(_ checkpoint: String) throws -> (kind: String, shift: [Float], factor: [Float]) {
        let file = try HDF5File(readingAt: checkpoint)
        defer { file.close() }
        return (try file.stringAttribute("kind", at: "/normalization"), try file.readFloats("/normalization/shift"),
                try file.readFloats("/normalization/factor"))
    }

    func testStandardStatisticsAreTheSameBitsAtOneAndThreeRanksAndTheTableTrains() throws {
        var checkpoints: [String] = []
        for np in [1, 3] {
            let r = try train("standard\(np)", ["data.normalize=standard", "model.output=gaussian", "train.epochs=20"], np: np)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains("standard normalization"), r.stdout)
            checkpoints.append(try XCTUnwrap(r.summary?["checkpoint"] as? String))
            if np == 1 {
                // Normalized, the error per feature is a fraction of each feature's own variance (1).
                XCTAssertLessThan(try XCTUnwrap(r.summary?["test_loss"] as? Double) / 30, 0.2, r.stdout)
            }
        }
        let (a, b) = (try normalization(checkpoints[0]), try normalization(checkpoints[1]))
        XCTAssertEqual(a.kind, "standard")
        XCTAssertEqual(a.shift.map(\.bitPattern), b.shift.map(\.bitPattern), "means differ between np = 1 and 3")
        XCTAssertEqual(a.factor.map(\.bitPattern), b.factor.map(\.bitPattern), "scales differ between np = 1 and 3")
        XCTAssertTrue(bitwiseEqual(try modelTensors(checkpoints[0]), try modelTensors(checkpoints[1])))
        // The statistics are the train split's: feature 29's mean is about 10 × 10^(29/5 - 3).
        XCTAssertEqual(Double(a.shift[29]), 10 * pow(10, 29.0 / 5 - 3), accuracy: 0.2 * 10 * pow(10, 29.0 / 5 - 3))
        XCTAssertEqual(Double(a.shift[0]), 10 * pow(10, -3.0), accuracy: 0.2 * 10 * pow(10, -3.0))
    }

    func testMinmaxFeedsABernoulliOutputAndOutputsComeBackInDataUnits() throws {
        let refused = try train("standard-bernoulli", ["data.normalize=standard", "model.output=bernoulli", "train.max_steps=5"], np: 3)
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("data.normalize: standard maps to [") && refused.stderr.contains("data.normalize: minmax"), refused.stderr)

        let r = try train("minmax", ["data.normalize=minmax", "model.output=bernoulli", "model.kind=vae", "train.max_steps=40"], np: 3)
        XCTAssertEqual(r.status, 0, r.stderr)
        let checkpoint = try XCTUnwrap(r.summary?["checkpoint"] as? String)
        let (_, low, factor) = try normalization(checkpoint)
        let high = zip(low, factor).map { $0 + 1 / $1 }
        // Samples decoded from the prior, in the table's own units: feature j within [min_j, max_j].
        let out = Launcher.temporaryDirectory("norm-sample").appendingPathComponent("s.h5").path
        let s = try Launcher.run(["sample", "--checkpoint", checkpoint, "--count", "50", "--out", out])
        XCTAssertEqual(s.status, 0, s.stderr)
        let file = try HDF5File(readingAt: out)
        defer { file.close() }
        let samples = try file.readFloats("/samples")
        for j in [0, 15, 29] {
            let column = stride(from: j, to: samples.count, by: 30).map { samples[$0] }
            XCTAssertGreaterThanOrEqual(column.min()!, low[j] * 0.999, "feature \(j)")
            XCTAssertLessThanOrEqual(column.max()!, high[j] * 1.001, "feature \(j)")
        }
        XCTAssertGreaterThan(stride(from: 29, to: samples.count, by: 30).map { samples[$0] }.min()!, 100, "feature 29 is not in data units")
        // eval applies the checkpoint's normalization: its loss equals the run's last test loss.
        let e = try Launcher.run(["eval", "--checkpoint", checkpoint, "--json"])
        XCTAssertEqual(e.status, 0, e.stderr)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(try XCTUnwrap(report["loss"] as? Double), try XCTUnwrap(r.summary?["test_loss"] as? Double), accuracy: 1e-9)
    }
}
