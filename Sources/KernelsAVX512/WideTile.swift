// The AVX-512 micro-kernels. This module alone is compiled for AVX-512 (see Package.swift); the
// matrix product calls it only after the CPU reported AVX-512 at run time (Kernels/InstructionSet).
#if arch(x86_64)
import RegisterTiles

/// 6 × 32 over two adjacent B strips, sixteen-wide vectors: twice the columns of `Tile` per k step.
typealias WideTile = PairTile<SIMD16<Float>>

/// The AVX-512 path: the 6 × 32 tile, and the 16- and 8-wide tiles compiled for AVX-512 too.
public enum AVX512Kernels {
    public static let routines = TileRoutines(wide: TileKernel(WideTile.self), full: TileKernel(Tile.self),
                                              half: TileKernel(HalfTile.self))
}
#endif
