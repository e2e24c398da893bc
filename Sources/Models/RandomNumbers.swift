#if canImport(Glibc)
import Glibc
#endif
// Counter-based random numbers: every draw is a pure function of (seed, stream, counters), so a
// run's noise, initialisation and data order are the same whatever the rank or thread count.

/// What a draw is for; each purpose has its own independent stream.
public enum RandomStream: UInt64, Sendable {
    case initialisation = 1, dataOrder = 2, latentNoise = 3, inputNoise = 4, evaluation = 5, sampling = 6
}

/// A key naming one sequence of draws; `uniform(i)`/`normal(i)` give its i-th value.
public struct RandomKey: Sendable {
    public let bits: UInt64

    public init(seed: UInt64, stream: RandomStream, _ a: UInt64 = 0, _ b: UInt64 = 0) {
        var h = RandomKey.mix(seed &+ 0x9E37_79B9_7F4A_7C15)
        h = RandomKey.mix(h ^ stream.rawValue)
        h = RandomKey.mix(h ^ a)
        h = RandomKey.mix(h ^ b)
        bits = h
    }

    /// SplitMix64's finaliser: a bijective mixer with full avalanche.
    @inline(__always)
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @inline(__always)
    public func raw(_ counter: UInt64) -> UInt64 { RandomKey.mix(bits ^ RandomKey.mix(counter)) }

    /// Uniform in [0, 1) with 24 random bits.
    @inline(__always)
    public func uniform(_ counter: UInt64) -> Float { Float(raw(counter) >> 40) * 0x1p-24 }

    /// Uniform in (0, 1]: safe under a logarithm.
    @inline(__always)
    public func uniformOpen(_ counter: UInt64) -> Float { Float((raw(counter) >> 40) + 1) * 0x1p-24 }

    /// Standard normal by Box–Muller on two independent uniforms of this counter.
    @inline(__always)
    public func normal(_ counter: UInt64) -> Float {
        let r = raw(counter)
        let u1 = Float((r >> 40) + 1) * 0x1p-24
        let u2 = Float((r >> 16) & 0xFF_FFFF) * 0x1p-24
        return (-2 * logf(u1)).squareRoot() * cosf(2 * Float.pi * u2)
    }

    /// Uniform integer in 0..<n (n small relative to 2^64; the bias is below 2^-40).
    @inline(__always)
    public func below(_ n: Int, _ counter: UInt64) -> Int {
        Int(UInt64(n).multipliedFullWidth(by: raw(counter)).high)
    }
}

/// The order of `count` samples in `epoch`: one permutation from the seed, the same on every rank.
public func epochOrder(count: Int, seed: UInt64, epoch: Int) -> [Int] {
    var order = Array(0..<count)
    let key = RandomKey(seed: seed, stream: .dataOrder, UInt64(epoch))
    if count > 1 {
        for i in stride(from: count - 1, to: 0, by: -1) {   // Fisher–Yates
            order.swapAt(i, key.below(i + 1, UInt64(i)))
        }
    }
    return order
}
