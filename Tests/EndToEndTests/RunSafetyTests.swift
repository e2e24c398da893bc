// A run never loses or confuses work, never reports garbage as success, and its record reads like
// the straight run's after a stop and a resume: through the real executable.
import Foundation
import Storage
import Training
import XCTest

final class RunSafetyTests: XCTestCase {
    func train(_ dir: URL, _ extra: [String], np: Int = 1, timeout: Double = 120,
               onStart: ((Process) -> Void)? = nil) throws -> LaunchResult {
        try Launcher.run(smallRun + ["--run-dir", dir.path, "--threads", "1", "--set", "train.checkpoint_every=10"] + extra,
                         mpi: np > 1 ? Launcher.mpirun(np) : nil, timeout: timeout, onStart: onStart)
    }

    func checkpointNames(_ dir: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("checkpoints").path).sorted()
    }

    /// The JSON objects of a run directory's metrics.jsonl.
    func records(_ dir: URL) throws -> [[String: Any]] {
        try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").map {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    /// A row of docs/faults.md (see FaultTests), the run directory shown as RUN.
    func recordRow(_ title: String, _ arguments: String, _ r: LaunchResult, _ dir: URL) {
        FaultTests.record(title, [arguments], LaunchResult(status: r.status, stdout: r.stdout,
                                                          stderr: r.stderr.replacingOccurrences(of: dir.path, with: "RUN"),
                                                          seconds: r.seconds, timedOut: r.timedOut))
    }

    func testResumeNeverRefusesAnotherRunsDirectoryAndArchivingKeepsEverything() throws {
        let dir = Launcher.temporaryDirectory("never")
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertEqual(try train(dir, ["--set", "train.max_steps=30"]).status, 0)
        let old = try checkpointNames(dir)
        XCTAssertEqual(old, ["step-000000010.h5", "step-000000020.h5", "step-000000030.h5"])

        let refused = try train(dir, ["--set", "train.max_steps=10", "--resume", "never"], np: 2)
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("already holds checkpoints") && refused.stderr.contains("--archive-previous")
                      && refused.stderr.contains("another --run-dir"), refused.stderr)
        XCTAssertEqual(try checkpointNames(dir), old, "a refused start touched the checkpoints")
        recordRow("--resume never where a run's checkpoints are", "--resume never (run directory of a 30-step run)", refused, dir)

        // The shorter new run, after moving the longer one aside: its checkpoints survive rotation.
        let fresh = try train(dir, ["--set", "train.max_steps=10", "--set", "train.keep_checkpoints=1",
                                    "--resume", "never", "--archive-previous"])
        XCTAssertEqual(fresh.status, 0, fresh.stderr)
        let last = try XCTUnwrap(fresh.summary?["checkpoint"] as? String)
        XCTAssertTrue(FileManager.default.fileExists(atPath: last), "the summary names \(last), which does not exist")
        XCTAssertEqual(try checkpointNames(dir), ["step-000000010.h5"])
        let previous = try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("previous").path)
        XCTAssertEqual(previous.count, 1)
        let archived = dir.appendingPathComponent("previous/\(previous[0])")
        XCTAssertEqual(try checkpointNames(archived), old, "archiving lost checkpoints")
        XCTAssertTrue(FileManager.default.fileExists(atPath: archived.appendingPathComponent("metrics.jsonl").path))
        let newID = try Checkpoint(path: last).record.runID
        XCTAssertNotEqual(newID, try Checkpoint(path: archived.appendingPathComponent("checkpoints/step-000000030.h5").path).record.runID)
        XCTAssertTrue(try records(dir).allSatisfy { $0["run_id"] as? String == newID }, "metrics.jsonl mixes runs")

        // --resume auto continues the new run, not the archived longer one.
        let resumed = try train(dir, ["--set", "train.max_steps=20"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resuming from \(last) at step 10 (run \(newID))"), resumed.stdout)
    }

    func testRotationOnlyRemovesTheCurrentRunsCheckpointsAndMixedDirectoriesAreRefused() throws {
        let a = Launcher.temporaryDirectory("rot-a"), b = Launcher.temporaryDirectory("rot-b")
        defer { for d in [a, b] { try? FileManager.default.removeItem(at: d) } }
        XCTAssertEqual(try train(a, ["--set", "train.max_steps=30"]).status, 0)
        XCTAssertEqual(try train(b, ["--set", "train.max_steps=20"]).status, 0)
        let foreign = b.appendingPathComponent("checkpoints/step-000000050.h5")
        try FileManager.default.copyItem(at: a.appendingPathComponent("checkpoints/step-000000030.h5"), to: foreign)
        let own = b.appendingPathComponent("checkpoints/step-000000020.h5").path
        let runB = try Checkpoint(path: own).record.runID

        CheckpointDirectory(runDirectory: b.path).prune(keep: 1, runID: runB)
        XCTAssertEqual(try checkpointNames(b), ["step-000000020.h5", "step-000000050.h5"],
                       "rotation must drop run B's oldest and never the other run's newer checkpoint")

        let auto = try train(b, ["--set", "train.max_steps=60"], np: 2)
        XCTAssertEqual(auto.status, 1, auto.stdout)
        XCTAssertTrue(auto.stderr.contains("holds checkpoints of 2 runs"), auto.stderr)
        recordRow("checkpoints of two runs in one run directory", "(another run's checkpoint copied in)", auto, b)
        let explicit = try train(b, ["--set", "train.max_steps=60", "--resume", own])
        XCTAssertEqual(explicit.status, 1, explicit.stdout)
        XCTAssertTrue(explicit.stderr.contains("holds checkpoints of another run"), explicit.stderr)
        XCTAssertEqual(try checkpointNames(b), ["step-000000020.h5", "step-000000050.h5"])
    }

    func testResumeAcceptsHyperParametersWithALogLineAndNamesTheArchitectureKeysThatDiffer() throws {
        let dir = Launcher.temporaryDirectory("changed")
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertEqual(try train(dir, ["--set", "train.max_steps=10"]).status, 0)
        let changed = try train(dir, ["--set", "train.max_steps=20", "--set", "model.kl_weight=0.5", "--set", "train.lr=0.001"], np: 2)
        XCTAssertEqual(changed.status, 0, changed.stderr)
        XCTAssertTrue(changed.stdout.contains("settings changed since that checkpoint: model.kl_weight 1.0 → 0.5, train.lr 0.002 → 0.001, train.max_steps 10 → 20"),
                      changed.stdout)
        let refused = try train(dir, ["--set", "train.max_steps=30", "--set", "model.latent=6", "--set", "model.kl_weight=0.5",
                                      "--set", "train.lr=0.001"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("(model.latent: 4 in the checkpoint, 6 now); these must match"), refused.stderr)
        recordRow("resume with another architecture", "--set model.latent=6 (checkpoint: 4)", refused, dir)
    }

    func testARunKilledAndResumedLeavesTheStraightRunsRecord() throws {
        // Epoch ends (46 steps of 32 rows) are the only checkpoints; logging every 5 steps, so the
        // resumed window starts inside a logging window.
        let settings = ["--set", "train.max_steps=200", "--set", "train.checkpoint_every=1000", "--set", "train.log_every=5"]
        let straightDir = Launcher.temporaryDirectory("record-straight"), dir = Launcher.temporaryDirectory("record")
        defer { for d in [straightDir, dir] { try? FileManager.default.removeItem(at: d) } }
        XCTAssertEqual(try train(straightDir, settings).status, 0)
        let killed = try train(dir, settings) { process in
            DispatchQueue.global().async {
                // Past the step-92 checkpoint: 18 train lines and 2 test lines, then two more lines.
                ResumeTests.waitForProgress(in: dir, records: 22)
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            }
        }
        XCTAssertEqual(killed.status, SIGKILL, "the run was not killed mid-way (it ended with \(killed.status))")
        let resumed = try train(dir, settings)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resuming from"), resumed.stdout)

        func key(_ r: [String: Any]) -> String {
            ["event", "step", "epoch", "loss", "recon", "kl", "mse_per_feature"].map { "\(r[$0] ?? "-")" }.joined(separator: " ")
        }
        let straight = try records(straightDir), record = try records(dir)
        XCTAssertEqual(record.map(key), straight.map(key), "the resumed run's record differs from the straight run's")
        let seconds = record.compactMap { $0["seconds"] as? Double }
        XCTAssertEqual(seconds, seconds.sorted(), "seconds went back after the resume")
        XCTAssertEqual(Set(record.compactMap { $0["run_id"] as? String }).count, 1)
    }

    func testCtrlCWithoutMPIRunCheckpointsAndExits75() throws {
        let dir = Launcher.temporaryDirectory("sigint")
        defer { try? FileManager.default.removeItem(at: dir) }
        let settings = ["--set", "train.max_steps=600", "--set", "train.checkpoint_every=1000"]
        let stopped = try train(dir, settings) { process in
            DispatchQueue.global().async {
                ResumeTests.waitForProgress(in: dir, records: 2)
                if process.isRunning { kill(process.processIdentifier, SIGINT) }
            }
        }
        XCTAssertEqual(stopped.status, 75, stopped.stdout + stopped.stderr)
        XCTAssertEqual(stopped.summary?["status"] as? String, "preempted")
        XCTAssertTrue(stopped.stdout.contains("stop signal received; checkpoint written"), stopped.stdout)
        let checkpoint = try XCTUnwrap(stopped.summary?["checkpoint"] as? String)
        XCTAssertTrue(FileManager.default.fileExists(atPath: checkpoint))
        recordRow("Ctrl-C (SIGINT) without mpirun", "(SIGINT to aedist train mid-run, np = 1)",
                  LaunchResult(status: stopped.status, stdout: "", stderr: stopped.stdout.split(separator: "\n").first { $0.contains("stop signal") }.map(String.init) ?? "",
                               seconds: stopped.seconds, timedOut: false), dir)
    }

    func testProgressUnderMPIRunIsPlainLinesAndTheSummaryEpochIsThePrintedOne() throws {
        let dir = Launcher.temporaryDirectory("plain")
        defer { try? FileManager.default.removeItem(at: dir) }
        // mpirun gives the rank a pseudo-terminal although this test reads a pipe.
        let r = try Launcher.run(smallRun + ["--run-dir", dir.path, "--threads", "1", "--set", "train.max_steps=10",
                                             "--set", "train.log_every=2"], mpi: Launcher.mpirun(1))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stdout.contains("\r") || r.stdout.contains("\u{1B}"), "terminal control in redirected output: \(r.stdout.debugDescription)")
        XCTAssertEqual(r.stdout.split(separator: "\n").filter { $0.hasPrefix("step ") }.count, 5, r.stdout)
        // Ten steps into the first epoch of 46.
        XCTAssertTrue(r.stdout.contains("epoch 1: test loss"), r.stdout)
        XCTAssertEqual(r.summary?["epoch"] as? Int, 1)
    }

    func testAutomaticScaleFollowsTheDataAndTravelsWithTheCheckpoint() throws {
        let dir = Launcher.temporaryDirectory("scale")
        defer { try? FileManager.default.removeItem(at: dir) }
        // The shipped digits (uint8 holding 0..16) as int16: the same values in another type.
        let digits = Launcher.packageRoot.appendingPathComponent("data/digits.h5").path
        let wide = dir.appendingPathComponent("digits16.h5").path
        do {
            let source = try HDF5File(readingAt: digits)
            let file = try HDF5File(creatingAt: wide)
            for split in ["train", "test"] {
                let shape = try source.shape(ofDataset: "/\(split)/images")
                try file.write(try source.readFloats("/\(split)/images").map { Int16($0) }, shape: shape, to: "/\(split)/images")
            }
            source.close(); file.close()
        }
        var checkpoints: [String] = []
        for (name, path) in [("u8", digits), ("i16", wide)] {
            // No config file: every default, data.scale auto.
            let r = try Launcher.run(["train", "--set", "data.path=\(path)", "--set", "model.encoder=[24]", "--set", "train.max_steps=5",
                                      "--run-dir", dir.appendingPathComponent(name).path, "--threads", "1"], mpi: Launcher.mpirun(2))
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains("scale 0.0625"), r.stdout)
            let checkpoint = try XCTUnwrap(r.summary?["checkpoint"] as? String)
            XCTAssertEqual(try Checkpoint(path: checkpoint).config.data.scale, 0.0625)
            checkpoints.append(checkpoint)
        }
        XCTAssertTrue(bitwiseEqual(try modelTensors(checkpoints[0]), try modelTensors(checkpoints[1])),
                      "the same values stored as uint8 and int16 trained differently")
        // Commands that read data take the checkpoint's scale: the same loss on either file.
        var losses: [String] = []
        for path in [digits, wide] {
            let e = try Launcher.run(["eval", "--checkpoint", checkpoints[0], "--data", path, "--json"])
            XCTAssertEqual(e.status, 0, e.stderr)
            losses.append(String(e.stdout.split(separator: ",").first(where: { $0.contains("\"loss\"") }) ?? "none"))
        }
        XCTAssertEqual(losses[0], losses[1])
        let pca = dir.appendingPathComponent("pca.h5").path
        let p = try Launcher.run(["pca", "--data", "data/digits.h5", "--components", "4", "--out", pca])
        XCTAssertEqual(p.status, 0, p.stderr)
        let file = try HDF5File(readingAt: pca)
        defer { file.close() }
        XCTAssertEqual(try file.doubleAttribute("scale"), 0.0625)
    }

    func testNoUserFacingTextPointsOutsideTheRepository() throws {
        let root = Launcher.packageRoot
        var offenders: [String] = []
        let enumerator = FileManager.default.enumerator(atPath: root.path)
        while let relative = enumerator?.nextObject() as? String {
            let top = relative.split(separator: "/").first.map(String.init) ?? ""
            guard ["README.md", "BENCHMARKS.md", "docs", "configs", "Sources", "cluster"].contains(top), !relative.hasPrefix("docs/device"),
                  ["md", "yaml", "swift", "sh", "sbatch", "py"].contains(URL(fileURLWithPath: relative).pathExtension),
                  let text = try? String(contentsOfFile: root.appendingPathComponent(relative).path, encoding: .utf8) else { continue }
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
            where ["../shared", "/work/", "SPEC.md", "RESULTS.md", "vae_torch", "peers/"].contains(where: line.contains) {
                offenders.append("\(relative):\(n + 1): \(line.prefix(100))")
            }
        }
        XCTAssertEqual(offenders, [], "user-facing text that points at files users do not have")
    }
}
