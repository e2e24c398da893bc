// VectorMath: 8-wide exp, log1p on [0, 1], sigmoid and tanh for the element-wise passes (the Bernoulli
// loss, activations). Each lane is a fixed function of its input: results do not depend on which
// lane, row or thread computes them. Accuracy: within about 2 ulp of the correctly rounded value
// (checked against Double in KernelsTests.VectorMathTests).

public enum VectorMath {
    public typealias V = SIMD8<Float>

    /// e^x, lane by lane. Below about -87.3 the result is clamped to e^-87.3 (≈ 1.2e-38, the smallest
    /// normal float region); above 88.7 to e^88.7. Cody–Waite reduction x = n·ln2 + r, |r| ≤ ln2/2,
    /// degree-6 polynomial for e^r, scale by 2^n through the exponent bits.
    @inline(__always)
    public static func exp(_ x: V) -> V {
        // Only operations that lower to vector instructions: the generic SIMD conversions and
        // `rounded`/`clamped` compile to scalar library calls.
        let lo = V(repeating: -87.33654), hi = V(repeating: 88.72283)
        var xc = x.replacing(with: lo, where: x .< lo)
        xc = xc.replacing(with: hi, where: xc .> hi)
        // n = round(x·log2 e): adding 1.5·2^23 rounds to an integer held in the low mantissa bits.
        let magic = V(repeating: 12_582_912)
        let t = magic.addingProduct(xc, V(repeating: 1.44269504088896341))
        let n = t - magic
        var r = xc.addingProduct(n, V(repeating: -0.693359375))
        r = r.addingProduct(n, V(repeating: 2.12194440e-4))
        // e^r ≈ 1 + r + r²·P(r) (Cephes expf coefficients)
        var p = V(repeating: 1.9875691500e-4)
        p = V(repeating: 1.3981999507e-3).addingProduct(p, r)
        p = V(repeating: 8.3334519073e-3).addingProduct(p, r)
        p = V(repeating: 4.1665795894e-2).addingProduct(p, r)
        p = V(repeating: 1.6666665459e-1).addingProduct(p, r)
        p = V(repeating: 5.0000001201e-1).addingProduct(p, r)
        let r2 = r * r
        let er = (r + 1).addingProduct(p, r2)
        // 2^n with n in [-126, 128]: split as 2^(n/2)·2^(n - n/2) so both factors are normal floats.
        let ni = unsafeBitCast(bits(t) &- bits(magic), to: SIMD8<Int32>.self)
        let half = ni &>> 1
        let bias = SIMD8<Int32>(repeating: 127)
        let s1 = unsafeBitCast((half &+ bias) &<< 23, to: V.self)
        let s2 = unsafeBitCast((ni &- half &+ bias) &<< 23, to: V.self)
        return er * s1 * s2
    }

    /// log(1 + e) for e in [0, 1]: with s = e / (2 + e) (in [0, 1/3]), log(1 + e) = 2·atanh(s)
    /// = 2s·(1 + s²/3 + s⁴/5 + ...), summed to s¹⁴ (truncation below 2e-9 relative).
    @inline(__always)
    public static func log1pUnit(_ e: V) -> V {
        let s = e / (e + 2)
        let w = s * s
        var p = V(repeating: 1.0 / 15)
        p = V(repeating: 1.0 / 13).addingProduct(p, w)
        p = V(repeating: 1.0 / 11).addingProduct(p, w)
        p = V(repeating: 1.0 / 9).addingProduct(p, w)
        p = V(repeating: 1.0 / 7).addingProduct(p, w)
        p = V(repeating: 1.0 / 5).addingProduct(p, w)
        p = V(repeating: 1.0 / 3).addingProduct(p, w)
        let t = 2 * s
        return t.addingProduct(t * w, p)
    }

    /// 1 / (1 + e^-x), computed from e = e^-|x| so that no lane overflows.
    @inline(__always)
    public static func sigmoid(_ x: V) -> V {
        let e = exp(-abs(x))
        let r = 1 / (1 + e)
        return r.replacing(with: e * r, where: x .< 0)
    }

    /// tanh x: an odd Taylor polynomial to x¹¹ for |x| < 0.25, (1 - e)/(1 + e) with e = e^-2|x| otherwise.
    @inline(__always)
    public static func tanh(_ x: V) -> V {
        let a = abs(x)
        let e = exp(-2 * a)
        let big = (1 - e) / (1 + e)
        let w = a * a
        var p = V(repeating: -1382.0 / 155925)
        p = V(repeating: 62.0 / 2835).addingProduct(p, w)
        p = V(repeating: -17.0 / 315).addingProduct(p, w)
        p = V(repeating: 2.0 / 15).addingProduct(p, w)
        p = V(repeating: -1.0 / 3).addingProduct(p, w)
        let small = a.addingProduct(a * w, p)
        let t = big.replacing(with: small, where: a .< 0.25)
        // Put the sign back: copy x's sign bit onto t.
        let signBit = SIMD8<UInt32>(repeating: 0x8000_0000)
        return floats(bits(t) | (bits(x) & signBit))
    }

    /// |x| by clearing the sign bit (pointwiseMax(x, -x) does not vectorise; TOOLCHAIN.md).
    @inline(__always)
    public static func abs(_ x: V) -> V {
        floats(bits(x) & SIMD8<UInt32>(repeating: 0x7FFF_FFFF))
    }

    @inline(__always)
    static func bits(_ x: V) -> SIMD8<UInt32> { unsafeBitCast(x, to: SIMD8<UInt32>.self) }

    @inline(__always)
    static func floats(_ x: SIMD8<UInt32>) -> V { unsafeBitCast(x, to: V.self) }

    @inline(__always)
    public static func load(_ p: UnsafePointer<Float>) -> V {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }

    @inline(__always)
    public static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
    }

    /// The first `count` (< 8) floats at p, the other lanes `fill`.
    @inline(__always)
    public static func loadPartial(_ p: UnsafePointer<Float>, count: Int, fill: Float = 0) -> V {
        var v = V(repeating: fill)
        for i in 0..<count { v[i] = p[i] }
        return v
    }

    @inline(__always)
    public static func storePartial(_ v: V, _ p: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { p[i] = v[i] }
    }

    /// The sum of the 8 lanes in one fixed order: ((0+4)+(1+5)) + ((2+6)+(3+7)).
    @inline(__always)
    public static func laneSum(_ v: V) -> Float {
        let h = v.lowHalf + v.highHalf
        let q = h.evenHalf + h.oddHalf
        return q[0] + q[1]
    }
}
