// How much memory a run will need, checked before anything large is allocated, so a run that
// cannot fit says so at once instead of being killed by the kernel mid-way.
import Foundation
import Models
import Storage

public struct MemoryEstimate {
    public let dataBytes: Int
    public let modelBytes: Int
    public let activationBytes: Int
    public var perRank: Int { dataBytes + modelBytes + activationBytes }

    /// Reads only the datasets' shapes and types.
    public init(config: RunConfig, perRankBatch: Int) throws {
        let file = try HDF5File(readingAt: config.data.path)
        defer { file.close() }
        var data = 0, features = 0
        for path in [config.data.train] + (config.data.test.map { [$0] } ?? []) {
            guard file.kind(of: path) == .dataset else { continue }   // the reader reports it precisely
            let shape = try file.shape(ofDataset: path)
            let type = try file.elementType(ofDataset: path)
            let count = shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
            data = data.addingReportingOverflow(count.multipliedReportingOverflow(by: type.byteCount).partialValue).partialValue
            if path == config.data.train, shape.count == 2 { features = shape[1] }
        }
        var spec = config.model
        spec.inputs = max(features, 1)
        // Parameter count by layer widths (the same arithmetic as Autoencoder, without building it).
        let widths = [spec.inputs] + spec.encoder
        var parameters = 0
        for (a, b) in zip(widths, widths.dropFirst()) { parameters += a * b + b }
        let codeOut = spec.kind == .vae ? 2 * spec.latent : spec.latent
        parameters += widths.last! * codeOut + codeOut
        let back = [spec.latent] + spec.decoderWidths + [spec.inputs]
        for (a, b) in zip(back, back.dropFirst()) { parameters += a * b + b }
        // Parameters, gradients, the reduction's receive space (every rank's copy of this rank's
        // segment: about one gradient), optimizer state.
        let buffers = 3 + (config.train.optimizer.kind == .adam ? 2 : 1)
        dataBytes = data
        modelBytes = parameters * 4 * buffers
        let activationWidths = widths.reduce(0, +) + back.reduce(0, +) + 4 * spec.latent + 2 * (widths + back).max()!
        activationBytes = (perRankBatch + 256) * activationWidths * 4
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

    /// Throws when `ranksOnNode` ranks of this size do not fit in the memory available.
    public func check(ranksOnNode: Int, available: Int? = MemoryEstimate.available()) throws {
        guard let available else { return }
        let (need, overflow) = perRank.multipliedReportingOverflow(by: max(ranksOnNode, 1))
        if overflow || need > available {
            func gib(_ b: Int) -> String { String(format: "%.2f GiB", Double(b) / 1_073_741_824) }
            throw ConfigError("the run needs about \(gib(perRank)) per rank (data \(gib(dataBytes)), model and optimizer \(gib(modelBytes)), activations \(gib(activationBytes))) x \(ranksOnNode) rank(s) on this node = \(overflow ? "more than 8 EiB" : gib(need)), but only \(gib(available)) is available: use a smaller model (model.encoder, model.latent), a smaller batch, or fewer ranks per node")
        }
    }
}
