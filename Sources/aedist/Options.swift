// Option groups shared by several subcommands.
import ArgumentParser

/// `--threads N`: compute threads per rank.
struct ComputeOptions: ParsableArguments {
    @Option(help: "Compute threads per rank (default: this rank's share of the cores it may use).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
    }
}

/// `--data PATH --split NAME`: which rows a model file is applied to.
struct DataSelection: ParsableArguments {
    @Option(help: "Data file (default: the model's data.path).")
    var data: String?

    @Option(help: "train, test, or a dataset path inside the data file (default: test, or train when there is no test set).")
    var split: String?
}

/// `--image-shape HxW`: the picture size of one sample.
struct PictureOptions: ParsableArguments {
    @Option(help: "Picture size HxW (default: the data file's image_shape attribute).")
    var imageShape: String?
}
