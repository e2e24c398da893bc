// The transposed 2-D convolution (PyTorch's ConvTranspose2d): one product, then scatter the patches.
import Kernels

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

    /// A convolution of `output` with this kernel must give `input`'s grid.
    init(_ name: String, input: FeatureShape, output: FeatureShape, kernel: Int, stride: Int, padding: Int,
          activation: Activation, offset: Int) {
        geometry = PatchGeometry(image: output, kernel: kernel, stride: stride, padding: padding)
        precondition(geometry.grid == (input.height, input.width), "\(name): \(output) does not convolve to \(input)")
        self.input = input; self.output = output; self.activation = activation
        weight = offset; bias = offset + input.channels * geometry.patch
        tensors = [TensorView(name: "\(name).weight", offset: weight, shape: [input.channels, output.channels, kernel, kernel],
                              layer: "conv_transpose2d", geometry: geometry.attributes(input: input, output: output),
                              bufferAxes: PatchGeometry.kernelBufferAxes),
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

extension ConvTranspose2D {
    /// `{conv_transpose: C, kernel: K, stride: S, padding: P}` in model.decoder, after its dense
    /// layers: its input grid is the one the kernel gives on its output, its input channels those
    /// of the entry before (a dense layer's width over that grid).
    struct Spec: PatchLayerKind {
        static let key = "conv_transpose", noun = "transposed convolution"
        static let sections: [ModelSection] = [.decoder]
        let channels: Int, kernel: Int, stride: Int, padding: Int

        var decoderOutput: LayerOutputSize { .channels(channels) }
        func decoderInput(at site: LayerSite, output: FeatureShape, last: Bool) throws -> DecoderInput {
            try checkImage(output, side: "output", at: site)
            guard channels == output.channels else {
                throw ModelProblem("\(site.entry) gives \(channels) channels, but \(last ? "the data has" : "the next entry takes") \(output.channels)")
            }
            let grid = PatchGeometry(image: output, kernel: kernel, stride: stride, padding: padding).grid
            return .grid(height: grid.height, width: grid.width)
        }
        func decoderLayer(at site: LayerSite, input: FeatureShape, output: FeatureShape) -> any Layer {
            ConvTranspose2D(site.name, input: input, output: output, kernel: kernel, stride: stride, padding: padding,
                            activation: site.activation, offset: site.offset)
        }
    }
}

extension LayerSpec {
    /// A transposed 2-D convolution giving `channels` channels.
    public static func convTranspose(channels: Int, kernel: Int, stride: Int, padding: Int) -> LayerSpec {
        LayerSpec(ConvTranspose2D.Spec(channels: channels, kernel: kernel, stride: stride, padding: padding))
    }
}
