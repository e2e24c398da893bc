// How much memory a run will need, checked before anything large is allocated, so a run that
// cannot fit says so at once instead of being killed by the kernel mid-way.
import Foundation
import Models
import Storage

public struct MemoryEstimate {
    /// Bytes of all rows of the train and test splits, in their stored types.
    public let allDataBytes: Int
    /// Bytes of data one rank holds under the residency in use (`residency` then sets it).
    public private(set) var dataBytes: Int
    public let modelBytes: Int
    public let activationBytes: Int
    /// The bytes of one row and the per-rank batch (for the streamed residency's buffers).
    let rowBytes: Int, perRankBatch: Int
    public var perRank: Int { dataBytes + modelBytes + activationBytes }

    /// Reads only the datasets' shapes and types.
    public init(config: RunConfig, perRankBatch: Int) throws {
        var data = 0, features = 0, rowBytes = 0, sampleShape: [Int] = []
        let splits = [(config.data.path, config.data.train)] + (config.data.test.map { [(config.data.testPath ?? config.data.path, $0)] } ?? [])
        for (path, dataset) in splits {
            let file = try HDF5File(readingAt: path)
            defer { file.close() }
            guard file.kind(of: dataset) == .dataset else { continue }   // the reader reports it precisely
            let shape = try file.shape(ofDataset: dataset)
            let type = try file.elementType(ofDataset: dataset)
            let count = shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
            data = data.addingReportingOverflow(count.multipliedReportingOverflow(by: type.byteCount).partialValue).partialValue
            if dataset == config.data.train, shape.count >= 2 {
                sampleShape = Array(shape.dropFirst())
                features = sampleShape.reduce(1, *)
                rowBytes = features * type.byteCount
            }
        }
        self.rowBytes = rowBytes
        self.perRankBatch = perRankBatch
        var resolved = config
        resolved.data.imageShape = try Datasets.imageShape(config.data, sampleShape: sampleShape, source: config.data.train)
        let model = Autoencoder(spec: try resolved.modelSpec(features: max(features, 1)))
        // Parameters, gradients, the reduction's receive space (every rank's copy of this rank's
        // segment: about one gradient), optimizer state.
        let buffers = 3 + (config.train.optimizer.kind == .adam ? 2 : 1)
        allDataBytes = data
        dataBytes = data
        modelBytes = model.parameterCount * 4 * buffers
        // The training workspace and the evaluation's (256 rows).
        activationBytes = (Workspace.floatCount(model: model, capacity: perRankBatch) + Workspace.floatCount(model: model, capacity: 256)) * 4
    }

    /// Bytes this process may still use: the smaller of MemAvailable and the cgroup's limit headroom.
    public static func available() -> Int? {
        var best: Int?
        if let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
           let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
           let kb = Int(line.split(separator: " ").dropFirst().first ?? "") {
            best = kb * 1024
        }
        if let max = try? String(contentsOfFile: "/sys/fs/cgroup/memory.max", encoding: .utf8),
           let limit = Int(max.trimmingCharacters(in: .whitespacesAndNewlines)) {
            let used = (try? String(contentsOfFile: "/sys/fs/cgroup/memory.current", encoding: .utf8))
                .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
            best = Swift.min(best ?? Int.max, limit - used)
        }
        return best
    }

    /// Bytes of data each rank holds with `residency` among `ranks` ranks.
    public func dataBytes(_ residency: Residency, ranks: Int, blockRows: Int? = nil, window: Int = 16) -> Int {
        switch residency {
        case .replicated, .auto: return allDataBytes
        case .sharded: return (allDataBytes + ranks - 1) / max(ranks, 1)
        case .streamed:
            // The prefetched steps, and with shuffle: blocks the blocks of two windows.
            let blocks = blockRows.map { (2 * window + 2) * $0 } ?? 0
            return (StreamedRows.depth + 1 + blocks / max(perRankBatch, 1)) * perRankBatch * rowBytes
        }
    }

    /// `data.residency: auto`'s choice and its reason, in words: replicated when every rank's copy
    /// of the data, with the model and activations, takes at most half of each rank's share of the
    /// memory available on the node; else sharded when the shards do; else streamed.
    public mutating func residency(_ requested: Residency, ranks: Int, ranksOnNode: Int, blockRows: Int?, window: Int,
                                   available: Int? = MemoryEstimate.available()) -> (Residency, String) {
        func gib(_ b: Int) -> String { String(format: "%.2f GiB", Double(b) / 1_073_741_824) }
        var chosen = requested, reason = "as configured"
        if requested == .auto {
            guard let available else {
                dataBytes = allDataBytes
                return (.replicated, "auto: the available memory is unknown")
            }
            let share = available / max(ranksOnNode, 1)
            let me = self
            func fits(_ r: Residency) -> Bool { me.dataBytes(r, ranks: ranks) + me.modelBytes + me.activationBytes <= share / 2 }
            chosen = fits(.replicated) ? .replicated : fits(.sharded) ? .sharded : .streamed
            reason = "auto: the data take \(gib(allDataBytes)), \(gib(dataBytes(.sharded, ranks: ranks))) per rank when sharded; each of the \(ranksOnNode) rank(s) on this node has \(gib(share)) of the \(gib(available)) available"
        }
        dataBytes = dataBytes(chosen, ranks: ranks, blockRows: blockRows, window: window)
        return (chosen, reason)
    }

    /// Throws when `ranksOnNode` ranks of this size do not fit in the memory available.
    public func check(ranksOnNode: Int, available: Int? = MemoryEstimate.available()) throws {
        guard let available else { return }
        let (need, overflow) = perRank.multipliedReportingOverflow(by: max(ranksOnNode, 1))
        if overflow || need > available {
            func gib(_ b: Int) -> String { String(format: "%.2f GiB", Double(b) / 1_073_741_824) }
            throw ConfigError("the run needs about \(gib(perRank)) per rank (data \(gib(dataBytes)), model and optimizer \(gib(modelBytes)), activations \(gib(activationBytes))) x \(ranksOnNode) rank(s) on this node = \(overflow ? "more than 8 EiB" : gib(need)), but only \(gib(available)) is available: use data.residency: sharded or streamed (hold less data per rank), a smaller model (model.encoder, model.latent), a smaller batch, or fewer ranks per node")
        }
    }
}
