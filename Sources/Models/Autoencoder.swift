// The stacked autoencoder and the VAE as a pipeline of layers: the encoder's layers, the code layer
// (AE: the code; VAE: means and log-variances in one product), the decoder's layers (the encoder
// mirrored, or as the configuration lists them), the loss. Only this type knows where each layer's parameters live in the flat buffer.
#if canImport(Glibc)
import Glibc
#endif

public final class Autoencoder: @unchecked Sendable {
    public let spec: ModelSpec
    /// Encoder layers, the code layer, decoder layers: the order of the forward pass.
    let layers: [any Layer]
    /// Where the code layer is in `layers`.
    let codeIndex: Int
    /// Every parameter tensor by checkpoint name, in buffer order.
    public let tensors: [TensorView]
    public let parameterCount: Int
    /// The KL weight backward trains with: `spec.klWeight`, or a schedule's value for the step.
    /// The reported loss (`loss(_:row:)`, evaluations) keeps `spec.klWeight`, the objective.
    public var trainingKLWeight: Float

    /// Why `spec` describes no model (a convolution without an image shape, a kernel larger than
    /// its padded image, ...), in words that name the configuration key; nil when it does.
    public static func problem(with spec: ModelSpec) -> String? {
        if case .failure(let problem) = build(spec) { return problem.text }
        return nil
    }

    /// The parameter count of `spec`'s model (which must have no `problem`).
    public static func parameterCount(of spec: ModelSpec) -> Int { Autoencoder(spec: spec).parameterCount }

    public init(spec: ModelSpec) {
        let built: (layers: [any Layer], code: Int)
        switch Autoencoder.build(spec) {
        case .success(let b): built = b
        case .failure(let problem): preconditionFailure(problem.text)
        }
        self.spec = spec
        trainingKLWeight = spec.klWeight
        layers = built.layers
        codeIndex = built.code
        tensors = layers.flatMap(\.tensors)
        parameterCount = layers.last!.parameters.upperBound
    }

    /// The layers of `spec`, laid out one after the other in the parameter buffer: the encoder's
    /// entries from the data on, the code layer, then the decoder's entries (the encoder mirrored,
    /// or the configuration's list), whose shapes are worked out from the data back.
    private static func build(_ spec: ModelSpec) -> Result<(layers: [any Layer], code: Int), ModelProblem> {
        guard spec.inputs > 0, spec.latent > 0 else { return .failure(ModelProblem("the model needs features and a latent size")) }
        var input = FeatureShape.flat(spec.inputs)
        if let shape = spec.imageShape {
            let image = FeatureShape(height: shape[0], width: shape[1], channels: shape.count > 2 ? shape[2] : 1)
            guard shape.count == 2 || shape.count == 3, image.count == spec.inputs else {
                return .failure(ModelProblem("key 'data.image_shape': \(shape) does not hold the data's \(spec.inputs) features"))
            }
            input = image
        }
        var layers: [any Layer] = [], offset = 0
        func add(_ layer: any Layer) { layers.append(layer); offset = layer.parameters.upperBound }
        func site(_ index: Int, name: String, activation: Activation) -> LayerSite {
            LayerSite(index: index, name: name, activation: activation, offset: offset, dataHasImageShape: spec.imageShape != nil)
        }
        func problem(_ section: ModelSection, _ error: Error) -> ModelProblem {
            ModelProblem("key '\(section.key)': " + ((error as? ModelProblem)?.text ?? "\(error)"))
        }
        var shapes = [input]
        for (i, entry) in spec.encoder.enumerated() {
            let kind = type(of: entry.kind)
            guard kind.sections.contains(.encoder) else {
                return .failure(ModelProblem("key 'model.encoder': entry \(i + 1) is a \(kind.noun); those belong in model.decoder"))
            }
            do {
                add(try entry.kind.encoderLayer(at: site(i, name: "encoder.\(i)", activation: spec.activation), input: shapes.last!))
            } catch { return .failure(problem(.encoder, error)) }
            shapes.append(layers.last!.output)
        }
        let z = spec.latent, top = shapes.last!
        let code = layers.count
        if spec.kind == .vae {
            // Both heads in one product: weights [mu; logvar] then biases [mu; logvar], viewed separately.
            let w = offset, b = offset + 2 * z * top.count
            add(Dense(input: top, outputs: 2 * z, activation: .linear, offset: offset, tensors: [
                TensorView(name: "encoder.mu.weight", offset: w, shape: [z, top.count]),
                TensorView(name: "encoder.logvar.weight", offset: w + z * top.count, shape: [z, top.count]),
                TensorView(name: "encoder.mu.bias", offset: b, shape: [z]),
                TensorView(name: "encoder.logvar.bias", offset: b + z, shape: [z])]))
        } else {
            add(Dense("encoder.code", input: top, output: .flat(z), activation: spec.sparsityTarget > 0 ? .sigmoid : .linear, offset: offset))
        }
        // The mirror: a dense layer from the latent to the encoder's last shape, then each encoder
        // entry's mirror, last first, ending on the data's shape.
        let decoder = spec.decoder ?? [.dense(top.count)] + zip(spec.encoder, shapes).reversed().map { $0.kind.mirror(input: $1) }
        let decoderShapes: [FeatureShape]
        switch Autoencoder.decoderShapes(decoder, latent: z, data: input, site: { site($0, name: "", activation: .linear) }) {
        case .success(let found): decoderShapes = found
        case .failure(let error):
            precondition(spec.decoder != nil, "the mirror of a valid encoder is a valid decoder: \(error.text)")
            return .failure(problem(.decoder, error))
        }
        for (i, entry) in decoder.enumerated() {
            let last = i == decoder.count - 1
            let at = site(i, name: last ? "decoder.out" : "decoder.\(i)", activation: last ? .linear : spec.activation)
            add(entry.kind.decoderLayer(at: at, input: decoderShapes[i], output: decoderShapes[i + 1]))
        }
        return .success((layers, code))
    }

    /// The shapes between a decoder's layers, worked out from the data back: each entry says what
    /// it takes to give its output, and the entry before it gives that (a flat vector, or an
    /// image whose grid the entry fixes and whose channels the entry before gives; a width then
    /// fills that grid). `shapes[0]` is the latent.
    private static func decoderShapes(_ decoder: [LayerSpec], latent: Int, data: FeatureShape, site: (Int) -> LayerSite)
        -> Result<[FeatureShape], ModelProblem> {
        guard !decoder.isEmpty else { return .failure(ModelProblem("at least one layer, the last giving the data's \(data.count) features")) }
        var shapes = [FeatureShape](repeating: .flat(latent), count: decoder.count + 1)
        shapes[decoder.count] = data
        for i in stride(from: decoder.count - 1, through: 0, by: -1) {
            let kind = type(of: decoder[i].kind), entry = "entry \(i + 1)"
            guard kind.sections.contains(.decoder) else {
                return .failure(ModelProblem("\(entry) is a \(kind.noun); the decoder's entries are \(LayerSpec.forms(in: .decoder))"))
            }
            let takes: DecoderInput
            do { takes = try decoder[i].kind.decoderInput(at: site(i), output: shapes[i + 1], last: i == decoder.count - 1) } catch {
                return .failure(error as? ModelProblem ?? ModelProblem("\(error)"))
            }
            guard i > 0 else {
                if takes == .flat { break }
                return .failure(ModelProblem("entry 1 is a \(kind.noun); the decoder starts with a dense layer from the latent"))
            }
            let before = type(of: decoder[i - 1].kind)
            guard before.sections.contains(.decoder) else { continue }  // named when the loop reaches it
            switch (takes, decoder[i - 1].kind.decoderOutput) {
            case (.flat, .width(let n)): shapes[i] = .flat(n)
            case (.flat, .channels):
                return .failure(ModelProblem("\(entry) is a \(kind.noun) after a \(before.noun); \(before.noun)s come last"))
            case (.grid(let h, let w), .channels(let c)): shapes[i] = FeatureShape(height: h, width: w, channels: c)
            case (.grid(let h, let w), .width(let n)):
                guard n % (h * w) == 0 else {
                    return .failure(ModelProblem("entry \(i) (width \(n)) must be a multiple of the \(h)x\(w) grid that \(entry) takes"))
                }
                shapes[i] = FeatureShape(height: h, width: w, channels: n / (h * w))
            }
        }
        return .success(shapes)
    }

    /// Values per row the encoder gives: the code (AE), or the means then the log-variances (VAE).
    public var codeWidth: Int { layers[codeIndex].output.count }

    /// A VAE's codes (`codeWidth` per row) as means and log-variances, `latent` per row each.
    public func splitCodes(_ codes: [Float], rows: Int) -> (mean: [Float], logVariance: [Float]) {
        precondition(spec.kind == .vae && codes.count == rows * codeWidth)
        let z = spec.latent
        var mean = [Float](repeating: 0, count: rows * z), logVariance = mean
        for r in 0..<rows {
            for j in 0..<z { mean[r * z + j] = codes[r * 2 * z + j]; logVariance[r * z + j] = codes[r * 2 * z + z + j] }
        }
        return (mean, logVariance)
    }

    /// Seeded initialisation of every layer (PyTorch's defaults; see `Layer.initialise`).
    public func initialise(_ parameters: FloatBuffer, seed: UInt64) {
        precondition(parameters.count == parameterCount)
        for (index, layer) in layers.enumerated() { layer.initialise(parameters.pointer, seed: seed, index: index) }
    }

    /// The linear autoencoder of a PCA: code = W (x − μ), reconstruction = Wᵀ code + μ, for the
    /// `latent` × `inputs` components W (rows orthonormal) and the mean μ. `spec` is a linear AE
    /// without hidden layers.
    public static func principalComponents(spec: ModelSpec, components w: [Double], mean: [Double])
        -> (model: Autoencoder, parameters: FloatBuffer) {
        precondition(spec.kind == .ae && spec.encoder.isEmpty && spec.activation == .linear)
        let model = Autoencoder(spec: spec)
        let k = spec.latent, d = spec.inputs
        precondition(w.count == k * d && mean.count == d)
        let parameters = FloatBuffer(count: model.parameterCount), p = parameters.pointer
        guard let encoder = model.layers[0] as? Dense, let decoder = model.layers[1] as? Dense else { preconditionFailure() }
        for i in 0..<k {
            var b = 0.0
            for j in 0..<d {
                p[encoder.weight + i * d + j] = Float(w[i * d + j])
                p[decoder.weight + j * k + i] = Float(w[i * d + j])
                b -= w[i * d + j] * mean[j]
            }
            p[encoder.bias + i] = Float(b)
        }
        for j in 0..<d { p[decoder.bias + j] = Float(mean[j]) }
        return (model, parameters)
    }

    /// A one-line description: "vae 784-512-256-(20)-256-512-784, relu, bernoulli"; a convolutional
    /// model gives its images' shapes, "28x28x1-14x14x32-...".
    public var summary: String {
        let images = spec.hasImageLayers
        func text(_ shape: FeatureShape) -> String { images ? shape.description : "\(shape.count)" }
        let widths = ([text(layers[0].input)] + layers[..<codeIndex].map { text($0.output) }).joined(separator: "-")
        let back = layers[(codeIndex + 1)...].map { text($0.output) }.joined(separator: "-")
        return "\(spec.kind.rawValue) \(widths)-(\(spec.latent))-\(back), \(spec.activation.rawValue), \(spec.output.rawValue)"
    }
}
