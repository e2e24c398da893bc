// The stall watchdog's side channel. When a collective stops making progress, MPI cannot be asked
// which rank is missing: its collectives are what is stuck. So every rank also holds a small UDP
// socket, served by its watchdog thread (which runs while the main thread waits), and a rank that
// sees a stall asks every other rank what it is doing. A rank that is stopped or dead, or whose
// host or link is down, does not answer; one that is elsewhere in the run says where.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a rank says about itself when asked.
public struct RankReport: Equatable, Sendable {
    public var rank: Int
    /// The watched operation in progress ("" when none), its step (0-based) and how long it has run.
    public var operation: String
    public var step: Int
    public var seconds: Double
    /// The rank has given up on the operation (its own watchdog fired) and is ending.
    public var leaving: Bool
    /// When leaving: the ranks it found had not arrived (Open MPI continues a stopped rank while it
    /// ends a job, so a rank that asks later may get an answer from it).
    public var absent: [Int]

    public init(rank: Int, operation: String, step: Int, seconds: Double, leaving: Bool = false, absent: [Int] = []) {
        (self.rank, self.operation, self.step, self.seconds, self.leaving, self.absent) = (rank, operation, step, seconds, leaving, absent)
    }
}

/// One UDP socket per rank and every rank's address. Every method but `init` is called from one
/// thread (the watchdog's).
public final class RollCall: @unchecked Sendable {
    public struct Peer: Sendable {
        public let host: String
        let port: UInt16
        /// IPv4 addresses (network byte order) the peer's socket listens on.
        let addresses: [UInt32]
        public init(host: String, port: UInt16, addresses: [UInt32]) { (self.host, self.port, self.addresses) = (host, port, addresses) }
    }

    public let rank: Int
    public let peers: [Peer]
    private let socket: Int32
    /// Rank 0's random token, so that a stray datagram of another job is ignored.
    private let token: UInt64
    /// The latest report of each rank and when it came.
    private var reports: [Int: (report: RankReport, at: Date)] = [:]

    static let recordSize = 128
    static let hostBytes = 84
    static let magic: [UInt8] = Array("aedr".utf8)
    /// 127.0.0.1, network byte order.
    static let loopback = UInt32(0x7f00_0001).bigEndian

    /// Collective: every rank opens its socket and learns every other rank's. A rank that cannot open
    /// one still takes part (port 0): it is then reported as not answering.
    public init(communicator: Communicator) throws {
        rank = communicator.rank
        let fd = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var port: UInt16 = 0
        if fd >= 0 {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
            }
            if bound { port = UInt16(bigEndian: address.sin_port) }
        }
        socket = port == 0 ? -1 : fd
        if port == 0, fd >= 0 { close(fd) }

        var record = [UInt8](repeating: 0, count: Self.recordSize)
        var mine = UInt64.random(in: 1...UInt64.max).littleEndian
        withUnsafeBytes(of: &mine) { record.replaceSubrange(0..<8, with: $0) }
        record[8] = UInt8(port & 0xff); record[9] = UInt8(port >> 8)
        let addresses = Array(Self.localAddresses().prefix(8))
        record[10] = UInt8(addresses.count)
        for (i, a) in addresses.enumerated() {
            withUnsafeBytes(of: a) { record.replaceSubrange((12 + 4 * i)..<(16 + 4 * i), with: $0) }
        }
        let host = Array(ProcessInfo.processInfo.hostName.utf8.prefix(Self.hostBytes - 1))
        record.replaceSubrange(44..<(44 + host.count), with: host)

        let size = communicator.size
        let send = [UInt8]((0..<size).flatMap { _ in record })
        var receive = [UInt8](repeating: 0, count: size * Self.recordSize)
        try send.withUnsafeBytes { s in
            try receive.withUnsafeMutableBytes { r in
                try communicator.exchange(send: s.baseAddress!, sendCounts: Array(repeating: Self.recordSize, count: size),
                                          receive: r.baseAddress!, receiveCounts: Array(repeating: Self.recordSize, count: size))
            }
        }
        token = receive.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        peers = (0..<size).map { r in
            let b = Array(receive[(r * Self.recordSize)..<((r + 1) * Self.recordSize)])
            let count = min(Int(b[10]), 8)
            let addresses = (0..<count).map { i in b.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 12 + 4 * i, as: UInt32.self) } }
            let name = b[44..<(44 + Self.hostBytes)].prefix { $0 != 0 }
            return Peer(host: String(decoding: name, as: UTF8.self), port: UInt16(b[8]) | UInt16(b[9]) << 8, addresses: addresses)
        }
    }

    deinit { if socket >= 0 { close(socket) } }

    /// Answers the questions that arrive within `seconds` with `current()`, and keeps the reports.
    public func serve(for seconds: Double, current: () -> RankReport) {
        guard socket >= 0 else { Thread.sleep(forTimeInterval: seconds); return }
        let end = Date().addingTimeInterval(seconds)
        while true {
            let left = end.timeIntervalSinceNow
            if left <= 0 { return }
            var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            if poll(&descriptor, 1, Int32(left * 1000) + 1) > 0 { receiveAll(current) }
        }
    }

    /// Asks every other rank what it is doing and waits up to `window` seconds for the answers,
    /// serving the others' questions meanwhile. Returns the ranks that answered (or have said they
    /// are leaving) with their reports; a missing rank did not answer.
    public func ask(window: Double, current: () -> RankReport) -> [Int: RankReport] {
        let asked = Date()
        send(kind: 0, current(), toAllBut: rank)
        func answered() -> [Int: RankReport] {
            reports.filter { $0.value.at >= asked || $0.value.report.leaving }.mapValues { $0.report }
        }
        while answered().count < peers.count - 1, Date().timeIntervalSince(asked) < window {
            serve(for: 0.05, current: current)
        }
        return answered()
    }

    /// Tells every other rank that this one is ending, with what it was doing and whom it missed.
    public func leave(_ report: RankReport) {
        var r = report
        r.leaving = true
        send(kind: 2, r, toAllBut: rank)
    }

    // MARK: - Datagrams: "aedr", token, kind (0 ask, 1 answer, 2 leaving), rank, step, seconds,
    // operation (length, UTF-8), absent ranks (count, 32-bit each).

    private func encode(kind: UInt8, _ r: RankReport) -> [UInt8] {
        var bytes = Self.magic
        func append<T>(_ value: T) { withUnsafeBytes(of: value) { bytes.append(contentsOf: $0) } }
        append(token.littleEndian)
        bytes.append(kind)
        append(UInt32(r.rank).littleEndian)
        append(Int64(r.step).littleEndian)
        append(r.seconds.bitPattern.littleEndian)
        let operation = Array(r.operation.utf8.prefix(255))
        bytes.append(UInt8(operation.count))
        bytes.append(contentsOf: operation)
        let absent = r.absent.prefix(64)
        bytes.append(UInt8(absent.count))
        for a in absent { append(UInt32(a).littleEndian) }
        return bytes
    }

    private func decode(_ b: ArraySlice<UInt8>) -> (kind: UInt8, report: RankReport)? {
        let b = Array(b)
        guard b.count >= 35, Array(b[0..<4]) == Self.magic else { return nil }
        return b.withUnsafeBytes { raw in
            guard UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt64.self)) == token else { return nil }
            let rank = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 13, as: UInt32.self)))
            let step = Int(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 17, as: Int64.self)))
            let seconds = Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 25, as: UInt64.self)))
            let length = Int(b[33])
            guard rank < peers.count, b.count >= 35 + length, b.count >= 35 + length + 4 * Int(b[34 + length]) else { return nil }
            let operation = String(decoding: b[34..<(34 + length)], as: UTF8.self)
            let absent = (0..<Int(b[34 + length])).map {
                Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 35 + length + 4 * $0, as: UInt32.self)))
            }
            return (b[12], RankReport(rank: rank, operation: operation, step: step, seconds: seconds, leaving: b[12] == 2, absent: absent))
        }
    }

    private func send(kind: UInt8, _ report: RankReport, toAllBut skipped: Int) {
        guard socket >= 0 else { return }
        let bytes = encode(kind: kind, report)
        let me = peers[rank].host
        for (r, peer) in peers.enumerated() where r != skipped && peer.port != 0 {
            // Ranks on this host are reached on the loopback; the others on every address they have.
            let targets = peer.host == me ? [Self.loopback] : peer.addresses.filter { $0 != Self.loopback }
            for address in targets { sendDatagram(bytes, to: address, port: peer.port) }
        }
    }

    private func sendDatagram(_ bytes: [UInt8], to address: UInt32, port: UInt16) {
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        target.sin_port = port.bigEndian
        target.sin_addr.s_addr = address
        _ = bytes.withUnsafeBytes { data in
            withUnsafePointer(to: &target) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(socket, data.baseAddress, data.count, Int32(MSG_DONTWAIT), $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
    }

    private func receiveAll(_ current: () -> RankReport) {
        var buffer = [UInt8](repeating: 0, count: 512)
        while true {
            var from = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let n = buffer.withUnsafeMutableBytes { data in
                withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(socket, data.baseAddress, data.count, 0, $0, &length) }
                }
            }
            if n < 0 { return }   // EAGAIN: nothing more for now
            guard let (kind, report) = decode(buffer[0..<n]), report.rank != rank else { continue }
            if kind == 0 {
                // Answer where the question came from, which reaches the asker whatever its addresses.
                sendDatagram(encode(kind: 1, current()), to: from.sin_addr.s_addr, port: UInt16(bigEndian: from.sin_port))
            }
            reports[report.rank] = (report, Date())   // a question says where the asker is, too
        }
    }

    /// This host's IPv4 addresses, network byte order.
    static func localAddresses() -> [UInt32] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var found: [UInt32] = []
        var entry = list
        while let e = entry {
            if let a = e.pointee.ifa_addr, a.pointee.sa_family == sa_family_t(AF_INET) {
                found.append(a.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr })
            }
            entry = e.pointee.ifa_next
        }
        // Non-loopback first: only 8 are exchanged.
        return found.filter { $0 != loopback } + found.filter { $0 == loopback }
    }
}
