// 2-D convolution and transposed convolution on the matrix kernels: each gathers the kernel-sized
// patches of its image into the rows of a matrix (one row per position of the coarser grid), so that
// a batch's whole layer is one product. Images are channels last, so the product's output already
// is the next layer's input, with no transpose. Kernels are stored as PyTorch stores them:
// Conv2d [out, in, kh, kw], ConvTranspose2d [in, out, kh, kw].
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

/// y = f(conv(x, W) + b): `output.channels` filters over patches of `input`.
struct Conv2D: PatchLayer {
    let input: FeatureShape
    let output: FeatureShape
    let activation: Activation
    let geometry: PatchGeometry
    let weight: Int, bias: Int
    let tensors: [TensorView]

    init(_ name: String, input: FeatureShape, channels: Int, kernel: Int, stride: Int, padding: Int,
         activation: Activation, offset: Int) {
        geometry = PatchGeometry(image: input, kernel: kernel, stride: stride, padding: padding)
        self.input = input
        output = FeatureShape(height: geometry.grid.height, width: geometry.grid.width, channels: channels)
        self.activation = activation
        weight = offset; bias = offset + channels * geometry.patch
        tensors = [TensorView(name: "\(name).weight", offset: weight, shape: [channels, input.channels, kernel, kernel],
                              layer: "conv2d", geometry: geometry.attributes(input: input, output: output)),
                   TensorView(name: "\(name).bias", offset: bias, shape: [channels])]
    }


    func forward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, rows: Int,
                 parameters p: UnsafePointer<Float>, scratch: LayerScratch, pool: ComputePool) {
        let (m, n, k) = (rows * geometry.positions, output.channels, geometry.patch)
        geometry.gather(inp, rows: rows, into: scratch.own, pool: pool)
        matrixProduct(m: m, n: n, k: k, a: scratch.own, lda: k, transposeA: false,
                      b: p + weight, ldb: k, transposeB: true, c: out, ldc: n, accumulate: false, pool: pool)
        addBiasAndActivate(out, bias: p + bias, rows: m, columns: n, activation: activation, pool: pool)
    }

    /// db = Σ dout over samples and positions, dW = doutᵀ patches (the sums over a micro-batch's
    /// positions are one chunk of the tree), then dinp = scatter(dout W).
    func backward(dinp: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                  rows: Int, chunk: Int, parameters p: UnsafePointer<Float>, gradients g: UnsafeMutablePointer<Float>,
                  scratch: LayerScratch, weightBlocks: Int, pool: ComputePool,
                  report: (BackwardEvent) throws -> Void) rethrows {
        let positions = geometry.positions, (m, n, k) = (rows * positions, output.channels, geometry.patch)
        columnSums(dout, rows: m, columns: n, chunk: chunk * positions, into: g + bias, scratch: scratch.columnSums)
        geometry.gather(inp, rows: rows, into: scratch.own, pool: pool)
        matrixProduct(m: n, n: k, k: m, a: dout, lda: n, transposeA: true, b: scratch.own, ldb: k, transposeB: false,
                      c: g + weight, ldc: k, accumulate: false, reductionChunk: chunk * positions, pool: pool)
        try report(.gradientsFinal(parameters))
        if let dinp {
            matrixProduct(m: m, n: k, k: n, a: dout, lda: n, transposeA: false, b: p + weight, ldb: k, transposeB: false,
                          c: scratch.own, ldc: k, accumulate: false, pool: pool)
            geometry.scatter(scratch.own, rows: rows, into: dinp, pool: pool)
            try report(.betweenProducts)
        }
    }
}

/// y = f(convᵀ(x, W) + b): the adjoint of a convolution from `output` to `input` (PyTorch's
/// ConvTranspose2d; where the stride leaves the output larger than the kernels reach, as PyTorch's
/// output_padding, those pixels get only the bias).
struct ConvTranspose2D: PatchLayer {
    let input: FeatureShape
    let output: FeatureShape
    let activation: Activation
    let geometry: PatchGeometry
    let weight: Int, bias: Int
    let tensors: [TensorView]

    /// Returns nil when a convolution of `output` with this kernel does not give `input`'s grid.
    init?(_ name: String, input: FeatureShape, output: FeatureShape, kernel: Int, stride: Int, padding: Int,
          activation: Activation, offset: Int) {
        geometry = PatchGeometry(image: output, kernel: kernel, stride: stride, padding: padding)
        guard geometry.grid == (input.height, input.width) else { return nil }
        self.input = input; self.output = output; self.activation = activation
        weight = offset; bias = offset + input.channels * geometry.patch
        tensors = [TensorView(name: "\(name).weight", offset: weight, shape: [input.channels, output.channels, kernel, kernel],
                              layer: "conv_transpose2d", geometry: geometry.attributes(input: input, output: output)),
                   TensorView(name: "\(name).bias", offset: bias, shape: [output.channels])]
    }


    func forward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, rows: Int,
                 parameters p: UnsafePointer<Float>, scratch: LayerScratch, pool: ComputePool) {
        let (m, n, k) = (rows * geometry.positions, geometry.patch, input.channels)
        matrixProduct(m: m, n: n, k: k, a: inp, lda: k, transposeA: false,
                      b: p + weight, ldb: n, transposeB: false, c: scratch.own, ldc: n, accumulate: false, pool: pool)
        geometry.scatter(scratch.own, rows: rows, into: out, pool: pool)
        addBiasAndActivate(out, bias: p + bias, rows: rows * output.positions, columns: output.channels,
                           activation: activation, pool: pool)
    }

    /// db = Σ dout, dW = inpᵀ patches(dout) (a micro-batch's positions one chunk of the tree), then
    /// dinp = patches(dout) Wᵀ.
    func backward(dinp: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                  rows: Int, chunk: Int, parameters p: UnsafePointer<Float>, gradients g: UnsafeMutablePointer<Float>,
                  scratch: LayerScratch, weightBlocks: Int, pool: ComputePool,
                  report: (BackwardEvent) throws -> Void) rethrows {
        let positions = geometry.positions, (m, n, k) = (rows * positions, geometry.patch, input.channels)
        columnSums(dout, rows: rows * output.positions, columns: output.channels, chunk: chunk * output.positions,
                   into: g + bias, scratch: scratch.columnSums)
        geometry.gather(dout, rows: rows, into: scratch.own, pool: pool)
        matrixProduct(m: k, n: n, k: m, a: inp, lda: k, transposeA: true, b: scratch.own, ldb: n, transposeB: false,
                      c: g + weight, ldc: n, accumulate: false, reductionChunk: chunk * positions, pool: pool)
        try report(.gradientsFinal(parameters))
        if let dinp {
            matrixProduct(m: m, n: k, k: n, a: scratch.own, lda: n, transposeA: false, b: p + weight, ldb: n, transposeB: true,
                          c: dinp, ldc: k, accumulate: false, pool: pool)
            try report(.betweenProducts)
        }
    }
}
