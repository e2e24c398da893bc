// The command line: one ParsableCommand per subcommand.
import ArgumentParser
import Communication
import Foundation
import Kernels
import Training

@main
struct Aedist: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "aedist",
        abstract: "Data-parallel training of autoencoders and VAEs over MPI, on HDF5 data.",
        discussion: "Every command runs the same with or without mpirun; under `mpirun -np N` the work is split across the ranks and only rank 0 prints and writes.",
        subcommands: [Train.self, Evaluate.self, Inspect.self, PCACommand.self, EncodeCommand.self, ReconstructCommand.self, SampleCommand.self, InterpolateCommand.self, ReportCommand.self, Bench.self])
}

/// Starts MPI, runs `body`, and turns every failure into a message and an exit status on every rank.
func runParallel(_ body: (Communicator) throws -> Int32) -> Never {
    let communicator: Communicator
    do { communicator = try MPICommunicator() } catch {
        FileHandle.standardError.write(Data("aedist: error: \(error)\n".utf8))
        exit(1)
    }
    var code: Int32
    do {
        try agreeing(communicator) { _ = try InstructionSet.chosen() }   // AEDIST_KERNELS
        code = try body(communicator)
    } catch let failure as RunFailure {
        if let message = failure.message { FileHandle.standardError.write(Data("aedist: error: \(message)\n".utf8)) }
        code = failure.exitCode
    } catch {
        // Not agreed between ranks: end them all so none waits in a collective.
        communicator.abort("aedist: error: \(error)", exitCode: 1)
    }
    communicator.finish()
    exit(code)
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a model; resumes from the newest checkpoint in the run directory by default.")

    @Option(help: "Run configuration (YAML; the keys and their defaults are in README.md, \"Configuration\"). Without it, every key takes its default.")
    var config: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a configuration key with a YAML value, e.g. --set model.latent=32 (repeatable).", valueName: "KEY=VALUE"))
    var overrides: [String] = []

    @Option(help: "Run directory (overrides run_dir).")
    var runDir: String?

    @Option(help: "auto: continue from the newest complete checkpoint in the run directory; never: start a new run (refused where the run directory holds checkpoints, unless --archive-previous); or a checkpoint PATH.")
    var resume: String = "auto"

    @Flag(help: "With --resume never: first move the run directory's checkpoints, metrics.jsonl, config.yaml, summary.json, TensorBoard events and report into RUN_DIR/previous/DATE/ (nothing is deleted).")
    var archivePrevious = false

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if archivePrevious && resume != "never" {
            throw ValidationError("--archive-previous goes with --resume never (it moves an earlier run aside to start a new one)")
        }
    }

    func run() throws {
        let overrides = self.overrides, config = self.config, runDir = self.runDir
        var options = TrainOptions()
        options.threads = compute.threads
        options.archivePrevious = archivePrevious
        switch resume {
        case "auto": options.resume = .auto
        case "never": options.resume = .never
        default: options.resume = .path(resume)
        }
        Preemption.install()
        runParallel { communicator in
            var resolved = try agreeing(communicator) { try RunConfig.load(file: config, overrides: overrides) }
            if let runDir { resolved.runDirectory = runDir }
            let trainer = try Trainer(config: resolved, options: options, communicator: communicator)
            let summary = try trainer.run()
            return summary.status == "preempted" ? Preemption.exitCode : 0
        }
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "eval", abstract: "Loss of a checkpoint on a data split.")

    @Option(help: "Checkpoint file.")
    var checkpoint: String

    @OptionGroup var input: DataSelection

    @OptionGroup var compute: ComputeOptions

    @Option(help: "VAE: also estimate the negative log-likelihood by importance sampling with K draws per row (log-mean-exp of the weights; at most the negative ELBO, tighter as K grows).")
    var importanceSamples: Int?

    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        if let k = importanceSamples, k < 1 { throw ValidationError("--importance-samples must be at least 1, got \(k)") }
    }

    func run() throws {
        let (checkpoint, data, split, threads, json) = (self.checkpoint, input.data, input.split, compute.threads, self.json)
        let importanceSamples = self.importanceSamples
        runParallel { communicator in
            let report = try evaluateCheckpoint(path: checkpoint, dataPath: data, split: split, threads: threads,
                                                importanceSamples: importanceSamples,
                                                communicator: communicator)
            if communicator.isRoot {
                if json { print(report.json) } else { print(report.text) }
            }
            return 0
        }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Summary of a dataset or checkpoint file.")

    @Argument(help: "An HDF5 dataset or checkpoint file.")
    var file: String

    func run() throws {
        do { print(try describeFile(file)) } catch {
            FileHandle.standardError.write(Data("aedist: error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
