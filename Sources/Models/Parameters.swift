// All parameters of a model in one contiguous buffer; each tensor is a named view into it.
// Gradients and optimizer moments use the same layout, so one reduction, one optimizer loop and a
// few large checkpoint writes cover everything.

#if canImport(Glibc)
import Glibc
#endif

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
    /// nil when the buffer holds the tensor in `shape`'s row-major order; else the order of its
    /// axes in the buffer (a convolution's kernel: [0, 2, 3, 1], the patch's channels last). Read
    /// and write stored values through `withStoredValues(in:_:)` and `setStoredValues(_:in:)`.
    public let bufferAxes: [Int]?
    public var count: Int { shape.reduce(1, *) }

    public init(name: String, offset: Int, shape: [Int], layer: String? = nil, geometry: [(name: String, values: [Int])] = [],
                bufferAxes: [Int]? = nil) {
        precondition(bufferAxes.map { $0.sorted() == Array(shape.indices) } ?? true, "bufferAxes must permute the axes of \(shape)")
        self.name = name; self.offset = offset; self.shape = shape; self.layer = layer; self.geometry = geometry
        self.bufferAxes = bufferAxes
    }

    public static func == (a: TensorView, b: TensorView) -> Bool {
        a.name == b.name && a.offset == b.offset && a.shape == b.shape && a.layer == b.layer && a.bufferAxes == b.bufferAxes
            && a.geometry.map(\.name) == b.geometry.map(\.name) && a.geometry.map(\.values) == b.geometry.map(\.values)
    }

    /// Calls `body` with the tensor's values in `shape`'s row-major order (as a checkpoint stores
    /// them): the buffer itself, or a permuted copy.
    public func withStoredValues<R>(in buffer: FloatBuffer, _ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        let slice = buffer[self]
        guard bufferAxes != nil else { return try body(UnsafeBufferPointer(slice)) }
        var values = [Float](repeating: 0, count: count)
        forEachIndex { stored, inBuffer in values[stored] = slice[inBuffer] }
        return try values.withUnsafeBufferPointer(body)
    }

    /// Sets the tensor from values in `shape`'s row-major order.
    public func setStoredValues(_ values: [Float], in buffer: FloatBuffer) {
        precondition(values.count == count, "\(name): \(values.count) values for \(count)")
        let slice = buffer[self]
        guard bufferAxes != nil else { _ = slice.update(fromContentsOf: values); return }
        forEachIndex { stored, inBuffer in slice[inBuffer] = values[stored] }
    }

    /// body(stored index, buffer index) for every element, in stored order.
    private func forEachIndex(_ body: (Int, Int) -> Void) {
        guard let axes = bufferAxes, count > 0 else { return }
        var strideInBuffer = [Int](repeating: 0, count: shape.count), step = 1
        for axis in axes.reversed() { strideInBuffer[axis] = step; step *= shape[axis] }
        var index = [Int](repeating: 0, count: shape.count)
        for stored in 0..<count {
            body(stored, zip(index, strideInBuffer).reduce(0) { $0 + $1.0 * $1.1 })
            var axis = shape.count - 1
            while axis >= 0 {
                index[axis] += 1
                if index[axis] < shape[axis] { break }
                index[axis] = 0
                axis -= 1
            }
        }
    }
}

/// A float buffer owned by the model (parameters, gradients, optimizer moments).
public final class FloatBuffer: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    /// Memory someone else owns (`owner`, kept alive with the buffer); nil when the buffer owns it.
    private let owner: AnyObject?

    public init(count: Int) {
        self.count = count
        pointer = .allocate(capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
        owner = nil
    }
    /// `count` zeros in fresh anonymous pages, which the system maps only when first touched: a rank
    /// that uses a part of the buffer keeps only that part in memory.
    public init(zeroedOnTouch count: Int) {
        self.count = count
        let mapping = FreshPages(bytes: max(count, 1) * MemoryLayout<Float>.stride)
        pointer = mapping.memory.bindMemory(to: Float.self, capacity: max(count, 1))
        owner = mapping
    }
    /// `count` initialised floats at `pointer`, which `owner` holds.
    public init(count: Int, at pointer: UnsafeMutablePointer<Float>, owner: AnyObject) {
        self.count = count; self.pointer = pointer; self.owner = owner
    }
    deinit { if owner == nil { pointer.deallocate() } }

    /// A private anonymous mapping (zero pages until written), unmapped with the buffer.
    private final class FreshPages {
        let memory: UnsafeMutableRawPointer
        let bytes: Int
        init(bytes: Int) {
            self.bytes = bytes
            let m = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            guard let m, m != MAP_FAILED else { fatalError("out of memory: mmap of \(bytes) bytes failed") }
            memory = m
        }
        deinit { munmap(memory, bytes) }
    }

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
