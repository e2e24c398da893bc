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

    private struct Problem: Error { let text: String }

    /// The layers of `spec`, laid out one after the other in the parameter buffer.
    private static func build(_ spec: ModelSpec) -> Result<(layers: [any Layer], code: Int), Problem> {
        guard spec.inputs > 0, spec.latent > 0 else { return .failure(Problem(text: "the model needs features and a latent size")) }
        var input = FeatureShape.flat(spec.inputs)
        if let shape = spec.imageShape {
            let image = FeatureShape(height: shape[0], width: shape[1], channels: shape.count > 2 ? shape[2] : 1)
            guard shape.count == 2 || shape.count == 3, image.count == spec.inputs else {
                return .failure(Problem(text: "key 'data.image_shape': \(shape) does not hold the data's \(spec.inputs) features"))
            }
            input = image
        }
        var layers: [any Layer] = [], offset = 0
        func add(_ layer: any Layer) { layers.append(layer); offset = layer.parameters.upperBound }
        var shapes = [input]
        for (i, entry) in spec.encoder.enumerated() {
            let from = shapes.last!
            switch entry {
            case .dense(let n):
                add(Dense("encoder.\(i)", input: from, output: .flat(n), activation: spec.activation, offset: offset))
            case .convTranspose:
                return .failure(Problem(text: "key 'model.encoder': entry \(i + 1) is a transposed convolution; those belong in model.decoder"))
            case .conv(let channels, let kernel, let stride, let padding):
                guard spec.imageShape != nil else {
                    return .failure(Problem(text: "key 'model.encoder': entry \(i + 1) is a convolution, but the data has no image shape (an N-D dataset, data.image_shape or the file's image_shape attribute)"))
                }
                guard from.positions > 1 || i == 0 else {
                    return .failure(Problem(text: "key 'model.encoder': entry \(i + 1) is a convolution after a dense layer; convolutions come first"))
                }
                guard from.height + 2 * padding >= kernel, from.width + 2 * padding >= kernel else {
                    return .failure(Problem(text: "key 'model.encoder': entry \(i + 1) (kernel \(kernel), padding \(padding)) does not fit its \(from) input"))
                }
                add(Conv2D("encoder.\(i)", input: from, channels: channels, kernel: kernel, stride: stride,
                           padding: padding, activation: spec.activation, offset: offset))
            }
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
        if let decoder = spec.decoder {
            switch decoderShapes(decoder, spec, data: input) {
            case .failure(let problem): return .failure(problem)
            case .success(let shapes):
                for (i, entry) in decoder.enumerated() {
                    let last = i == decoder.count - 1, name = last ? "decoder.out" : "decoder.\(i)"
                    let activation = last ? Activation.linear : spec.activation
                    if case .convTranspose(_, let kernel, let stride, let padding) = entry {
                        add(ConvTranspose2D(name, input: shapes[i], output: shapes[i + 1], kernel: kernel, stride: stride,
                                            padding: padding, activation: activation, offset: offset)!)
                    } else {
                        add(Dense(name, input: shapes[i], output: shapes[i + 1], activation: activation, offset: offset))
                    }
                }
            }
            return .success((layers, code))
        }
        // The decoder: the latent to the encoder's last shape, then each encoder layer mirrored
        // (dense by dense, a convolution by its transposed convolution), ending on the data's shape.
        let n = spec.encoder.count
        func activation(_ target: Int) -> Activation { target == 0 ? .linear : spec.activation }
        add(Dense(n == 0 ? "decoder.out" : "decoder.0", input: .flat(z), output: top, activation: activation(n), offset: offset))
        for i in stride(from: n - 1, through: 0, by: -1) {
            let name = i == 0 ? "decoder.out" : "decoder.\(n - i)"
            switch spec.encoder[i] {
            case .dense:
                add(Dense(name, input: shapes[i + 1], output: shapes[i], activation: activation(i), offset: offset))
            case .conv(_, let kernel, let stride, let padding):
                guard let layer = ConvTranspose2D(name, input: shapes[i + 1], output: shapes[i], kernel: kernel, stride: stride,
                                                  padding: padding, activation: activation(i), offset: offset) else {
                    return .failure(Problem(text: "key 'model.encoder': entry \(i + 1) cannot be mirrored by a transposed convolution that gives back its \(shapes[i]) input; list the decoder's layers in model.decoder"))
                }
                add(layer)
            case .convTranspose: preconditionFailure("the encoder has no transposed convolutions")
            }
        }
        return .success((layers, code))
    }

    /// The shapes between an explicit decoder's layers, worked out from the data back: a transposed
    /// convolution's input grid is the one its kernel gives on its output, its input channels those
    /// of the layer before (a dense layer's width divided by the grid). `shapes[0]` is the latent.
    private static func decoderShapes(_ decoder: [LayerSpec], _ spec: ModelSpec, data: FeatureShape)
        -> Result<[FeatureShape], Problem> {
        func problem(_ text: String) -> Result<[FeatureShape], Problem> { .failure(Problem(text: "key 'model.decoder': " + text)) }
        guard !decoder.isEmpty else { return problem("at least one layer, the last giving the data's \(data.count) features") }
        var shapes = [FeatureShape](repeating: .flat(spec.latent), count: decoder.count + 1)
        shapes[decoder.count] = data
        for i in stride(from: decoder.count - 1, through: 0, by: -1) {
            let out = shapes[i + 1], entry = "entry \(i + 1)"
            switch decoder[i] {
            case .conv:
                return problem("\(entry) is a convolution; the decoder has widths and {conv_transpose: C, kernel: K, stride: S, padding: P} entries")
            case .dense(let n):
                guard n == out.count else {
                    return problem(i == decoder.count - 1
                        ? "the last entry gives the data: expected width \(out.count), got \(n)"
                        : "\(entry) (width \(n)) feeds a transposed convolution whose \(out) input holds \(out.count) values")
                }
                if i > 0, !decoder[i - 1].isDense {
                    return problem("\(entry) is a dense layer after a transposed convolution; transposed convolutions come last")
                }
                if i > 0, case .dense(let m) = decoder[i - 1] { shapes[i] = .flat(m) }
            case .convTranspose(let channels, let kernel, let stride, let padding):
                guard spec.imageShape != nil else {
                    return problem("\(entry) is a transposed convolution, but the data has no image shape (an N-D dataset, data.image_shape or the file's image_shape attribute)")
                }
                guard channels == out.channels else {
                    return problem("\(entry) gives \(channels) channels, but \(i == decoder.count - 1 ? "the data has" : "the next transposed convolution takes") \(out.channels)")
                }
                guard out.height + 2 * padding >= kernel, out.width + 2 * padding >= kernel else {
                    return problem("\(entry) (kernel \(kernel), padding \(padding)) does not fit its \(out) output")
                }
                guard i > 0 else { return problem("entry 1 is a transposed convolution; the decoder starts with a dense layer from the latent") }
                let grid = PatchGeometry(image: out, kernel: kernel, stride: stride, padding: padding).grid
                switch decoder[i - 1] {
                case .convTranspose(let c, _, _, _): shapes[i] = FeatureShape(height: grid.height, width: grid.width, channels: c)
                case .dense(let n):
                    guard n % (grid.height * grid.width) == 0 else {
                        return problem("entry \(i) (width \(n)) must be a multiple of the \(grid.height)x\(grid.width) grid that \(entry) takes")
                    }
                    shapes[i] = FeatureShape(height: grid.height, width: grid.width, channels: n / (grid.height * grid.width))
                case .conv: return problem("entry \(i) is a convolution; the decoder has widths and {conv_transpose: ...} entries")
                }
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
        let images = spec.hasConvolutions
        func text(_ shape: FeatureShape) -> String { images ? shape.description : "\(shape.count)" }
        let widths = ([text(layers[0].input)] + layers[..<codeIndex].map { text($0.output) }).joined(separator: "-")
        let back = layers[(codeIndex + 1)...].map { text($0.output) }.joined(separator: "-")
        return "\(spec.kind.rawValue) \(widths)-(\(spec.latent))-\(back), \(spec.activation.rawValue), \(spec.output.rawValue)"
    }
}
