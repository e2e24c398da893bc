// The unit of a model: a layer owns one slice of the flat parameter buffer (weights, then bias),
// which is also its gradient bucket, and runs forward and backward on raw buffers of a batch.
// The autoencoder chains layers; nothing outside this module sees their offsets.
import Kernels

/// The values of one sample between two layers: height × width × channels, channels last (the
/// row-major order of an image written as [H, W, C]); a dense layer's output is 1 × 1 × n.
public struct FeatureShape: Equatable, Sendable, CustomStringConvertible {
    public let height: Int, width: Int, channels: Int
    public init(height: Int, width: Int, channels: Int) {
        self.height = height; self.width = width; self.channels = channels
    }
    public static func flat(_ n: Int) -> FeatureShape { FeatureShape(height: 1, width: 1, channels: n) }
    public var count: Int { height * width * channels }
    public var positions: Int { height * width }
    public var description: String { height == 1 && width == 1 ? "\(channels)" : "\(height)x\(width)x\(channels)" }
}

/// What `backward` tells its caller while it runs, so that the caller can send finished gradients
/// across ranks during the rest of the pass. Called on the thread that called `backward`.
public enum BackwardEvent {
    /// gradients[range] hold their final values: this pass will not write them again.
    case gradientsFinal(Range<Int>)
    /// Between two matrix products: a moment to let messages move.
    case betweenProducts
}

/// Buffers a layer's passes share with the rest of the model's pass.
struct LayerScratch {
    /// `columnSumsScratchCount` floats for the bias gradient's tree.
    let columnSums: UnsafeMutablePointer<Float>
    /// `scratchCount(rows:)` floats of the layer's own (patches, for convolutions).
    let own: UnsafeMutablePointer<Float>
}

protocol Layer: Sendable {
    var input: FeatureShape { get }
    var output: FeatureShape { get }
    /// Applied to weights·input + bias; the loss's gradient is taken before the output layer's.
    var activation: Activation { get }
    /// This layer's parameters, weights then bias, in the flat buffer.
    var parameters: Range<Int> { get }
    /// Inputs that feed one output value (PyTorch's fan-in: the initialisation bound is 1/sqrt of it).
    var fanIn: Int { get }
    /// Its tensors by checkpoint name, in buffer order.
    var tensors: [TensorView] { get }
    /// Floats of own scratch a batch of `rows` samples needs.
    func scratchCount(rows: Int) -> Int
    /// out = f(layer(inp)) for `rows` samples.
    func forward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, rows: Int,
                 parameters: UnsafePointer<Float>, scratch: LayerScratch, pool: ComputePool)
    /// Given dout (already through the activation's derivative): writes this layer's parameter
    /// gradients (sums over samples in the pairwise tree over micro-batches of `chunk` samples),
    /// reporting each range final as `finalRanges(weightBlocks:)` lists them, then dinp when asked.
    func backward(dinp: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                  rows: Int, chunk: Int, parameters: UnsafePointer<Float>, gradients: UnsafeMutablePointer<Float>,
                  scratch: LayerScratch, weightBlocks: Int, pool: ComputePool,
                  report: (BackwardEvent) throws -> Void) rethrows
    /// The ranges `backward(weightBlocks:)` reports final, in its order; they tile `parameters`.
    func finalRanges(weightBlocks: Int) -> [Range<Int>]
}

extension Layer {
    /// PyTorch's default for Linear, Conv2d and ConvTranspose2d: every weight and bias uniform in
    /// ±1/sqrt(fanIn), drawn from the counter-based generator keyed by (seed, layer index).
    func initialise(_ p: UnsafeMutablePointer<Float>, seed: UInt64, index: Int) {
        let key = RandomKey(seed: seed, stream: .initialisation, UInt64(index))
        let bound = 1 / Float(fanIn).squareRoot()
        for (i, at) in parameters.enumerated() { p[at] = (2 * key.uniform(UInt64(i)) - 1) * bound }
    }
}
