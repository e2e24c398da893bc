// The fully connected layer y = f(x Wᵀ + b), W stored [outputs, inputs] (PyTorch's nn.Linear).
import Kernels

struct Dense: Layer {
    let input: FeatureShape
    let output: FeatureShape
    let activation: Activation
    /// Offsets of W and b in the parameter buffer.
    let weight: Int, bias: Int
    let tensors: [TensorView]

    var inputs: Int { input.count }
    var outputs: Int { output.count }
    var parameters: Range<Int> { weight..<(bias + outputs) }
    var fanIn: Int { inputs }

    /// A layer at `offset` named `name` ("encoder.0": tensors encoder.0.weight and encoder.0.bias);
    /// its output may be viewed as an image (`output`), e.g. to feed a transposed convolution.
    init(_ name: String, input: FeatureShape, output: FeatureShape, activation: Activation, offset: Int) {
        self.input = input; self.output = output; self.activation = activation
        weight = offset; bias = offset + input.count * output.count
        tensors = [TensorView(name: "\(name).weight", offset: weight, shape: [output.count, input.count]),
                   TensorView(name: "\(name).bias", offset: bias, shape: [output.count])]
    }

    /// A layer whose tensors are named by the caller (the VAE's two heads in one product).
    init(input: FeatureShape, outputs: Int, activation: Activation, offset: Int, tensors: [TensorView]) {
        self.input = input; output = .flat(outputs); self.activation = activation
        weight = offset; bias = offset + input.count * outputs
        self.tensors = tensors
    }

    func scratchCount(rows: Int) -> Int { 0 }

    func forward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, rows: Int,
                 parameters p: UnsafePointer<Float>, scratch: LayerScratch, pool: ComputePool) {
        matrixProduct(m: rows, n: outputs, k: inputs,
                      a: inp, lda: inputs, transposeA: false,
                      b: p + weight, ldb: inputs, transposeB: true,
                      c: out, ldc: outputs, accumulate: false, pool: pool)
        addBiasAndActivate(out, bias: p + bias, rows: rows, columns: outputs, activation: activation, pool: pool)
    }

    /// db = Σ dout and dW = doutᵀ inp, then dinp = dout W when asked. dW is computed in `weightBlocks`
    /// row blocks, last rows first, each reported final as soon as it is computed (the first with db,
    /// which follows dW in the buffer). Every element of dW is the same number whatever the blocks:
    /// the product computes each element independently of the other rows in the call.
    func backward(dinp: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                  rows: Int, chunk: Int, parameters p: UnsafePointer<Float>, gradients g: UnsafeMutablePointer<Float>,
                  scratch: LayerScratch, weightBlocks: Int, pool: ComputePool,
                  report: (BackwardEvent) throws -> Void) rethrows {
        columnSums(dout, rows: rows, columns: outputs, chunk: chunk, into: g + bias, scratch: scratch.columnSums)
        for block in (0..<weightBlocks).reversed() {
            let (units, final) = weightBlock(block, of: weightBlocks)
            if units.isEmpty { continue }
            matrixProduct(m: units.count, n: inputs, k: rows,
                          a: dout + units.lowerBound, lda: outputs, transposeA: true,
                          b: inp, ldb: inputs, transposeB: false,
                          c: g + final.lowerBound, ldc: inputs, accumulate: false,
                          reductionChunk: chunk, pool: pool)
            try report(.gradientsFinal(final))
        }
        if let dinp {
            matrixProduct(m: rows, n: inputs, k: outputs,
                          a: dout, lda: outputs, transposeA: false,
                          b: p + weight, ldb: inputs, transposeB: false,
                          c: dinp, ldc: inputs, accumulate: false, pool: pool)
            try report(.betweenProducts)
        }
    }

    func finalRanges(weightBlocks: Int) -> [Range<Int>] {
        (0..<weightBlocks).reversed().compactMap { block in
            let (units, final) = weightBlock(block, of: weightBlocks)
            return units.isEmpty ? nil : final
        }
    }

    /// Row `block` of `blocks` (0...blocks) where the weight gradient is cut: near-equal blocks on
    /// multiples of the micro-kernel's rows (`productRowTile`), so no block wastes lanes.
    static func weightBlockBoundary(_ block: Int, of blocks: Int, rows: Int) -> Int {
        let tile = productRowTile
        return min(rows, (rows * block / blocks + tile - 1) / tile * tile)
    }

    /// Block `block` of `blocks` of the weight gradient: its output units (rows of W, possibly none)
    /// and the range of the gradient buffer it makes final (the last block also takes the bias).
    func weightBlock(_ block: Int, of blocks: Int) -> (units: Range<Int>, final: Range<Int>) {
        let r0 = Dense.weightBlockBoundary(block, of: blocks, rows: outputs)
        let r1 = Dense.weightBlockBoundary(block + 1, of: blocks, rows: outputs)
        let end = r1 == outputs ? bias + outputs : weight + r1 * inputs
        return (r0..<r1, (weight + r0 * inputs)..<end)
    }
}

extension Dense {
    /// A plain width in either list (`{dense: N}` reads too): a dense layer of N units.
    struct Spec: LayerKind {
        static let key = "dense", noun = "dense layer", form = "a width"
        static let fields = [LayerField(name: key, meaning: "units", minimum: 1, defaultValue: nil, placeholder: "N")]
        static let sections: [ModelSection] = [.encoder, .decoder]
        let width: Int
        init(values: [Int]) { width = values[0] }
        var values: [Int] { [width] }

        func encoderLayer(at site: LayerSite, input: FeatureShape) throws -> any Layer {
            Dense(site.name, input: input, output: .flat(width), activation: site.activation, offset: site.offset)
        }
        func mirror(input: FeatureShape) -> LayerSpec { .dense(input.count) }

        var decoderOutput: LayerOutputSize { .width(width) }
        func decoderInput(at site: LayerSite, output: FeatureShape, last: Bool) throws -> DecoderInput {
            guard width == output.count else {
                throw ModelProblem(last ? "the last entry gives the data: expected width \(output.count), got \(width)"
                                        : "\(site.entry) (width \(width)) feeds a layer whose \(output) input holds \(output.count) values")
            }
            return .flat
        }
        /// Its output may be viewed as an image (`output`), e.g. to feed a transposed convolution.
        func decoderLayer(at site: LayerSite, input: FeatureShape, output: FeatureShape) -> any Layer {
            Dense(site.name, input: input, output: output, activation: site.activation, offset: site.offset)
        }
    }
}

extension LayerSpec {
    /// A dense layer of `width` units.
    public static func dense(_ width: Int) -> LayerSpec { LayerSpec(Dense.Spec(values: [width])) }
}
