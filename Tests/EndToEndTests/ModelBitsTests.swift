// The bits of every kind of model stay what they were when the model was rewritten around a layer
// type: each case trains a short run (or fits PCA, encodes, samples) and hashes what it wrote. The
// digests were recorded with the dense-only model of commit 747c1f4; a change to any of them means
// the same configuration now trains to other parameters. AEDIST_RECORD_MODEL_BITS=1 prints them.
import Foundation
import XCTest
import Storage

final class ModelBitsTests: XCTestCase {
    /// FNV-1a over every dataset of `groups` (sorted by name): its name, then its values' bits.
    static func digest(_ path: String, groups: [String]) throws -> String {
        let file = try HDF5File(readingAt: path)
        defer { file.close() }
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        for group in groups {
            let names = group == "/" ? try file.children(ofGroup: "/").filter { file.kind(of: "/" + $0) == .dataset }
                                      : try file.children(ofGroup: group)
            for name in names.sorted() {
                let full = group == "/" ? "/" + name : group + "/" + name
                for b in full.utf8 { mix(b) }
                for v in try file.readFloats(full) { withUnsafeBytes(of: v.bitPattern.littleEndian) { $0.forEach(mix) } }
            }
        }
        return String(h, radix: 16)
    }

    let digits = Launcher.packageRoot.appendingPathComponent("data/digits.h5").path
    func config(_ name: String) -> String { Launcher.packageRoot.appendingPathComponent("configs/\(name).yaml").path }

    /// Trains `config` with `settings` for 40 steps at `np` ranks x 2 threads; the last checkpoint.
    func train(_ config: String, _ settings: [String], np: Int = 1, in dir: URL) throws -> String {
        let run = dir.appendingPathComponent("run")
        let r = try Launcher.run(["train", "--config", self.config(config), "--set", "data.path=\(digits)",
                                  "--set", "train.max_steps=40", "--set", "train.checkpoint_every=40",
                                  "--threads", "2", "--run-dir", run.path] + settings.flatMap { ["--set", $0] },
                                 mpi: np > 1 ? Launcher.mpirun(np) : nil, timeout: 240)
        XCTAssertEqual(r.status, 0, r.stderr)
        return run.appendingPathComponent("checkpoints/step-000000040.h5").path
    }

    func check(_ name: String, _ actual: String, _ expected: String) {
        if ProcessInfo.processInfo.environment["AEDIST_RECORD_MODEL_BITS"] != nil { print("model bits: \"\(name)\": \"\(actual)\",") }
        XCTAssertEqual(actual, expected, "\(name): other bits than the dense model of 747c1f4")
    }

    static let expected: [String: String] = [
        "vae": "c9f3c904ecf02de0",
        "vae-np2": "c9f3c904ecf02de0",
        "ae-gaussian": "b2aa886ca200a7c3",
        "ae-sparse-kl-l1": "3faaa5ebef8153f8",
        "vae-denoise-l1-kl-schedule": "e9b87f77f2e29327",
        "ae-no-hidden-sgd-noise": "9a4c95ea16b404c2",
        "pca-encode": "460398df065700c",
        "vae-encode": "dd78f566234c10e5",
        "vae-sample": "ae72c8977d97356d",
        "ae-interpolate": "ddfacfc85dddf734",
    ]

    func testEveryModelKindKeepsItsBits() throws {
        let dir = Launcher.temporaryDirectory("model-bits")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cases: [(String, String, [String], Int)] = [
            ("vae", "digits-vae", [], 1),
            ("vae-np2", "digits-vae", [], 2),
            ("ae-gaussian", "digits-ae", ["model.output=gaussian", "model.activation=tanh"], 1),
            ("ae-sparse-kl-l1", "digits-ae", ["model.sparsity.target=0.1", "model.sparsity.kl_weight=0.5", "model.sparsity.l1=0.01"], 1),
            ("vae-denoise-l1-kl-schedule", "digits-vae", ["model.denoise.noise=masking", "model.denoise.level=0.2", "model.sparsity.l1=0.01",
                                                        "model.kl_schedule.kind=linear", "model.kl_schedule.warmup_steps=30", "model.activation=leaky_relu"], 1),
            ("ae-no-hidden-sgd-noise", "digits-ae", ["model.encoder=[]", "train.optimizer=sgd", "train.lr=0.05",
                                                     "model.denoise.noise=gaussian", "model.denoise.level=0.1"], 1),
        ]
        var checkpoints: [String: String] = [:]
        for (name, config, settings, np) in cases {
            let path = try train(config, settings, np: np, in: dir.appendingPathComponent(name))
            checkpoints[name] = path
            check(name, try Self.digest(path, groups: ["/model"]), Self.expected[name]!)
        }
        let pca = dir.appendingPathComponent("pca.h5").path
        let p = try Launcher.run(["pca", "--data", digits, "--components", "5", "--out", pca, "--threads", "2"])
        XCTAssertEqual(p.status, 0, p.stderr)
        let pcaCodes = dir.appendingPathComponent("pca-codes.h5").path
        let pe = try Launcher.run(["encode", "--checkpoint", pca, "--out", pcaCodes, "--threads", "2"])
        XCTAssertEqual(pe.status, 0, pe.stderr)
        check("pca-encode", try Self.digest(pcaCodes, groups: ["/"]), Self.expected["pca-encode"]!)

        let codes = dir.appendingPathComponent("codes.h5").path
        let e = try Launcher.run(["encode", "--checkpoint", checkpoints["vae"]!, "--out", codes, "--threads", "2"])
        XCTAssertEqual(e.status, 0, e.stderr)
        check("vae-encode", try Self.digest(codes, groups: ["/"]), Self.expected["vae-encode"]!)
        let samples = dir.appendingPathComponent("samples.h5").path
        let s = try Launcher.run(["sample", "--checkpoint", checkpoints["vae"]!, "--out", samples, "--count", "16", "--threads", "2"])
        XCTAssertEqual(s.status, 0, s.stderr)
        check("vae-sample", try Self.digest(samples, groups: ["/"]), Self.expected["vae-sample"]!)
        let path = dir.appendingPathComponent("path.h5").path
        let i = try Launcher.run(["interpolate", "--checkpoint", checkpoints["ae-gaussian"]!, "--out", path, "--pairs", "2", "--steps", "5", "--threads", "2"])
        XCTAssertEqual(i.status, 0, i.stderr)
        check("ae-interpolate", try Self.digest(path, groups: ["/"]), Self.expected["ae-interpolate"]!)
    }
}
