// Packing: copies blocks of op(A) and op(B) into the strip layouts the micro-kernel reads,
// padding partial strips with zeros so edge tiles run the same arithmetic as full ones.
import RegisterTiles

/// A row-major matrix as the product sees it: op(M)[i][j] is base[i*ld + j], or base[j*ld + i] when transposed.
struct Operand {
    let base: UnsafePointer<Float>
    let ld: Int
    let transposed: Bool

    /// Rows `row ..< row + MR` of op(M) from column `step` on, read in place by a tile.
    func rows(from row: Int, step: Int) -> ARows {
        transposed ? ARows(base: base + step * ld + row, rowStride: 1, stepStride: ld)
                   : ARows(base: base + row * ld + step, rowStride: ld, stepStride: 1)
    }
}

enum Packing {
    /// Packs op(A)[rows, p0 ..< p0+kc] into strips of MR rows: strip s holds kc × MR floats,
    /// element (p, r) at dst[s*kc*MR + p*MR + r]. Rows past `rows.upperBound` are zeros.
    static func packA(_ a: Operand, rows: Range<Int>, p0: Int, kc: Int, into dst: UnsafeMutablePointer<Float>) {
        let mr = MicroKernel.mr
        var i0 = rows.lowerBound
        var out = dst
        while i0 < rows.upperBound {
            let valid = min(mr, rows.upperBound - i0)
            if a.transposed {
                // op(A)[i][p] = base[p*ld + i]: each k step is MR contiguous floats.
                var src = a.base + p0 * a.ld + i0
                if valid == mr {
                    for p in 0..<kc {
                        let o = out + p * mr
                        o[0] = src[0]; o[1] = src[1]; o[2] = src[2]
                        o[3] = src[3]; o[4] = src[4]; o[5] = src[5]
                        src += a.ld
                    }
                } else {
                    for p in 0..<kc {
                        let o = out + p * mr
                        for r in 0..<mr { o[r] = r < valid ? src[r] : 0 }
                        src += a.ld
                    }
                }
            } else if valid == mr && kc >= 8 {
                transposePack6(a.base + i0 * a.ld + p0, ld: a.ld, kc: kc, into: out)
            } else {
                // op(A)[i][p] = base[i*ld + p]: read rows, write with stride MR.
                for r in 0..<mr {
                    let o = out + r
                    if r < valid {
                        let src = a.base + (i0 + r) * a.ld + p0
                        for p in 0..<kc { o[p * mr] = src[p] }
                    } else {
                        for p in 0..<kc { o[p * mr] = 0 }
                    }
                }
            }
            out += kc * mr
            i0 += mr
        }
    }

    /// Packs op(B)[p0 ..< p0+kc, cols] into strips of NR columns: strip s holds kc × NR floats,
    /// element (p, j) at dst[s*kc*NR + p*NR + j]. Columns past `cols.upperBound` are zeros.
    static func packB(_ b: Operand, cols: Range<Int>, p0: Int, kc: Int, into dst: UnsafeMutablePointer<Float>) {
        let nr = MicroKernel.nr
        var j0 = cols.lowerBound
        var out = dst
        while j0 < cols.upperBound {
            let valid = min(nr, cols.upperBound - j0)
            if !b.transposed {
                // op(B)[p][j] = base[p*ld + j]: each k step is NR contiguous floats.
                var src = b.base + p0 * b.ld + j0
                if valid == nr {
                    let ro = UnsafeMutableRawPointer(out)
                    for p in 0..<kc {
                        let rs = UnsafeRawPointer(src)
                        ro.storeBytes(of: rs.loadUnaligned(as: SIMD8<Float>.self),
                                      toByteOffset: p * 64, as: SIMD8<Float>.self)
                        ro.storeBytes(of: rs.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self),
                                      toByteOffset: p * 64 + 32, as: SIMD8<Float>.self)
                        src += b.ld
                    }
                } else {
                    for p in 0..<kc {
                        let o = out + p * nr
                        for j in 0..<nr { o[j] = j < valid ? src[j] : 0 }
                        src += b.ld
                    }
                }
            } else {
                // op(B)[p][j] = base[j*ld + p]: read rows of the stored matrix, write with stride NR.
                if valid == nr && kc >= 8 {
                    transposePack16(b.base + j0 * b.ld + p0, ld: b.ld, kc: kc, into: out)
                } else {
                    for j in 0..<nr {
                        let o = out + j
                        if j < valid {
                            let src = b.base + (j0 + j) * b.ld + p0
                            for p in 0..<kc { o[p * nr] = src[p] }
                        } else {
                            for p in 0..<kc { o[p * nr] = 0 }
                        }
                    }
                }
            }
            out += kc * nr
            j0 += nr
        }
    }

    /// dst[p*6 + r] = src[r*ld + p] for r < 6, p < kc: 8 × 8 blocks (rows 6 and 7 repeat row 5) transposed
    /// in registers and stored 8 wide at stride 6, each store's last two lanes overwritten by the next.
    /// The last store writes 2 floats past the strip: packed-A buffers carry `packSlack` floats of room.
    @inline(__always)
    private static func transposePack6(_ src: UnsafePointer<Float>, ld: Int, kc: Int,
                                       into dst: UnsafeMutablePointer<Float>) {
        let rs = UnsafeRawPointer(src), rd = UnsafeMutableRawPointer(dst)
        var p = 0
        while p + 8 <= kc {
            let row = rs + p * 4
            let r5 = row.loadUnaligned(fromByteOffset: 5 * ld * 4, as: SIMD8<Float>.self)
            let t = transpose8x8(
                row.loadUnaligned(as: SIMD8<Float>.self),
                row.loadUnaligned(fromByteOffset: ld * 4, as: SIMD8<Float>.self),
                row.loadUnaligned(fromByteOffset: 2 * ld * 4, as: SIMD8<Float>.self),
                row.loadUnaligned(fromByteOffset: 3 * ld * 4, as: SIMD8<Float>.self),
                row.loadUnaligned(fromByteOffset: 4 * ld * 4, as: SIMD8<Float>.self),
                r5, r5, r5)
            let out = rd + p * 6 * 4
            out.storeBytes(of: t.0, toByteOffset: 0, as: SIMD8<Float>.self)
            out.storeBytes(of: t.1, toByteOffset: 24, as: SIMD8<Float>.self)
            out.storeBytes(of: t.2, toByteOffset: 48, as: SIMD8<Float>.self)
            out.storeBytes(of: t.3, toByteOffset: 72, as: SIMD8<Float>.self)
            out.storeBytes(of: t.4, toByteOffset: 96, as: SIMD8<Float>.self)
            out.storeBytes(of: t.5, toByteOffset: 120, as: SIMD8<Float>.self)
            out.storeBytes(of: t.6, toByteOffset: 144, as: SIMD8<Float>.self)
            out.storeBytes(of: t.7, toByteOffset: 168, as: SIMD8<Float>.self)
            p += 8
        }
        if p < kc {
            for r in 0..<6 {
                let s = src + r * ld
                let o = dst + r
                for q in p..<kc { o[q * 6] = s[q] }
            }
        }
    }

    /// Floats of room a packed-A buffer needs past its last strip (see transposePack6).
    static let packSlack = 8

    /// dst[p*16 + j] = src[j*ld + p] for j < 16, p < kc: 8 × 8 blocks transposed in registers.
    @inline(__always)
    private static func transposePack16(_ src: UnsafePointer<Float>, ld: Int, kc: Int,
                                        into dst: UnsafeMutablePointer<Float>) {
        let rs = UnsafeRawPointer(src), rd = UnsafeMutableRawPointer(dst)
        var p = 0
        while p + 8 <= kc {
            for half in 0..<2 {
                let row = rs + (half * 8 * ld + p) * 4
                let t = transpose8x8(
                    row.loadUnaligned(as: SIMD8<Float>.self),
                    row.loadUnaligned(fromByteOffset: ld * 4, as: SIMD8<Float>.self),
                    row.loadUnaligned(fromByteOffset: 2 * ld * 4, as: SIMD8<Float>.self),
                    row.loadUnaligned(fromByteOffset: 3 * ld * 4, as: SIMD8<Float>.self),
                    row.loadUnaligned(fromByteOffset: 4 * ld * 4, as: SIMD8<Float>.self),
                    row.loadUnaligned(fromByteOffset: 5 * ld * 4, as: SIMD8<Float>.self),
                    row.loadUnaligned(fromByteOffset: 6 * ld * 4, as: SIMD8<Float>.self),
                    row.loadUnaligned(fromByteOffset: 7 * ld * 4, as: SIMD8<Float>.self))
                let out = rd + (p * 16 + half * 8) * 4
                out.storeBytes(of: t.0, toByteOffset: 0, as: SIMD8<Float>.self)
                out.storeBytes(of: t.1, toByteOffset: 64, as: SIMD8<Float>.self)
                out.storeBytes(of: t.2, toByteOffset: 128, as: SIMD8<Float>.self)
                out.storeBytes(of: t.3, toByteOffset: 192, as: SIMD8<Float>.self)
                out.storeBytes(of: t.4, toByteOffset: 256, as: SIMD8<Float>.self)
                out.storeBytes(of: t.5, toByteOffset: 320, as: SIMD8<Float>.self)
                out.storeBytes(of: t.6, toByteOffset: 384, as: SIMD8<Float>.self)
                out.storeBytes(of: t.7, toByteOffset: 448, as: SIMD8<Float>.self)
            }
            p += 8
        }
        if p < kc {
            for j in 0..<16 {
                let s = src + j * ld
                let o = dst + j
                for q in p..<kc { o[q * 16] = s[q] }
            }
        }
    }

    /// Transposes the 8 × 8 block whose rows are v0...v7. Each of three stages takes vector pairs
    /// (v[2i], v[2i+1]) to (evens of both, odds of both): row bits rotate into lane bits, and after
    /// three stages row and lane indices have swapped.
    @inline(__always)
    static func transpose8x8(_ v0: SIMD8<Float>, _ v1: SIMD8<Float>, _ v2: SIMD8<Float>, _ v3: SIMD8<Float>,
                             _ v4: SIMD8<Float>, _ v5: SIMD8<Float>, _ v6: SIMD8<Float>, _ v7: SIMD8<Float>)
        -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>,
            SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
        @inline(__always)
        func stage(_ v: (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>,
                         SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>))
            -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>,
                SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
            (SIMD8(lowHalf: v.0.evenHalf, highHalf: v.1.evenHalf),
             SIMD8(lowHalf: v.2.evenHalf, highHalf: v.3.evenHalf),
             SIMD8(lowHalf: v.4.evenHalf, highHalf: v.5.evenHalf),
             SIMD8(lowHalf: v.6.evenHalf, highHalf: v.7.evenHalf),
             SIMD8(lowHalf: v.0.oddHalf, highHalf: v.1.oddHalf),
             SIMD8(lowHalf: v.2.oddHalf, highHalf: v.3.oddHalf),
             SIMD8(lowHalf: v.4.oddHalf, highHalf: v.5.oddHalf),
             SIMD8(lowHalf: v.6.oddHalf, highHalf: v.7.oddHalf))
        }
        return stage(stage(stage((v0, v1, v2, v3, v4, v5, v6, v7))))
    }
}
