// The readers take arbitrary bytes without crashing: random, truncated and bit-flipped datasets,
// checkpoints and configuration files give a clean error (exit 1 with a message), never a signal.
import Foundation
import Training
import XCTest

final class ReaderFuzzTests: XCTestCase {
    /// Deterministic variants of `original`: truncations, bit flips, byte runs overwritten, random files.
    func variants(of original: Data, count: Int, seed: UInt64) -> [Data] {
        var state = seed
        func next() -> Int {   // SplitMix64: a fixed sequence, so a failure reproduces
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int(truncatingIfNeeded: (z ^ (z >> 31)) >> 1)
        }
        var out: [Data] = []
        for i in 0..<count {
            var d = original
            switch i % 4 {
            case 0: d = d.prefix(next() % max(d.count, 1))
            case 1: for _ in 0..<(1 + next() % 4) { let at = next() % d.count; d[at] ^= UInt8(1 << (next() % 8)) }
            case 2:
                let at = next() % d.count, n = min(1 + next() % 64, d.count - at)
                for j in 0..<n { d[at + j] = UInt8(truncatingIfNeeded: next()) }
            default: d = Data((0..<(next() % 4096)).map { _ in UInt8(truncatingIfNeeded: next()) })
            }
            out.append(d)
        }
        return out
    }

    func assertCleanFailure(_ arguments: [String], _ what: String) throws {
        let r = try Launcher.run(arguments, timeout: 30)
        XCTAssertFalse(r.timedOut, "\(what): hung")
        // 0 (the damage missed anything read) or 1 with a message; a crash shows as another status.
        let clean = r.status == 0 || (r.status == 1 && r.stderr.contains("aedist: error:"))
        if !clean, let file = arguments.last(where: { $0.hasSuffix(".h5") }) {
            // Keep the file that broke a reader, for reproduction.
            try? FileManager.default.copyItem(atPath: file, toPath: "/tmp/aedist-fuzz-failure-\(UUID().uuidString.prefix(8)).h5")
        }
        XCTAssertTrue(clean, "\(what): status \(r.status), stderr: \(r.stderr.prefix(400))")
    }

    func testDamagedDatasetsAndCheckpointsGiveCleanErrors() throws {
        let dir = Launcher.temporaryDirectory("fuzz")
        defer { try? FileManager.default.removeItem(at: dir) }
        let trained = try Launcher.run(smallRun + ["--set", "train.max_steps=2", "--run-dir", dir.appendingPathComponent("run").path,
                                                   "--threads", "1"])
        XCTAssertEqual(trained.status, 0, trained.stderr)
        let checkpoint = try XCTUnwrap(trained.summary?["checkpoint"] as? String)
        let digits = try Data(contentsOf: Launcher.packageRoot.appendingPathComponent("data/digits.h5"))
        let saved = try Data(contentsOf: URL(fileURLWithPath: checkpoint))
        for (i, bytes) in variants(of: digits, count: 24, seed: 1).enumerated() {
            let path = dir.appendingPathComponent("data-\(i).h5").path
            try bytes.write(to: URL(fileURLWithPath: path))
            try assertCleanFailure(["inspect", path], "inspect data variant \(i)")
            try assertCleanFailure(["eval", "--checkpoint", checkpoint, "--data", path], "eval on data variant \(i)")
        }
        for (i, bytes) in variants(of: saved, count: 24, seed: 2).enumerated() {
            let path = dir.appendingPathComponent("checkpoint-\(i).h5").path
            try bytes.write(to: URL(fileURLWithPath: path))
            try assertCleanFailure(["inspect", path], "inspect checkpoint variant \(i)")
            try assertCleanFailure(["eval", "--checkpoint", path], "eval of checkpoint variant \(i)")
        }
    }

    func testDamagedConfigurationsGiveCleanErrors() throws {
        let original = try Data(contentsOf: Launcher.packageRoot.appendingPathComponent("configs/digits-vae.yaml"))
        let dir = Launcher.temporaryDirectory("fuzzcfg")
        defer { try? FileManager.default.removeItem(at: dir) }
        var failures = 0
        for (i, bytes) in variants(of: original, count: 400, seed: 3).enumerated() {
            let path = dir.appendingPathComponent("c\(i).yaml").path
            try bytes.write(to: URL(fileURLWithPath: path))
            do { _ = try RunConfig.load(file: path) } catch let error as ConfigError {
                failures += 1
                XCTAssertTrue(error.description.contains(path), "variant \(i): \(error)")
            }
        }
        XCTAssertGreaterThan(failures, 200, "the damaged files were mostly accepted: the test is not testing")
    }
}
