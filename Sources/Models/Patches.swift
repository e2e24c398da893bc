// What the convolutions share: the patches of an image (one row of a matrix per position of the
// coarser grid, gathered and scattered), so that a batch's whole layer is one product on the
// matrix kernels. Images are channels last, so the product's output already is the next layer's
// input, with no transpose. Kernels are stored as PyTorch stores them: Conv2d [out, in, kh, kw],
// ConvTranspose2d [in, out, kh, kw].
import Kernels

/// How a k × k kernel with `stride` and `padding` walks an image (`image`) and the grid of
/// positions it visits (`grid`): a convolution's input and output, a transposed convolution's
/// output and input.
struct PatchGeometry: Sendable {
    let image: FeatureShape
    let kernel: Int, stride: Int, padding: Int
    let grid: (height: Int, width: Int)

    init(image: FeatureShape, kernel: Int, stride: Int, padding: Int) {
        self.image = image; self.kernel = kernel; self.stride = stride; self.padding = padding
        grid = ((image.height + 2 * padding - kernel) / stride + 1, (image.width + 2 * padding - kernel) / stride + 1)
    }

    var positions: Int { grid.height * grid.width }

    /// The kernel tensor's attributes in a checkpoint (see `TensorView.geometry`).
    func attributes(input: FeatureShape, output: FeatureShape) -> [(name: String, values: [Int])] {
        [("stride", [stride]), ("padding", [padding]),
         ("input_shape", [input.height, input.width, input.channels]),
         ("output_shape", [output.height, output.width, output.channels])]
    }
    /// Values of one patch: channels × kernel × kernel, in the kernel tensors' order (c, ky, kx).
    var patch: Int { image.channels * kernel * kernel }

    /// The patches of `rows` images, [rows · positions, patch]; outside the image reads as 0.
    func gather(_ images: UnsafePointer<Float>, rows: Int, into patches: UnsafeMutablePointer<Float>, pool: ComputePool) {
        let (h, w, c, k, kk) = (image.height, image.width, image.channels, kernel, kernel * kernel)
        pool.parallelFor(rows) { r in
            let x = images + r * image.count
            var out = patches + r * positions * patch
            for oy in 0..<grid.height {
                for ox in 0..<grid.width {
                    for ky in 0..<k {
                        let iy = oy * stride - padding + ky
                        for kx in 0..<k {
                            let ix = ox * stride - padding + kx, at = ky * k + kx
                            if iy < 0 || iy >= h || ix < 0 || ix >= w {
                                for ch in 0..<c { out[ch * kk + at] = 0 }
                            } else {
                                let pixel = x + (iy * w + ix) * c
                                for ch in 0..<c { out[ch * kk + at] = pixel[ch] }
                            }
                        }
                    }
                    out += patch
                }
            }
        }
    }

    /// The adjoint of `gather`: `images` = Σ of the patches over the pixels they cover (zeroed first).
    /// Each image sums its patches in one fixed order, whatever the threads.
    func scatter(_ patches: UnsafePointer<Float>, rows: Int, into images: UnsafeMutablePointer<Float>, pool: ComputePool) {
        let (h, w, c, k, kk) = (image.height, image.width, image.channels, kernel, kernel * kernel)
        pool.parallelFor(rows) { r in
            let x = images + r * image.count
            x.update(repeating: 0, count: image.count)
            var from = patches + r * positions * patch
            for oy in 0..<grid.height {
                for ox in 0..<grid.width {
                    for ky in 0..<k {
                        let iy = oy * stride - padding + ky
                        if iy < 0 || iy >= h { continue }
                        for kx in 0..<k {
                            let ix = ox * stride - padding + kx
                            if ix < 0 || ix >= w { continue }
                            let pixel = x + (iy * w + ix) * c, at = ky * k + kx
                            for ch in 0..<c { pixel[ch] += from[ch * kk + at] }
                        }
                    }
                    from += patch
                }
            }
        }
    }
}

/// What the two convolutions share: a kernel tensor over one patch geometry, then a bias per
/// output channel; one gradient range, final after the weight product.
protocol PatchLayer: Layer {
    var geometry: PatchGeometry { get }
    var weight: Int { get }
    var bias: Int { get }
}

extension PatchLayer {
    var parameters: Range<Int> { weight..<(bias + output.channels) }
    /// PyTorch's fan-in: in · kh · kw for Conv2d; out · kh · kw for ConvTranspose2d's [in, out, kh, kw].
    var fanIn: Int { geometry.patch }
    func scratchCount(rows: Int) -> Int { rows * geometry.positions * geometry.patch }
    func finalRanges(weightBlocks: Int) -> [Range<Int>] { [parameters] }
}

