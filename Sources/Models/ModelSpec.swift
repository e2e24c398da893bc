// What a model is: the choices of the `model:` section of a run configuration.

public enum ModelKind: String, CaseIterable, Sendable { case ae, vae }

public enum Activation: String, CaseIterable, Sendable {
    case relu, leakyRelu = "leaky_relu", tanh, sigmoid, linear
}

public enum OutputDistribution: String, CaseIterable, Sendable { case bernoulli, gaussian }

public enum NoiseKind: String, CaseIterable, Sendable { case none, gaussian, masking, saltPepper = "salt_pepper" }

public struct ModelSpec: Equatable, Sendable {
    public var kind: ModelKind = .vae
    /// Features per sample.
    public var inputs: Int = 0
    /// The data's image shape [height, width] or [height, width, channels], for convolutions.
    public var imageShape: [Int]? = nil
    public var encoder: [LayerSpec] = [512, 256]
    /// The decoder's layers from the latent to the data (the last one gives the data's shape), or
    /// nil: the encoder mirrored.
    public var decoder: [LayerSpec]? = nil
    public var latent: Int = 20
    public var activation: Activation = .relu
    public var output: OutputDistribution = .bernoulli
    public var noise: NoiseKind = .none
    public var noiseLevel: Float = 0
    public var l1: Float = 0
    /// KL sparsity (AE only): target mean activation ρ of the code units, which then use a sigmoid;
    /// 0 turns it off. The penalty is `sparsityKLWeight` · Σ_units KL(ρ ‖ h) per sample.
    public var sparsityTarget: Float = 0
    public var sparsityKLWeight: Float = 0
    public var klWeight: Float = 1

    public init() {}

    /// Whether any layer reads or writes images (a convolution: the model then needs `imageShape`).
    public var hasImageLayers: Bool { (encoder + (decoder ?? [])).contains { type(of: $0.kind).seesImages } }
}
