// The eigendecomposition of a real symmetric matrix in double precision: Householder reduction to
// tridiagonal form, then the implicit QL algorithm with shifts (EISPACK tred2/tql2, as in JAMA).
// Single-threaded and deterministic: the same input gives the same bits everywhere.
#if canImport(Glibc)
import Glibc
#endif

public struct SymmetricEigen {
    /// Eigenvalues, largest first.
    public let values: [Double]
    /// Eigenvectors, one per row, in the order of `values`: `vectors[i * n ..< (i + 1) * n]`, unit length,
    /// each with its largest-magnitude entry positive (a fixed sign, so results are reproducible).
    public let vectors: [Double]
    public let n: Int

    /// Decomposes the n × n symmetric matrix `matrix` (row-major; only its values are read, the
    /// matrix is assumed symmetric).
    public init(symmetric matrix: [Double], n: Int) {
        precondition(n > 0 && matrix.count == n * n, "SymmetricEigen: \(matrix.count) values for \(n) x \(n)")
        self.n = n
        var v = matrix          // V[i][j] = v[i * n + j]
        var d = [Double](repeating: 0, count: n)
        var e = [Double](repeating: 0, count: n)
        SymmetricEigen.tridiagonalise(&v, &d, &e, n)
        // tql2 rotates columns of V; work on its transpose so that the rotations touch rows.
        var w = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for k in 0..<n { w[i * n + k] = v[k * n + i] } }
        SymmetricEigen.diagonalise(&w, &d, &e, n)
        let order = (0..<n).sorted { d[$0] != d[$1] ? d[$0] > d[$1] : $0 < $1 }
        var vectors = [Double](repeating: 0, count: n * n)
        for (row, i) in order.enumerated() {
            var big = 0
            for k in 0..<n where abs(w[i * n + k]) > abs(w[i * n + big]) { big = k }
            let sign: Double = w[i * n + big] < 0 ? -1 : 1
            for k in 0..<n { vectors[row * n + k] = sign * w[i * n + k] }
        }
        values = order.map { d[$0] }
        self.vectors = vectors
    }

    /// Householder reduction to tridiagonal form (EISPACK tred2): d the diagonal, e the sub-diagonal
    /// in e[1...], v the accumulated orthogonal transformation.
    private static func tridiagonalise(_ V: inout [Double], _ d: inout [Double], _ e: inout [Double], _ n: Int) {
        V.withUnsafeMutableBufferPointer { V in
        d.withUnsafeMutableBufferPointer { d in
        e.withUnsafeMutableBufferPointer { e in
            for j in 0..<n { d[j] = V[(n - 1) * n + j] }
            var i = n - 1
            while i > 0 {
                var scale = 0.0, h = 0.0
                for k in 0..<i { scale += abs(d[k]) }
                if scale == 0 {
                    e[i] = d[i - 1]
                    for j in 0..<i {
                        d[j] = V[(i - 1) * n + j]
                        V[i * n + j] = 0
                        V[j * n + i] = 0
                    }
                } else {
                    for k in 0..<i { d[k] /= scale; h += d[k] * d[k] }
                    var f = d[i - 1]
                    var g = h.squareRoot()
                    if f > 0 { g = -g }
                    e[i] = scale * g
                    h -= f * g
                    d[i - 1] = f - g
                    for j in 0..<i { e[j] = 0 }
                    for j in 0..<i {
                        f = d[j]
                        V[j * n + i] = f
                        g = e[j] + V[j * n + j] * f
                        var k = j + 1
                        while k <= i - 1 {
                            g += V[k * n + j] * d[k]
                            e[k] += V[k * n + j] * f
                            k += 1
                        }
                        e[j] = g
                    }
                    f = 0
                    for j in 0..<i { e[j] /= h; f += e[j] * d[j] }
                    let hh = f / (h + h)
                    for j in 0..<i { e[j] -= hh * d[j] }
                    for j in 0..<i {
                        f = d[j]; g = e[j]
                        var k = j
                        while k <= i - 1 {
                            V[k * n + j] -= (f * e[k] + g * d[k])
                            k += 1
                        }
                        d[j] = V[(i - 1) * n + j]
                        V[i * n + j] = 0
                    }
                }
                d[i] = h
                i -= 1
            }
            // Accumulate the transformations.
            if n > 1 {
                for i in 0..<(n - 1) {
                    V[(n - 1) * n + i] = V[i * n + i]
                    V[i * n + i] = 1
                    let h = d[i + 1]
                    if h != 0 {
                        for k in 0...i { d[k] = V[k * n + i + 1] / h }
                        for j in 0...i {
                            var g = 0.0
                            for k in 0...i { g += V[k * n + i + 1] * V[k * n + j] }
                            for k in 0...i { V[k * n + j] -= g * d[k] }
                        }
                    }
                    for k in 0...i { V[k * n + i + 1] = 0 }
                }
            }
            for j in 0..<n { d[j] = V[(n - 1) * n + j]; V[(n - 1) * n + j] = 0 }
            V[(n - 1) * n + n - 1] = 1
            e[0] = 0
        }}}
    }

    /// Implicit QL with shifts on the tridiagonal (d, e) (EISPACK tql2); `W` holds the transformation
    /// transposed (eigenvector j ends up in row j).
    private static func diagonalise(_ W: inout [Double], _ d: inout [Double], _ e: inout [Double], _ n: Int) {
        W.withUnsafeMutableBufferPointer { W in
        d.withUnsafeMutableBufferPointer { d in
        e.withUnsafeMutableBufferPointer { e in
            for i in 1..<max(n, 1) { e[i - 1] = e[i] }
            e[n - 1] = 0
            var f = 0.0, tst1 = 0.0
            let eps = Double.ulpOfOne
            for l in 0..<n {
                tst1 = max(tst1, abs(d[l]) + abs(e[l]))
                var m = l
                while m < n - 1 {
                    if abs(e[m]) <= eps * tst1 { break }
                    m += 1
                }
                if m > l {
                    var iterations = 0
                    repeat {
                        iterations += 1
                        if iterations > 60 { break }   // never seen in practice; keeps a pathological input finite
                        var g = d[l]
                        var p = (d[l + 1] - g) / (2 * e[l])
                        var r = hypot(p, 1)
                        if p < 0 { r = -r }
                        d[l] = e[l] / (p + r)
                        d[l + 1] = e[l] * (p + r)
                        let dl1 = d[l + 1]
                        var h = g - d[l]
                        if l + 2 < n { for i in (l + 2)..<n { d[i] -= h } }
                        f += h
                        p = d[m]
                        var c = 1.0, c2 = 1.0, c3 = 1.0
                        let el1 = e[l + 1]
                        var s = 0.0, s2 = 0.0
                        var i = m - 1
                        while i >= l {
                            c3 = c2; c2 = c; s2 = s
                            g = c * e[i]
                            h = c * p
                            r = hypot(p, e[i])
                            e[i + 1] = s * r
                            s = e[i] / r
                            c = p / r
                            p = c * d[i] - s * g
                            d[i + 1] = h + s * (c * g + s * d[i])
                            let a = W.baseAddress! + i * n, b = W.baseAddress! + (i + 1) * n
                            for k in 0..<n {
                                let hk = b[k]
                                b[k] = s * a[k] + c * hk
                                a[k] = c * a[k] - s * hk
                            }
                            i -= 1
                        }
                        p = -s * s2 * c3 * el1 * e[l] / dl1
                        e[l] = s * p
                        d[l] = c * p
                    } while abs(e[l]) > eps * tst1
                }
                d[l] += f
                e[l] = 0
            }
        }}}
    }
}
