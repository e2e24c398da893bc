// The layer entries of a configuration's `model.encoder` and `model.decoder`, and what each kind
// of layer brings to a model: its entry's form, the lists it may stand in, its shape rules and its
// mirror. A layer kind is one file (the layer's passes and its `Spec`) plus its line in
// `LayerSpec.kinds`; `Autoencoder` builds every model through this protocol alone.

/// The two lists of layers a configuration gives.
public enum ModelSection: String, Sendable {
    case encoder, decoder
    /// The configuration key of the list.
    public var key: String { "model.\(rawValue)" }
}

/// One integer field of a layer entry, `kernel: 4`.
struct LayerField: Sendable {
    let name: String
    /// What it means, for messages: "output channels".
    let meaning: String
    let minimum: Int
    /// nil: every entry gives it.
    let defaultValue: Int?
    /// Its value in the entry's form: "{conv: C, kernel: K, ...}".
    let placeholder: String
}

/// Why a list of layers makes no model, in words that name the entry; the caller names the key.
struct ModelProblem: Error {
    let text: String
    init(_ text: String) { self.text = text }
}

/// Where a layer is built: its entry, its checkpoint name, its activation and its place in the
/// parameter buffer.
struct LayerSite {
    /// 0-based position in its list.
    let index: Int
    let name: String
    let activation: Activation
    let offset: Int
    /// Whether the data has an image shape (the layers that see images need one).
    let dataHasImageShape: Bool
    /// "entry 3", as messages count.
    var entry: String { "entry \(index + 1)" }
}

/// What an explicit decoder's entry takes, worked out from the output it must give: a flat vector
/// (whatever the entry before gives, flattened), or an image on this grid, its channels those the
/// entry before gives.
enum DecoderInput: Equatable {
    case flat
    case grid(height: Int, width: Int)
}

/// What an entry gives the next one: a width (a flat vector, or an image of that many values) or
/// a number of channels on its grid.
enum LayerOutputSize {
    case width(Int)
    case channels(Int)
}

/// A kind of layer as configurations write it. The entry `{KEY: v, field: v, ...}` gives the
/// fields in `fields` (the first is `key` itself); a plain number is a dense layer.
protocol LayerKind: Sendable {
    static var key: String { get }
    /// What messages call one: "convolution".
    static var noun: String { get }
    /// The entry's form in messages: "{conv: C, kernel: K, stride: S, padding: P}".
    static var form: String { get }
    static var fields: [LayerField] { get }
    /// The lists it may stand in.
    static var sections: [ModelSection] { get }
    /// Whether it reads or writes images (the data needs an image shape; summaries give shapes).
    static var seesImages: Bool { get }

    /// From the fields' values in `fields` order, each checked against its minimum.
    init(values: [Int])
    var values: [Int] { get }

    /// The layer of an encoder entry, from the `input` the entry before gives.
    func encoderLayer(at site: LayerSite, input: FeatureShape) throws -> any Layer
    /// The decoder entry that undoes this encoder layer, giving back its `input`.
    func mirror(input: FeatureShape) -> LayerSpec

    /// What a decoder entry gives the next one.
    var decoderOutput: LayerOutputSize { get }
    /// What a decoder entry takes to give `output` (the data's shape for the last entry), or why
    /// it cannot give it.
    func decoderInput(at site: LayerSite, output: FeatureShape, last: Bool) throws -> DecoderInput
    /// The layer of a decoder entry from `input` to `output`.
    func decoderLayer(at site: LayerSite, input: FeatureShape, output: FeatureShape) -> any Layer
}

extension LayerKind {
    static var form: String { "{" + fields.map { "\($0.name): \($0.placeholder)" }.joined(separator: ", ") + "}" }
    static var seesImages: Bool { false }

    func encoderLayer(at site: LayerSite, input: FeatureShape) throws -> any Layer {
        preconditionFailure("\(Self.key) is not an encoder layer")
    }
    func mirror(input: FeatureShape) -> LayerSpec { preconditionFailure("\(Self.key) is not an encoder layer") }
    var decoderOutput: LayerOutputSize { preconditionFailure("\(Self.key) is not a decoder layer") }
    func decoderInput(at site: LayerSite, output: FeatureShape, last: Bool) throws -> DecoderInput {
        preconditionFailure("\(Self.key) is not a decoder layer")
    }
    func decoderLayer(at site: LayerSite, input: FeatureShape, output: FeatureShape) -> any Layer {
        preconditionFailure("\(Self.key) is not a decoder layer")
    }
}

/// One layer as a configuration gives it: `512`, or `{conv: 32, kernel: 4, stride: 2, padding: 1}`.
public struct LayerSpec: Equatable, Sendable, ExpressibleByIntegerLiteral, CustomStringConvertible {
    /// Every kind a configuration may name: a new kind of layer is one line here.
    static let kinds: [any LayerKind.Type] = [Dense.Spec.self, Conv2D.Spec.self, ConvTranspose2D.Spec.self]

    let kind: any LayerKind

    init(_ kind: any LayerKind) { self.kind = kind }

    public init(integerLiteral width: Int) { self = .dense(width) }

    /// The entry `{key: value, ...}` of a `section` list (a plain width is `["dense": width]`);
    /// throws a `LayerEntryError`: what a message says is expected, naming the entry (`index`, 0-based).
    public init(section: ModelSection, index: Int, fields given: [String: Int]) throws {
        let entry = "entry \(index + 1)"
        let named = LayerSpec.kinds.filter { given[$0.key] != nil }
        guard named.count == 1, let kind = named.first else {
            throw LayerEntryError(expected: named.isEmpty ? "in \(entry) \(LayerSpec.forms(in: section))"
                : "in \(entry) one layer kind, not \(named.map { $0.key }.joined(separator: " and "))")
        }
        guard kind.sections.contains(section) else {
            let elsewhere = kind.sections.map(\.key).joined(separator: " or ")
            throw LayerEntryError(expected: "in \(entry) \(LayerSpec.forms(in: section)); a \(kind.noun) ({\(kind.key): ...}) belongs in \(elsewhere)")
        }
        let names = kind.fields.map(\.name)
        if let unknown = given.keys.sorted().first(where: { !names.contains($0) }) {
            throw LayerEntryError(expected: "in \(entry) only the fields \(names.joined(separator: ", ")) of a \(kind.noun) (got '\(unknown)')")
        }
        let missing = kind.fields.filter { $0.defaultValue == nil && given[$0.name] == nil }
        guard missing.isEmpty else {
            throw LayerEntryError(expected: missing.map { "'\($0.name)' (\($0.meaning))" }.joined(separator: " and ")
                + " in \(entry), a \(kind.noun) \(kind.form)")
        }
        var values: [Int] = []
        for field in kind.fields {
            let value = given[field.name] ?? field.defaultValue!
            guard value >= field.minimum else {
                throw LayerEntryError(expected: "an integer ≥ \(field.minimum) for '\(field.name)' (\(field.meaning)) in \(entry)")
            }
            values.append(value)
        }
        let made: any LayerKind = kind.init(values: values)
        self.init(made)
    }

    /// What a list accepts, for messages: "a width or {conv: C, kernel: K, stride: S, padding: P}
    /// (stride 1 and padding 0 unless given)".
    public static func forms(in section: ModelSection) -> String {
        let kinds = LayerSpec.kinds.filter { $0.sections.contains(section) }
        var defaults: [String] = []
        for field in kinds.flatMap({ $0.fields }) {
            if let value = field.defaultValue, !defaults.contains("\(field.name) \(value)") { defaults.append("\(field.name) \(value)") }
        }
        return kinds.map { $0.form }.joined(separator: " or ")
            + (defaults.isEmpty ? "" : " (\(defaults.joined(separator: " and ")) unless given)")
    }

    /// The entry as a configuration file writes it, every field given.
    public var yaml: String {
        if let dense = kind as? Dense.Spec { return "\(dense.width)" }
        let kind = type(of: self.kind)
        return "{" + zip(kind.fields, self.kind.values).map { "\($0.name): \($1)" }.joined(separator: ", ") + "}"
    }

    public var description: String { yaml }

    public static func == (a: LayerSpec, b: LayerSpec) -> Bool {
        type(of: a.kind).key == type(of: b.kind).key && a.kind.values == b.kind.values
    }
}

/// A layer entry that is not one: what was expected in its place.
public struct LayerEntryError: Error {
    public let expected: String
}
