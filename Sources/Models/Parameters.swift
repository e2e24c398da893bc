// All parameters of a model in one contiguous buffer; each tensor is a named view into it.
// Gradients and optimizer moments use the same layout, so one reduction, one optimizer loop and a
// few large checkpoint writes cover everything.

/// A named tensor inside a flat buffer: `count` floats at `offset`, of `shape`.
public struct TensorView: Equatable, Sendable {
    public let name: String
    public let offset: Int
    public let shape: [Int]
    /// What a reader needs beyond the shape to run the layer, stored as the tensor's attributes:
    /// a convolution's kernel has `layer` ("conv2d" or "conv_transpose2d") and the integer lists
    /// `stride`, `padding`, `input_shape` and `output_shape` ([height, width, channels]).
    public let layer: String?
    public let geometry: [(name: String, values: [Int])]
    public var count: Int { shape.reduce(1, *) }

    public init(name: String, offset: Int, shape: [Int], layer: String? = nil, geometry: [(name: String, values: [Int])] = []) {
        self.name = name; self.offset = offset; self.shape = shape; self.layer = layer; self.geometry = geometry
    }

    public static func == (a: TensorView, b: TensorView) -> Bool {
        a.name == b.name && a.offset == b.offset && a.shape == b.shape && a.layer == b.layer
            && a.geometry.map(\.name) == b.geometry.map(\.name) && a.geometry.map(\.values) == b.geometry.map(\.values)
    }
}

/// A float buffer owned by the model (parameters, gradients, optimizer moments).
public final class FloatBuffer: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    public init(count: Int) {
        self.count = count
        pointer = .allocate(capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }
    deinit { pointer.deallocate() }

    public func zero() { pointer.update(repeating: 0, count: count) }
    public func copy(from other: FloatBuffer) {
        precondition(other.count == count)
        pointer.update(from: other.pointer, count: count)
    }
    public subscript(_ view: TensorView) -> UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: pointer + view.offset, count: view.count)
    }
    public var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}
