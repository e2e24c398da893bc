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
    /// Values of one patch: kernel × kernel × channels in (ky, kx, c) order, channels last as the
    /// images are, so that each kernel row of a patch is one contiguous copy. The kernel tensors
    /// hold this order in the parameter buffer and PyTorch's in a checkpoint (`TensorView.bufferAxes`).
    var patch: Int { kernel * kernel * image.channels }

    /// The kernel tensor's axes as the buffer holds them: PyTorch's [out, in, kh, kw] (Conv2d) or
    /// [in, out, kh, kw] (ConvTranspose2d) with the patch's channels moved last.
    static let kernelBufferAxes = [0, 2, 3, 1]

    /// The kernel columns `kx` in 0..<k whose pixel `x0 + kx` lies inside the image: lo..<hi.
    @inline(__always)
    private func inside(_ x0: Int) -> (lo: Int, hi: Int) {
        let lo = min(kernel, max(0, -x0))
        return (lo, max(lo, min(kernel, image.width - x0)))
    }

    /// The patches of `rows` images, [rows · positions, patch]; outside the image reads as 0.
    func gather(_ images: UnsafePointer<Float>, rows: Int, into patches: UnsafeMutablePointer<Float>, pool: ComputePool) {
        let (h, w, c, k) = (image.height, image.width, image.channels, kernel)
        let rowLength = k * c
        pool.parallelFor(rows) { r in
            let x = images + r * image.count
            var out = patches + r * positions * patch
            for oy in 0..<grid.height {
                for ox in 0..<grid.width {
                    let x0 = ox * stride - padding, (lo, hi) = inside(x0)
                    for ky in 0..<k {
                        let iy = oy * stride - padding + ky, row = out + ky * rowLength
                        if iy < 0 || iy >= h {
                            row.update(repeating: 0, count: rowLength)
                            continue
                        }
                        row.update(repeating: 0, count: lo * c)
                        (row + lo * c).update(from: x + (iy * w + x0 + lo) * c, count: (hi - lo) * c)
                        (row + hi * c).update(repeating: 0, count: (k - hi) * c)
                    }
                    out += patch
                }
            }
        }
    }

    /// The adjoint of `gather`: `images` = Σ of the patches over the pixels they cover (zeroed first).
    /// Each pixel sums its patches in position order, whatever the threads.
    func scatter(_ patches: UnsafePointer<Float>, rows: Int, into images: UnsafeMutablePointer<Float>, pool: ComputePool) {
        let (h, w, c, k) = (image.height, image.width, image.channels, kernel)
        let rowLength = k * c
        pool.parallelFor(rows) { r in
            let x = images + r * image.count
            x.update(repeating: 0, count: image.count)
            var from = patches + r * positions * patch
            for oy in 0..<grid.height {
                for ox in 0..<grid.width {
                    let x0 = ox * stride - padding, (lo, hi) = inside(x0)
                    for ky in 0..<k {
                        let iy = oy * stride - padding + ky
                        if iy < 0 || iy >= h { continue }
                        let pixels = x + (iy * w + x0 + lo) * c, values = from + ky * rowLength + lo * c
                        for i in 0..<((hi - lo) * c) { pixels[i] += values[i] }
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


/// What the two convolutions' entries share: `{KEY: C, kernel: K, stride: S, padding: P}`,
/// stride 1 and padding 0 unless given, on data with an image shape.
protocol PatchLayerKind: LayerKind {
    var channels: Int { get }
    var kernel: Int { get }
    var stride: Int { get }
    var padding: Int { get }
    init(channels: Int, kernel: Int, stride: Int, padding: Int)
}

extension PatchLayerKind {
    static var fields: [LayerField] {
        [LayerField(name: key, meaning: "output channels", minimum: 1, defaultValue: nil, placeholder: "C"),
         LayerField(name: "kernel", meaning: "kernel size", minimum: 1, defaultValue: nil, placeholder: "K"),
         LayerField(name: "stride", meaning: "stride", minimum: 1, defaultValue: 1, placeholder: "S"),
         LayerField(name: "padding", meaning: "zero padding", minimum: 0, defaultValue: 0, placeholder: "P")]
    }
    static var seesImages: Bool { true }
    init(values: [Int]) { self.init(channels: values[0], kernel: values[1], stride: values[2], padding: values[3]) }
    var values: [Int] { [channels, kernel, stride, padding] }

    /// Why the kernel cannot walk `image` (the layer's `side`, "input" or "output"), if it cannot:
    /// the data has no image shape, or the kernel is larger than the padded image.
    func checkImage(_ image: FeatureShape, side: String, at site: LayerSite) throws {
        guard site.dataHasImageShape else {
            throw ModelProblem("\(site.entry) is a \(Self.noun), but the data has no image shape (an N-D dataset, data.image_shape or the file's image_shape attribute)")
        }
        guard image.height + 2 * padding >= kernel, image.width + 2 * padding >= kernel else {
            throw ModelProblem("\(site.entry) (kernel \(kernel), padding \(padding)) does not fit its \(image) \(side)")
        }
    }
}
