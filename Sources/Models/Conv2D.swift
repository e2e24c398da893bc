// The 2-D convolution (PyTorch's Conv2d) on the matrix kernels: gather the patches, one product.
import Kernels

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
                              layer: "conv2d", geometry: geometry.attributes(input: input, output: output),
                              bufferAxes: PatchGeometry.kernelBufferAxes),
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

extension Conv2D {
    /// `{conv: C, kernel: K, stride: S, padding: P}` in model.encoder, before any dense layer;
    /// mirrored by the transposed convolution that gives its input back.
    struct Spec: PatchLayerKind {
        static let key = "conv", noun = "convolution"
        static let sections: [ModelSection] = [.encoder]
        let channels: Int, kernel: Int, stride: Int, padding: Int

        func encoderLayer(at site: LayerSite, input: FeatureShape) throws -> any Layer {
            guard input.positions > 1 || site.index == 0 || !site.dataHasImageShape else {
                throw ModelProblem("\(site.entry) is a convolution after a dense layer; convolutions come first")
            }
            try checkImage(input, side: "input", at: site)
            return Conv2D(site.name, input: input, channels: channels, kernel: kernel, stride: stride, padding: padding,
                          activation: site.activation, offset: site.offset)
        }
        func mirror(input: FeatureShape) -> LayerSpec {
            .convTranspose(channels: input.channels, kernel: kernel, stride: stride, padding: padding)
        }
    }
}

extension LayerSpec {
    /// A 2-D convolution with `channels` filters.
    public static func conv(channels: Int, kernel: Int, stride: Int, padding: Int) -> LayerSpec {
        LayerSpec(Conv2D.Spec(channels: channels, kernel: kernel, stride: stride, padding: padding))
    }
}
