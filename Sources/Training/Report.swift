// `aedist report RUN_DIR`: a run as one self-contained web page (its pictures embedded, so the
// file alone opens anywhere, from a login node's disk or copied to a laptop), with each picture
// also written beside it as a PNG: the loss curves from metrics.jsonl, the reconstructions, prior
// samples, an interpolation and the latent map of the best (else newest) checkpoint, the summary
// and the resolved configuration.
import Communication
import Foundation
import Kernels
import Models
import Storage

public struct RunReport {
    public let runDirectory: String
    /// The folder the page and its PNGs go to (default RUN_DIR/report).
    public let folder: String
    /// Where the pictures' rows come from (default: the run's data.path).
    public let dataPath: String?

    public init(runDirectory: String, folder: String?, dataPath: String?) {
        self.runDirectory = runDirectory
        self.folder = folder ?? runDirectory + "/report"
        self.dataPath = dataPath
    }

    /// One section of the page: a heading, a picture (nil: a note only) and what it shows.
    struct Section {
        let title: String
        let file: String?
        let image: PixelImage?
        let caption: String
    }

    /// Writes the page and its PNGs; returns the page's path and the pictures written.
    public func write(pool: ComputePool) throws -> (page: String, pictures: [String]) {
        let configPath = runDirectory + "/config.yaml"
        guard FileManager.default.fileExists(atPath: configPath) else {
            throw ConfigError("run directory '\(runDirectory)': no config.yaml (is it a run directory? `aedist train` writes one as it starts)")
        }
        let config = try RunConfig.load(file: configPath)
        let metrics = readMetrics()
        let summary = TrainSummary.read(runDirectory: runDirectory)
        var sections = curves(metrics, config: config)
        let checkpoints = CheckpointDirectory(runDirectory: runDirectory)
        // The best model while early stopping is on (a run resumed without it goes on past it).
        let best = config.train.earlyStopping != nil && FileManager.default.fileExists(atPath: checkpoints.best)
        let chosen = best ? checkpoints.best : checkpoints.list().first?.path
        if let chosen {
            sections += try pictures(of: chosen, config: config, pool: pool)
        } else {
            sections.append(Section(title: "Pictures", file: nil, image: nil, caption: "No checkpoint in \(checkpoints.path) yet: the pictures come from a trained model."))
        }
        do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        catch { throw ConfigError("report folder '\(folder)': cannot create it: \(error.localizedDescription)") }
        var written: [String] = [], png: [String: Data] = [:]
        for section in sections {
            guard let file = section.file, let image = section.image else { continue }
            png[file] = image.pngData
            do { try png[file]!.write(to: URL(fileURLWithPath: folder + "/" + file), options: .atomic) }
            catch { throw ConfigError("'\(folder)/\(file)': cannot write the picture: \(error.localizedDescription)") }
            written.append(folder + "/" + file)
        }
        let page = folder + "/index.html"
        let html = self.html(sections: sections, png: png, config: config, summary: summary, checkpoint: chosen,
                             configText: (try? String(contentsOfFile: configPath, encoding: .utf8)) ?? "")
        do { try Data(html.utf8).write(to: URL(fileURLWithPath: page), options: .atomic) }
        catch { throw ConfigError("'\(page)': cannot write the report: \(error.localizedDescription)") }
        return (page, written)
    }

    /// metrics.jsonl's objects, in order.
    private func readMetrics() -> [[String: Any]] {
        let path = RunLog.metricsPath(runDirectory: runDirectory)
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
    }

    /// The curves: the loss of training (each logged step), validation and test (each epoch);
    /// a VAE's reconstruction and KL terms; the learning rate and KL weight where they change.
    private func curves(_ metrics: [[String: Any]], config: RunConfig) -> [Section] {
        func series(_ event: String, _ key: String, name: String? = nil) -> PlotSeries {
            let points = metrics.filter { $0["event"] as? String == event }.compactMap { o -> (x: Double, y: Double)? in
                guard let step = o["step"] as? Int, let value = o[key] as? Double else { return nil }
                return (Double(step), value)
            }
            return PlotSeries(name: name ?? event, points: points, marked: event != "train")
        }
        let splits = ["train", "validation", "test"]
        var out = [Section(title: "Loss", file: "loss.png",
                           image: LinePlot.draw(splits.map { series($0, "loss") }, xLabel: "step"),
                           caption: "Training loss averaged over each logged window of steps; validation and test loss at each epoch's end" +
                                    (config.model.kind == .vae ? " (negative ELBO per sample, in nats; the training loss uses the scheduled KL weight)." : " (per sample).") +
                                    " The y axis spans the values after the first 5 % of the steps; higher early values run off the top.")]
        if config.model.kind == .vae {
            out.append(Section(title: "Reconstruction term", file: "reconstruction.png",
                               image: LinePlot.draw(splits.map { series($0, "recon") }, xLabel: "step"),
                               caption: "The reconstruction term of the loss per sample (\(config.model.output == .bernoulli ? "binary cross-entropy summed over features" : "squared error summed over features"))."))
            out.append(Section(title: "KL term", file: "kl.png",
                               image: LinePlot.draw(splits.map { series($0, "kl") }, xLabel: "step"),
                               caption: "KL divergence of the approximate posterior from the standard normal prior, per sample (before the KL weight)."))
        }
        for (key, title) in [("lr", "Learning rate"), ("kl_weight", "KL weight")] {
            let s = series("train", key, name: key)
            if Set(s.points.map(\.y)).count > 1 {
                out.append(Section(title: title, file: "\(key).png", image: LinePlot.draw([s], xLabel: "step"),
                                   caption: "\(title) at each logged step (train.lr_schedule, model.kl_schedule)."))
            }
        }
        return out
    }

    /// Reconstructions, prior samples, an interpolation and the latent map of `checkpoint`; a
    /// note in their place when the data file is not there or its rows are not pictures.
    private func pictures(of checkpoint: String, config: RunConfig, pool: ComputePool) throws -> [Section] {
        let name = checkpoint == CheckpointDirectory(runDirectory: runDirectory).best ? "the best model (checkpoints/best.h5)" : URL(fileURLWithPath: checkpoint).lastPathComponent
        let file = dataPath ?? config.data.path
        guard FileManager.default.fileExists(atPath: file) else {
            return [Section(title: "Pictures", file: nil, image: nil,
                            caption: "The data file \(file) is not here (a relative path is read from the current directory): give it with --data to draw the model's pictures.")]
        }
        let train = try ChosenSplit(config: config, dataPath: dataPath, split: "train")
        let shown = config.data.test == nil ? train : try ChosenSplit(config: config, dataPath: dataPath, split: "test")
        let loaded = try loadModel(checkpointPath: checkpoint, for: train.data)
        let model = loaded.model
        var out: [Section] = []
        if let shape = shown.pictureShape(config: config).flatMap(ImageShape.init(sampleShape:)) {
            let count = min(16, shown.data.rows)
            let rows = try shown.rows(Array(0..<count))
            let r = encode(model: model, parameters: loaded.parameters, data: rows, input: shown.input(for: loaded),
                           indices: Array(0..<count), pool: pool, reconstructions: true)
            out.append(Section(title: "Reconstructions", file: "reconstructions.png",
                               image: Pictures.reconstructions(originals: r.inputs, outputs: r.outputs, count: count, shape: shape),
                               caption: "The first \(count) rows of \(shown.data.source) (top) and \(name)'s reconstructions (below)."))
            if model.spec.kind == .vae {
                let (_, images) = try samplePrior(model: model, parameters: loaded.parameters, count: 64, seed: 0,
                                                  input: InputMapping(scale: 1, normalization: loaded.normalization),
                                                  communicator: SingleProcess(), pool: pool)
                out.append(Section(title: "Samples from the prior", file: "samples.png", image: Pictures.grid(images, count: 64, shape: shape),
                                   caption: "64 draws from N(0, I) decoded by \(name) (seed 0: `aedist sample --seed 0` draws the same)."))
            }
            let pairs = min(4, shown.data.rows / 2), steps = 10
            if pairs > 0 {
                let rows = try shown.rows(Array(0..<(2 * pairs)))
                let path = interpolate(model: model, parameters: loaded.parameters, data: rows, input: shown.input(for: loaded),
                                       pairs: (0..<pairs).map { (2 * $0, 2 * $0 + 1) }, steps: steps, pool: pool)
                out.append(Section(title: "Interpolation", file: "interpolation.png",
                                   image: Pictures.strips(path: path.path, starts: path.starts, ends: path.ends, pairs: pairs, steps: steps, shape: shape),
                                   caption: "Straight lines in latent space between the codes of rows (0, 1), (2, 3), ... of \(shown.data.source)\(model.spec.kind == .vae ? " (posterior means)" : ""), \(steps) decoded points each, the originals at both ends."))
            }
        } else {
            out.append(Section(title: "Pictures", file: nil, image: nil,
                               caption: "The rows of \(shown.data.source) are not grayscale pictures (no [H, W] or [H, W, 1] shape: data.image_shape, an N-D dataset or the file's image_shape attribute), so reconstructions, samples and interpolations are not drawn."))
        }
        let count = min(2000, train.data.rows)
        let rows = try train.rows(Array(0..<count))
        let codes = encode(model: model, parameters: loaded.parameters, data: rows, input: train.input(for: loaded),
                           indices: Array(0..<count), pool: pool).codes
        let z = model.spec.latent, width = model.codeWidth
        let latent = (0..<count).flatMap { r in codes[(r * width)..<(r * width + z)] }
        let labels = try trainLabels(config: config, split: train, count: count)
        out.append(Section(title: "Latent space", file: "latent-map.png",
                           image: Pictures.map(points: Pictures.planar(codes: latent, rows: count, width: z), labels: labels.values),
                           caption: "The codes of the first \(count) rows of \(train.data.source)\(model.spec.kind == .vae ? " (posterior means)" : "")" +
                                    (z > 2 ? ", projected on their first two principal directions" : "") + ", " + labels.note + "."))
        return out
    }

    /// The first `count` labels of the train rows: `data.labels`, else a `labels` dataset beside the
    /// train dataset; and a note of where they came from.
    private func trainLabels(config: RunConfig, split: ChosenSplit, count: Int) throws -> (values: [Int]?, note: String) {
        guard let dataset = config.data.labels else {
            if let labels = split.labels() { return (Array(labels.prefix(count)), "coloured by the labels beside them") }
            return (nil, "not coloured (no labels dataset beside the train rows; data.labels names one)")
        }
        let file = try HDF5File(readingAt: split.file)
        defer { file.close() }
        guard file.kind(of: dataset) == .dataset else {
            throw ConfigError("key 'data.labels': no dataset '\(dataset)' in '\(split.file)'")
        }
        let values = try file.readInt64s(dataset)
        guard values.count == split.data.rows else {
            throw ConfigError("key 'data.labels': '\(dataset)' holds \(values.count) labels for the \(split.data.rows) train rows")
        }
        return (values.prefix(count).map { Int($0) }, "coloured by \(dataset)")
    }

    private func html(sections: [Section], png: [String: Data], config: RunConfig, summary: [String: Any]?, checkpoint: String?,
                      configText: String) -> String {
        func escape(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        var body = "<h1>aedist run <code>\(escape(runDirectory))</code></h1>\n"
        if let summary {
            let rows = summary.keys.filter { $0 != "event" }.sorted().map { key -> String in
                let value = summary[key]!
                let text = value is NSNull ? "—" : (value as? Double).map { String(format: "%.6g", $0) } ?? "\(value)"
                return "<tr><th>\(escape(key))</th><td>\(escape(text))</td></tr>"
            }
            body += "<h2>Summary</h2>\n<table>\n" + rows.joined(separator: "\n") + "\n</table>\n"
        } else {
            body += "<p>No summary.json yet: the run has not ended an invocation of <code>aedist train</code>.</p>\n"
        }
        body += "<p>Pictures of the model in <code>\(escape(checkpoint ?? "none"))</code>.</p>\n"
        for section in sections {
            body += "<h2>\(escape(section.title))</h2>\n"
            if let file = section.file, let image = section.image, let data = png[file] {
                body += "<figure><img src=\"data:image/png;base64,\(data.base64EncodedString())\" alt=\"\(escape(section.title))\" width=\"\(image.width)\" height=\"\(image.height)\" data-file=\"\(file)\">"
                body += "<figcaption>\(escape(section.caption)) (<a href=\"\(file)\">\(file)</a>)</figcaption></figure>\n"
            } else {
                body += "<p>\(escape(section.caption))</p>\n"
            }
        }
        body += "<h2>Configuration</h2>\n<pre>\(escape(configText))</pre>\n"
        return """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>aedist report: \(escape(runDirectory))</title>
        <style>
        body { font-family: sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
        table { border-collapse: collapse; } th, td { text-align: left; padding: 0.15rem 0.8rem 0.15rem 0; }
        th { font-weight: normal; color: #555; } figure { margin: 0.5rem 0 1.5rem; }
        img { image-rendering: pixelated; max-width: 100%; height: auto; border: 1px solid #ddd; }
        figcaption { color: #444; font-size: 0.9rem; } pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; }
        </style></head>
        <body>
        \(body)</body></html>

        """
    }
}
