// Every rank of a run must be the same program with the same configuration. Ranks started from
// different builds (a stale binary on one node's local disk) or with different settings (a
// forgotten --set in one part of an MPMD launch) would otherwise train different models, or wait
// forever in collectives of different sizes.
import Communication
import Foundation

enum LaunchCheck {
    /// A 64-bit hash of this process's executable file, read once.
    static let build: UInt64 = {
        guard let bytes = FileManager.default.contents(atPath: "/proc/self/exe") ?? CommandLine.arguments.first.flatMap({ FileManager.default.contents(atPath: $0) }) else { return 0 }
        return fingerprint(bytes)
    }()

    /// FNV-1a over 8-byte words (and the tail bytes): a fingerprint, not a cryptographic hash.
    static func fingerprint(_ data: Data) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        data.withUnsafeBytes { raw in
            let words = raw.count / 8
            for i in 0..<words { h = (h ^ raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)) &* 0x0000_0100_0000_01B3 }
            for i in (8 * words)..<raw.count { h = (h ^ UInt64(raw[i])) &* 0x0000_0100_0000_01B3 }
        }
        return h
    }

    /// Compares this rank's build and configuration with rank 0's; every rank fails together,
    /// with the first differing rank's message naming its host and what differs. Collective.
    static func verify(_ config: RunConfig, communicator: Communicator) throws {
        guard communicator.size > 1 else { return }
        var root = [build]
        try root.withUnsafeMutableBytes { try communicator.broadcast($0.baseAddress!, byteCount: $0.count, root: 0) }
        let rootSettings = try communicator.broadcast(config.yaml, root: 0)
        try agreeing(communicator) {
            let host = ProcessInfo.processInfo.hostName
            let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
            func hex(_ v: UInt64) -> String { String(v, radix: 16) }
            if build != root[0] {
                throw ConfigError("on host \(host) runs another aedist build than rank 0 (\(executable), fingerprint \(hex(build)) against \(hex(root[0]))): every rank must run the same build; install one where all nodes see it, or the same on every node")
            }
            if rootSettings != config.yaml {
                let theirs = try RunConfig.parse(yaml: rootSettings, origin: "rank 0's configuration")
                let listed = config.differences(from: theirs).map { "\($0.key): \($0.mine) here, \($0.theirs) on rank 0" }
                throw ConfigError("on host \(host) was started with another configuration than rank 0 (\(listed.isEmpty ? "the settings differ" : listed.joined(separator: "; "))): every rank must get the same --config and --set options")
            }
        }
    }
}
