// `aedist bench gemm|step`: throughput figures as one JSON line (BENCHMARKS.md).
import ArgumentParser
import Communication
import Foundation
import Training

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure matrix-product throughput or the training step; prints one JSON object.",
        subcommands: [BenchGemm.self, BenchStep.self])
}

func printJSON(_ object: [String: Any]) {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
    print(String(decoding: data, as: UTF8.self))
    fflush(stdout)
}

struct BenchGemm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm", abstract: "C = op(A)·op(B): GFLOP/s (median, min, max of several timed samples).")

    @Option(help: "Rows of op(A) and C.") var m: Int = 512
    @Option(help: "Columns of op(B) and C.") var n: Int = 512
    @Option(help: "The reduction dimension.") var k: Int = 512
    @Option(help: "Compute threads.") var threads: Int = 1
    @Flag(help: "A is stored k×m.") var transposeA = false
    @Flag(help: "B is stored n×k.") var transposeB = false
    @Option(help: "Reduction chunk (the weight-gradient form: k cut into chunks combined by the pairwise tree); 0: plain.")
    var chunk: Int = 0
    @Option(help: "Timed samples.") var samples: Int = 7
    @Option(help: "Seconds per sample (about).") var seconds: Double = 0.2

    func validate() throws {
        if m < 1 || n < 1 || k < 1 { throw ValidationError("--m, --n and --k must be at least 1") }
        if threads < 1 { throw ValidationError("--threads must be at least 1") }
        if chunk < 0 || (chunk > 0 && k % chunk != 0) { throw ValidationError("--chunk must divide --k") }
        if samples < 1 { throw ValidationError("--samples must be at least 1") }
    }

    func run() throws {
        var b = GemmBenchmark()
        b.m = m; b.n = n; b.k = k; b.threads = threads
        b.transposeA = transposeA; b.transposeB = transposeB; b.reductionChunk = chunk
        b.samples = samples; b.sampleSeconds = seconds
        printJSON(b.run())
    }
}

struct BenchStep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step",
        abstract: "Training steps of a configuration: samples/s and the per-step split (compute, allreduce, data). Works under mpirun.")

    @Option(help: "Run configuration (YAML).") var config: String?
    @Option(name: .customLong("set"), help: ArgumentHelp("Override a configuration key (repeatable).", valueName: "KEY=VALUE"))
    var overrides: [String] = []
    @Option(help: "Compute threads per rank (default: this rank's share of its cores).") var threads: Int?
    @Option(help: "Timed steps.") var steps: Int = 100
    @Option(help: "Untimed warm-up steps.") var warmup: Int = 10
    @Option(help: "Rows per rank (weak scaling): the global batch becomes ranks × this. Default: train.batch_size / ranks.")
    var perRankBatch: Int?
    @Option(help: "tree: the exact, rank-count-independent reduction (train.exact_reduction: true); library: MPI_Allreduce and one chain per rank (false). Default: the configuration's.")
    var reduction: String?
    @Option(help: "on: send each layer's gradients during backward (train.overlap_reduction: true); off: one blocking reduction after backward. Default: the configuration's.")
    var overlap: String?
    @Option(help: "on: each rank updates its shard of the parameters and the ranks all-gather them (with --overlap on, np > 1); off: every rank updates everything. Default: on unless train.clip_grad_norm is set.")
    var shardUpdate: String?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if steps < 1 || warmup < 0 { throw ValidationError("--steps must be at least 1 and --warmup at least 0") }
        if let perRankBatch, perRankBatch < 1 { throw ValidationError("--per-rank-batch must be at least 1") }
        if let reduction, reduction != "tree" && reduction != "library" { throw ValidationError("--reduction must be tree or library, got '\(reduction)'") }
        for (flag, value) in [("--overlap", overlap), ("--shard-update", shardUpdate)] {
            if let value, value != "on" && value != "off" { throw ValidationError("\(flag) must be on or off, got '\(value)'") }
        }
    }

    func run() throws {
        let (config, overrides, threads, steps, warmup, perRank) =
            (self.config, self.overrides, self.threads, self.steps, self.warmup, self.perRankBatch)
        let exact = reduction.map { $0 == "tree" }, overlapped = overlap.map { $0 == "on" }
        let sharded = shardUpdate.map { $0 == "on" }
        runParallel { communicator in
            let resolved = try agreeing(communicator) { try RunConfig.load(file: config, overrides: overrides) }
            var bench = StepBenchmark(config: resolved)
            bench.threads = threads; bench.steps = steps; bench.warmup = warmup; bench.perRankBatch = perRank
            bench.exactReduction = exact
            bench.overlapReduction = overlapped
            bench.shardUpdate = sharded
            let result = try bench.run(communicator: communicator)
            if communicator.isRoot { printJSON(result) }
            return 0
        }
    }
}
