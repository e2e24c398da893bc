import CHDF5
import Foundation

/// An error from the Storage module. The message names the file and the object inside it
/// (as `FILE:/object/path`) and says what was expected.
public struct StorageError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var errorDescription: String? { description }
}

/// The numeric element types a dataset can hold.
public enum ElementType: String, Sendable, CaseIterable {
    case int8, uint8, int16, uint16, int32, uint32, int64, uint64, float32, float64

    public var byteCount: Int {
        switch self {
        case .int8, .uint8: return 1
        case .int16, .uint16: return 2
        case .int32, .uint32, .float32: return 4
        case .int64, .uint64, .float64: return 8
        }
    }

    public var isFloatingPoint: Bool { self == .float32 || self == .float64 }
    public var isSigned: Bool {
        switch self {
        case .int8, .int16, .int32, .int64, .float32, .float64: return true
        default: return false
        }
    }

    /// The HDF5 in-memory (native) type.
    var nativeType: hid_t {
        switch self {
        case .int8: return aedist_h5t_native_int8()
        case .uint8: return aedist_h5t_native_uint8()
        case .int16: return aedist_h5t_native_int16()
        case .uint16: return aedist_h5t_native_uint16()
        case .int32: return aedist_h5t_native_int32()
        case .uint32: return aedist_h5t_native_uint32()
        case .int64: return aedist_h5t_native_int64()
        case .uint64: return aedist_h5t_native_uint64()
        case .float32: return aedist_h5t_native_float()
        case .float64: return aedist_h5t_native_double()
        }
    }

    /// The type written to files: little-endian standard types (what h5py/numpy write on x86).
    var fileType: hid_t {
        switch self {
        case .int8: return aedist_h5t_std_i8le()
        case .uint8: return aedist_h5t_std_u8le()
        case .int16: return aedist_h5t_std_i16le()
        case .uint16: return aedist_h5t_std_u16le()
        case .int32: return aedist_h5t_std_i32le()
        case .uint32: return aedist_h5t_std_u32le()
        case .int64: return aedist_h5t_std_i64le()
        case .uint64: return aedist_h5t_std_u64le()
        case .float32: return aedist_h5t_ieee_f32le()
        case .float64: return aedist_h5t_ieee_f64le()
        }
    }
}

public enum ObjectKind: Sendable { case group, dataset }

/// A Swift scalar type that maps onto one `ElementType`. Used by the generic `write`/`read`.
public protocol StorageScalar {
    static var elementType: ElementType { get }
    var floatValue: Float { get }
    var doubleValue: Double { get }
}
extension Int8: StorageScalar {
    public static var elementType: ElementType { .int8 }
    @inline(__always) public var floatValue: Float { Float(self) }
    @inline(__always) public var doubleValue: Double { Double(self) }
}
extension UInt8: StorageScalar {
    public static var elementType: ElementType { .uint8 }
    @inline(__always) public var floatValue: Float { Float(self) }
    @inline(__always) public var doubleValue: Double { Double(self) }
}
extension Int16: StorageScalar {
    public static var elementType: ElementType { .int16 }
    @inline(__always) public var floatValue: Float { Float(self) }
    @inline(__always) public var doubleValue: Double { Double(self) }
}
extension UInt16: StorageScalar {
    public static var elementType: ElementType { .uint16 }
    @inline(__always) public var floatValue: Float { Float(self) }
    @inline(__always) public var doubleValue: Double { Double(self) }
}
extension Int32: StorageScalar {
    public static var elementType: ElementType { .int32 }
    @inline(__always) public var floatValue: Float { Float(self) }
    @inline(__always) public var doubleValue: Double { Double(self) }
}
extension UInt32: StorageScalar {
    public static var elementType: ElementType { .uint32 }
    @inline(__always) public var floatValue: Float { Float(self) }
    @inline(__always) public var doubleValue: Double { Double(self) }
}
extension Int64: StorageScalar {
    public static var elementType: ElementType { .int64 }
    @inline(__always) public var floatValue: Float { Float(self) }
    @inline(__always) public var doubleValue: Double { Double(self) }
}
extension UInt64: StorageScalar {
    public static var elementType: ElementType { .uint64 }
    @inline(__always) public var floatValue: Float { Float(self) }
    @inline(__always) public var doubleValue: Double { Double(self) }
}
extension Float: StorageScalar {
    public static var elementType: ElementType { .float32 }
    @inline(__always) public var floatValue: Float { self }
    @inline(__always) public var doubleValue: Double { Double(self) }
}
extension Double: StorageScalar {
    public static var elementType: ElementType { .float64 }
    @inline(__always) public var floatValue: Float { Float(self) }
    @inline(__always) public var doubleValue: Double { Double(self) }
}

// MARK: - Serialisation of all HDF5 calls

/// Every HDF5 call of this module runs under this one process-wide lock: the serial HDF5 library
/// is not guaranteed to be thread-safe (Debian's build happens to be, other builds are not).
/// Recursive, so public entry points may call one another.
let hdf5Lock = NSRecursiveLock()

/// Runs `body` under the HDF5 lock with HDF5's automatic error printing switched off.
/// (The setting is per thread in thread-safe HDF5 builds, so it is set on every entry; it is cheap.)
@inline(__always)
func withHDF5<R>(_ body: () throws -> R) rethrows -> R {
    hdf5Lock.lock()
    defer { hdf5Lock.unlock() }
    _ = H5Eset_auto2(aedist_h5e_default(), nil, nil)
    _ = lzfForPlugin
    return try body()
}

/// Debian's lzf filter plugin (hdf5-plugin-lzf) calls liblzf without naming it as a dependency,
/// so libhdf5 cannot load it unless liblzf is already loaded with global symbols. Loading it here
/// (when installed: liblzf1) makes h5py's compression='lzf' readable; without it nothing changes.
private let lzfForPlugin: Bool = dlopen("liblzf.so.1", RTLD_NOW | RTLD_GLOBAL) != nil

// MARK: - Error messages

/// The description of the innermost (most specific) entry of the current HDF5 error stack, if any.
/// Must be called right after the failing HDF5 call: the next API call clears the stack.
func innermostHDF5Error() -> String? {
    final class Box { var text: String? }
    let box = Box()
    let callback: H5E_walk2_t = { n, err, data in
        guard n == 0, let err = err, let data = data else { return 0 }
        let box = Unmanaged<Box>.fromOpaque(data).takeUnretainedValue()
        if let desc = err.pointee.desc {
            let text = String(cString: desc)
            if let fn = err.pointee.func_name {
                box.text = "\(text) (in \(String(cString: fn)))"
            } else {
                box.text = text
            }
        }
        return 0
    }
    let opaque = Unmanaged.passUnretained(box).toOpaque()
    _ = H5Ewalk2(aedist_h5e_default(), H5E_WALK_UPWARD, callback, opaque)
    withExtendedLifetime(box) {}
    return box.text
}

/// `FILE:/object: message` (or `FILE: message` with no object); with `hdf5: true` the innermost
/// HDF5 error description is appended.
func storageError(_ file: String, _ object: String?, _ message: String, hdf5: Bool = false) -> StorageError {
    var text = object.map { "\(file):\($0): \(message)" } ?? "\(file): \(message)"
    if hdf5, let inner = innermostHDF5Error() {
        text += " [HDF5: \(inner)]"
    }
    return StorageError(text)
}

/// For messages about a missing file: where a relative path was looked for.
public func relativePathNote(_ path: String) -> String {
    guard !path.hasPrefix("/") else { return "" }
    return " (a relative path, resolved from the current directory \(FileManager.default.currentDirectoryPath))"
}

/// `/a/b` form of an object path: leading slash, no repeated or trailing slashes; "" is "/".
func normalisedObjectPath(_ path: String) -> String {
    let parts = path.split(separator: "/", omittingEmptySubsequences: true)
    return "/" + parts.joined(separator: "/")
}

/// `a * b * ...` or nil on overflow or a negative factor.
func checkedProduct(_ values: [Int]) -> Int? {
    var p = 1
    for v in values {
        guard v >= 0 else { return nil }
        let (r, o) = p.multipliedReportingOverflow(by: v)
        if o { return nil }
        p = r
    }
    return p
}

func describe(shape: [Int]) -> String { "[" + shape.map(String.init).joined(separator: ", ") + "]" }
