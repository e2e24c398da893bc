// The stacked autoencoder and the VAE: their dense layers, where each layer's parameters live in
// the flat parameter buffer, and seeded initialisation.
#if canImport(Glibc)
import Glibc
#endif

/// One dense layer y = f(x Wᵀ + b), W stored [outputs, inputs] (PyTorch's nn.Linear layout).
public struct DenseLayer: Sendable {
    public let inputs: Int
    public let outputs: Int
    public let weight: Int      // offset of W in the parameter buffer
    public let bias: Int        // offset of b
    public let activation: Activation
}

public final class Autoencoder: @unchecked Sendable {
    public let spec: ModelSpec
    /// Hidden encoder layers, input side first.
    public let encoder: [DenseLayer]
    /// The code layer: AE, `latent` linear outputs; VAE, `2 * latent` outputs (means, then log-variances).
    public let code: DenseLayer
    /// Decoder layers, the last one producing the output (logits for Bernoulli output).
    public let decoder: [DenseLayer]
    /// Every parameter tensor by checkpoint name, in buffer order.
    public let tensors: [TensorView]
    public let parameterCount: Int

    public var layers: [DenseLayer] { encoder + [code] + decoder }
    /// The KL weight backward trains with: `spec.klWeight`, or a schedule's value for the step.
    /// The reported loss (`loss(_:row:)`, evaluations) keeps `spec.klWeight`, the objective.
    public var trainingKLWeight: Float

    public init(spec: ModelSpec) {
        precondition(spec.inputs > 0 && spec.latent > 0)
        self.spec = spec
        trainingKLWeight = spec.klWeight
        var offset = 0
        var tensors: [TensorView] = []
        func dense(_ name: String, _ inputs: Int, _ outputs: Int, _ activation: Activation) -> DenseLayer {
            let w = offset, b = offset + inputs * outputs
            tensors.append(TensorView(name: "\(name).weight", offset: w, shape: [outputs, inputs]))
            tensors.append(TensorView(name: "\(name).bias", offset: b, shape: [outputs]))
            offset = b + outputs
            return DenseLayer(inputs: inputs, outputs: outputs, weight: w, bias: b, activation: activation)
        }
        var width = spec.inputs
        var encoder: [DenseLayer] = []
        for (i, h) in spec.encoder.enumerated() {
            encoder.append(dense("encoder.\(i)", width, h, spec.activation))
            width = h
        }
        let z = spec.latent
        if spec.kind == .vae {
            // Both heads in one product: weights [mu; logvar] then biases [mu; logvar], viewed separately.
            let w = offset, b = offset + 2 * z * width
            tensors.append(TensorView(name: "encoder.mu.weight", offset: w, shape: [z, width]))
            tensors.append(TensorView(name: "encoder.logvar.weight", offset: w + z * width, shape: [z, width]))
            tensors.append(TensorView(name: "encoder.mu.bias", offset: b, shape: [z]))
            tensors.append(TensorView(name: "encoder.logvar.bias", offset: b + z, shape: [z]))
            offset = b + 2 * z
            code = DenseLayer(inputs: width, outputs: 2 * z, weight: w, bias: b, activation: .linear)
        } else {
            code = dense("encoder.code", width, z, spec.sparsityTarget > 0 ? .sigmoid : .linear)
        }
        width = z
        var decoder: [DenseLayer] = []
        for (i, h) in spec.decoderWidths.enumerated() {
            decoder.append(dense("decoder.\(i)", width, h, spec.activation))
            width = h
        }
        decoder.append(dense("decoder.out", width, spec.inputs, .linear))
        self.encoder = encoder
        self.decoder = decoder
        self.tensors = tensors
        parameterCount = offset
    }

    /// PyTorch's nn.Linear default: weights and biases uniform in ±1/sqrt(inputs), drawn from the
    /// counter-based generator keyed by (seed, layer index).
    public func initialise(_ parameters: FloatBuffer, seed: UInt64) {
        precondition(parameters.count == parameterCount)
        for (index, layer) in layers.enumerated() {
            let key = RandomKey(seed: seed, stream: .initialisation, UInt64(index))
            let bound = 1 / Float(layer.inputs).squareRoot()
            let p = parameters.pointer
            let n = layer.inputs * layer.outputs
            for i in 0..<n { p[layer.weight + i] = (2 * key.uniform(UInt64(i)) - 1) * bound }
            for i in 0..<layer.outputs { p[layer.bias + i] = (2 * key.uniform(UInt64(n + i)) - 1) * bound }
        }
    }

    /// A one-line description: "vae 784-512-256-(20)-256-512-784, relu, bernoulli".
    public var summary: String {
        let widths = ([spec.inputs] + spec.encoder).map(String.init).joined(separator: "-")
        let back = (spec.decoderWidths + [spec.inputs]).map(String.init).joined(separator: "-")
        return "\(spec.kind.rawValue) \(widths)-(\(spec.latent))-\(back), \(spec.activation.rawValue), \(spec.output.rawValue)"
    }
}
