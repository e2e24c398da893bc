// Data-parallel training through real mpirun launches: identical results at any rank or thread
// count, over shared memory and TCP, and clear errors that end every rank.
import Foundation
import Kernels
import Storage
import XCTest

/// Every /model dataset of a checkpoint, by name.
func modelTensors(_ checkpoint: String) throws -> [String: [Float]] {
    let file = try HDF5File(readingAt: checkpoint)
    defer { file.close() }
    var out: [String: [Float]] = [:]
    for name in try file.children(ofGroup: "/model") { out[name] = try file.readFloats("/model/\(name)") }
    return out
}

/// The loss values logged in a run directory's metrics.jsonl, by event kind.
func loggedLosses(_ runDirectory: URL, event: String = "train") throws -> [Double] {
    let text = try String(contentsOf: runDirectory.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
    return text.split(separator: "\n").compactMap { line in
        guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              o["event"] as? String == event else { return nil }
        return o["loss"] as? Double
    }
}

func bitwiseEqual(_ a: [String: [Float]], _ b: [String: [Float]]) -> Bool {
    guard a.keys.sorted() == b.keys.sorted() else { return false }
    return a.allSatisfy { name, values in
        guard let other = b[name], other.count == values.count else { return false }
        return zip(values, other).allSatisfy { $0.bitPattern == $1.bitPattern }
    }
}

final class RankInvarianceTests: XCTestCase {
    /// Trains 12 steps and returns (parameters, logged losses, summary).
    func train(np: Int, threads: Int, extraMPI: [String] = [], settings: [String] = [],
               environment: [String: String] = [:], name: String) throws -> ([String: [Float]], [Double], LaunchResult) {
        let dir = Launcher.temporaryDirectory(name)
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try Launcher.run(smallRun + settings.flatMap { ["--set", $0] }
                                      + ["--set", "train.max_steps=12", "--run-dir", dir.path,
                                         "--threads", "\(threads)", "--resume", "never"],
                                      mpi: Launcher.mpirun(np, extra: extraMPI), timeout: 180, environment: environment)
        XCTAssertFalse(result.timedOut, "np=\(np) timed out")
        XCTAssertEqual(result.status, 0, "np=\(np): \(result.stderr)")
        let summary = try XCTUnwrap(result.summary, "no summary line: \(result.stdout)")
        XCTAssertEqual(summary["world_size"] as? Int, np)
        let checkpoint = try XCTUnwrap(summary["checkpoint"] as? String)
        return (try modelTensors(checkpoint), try loggedLosses(dir), result)
    }

    func testParametersAndLossesIdenticalAtOneTwoAndFourRanks() throws {
        let (p1, l1, _) = try train(np: 1, threads: 1, name: "np1")
        let (p2, l2, _) = try train(np: 2, threads: 1, name: "np2")
        let (p4, l4, _) = try train(np: 4, threads: 1, name: "np4")
        XCTAssertFalse(p1.isEmpty)
        XCTAssertTrue(bitwiseEqual(p1, p2), "np=2 parameters differ from np=1")
        XCTAssertTrue(bitwiseEqual(p1, p4), "np=4 parameters differ from np=1")
        XCTAssertEqual(l1.count, 3)
        XCTAssertEqual(l1, l2)
        XCTAssertEqual(l1, l4)
    }

    func testThreadCountDoesNotChangeResults() throws {
        let (a, la, _) = try train(np: 1, threads: 1, name: "t1")
        let (b, lb, _) = try train(np: 1, threads: 2, name: "t2")
        let (c, lc, _) = try train(np: 2, threads: 2, name: "np2t2")
        XCTAssertTrue(bitwiseEqual(a, b), "threads 2 differ from threads 1")
        XCTAssertTrue(bitwiseEqual(a, c), "2 ranks x 2 threads differ from 1 x 1")
        XCTAssertEqual(la, lb); XCTAssertEqual(la, lc)
    }

    func testEveryKernelPathTrainsTheSameBits() throws {
        // AEDIST_KERNELS picks the micro-kernels; every path this CPU has must train the same bits.
        var reference: ([String: [Float]], [Double])?
        for set in InstructionSet.supported {
            let (p, l, result) = try train(np: 2, threads: 2, environment: [InstructionSet.environmentKey: set.rawValue],
                                           name: "kernels-\(set)")
            XCTAssertTrue((result.stdout + result.stderr).contains("\(set.rawValue) kernels"), "\(set): \(result.stderr)")
            if let (p0, l0) = reference {
                XCTAssertTrue(bitwiseEqual(p0, p), "\(set) parameters differ from \(InstructionSet.supported[0])")
                XCTAssertEqual(l0, l, "\(set) losses")
            } else {
                reference = (p, l)
            }
        }
    }

    func testLibraryReductionTrainsTheSameModelUpToRounding() throws {
        // train.exact_reduction: false trades bitwise rank independence for speed (BENCHMARKS.md);
        // it must still train the same model, and it lifts the power-of-two micro-batch rule.
        let dir1 = Launcher.temporaryDirectory("fast1"), dir2 = Launcher.temporaryDirectory("fast2")
        defer { for d in [dir1, dir2] { try? FileManager.default.removeItem(at: d) } }
        var losses: [[Double]] = []
        for (np, dir) in [(1, dir1), (2, dir2)] {
            let r = try Launcher.run(smallRun + ["--set", "train.max_steps=12", "--set", "train.exact_reduction=false",
                                                 "--set", "train.batch_size=48", "--set", "train.micro_batch=8",
                                                 "--run-dir", dir.path, "--threads", "1", "--resume", "never"],
                                     mpi: Launcher.mpirun(np), timeout: 120)
            XCTAssertEqual(r.status, 0, r.stderr)
            losses.append(try loggedLosses(dir))
        }
        XCTAssertEqual(losses[0].count, 3)
        for (a, b) in zip(losses[0], losses[1]) { XCTAssertEqual(a, b, accuracy: 1e-3 * abs(a)) }
    }

    func testOverlappedReductionGivesTheSameBitsAsTheBlockingOne() throws {
        // train.overlap_reduction sends each layer's gradients during backward (the last layer's in
        // row blocks); the sums must be bitwise those of the blocking reduction after backward. Each
        // rank gets 2 micro-batches; the last layer (24 units) is cut in 4 row blocks of 6.
        for (np, batch) in [(2, 32), (3, 48)] {
            let settings = ["train.batch_size=\(batch)", "train.micro_batch=8"]
            let (blocking, blockingLosses, _) = try train(np: np, threads: 1, settings: settings + ["train.overlap_reduction=false"],
                                                          name: "blocking\(np)")
            let (overlapped, overlappedLosses, _) = try train(np: np, threads: 1, settings: settings + ["train.overlap_reduction=true"],
                                                              name: "overlap\(np)")
            XCTAssertFalse(blocking.isEmpty)
            XCTAssertTrue(bitwiseEqual(blocking, overlapped), "np=\(np): overlapped reduction differs from the blocking one")
            XCTAssertEqual(blockingLosses.count, 3)
            XCTAssertEqual(blockingLosses, overlappedLosses, "np=\(np)")
        }
        // The library's reduction (MPI_Iallreduce per bucket): at 2 ranks each element is one addition,
        // so it too must match its blocking form bit for bit.
        let library = ["train.exact_reduction=false"]
        let (a, la, _) = try train(np: 2, threads: 1, settings: library + ["train.overlap_reduction=false"], name: "libblocking")
        let (b, lb, _) = try train(np: 2, threads: 1, settings: library + ["train.overlap_reduction=true"], name: "liboverlap")
        XCTAssertTrue(bitwiseEqual(a, b), "np=2 library reduction: overlapped differs from blocking")
        XCTAssertEqual(la, lb)
    }

    func testBenchStepReportsWhichReductionRan() throws {
        // The switches reach the step: only the overlapped reduction spends time in progress calls, and
        // only the sharded update (overlapped, np > 1) all-gathers parameters after it (`ms_allreduce`).
        var finalLoss: [String: Double] = [:]
        for (overlap, shard, np) in [("on", "on", 2), ("on", "off", 2), ("off", "on", 2), ("on", "on", 1)] {
            let r = try Launcher.run(["bench", "step", "--config", "configs/digits-vae.yaml", "--steps", "3", "--warmup", "1",
                                      "--threads", "1", "--overlap", overlap, "--shard-update", shard],
                                     mpi: Launcher.mpirun(np), timeout: 120)
            XCTAssertEqual(r.status, 0, r.stderr)
            let json = try XCTUnwrap(r.summary, r.stdout)
            XCTAssertEqual(json["overlap"] as? Bool, overlap == "on")
            let sharded = overlap == "on" && shard == "on" && np > 1
            XCTAssertEqual(json["sharded_update"] as? Bool, sharded, "overlap \(overlap) shard \(shard) np \(np)")
            let progress = try XCTUnwrap(json["ms_progress"] as? Double)
            if overlap == "off" { XCTAssertEqual(progress, 0) } else if np > 1 { XCTAssertGreaterThan(progress, 0) }
            finalLoss["\(overlap) \(shard) \(np)"] = json["final_loss"] as? Double
            if np > 1 {
                XCTAssertGreaterThan(try XCTUnwrap(json["ms_exposed_communication"] as? Double), 0)
                let allreduce = try XCTUnwrap(json["ms_allreduce"] as? Double)
                if overlap == "off" || sharded { XCTAssertGreaterThan(allreduce, 0) } else { XCTAssertEqual(allreduce, 0) }
            }
        }
        // The overlapped reduction with and without the sharded update, and the blocking one: same training.
        let sharded = try XCTUnwrap(finalLoss["on on 2"])
        XCTAssertEqual(finalLoss["on off 2"], sharded)
        XCTAssertEqual(finalLoss["off on 2"], sharded)
    }

    func testShardedUpdateGivesTheSameBitsAndFallsBackForClipping() throws {
        // Sharded (each rank updates its segments, then all-gathers parameters) against every rank
        // updating everything, at np = 3 (uneven segments); and clipping, which needs the whole
        // gradient, at np = 2 against np = 1.
        let (sharded, ls, _) = try train(np: 3, threads: 1, settings: ["train.batch_size=48", "train.micro_batch=16"], name: "sharded3")
        let (whole, lw, _) = try train(np: 1, threads: 1, settings: ["train.batch_size=48", "train.micro_batch=16"], name: "whole1")
        XCTAssertTrue(bitwiseEqual(sharded, whole), "np=3 sharded update differs from np=1")
        XCTAssertEqual(ls, lw)
        let clip = ["train.clip_grad_norm=0.5"]
        let (c2, lc2, _) = try train(np: 2, threads: 1, settings: clip, name: "clip2")
        let (c1, lc1, _) = try train(np: 1, threads: 1, settings: clip, name: "clip1")
        XCTAssertTrue(bitwiseEqual(c1, c2), "np=2 with clipping differs from np=1")
        XCTAssertEqual(lc1, lc2)
    }

    func testSharedMemoryAndMessagesGiveTheSameBits() throws {
        // Ranks on one node reduce through shared memory by default (train.shared_memory); MPI messages
        // must train the same bits: np = 2 and np = 3 (uneven segments) with the sharded update, and
        // np = 2 with clipping (every bucket shared in full, every rank updating everything).
        for (np, settings) in [(2, [String]()), (3, ["train.batch_size=48", "train.micro_batch=16"]),
                               (2, ["train.clip_grad_norm=0.5"])] {
            let (shared, ls, rs) = try train(np: np, threads: 1, settings: settings, name: "shm\(np)")
            let (messages, lm, rm) = try train(np: np, threads: 1, settings: settings + ["train.shared_memory=false"],
                                               name: "msg\(np)")
            XCTAssertTrue(rs.stdout.contains("gradients reduced in shared memory"), rs.stdout)
            XCTAssertTrue(rm.stdout.contains("gradients reduced by MPI messages"), rm.stdout)
            XCTAssertFalse(shared.isEmpty)
            XCTAssertTrue(bitwiseEqual(shared, messages), "np=\(np) \(settings): shared memory differs from messages")
            XCTAssertEqual(ls.count, 3)
            XCTAssertEqual(ls, lm, "np=\(np) \(settings)")
        }
        // A node where the shared memory cannot be mapped (Open MPI without its shared-memory window
        // component): every rank falls back to messages, says why, and trains the same bits.
        let (shared, _, _) = try train(np: 2, threads: 1, name: "shm-again")
        let (fallback, _, rf) = try train(np: 2, threads: 1, extraMPI: ["--mca", "osc", "^sm"], name: "shm-fallback")
        XCTAssertTrue(rf.stdout.contains("gradients reduced by MPI messages (shared memory unavailable: MPI_Win_allocate_shared failed"),
                      rf.stdout)
        XCTAssertTrue(bitwiseEqual(shared, fallback), "the fallback to messages trained other parameters")
    }

    func testTCPTransportGivesTheSameResult() throws {
        let (a, _, _) = try train(np: 1, threads: 1, name: "tcp1")
        // Messages, or the gradients would not travel over TCP at all (train.shared_memory).
        let (b, _, result) = try train(np: 2, threads: 1, extraMPI: ["--mca", "btl", "tcp,self"],
                                       settings: ["train.shared_memory=false"], name: "tcp2")
        XCTAssertTrue(bitwiseEqual(a, b), "TCP run differs: \(result.stderr)")
    }

    func testBatchThatDoesNotDivideFailsOnEveryRankWithoutHanging() throws {
        let dir = Launcher.temporaryDirectory("nodivide")
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try Launcher.run(smallRun + ["--set", "train.batch_size=30", "--set", "train.micro_batch=2",
                                                  "--run-dir", dir.path],
                                      mpi: Launcher.mpirun(4), timeout: 60)
        XCTAssertFalse(result.timedOut, "hung")
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("4 ranks cannot split train.batch_size 30 (micro_batch 2): it does not divide evenly by 4. Rank counts that work for this batch: 1, 15;"), result.stderr)
        XCTAssertLessThan(result.seconds, 30)
    }

    func testMicroBatchesPerRankMustBeAPowerOfTwo() throws {
        let result = try Launcher.run(smallRun + ["--set", "train.batch_size=48", "--set", "train.micro_batch=8",
                                                  "--run-dir", Launcher.temporaryDirectory("pow2").path],
                                      mpi: Launcher.mpirun(2), timeout: 60)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("must be a power of two"), result.stderr)
    }

    func testRanksFromAnotherBuildOrWithAnotherConfigurationRefuseToStart() throws {
        let dir = Launcher.temporaryDirectory("mpmd")
        defer { try? FileManager.default.removeItem(at: dir) }
        let args = smallRun + ["--run-dir", dir.appendingPathComponent("run").path, "--set", "train.max_steps=5", "--threads", "1"]
        // MPMD launches: rank 0 from the first part, rank 1 from the second.
        func twoParts(_ first: String, _ firstArgs: [String], _ second: [String]) throws -> LaunchResult {
            try Launcher.run(second, mpi: Launcher.mpirun(1) + [first] + firstArgs + [":", "-np", "1"], timeout: 60)
        }
        let settings = try twoParts(Launcher.executable.path, args, args + ["--set", "train.lr=0.0025"])
        XCTAssertFalse(settings.timedOut, "hung")
        XCTAssertEqual(settings.status, 1, settings.stderr)
        XCTAssertTrue(settings.stderr.contains("rank 1: on host") && settings.stderr.contains("another configuration than rank 0")
                      && settings.stderr.contains("train.lr: 0.0025 here, 0.002 on rank 0"), settings.stderr)
        // The same program with one byte more: what a rebuilt binary on one node's disk looks like.
        var bytes = try Data(contentsOf: Launcher.executable)
        bytes.append(0)
        let other = dir.appendingPathComponent("aedist-other")
        try bytes.write(to: other)
        chmod(other.path, 0o755)
        let build = try twoParts(other.path, args, args)
        XCTAssertFalse(build.timedOut, "hung")
        XCTAssertEqual(build.status, 1, build.stderr)
        XCTAssertTrue(build.stderr.contains("rank 1: on host") && build.stderr.contains("another aedist build than rank 0"), build.stderr)
        XCTAssertNil(build.summary, "a run started")
    }
}

