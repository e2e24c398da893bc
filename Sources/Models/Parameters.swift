// All parameters of a model in one contiguous buffer; each tensor is a named view into it.
// Gradients and optimizer moments use the same layout, so one reduction, one optimizer loop and a
// few large checkpoint writes cover everything.

/// A named tensor inside a flat buffer: `count` floats at `offset`, of `shape`.
public struct TensorView: Equatable, Sendable {
    public let name: String
    public let offset: Int
    public let shape: [Int]
    public var count: Int { shape.reduce(1, *) }
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
