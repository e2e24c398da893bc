// The portable micro-kernels: the same tiles compiled with no instruction-set flags (on x86-64 that
// is SSE2, where each fused multiply-add becomes a call to fmaf: slow, and bitwise the same as the
// vector paths). It is the path on CPUs that report neither AVX2 nor AVX-512, and on other
// architectures, where the whole package is built without flags.
import RegisterTiles

public enum PortableKernels {
    public static let routines = TileRoutines(wide: nil, full: TileKernel(Tile.self), half: TileKernel(HalfTile.self))
}
