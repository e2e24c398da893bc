import CHDF5
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An open HDF5 file.
///
/// Object paths are absolute inside the file ("/train/images"); a missing leading slash is added
/// ("train/images" is the same object). Writing a dataset or group creates the missing groups
/// above it ("model/encoder.0.weight" creates "/model"); writing a dataset or attribute that
/// already exists replaces it.
///
/// Thread safety: every HDF5 call of this module runs under one process-wide recursive lock, so
/// instances may be used from any thread (calls are serialised, not parallel). `StoredMatrix`
/// holds its rows in memory and makes no HDF5 calls after `init`, so its readers run in parallel.
///
/// Files created here use the HDF5 1.8 object format (checksummed metadata, readable by HDF5 ≥ 1.8
/// and h5py) and contiguous, uncompressed datasets.
/// `close(2)`, named apart from `HDF5File.close()`.
func closeDescriptor(_ fd: Int32) { _ = close(fd) }

public final class HDF5File: @unchecked Sendable {
    public let path: String
    public let isWritable: Bool
    private var fid: hid_t = -1
    /// For files opened for reading: the result of `globalHeapProblem`, computed on first need.
    private var heapCheck: String?? = nil

    // MARK: Opening and closing

    /// Opens an existing file for reading.
    public convenience init(readingAt path: String) throws {
        try self.init(reading: path, context: nil)
    }

    /// Opens for reading; `context` (an object path) is named in errors about the file itself.
    init(reading path: String, context: String?) throws {
        self.path = path
        self.isWritable = false
        let fail = { (message: String) in storageError(path, context, message) }
        var st = stat()
        guard stat(path, &st) == 0 else {
            let e = errno
            if e == ENOENT { throw fail("no such file\(relativePathNote(path)); expected an HDF5 file") }
            throw fail("cannot access the file (\(String(cString: strerror(e)))); expected a readable HDF5 file")
        }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw fail("is a directory; expected an HDF5 file") }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            let e = errno
            throw fail("cannot read the file (\(String(cString: strerror(e)))); expected a readable HDF5 file")
        }
        closeDescriptor(fd)
        if st.st_size == 0 { throw fail("is empty (0 bytes); expected an HDF5 file") }
        fid = try withHDF5 { () throws -> hid_t in
            let isHDF5 = H5Fis_hdf5(path)
            guard isHDF5 > 0 else {
                throw storageError(path, context,
                                   "is not an HDF5 file (no HDF5 signature found); expected an HDF5 file",
                                   hdf5: isHDF5 < 0)
            }
            let fapl = H5Pcreate(aedist_h5p_file_access())
            defer { if fapl >= 0 { H5Pclose(fapl) } }
            if fapl >= 0 { _ = H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) }
            let id = H5Fopen(path, aedist_h5f_acc_rdonly(), fapl >= 0 ? fapl : aedist_h5p_default())
            guard id >= 0 else {
                throw storageError(path, context,
                                   "cannot open as HDF5 (the file may be truncated or damaged)", hdf5: true)
            }
            return id
        }
    }

    /// Creates a file, replacing any file at `path`.
    public init(creatingAt path: String) throws {
        self.path = path
        self.isWritable = true
        let parent = (path as NSString).deletingLastPathComponent
        var isDir: ObjCBool = false
        if !parent.isEmpty, !(FileManager.default.fileExists(atPath: parent, isDirectory: &isDir) && isDir.boolValue) {
            throw storageError(path, nil, "cannot create the file: directory \(parent) does not exist")
        }
        fid = try withHDF5 { () throws -> hid_t in
            let fapl = H5Pcreate(aedist_h5p_file_access())
            guard fapl >= 0 else { throw storageError(path, nil, "cannot create a file-access property list", hdf5: true) }
            defer { H5Pclose(fapl) }
            _ = H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG)
            // The 1.8 format: checksummed superblock and object headers, readable everywhere.
            _ = H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18)
            let id = H5Fcreate(path, aedist_h5f_acc_trunc(), aedist_h5p_default(), fapl)
            guard id >= 0 else {
                throw storageError(path, nil, "cannot create the HDF5 file (is the directory writable?)", hdf5: true)
            }
            return id
        }
    }

    /// Closes the file; later calls fail with "file is closed". Idempotent.
    public func close() {
        withHDF5 {
            if fid >= 0 { _ = H5Fclose(fid); fid = -1 }
        }
    }

    /// Closes the file and reports a failure to close (used before renaming a written file).
    func closeChecked() throws {
        try withHDF5 {
            guard fid >= 0 else { return }
            let status = H5Fclose(fid)
            fid = -1
            if status < 0 { throw storageError(path, nil, "closing the file failed", hdf5: true) }
        }
    }

    deinit { close() }

    public var isOpen: Bool { withHDF5 { fid >= 0 } }

    /// The open file's identifier (tests' fixture helpers).
    func fileID() throws -> hid_t { try openID(nil) }

    private func openID(_ object: String?) throws -> hid_t {
        guard fid >= 0 else { throw storageError(path, object, "the file is closed") }
        return fid
    }

    private func writableID(_ object: String?) throws -> hid_t {
        let id = try openID(object)
        guard isWritable else { throw storageError(path, object, "the file is open for reading only; cannot write") }
        return id
    }

    // MARK: Navigation

    /// Whether `objectPath` is a group or a dataset; nil when absent (or the file is closed).
    public func kind(of objectPath: String) -> ObjectKind? {
        withHDF5 { () -> ObjectKind? in
            guard fid >= 0 else { return nil }
            let p = normalisedObjectPath(objectPath)
            if p == "/" { return .group }
            var prefix = ""
            for part in p.split(separator: "/") {
                prefix += "/" + part
                guard H5Lexists(fid, prefix, aedist_h5p_default()) > 0 else { return nil }
            }
            let oid = H5Oopen(fid, p, aedist_h5p_default())
            guard oid >= 0 else { return nil }
            defer { H5Oclose(oid) }
            switch H5Iget_type(oid) {
            case H5I_GROUP: return .group
            case H5I_DATASET: return .dataset
            default: return nil
            }
        }
    }

    /// The names of the links in a group, sorted by name.
    public func children(ofGroup groupPath: String) throws -> [String] {
        try withHDF5 {
            let p = normalisedObjectPath(groupPath)
            let fid = try openID(p)
            switch kind(of: p) {
            case .group: break
            case .dataset: throw storageError(path, p, "is a dataset; expected a group")
            case nil: throw storageError(path, p, missingMessage(p, expected: "a group"))
            }
            return try linkNames(fid: fid, group: p)
        }
    }

    private func linkNames(fid: hid_t, group p: String) throws -> [String] {
        let gid = H5Gopen2(fid, p, aedist_h5p_default())
        guard gid >= 0 else { throw storageError(path, p, "cannot open the group", hdf5: true) }
        defer { H5Gclose(gid) }
        var info = H5G_info_t()
        guard H5Gget_info(gid, &info) >= 0 else {
            throw storageError(path, p, "cannot read the group's link table", hdf5: true)
        }
        guard info.nlinks <= 10_000_000 else {
            throw storageError(path, p, "claims \(info.nlinks) members; the file may be damaged")
        }
        var names: [String] = []
        names.reserveCapacity(Int(info.nlinks))
        for i in 0..<info.nlinks {
            let n = H5Lget_name_by_idx(gid, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, aedist_h5p_default())
            guard n >= 0, n < 1 << 20 else {
                throw storageError(path, p, "cannot read the name of member \(i)", hdf5: true)
            }
            var buffer = [CChar](repeating: 0, count: Int(n) + 1)
            let m = H5Lget_name_by_idx(gid, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buffer, buffer.count, aedist_h5p_default())
            guard m >= 0 else { throw storageError(path, p, "cannot read the name of member \(i)", hdf5: true) }
            names.append(String(decoding: buffer.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return names
    }

    /// "no such object; expected X (/parent holds: a, b)" — names what is there to help fix a path.
    func missingMessage(_ p: String, expected: String) -> String {
        var parts = p.split(separator: "/").map(String.init)
        var message = "no such object; expected \(expected)"
        while !parts.isEmpty {
            parts.removeLast()
            let ancestor = "/" + parts.joined(separator: "/")
            if kind(of: ancestor) == .group {
                if let names = try? linkNames(fid: fid, group: ancestor) {
                    let shown = names.prefix(12).joined(separator: ", ")
                    let more = names.count > 12 ? ", ... (\(names.count) in all)" : ""
                    message += names.isEmpty ? " (\(ancestor) is empty)" : " (\(ancestor) holds: \(shown)\(more))"
                }
                break
            }
        }
        return message
    }

    // MARK: Datasets: shape and type

    func openDataset(_ p: String, expected: String) throws -> hid_t {
        let fid = try openID(p)
        switch kind(of: p) {
        case .dataset: break
        case .group:
            let names = (try? linkNames(fid: fid, group: p)) ?? []
            let shown = names.prefix(12).joined(separator: ", ")
            throw storageError(path, p, "is a group, not a dataset; expected \(expected)"
                               + (names.isEmpty ? "" : " (the group holds: \(shown))"))
        case nil: throw storageError(path, p, missingMessage(p, expected: expected))
        }
        let did = H5Dopen2(fid, p, aedist_h5p_default())
        guard did >= 0 else { throw storageError(path, p, "cannot open the dataset", hdf5: true) }
        return did
    }

    /// The shape of a dataspace ([] for a scalar, [0] for a null dataspace).
    private func extent(ofSpace sid: hid_t, _ p: String) throws -> [Int] {
        let kind = H5Sget_simple_extent_type(sid)
        if kind == H5S_SCALAR { return [] }
        if kind == H5S_NULL { return [0] }
        guard kind == H5S_SIMPLE else { throw storageError(path, p, "has an unreadable dataspace", hdf5: true) }
        let rank = H5Sget_simple_extent_ndims(sid)
        guard rank >= 0, rank <= 32 else {
            throw storageError(path, p, "has an invalid rank \(rank); the file may be damaged", hdf5: rank < 0)
        }
        var dims = [hsize_t](repeating: 0, count: Int(rank))
        guard H5Sget_simple_extent_dims(sid, &dims, nil) >= 0 else {
            throw storageError(path, p, "cannot read the dimensions", hdf5: true)
        }
        var shape: [Int] = []
        for d in dims {
            guard let v = Int(exactly: d), v <= Int(Int32.max) * 1024 else {
                throw storageError(path, p, "has an impossible dimension \(d); the file may be damaged")
            }
            shape.append(v)
        }
        return shape
    }

    func datasetShape(_ did: hid_t, _ p: String) throws -> [Int] {
        let sid = H5Dget_space(did)
        guard sid >= 0 else { throw storageError(path, p, "cannot read the dataspace", hdf5: true) }
        defer { H5Sclose(sid) }
        return try extent(ofSpace: sid, p)
    }

    /// What a non-numeric HDF5 type is, in words.
    private func typeDescription(_ tid: hid_t) -> String {
        let cls = H5Tget_class(tid)
        switch cls {
        case H5T_INTEGER: return "\(H5Tget_size(tid) * 8)-bit integers"
        case H5T_FLOAT: return "\(H5Tget_size(tid) * 8)-bit floats"
        case H5T_STRING:
            return H5Tis_variable_str(tid) > 0 ? "variable-length strings"
                : "fixed-length strings (\(H5Tget_size(tid)) bytes)"
        case H5T_COMPOUND: return "a compound (record) type"
        case H5T_ENUM: return "an enumeration type"
        case H5T_OPAQUE: return "an opaque type"
        case H5T_BITFIELD: return "a bitfield type"
        case H5T_REFERENCE: return "object references"
        case H5T_VLEN: return "variable-length sequences"
        case H5T_ARRAY: return "an array type"
        case H5T_TIME: return "a time type"
        default: return "an unknown type (class \(cls.rawValue))"
        }
    }

    /// The element type of an HDF5 type, or an error naming what it is.
    private func classify(_ tid: hid_t, _ p: String, what: String = "holds") throws -> ElementType {
        let cls = H5Tget_class(tid)
        let size = H5Tget_size(tid)
        if cls == H5T_INTEGER {
            let signed = H5Tget_sign(tid) == H5T_SGN_2
            switch (size, signed) {
            case (1, true): return .int8
            case (1, false): return .uint8
            case (2, true): return .int16
            case (2, false): return .uint16
            case (4, true): return .int32
            case (4, false): return .uint32
            case (8, true): return .int64
            case (8, false): return .uint64
            default:
                throw storageError(path, p, "\(what) \(size * 8)-bit integers; expected 8, 16, 32 or 64-bit integers")
            }
        }
        if cls == H5T_FLOAT {
            if size == 4 { return .float32 }
            if size == 8 { return .float64 }
            throw storageError(path, p, "\(what) \(size * 8)-bit floats; expected float32 or float64")
        }
        throw storageError(path, p, "\(what) \(typeDescription(tid)); expected numbers (integers or floats)")
    }

    func datasetElementType(_ did: hid_t, _ p: String) throws -> ElementType {
        let tid = H5Dget_type(did)
        guard tid >= 0 else { throw storageError(path, p, "cannot read the element type", hdf5: true) }
        defer { H5Tclose(tid) }
        return try classify(tid, p)
    }

    /// The dimensions of a dataset ([] for a scalar).
    public func shape(ofDataset path: String) throws -> [Int] {
        try withHDF5 {
            let p = normalisedObjectPath(path)
            let did = try openDataset(p, expected: "a dataset")
            defer { H5Dclose(did) }
            return try datasetShape(did, p)
        }
    }

    /// The numeric element type of a dataset; an error names any other type (strings, compound, ...).
    public func elementType(ofDataset path: String) throws -> ElementType {
        try withHDF5 {
            let p = normalisedObjectPath(path)
            let did = try openDataset(p, expected: "a numeric dataset")
            defer { H5Dclose(did) }
            return try datasetElementType(did, p)
        }
    }

    // MARK: Datasets: reading

    /// Where Debian installs filter plugins for its serial libhdf5 (hdf5-plugin-lzf and others).
    #if arch(arm64)
    public static let pluginPath = "/usr/lib/aarch64-linux-gnu/hdf5/serial/plugins"
    #else
    public static let pluginPath = "/usr/lib/x86_64-linux-gnu/hdf5/serial/plugins"
    #endif
    private var defaultPluginPath: String { HDF5File.pluginPath }

    /// Checks that a dataset of `count` elements stored as `stored` is plausible before allocating
    /// `memoryCount * memoryElementSize` bytes for (part of) it: damaged files can claim absurd sizes.
    func checkPlausible(_ did: hid_t, _ p: String, count: Int, stored: ElementType, memoryElementSize: Int,
                        memoryCount: Int? = nil) throws {
        let (storedBytes, o1) = count.multipliedReportingOverflow(by: stored.byteCount)
        let (memoryBytes, o2) = (memoryCount ?? count).multipliedReportingOverflow(by: memoryElementSize)
        guard !o1, !o2 else { throw storageError(path, p, "claims \(count) elements, too many to hold; the file may be damaged") }
        let memory = ProcessInfo.processInfo.physicalMemory
        guard UInt64(memoryBytes) <= memory else {
            throw storageError(path, p, "needs \(memoryBytes) bytes in memory, more than this machine has (\(memory)); data.residency: sharded or streamed holds less")
        }
        let storage = H5Dget_storage_size(did)
        let dcpl = H5Dget_create_plist(did)
        var layout = H5D_LAYOUT_ERROR
        if dcpl >= 0 { layout = H5Pget_layout(dcpl); H5Pclose(dcpl) }
        if (layout == H5D_CONTIGUOUS || layout == H5D_COMPACT), storage != 0, storage != UInt64(storedBytes) {
            throw storageError(path, p, "stores \(storage) bytes but its shape and type need \(storedBytes); the file is damaged")
        }
        var fileSize: hsize_t = 0
        _ = H5Fget_filesize(fid, &fileSize)
        // Deflate expands at most about 1032:1; allow generous headroom, and anything up to 64 MiB.
        if storedBytes > 64 << 20, UInt64(storedBytes) / 2048 > max(fileSize, storage) {
            throw storageError(path, p, "claims \(storedBytes) bytes of data in a \(fileSize)-byte file; the file may be damaged")
        }
    }

    /// Reads the whole dataset converted by HDF5 to `T` (any numeric stored type).
    func readConverted<T: StorageScalar>(_ path: String, as: T.Type, expected: String,
                                         requireInteger: Bool = false) throws -> (stored: ElementType, values: [T]) {
        try withHDF5 {
            let p = normalisedObjectPath(path)
            let did = try openDataset(p, expected: expected)
            defer { H5Dclose(did) }
            let shape = try datasetShape(did, p)
            let stored = try datasetElementType(did, p)
            if requireInteger, stored.isFloatingPoint {
                throw storageError(self.path, p, "holds \(stored.rawValue) values; expected integers")
            }
            guard let count = checkedProduct(shape) else {
                throw storageError(self.path, p, "has an impossible shape \(describe(shape: shape)); the file may be damaged")
            }
            if count == 0 { return (stored, []) }
            try checkPlausible(did, p, count: count, stored: stored, memoryElementSize: MemoryLayout<T>.stride)
            var failure: StorageError?
            let values = [T](unsafeUninitializedCapacity: count) { buffer, initialised in
                let status = H5Dread(did, T.elementType.nativeType, aedist_h5s_all(), aedist_h5s_all(),
                                     aedist_h5p_default(), buffer.baseAddress)
                if status < 0 {
                    failure = storageError(self.path, p, "reading the data failed (the file may be damaged)", hdf5: true)
                    initialised = 0
                } else {
                    initialised = count
                }
            }
            if let failure { throw failure }
            return (stored, values)
        }
    }

    /// The filters (compression) of a chunked dataset that this libhdf5 cannot apply, as one error
    /// that names each and where to get it; libhdf5's own failure would only say "read failed".
    /// Asked after a failed read: a plugin counts as available only once a read has loaded it.
    func checkFilters(_ did: hid_t, _ p: String) throws {
        let dcpl = H5Dget_create_plist(did)
        guard dcpl >= 0 else { return }
        defer { H5Pclose(dcpl) }
        let n = H5Pget_nfilters(dcpl)
        guard n > 0 else { return }
        var missing: [String] = []
        for i in 0..<UInt32(n) {
            var flags: UInt32 = 0, count = 8, config: UInt32 = 0
            var values = [UInt32](repeating: 0, count: 8)
            var name = [CChar](repeating: 0, count: 64)
            let id = H5Pget_filter2(dcpl, i, &flags, &count, &values, name.count, &name, &config)
            guard id >= 0, H5Zfilter_avail(id) <= 0 else { continue }
            let label = String(cString: name)
            switch id {
            case 32000:
                missing.append("lzf (filter 32000, h5py's compression='lzf'): install Debian's hdf5-plugin-lzf and liblzf1 (cluster/setup.sh does) and set HDF5_PLUGIN_PATH=\(defaultPluginPath) (the launchers in cluster/ set it)")
            case 32001, 32004, 32008, 32015:
                missing.append("\(label.isEmpty ? "filter" : label) (filter \(id)): a plugin from the hdf5plugin collection, found through HDF5_PLUGIN_PATH")
            default:
                missing.append("\(label.isEmpty ? "an unnamed filter" : "'\(label)'") (filter \(id)): its plugin is not installed or not on HDF5_PLUGIN_PATH")
            }
        }
        if !missing.isEmpty {
            throw storageError(self.path, p, "is compressed with a filter this HDF5 cannot read: " + missing.joined(separator: "; "))
        }
    }

    /// All values, converted to Float from any numeric stored type.
    public func readFloats(_ path: String) throws -> [Float] {
        try readConverted(path, as: Float.self, expected: "a numeric dataset").values
    }

    /// All values, converted to Double from any numeric stored type.
    public func readDoubles(_ path: String) throws -> [Double] {
        try readConverted(path, as: Double.self, expected: "a numeric dataset").values
    }

    /// All values of an integer dataset; an error for floats or for uint64 values above Int64.max.
    public func readInt64s(_ path: String) throws -> [Int64] {
        let type = try elementType(ofDataset: path)
        if type == .uint64 {
            let values = try readConverted(path, as: UInt64.self, expected: "an integer dataset", requireInteger: true).values
            return try values.map { v in
                guard let s = Int64(exactly: v) else {
                    throw storageError(self.path, normalisedObjectPath(path), "holds the value \(v), too large for Int64; expected values that fit in Int64")
                }
                return s
            }
        }
        return try readConverted(path, as: Int64.self, expected: "an integer dataset", requireInteger: true).values
    }

    /// All values of an integer dataset; an error for floats or negative values.
    public func readUInt64s(_ path: String) throws -> [UInt64] {
        let type = try elementType(ofDataset: path)
        if type.isSigned && !type.isFloatingPoint {
            let values = try readConverted(path, as: Int64.self, expected: "an integer dataset", requireInteger: true).values
            return try values.map { v in
                guard let u = UInt64(exactly: v) else {
                    throw storageError(self.path, normalisedObjectPath(path), "holds the negative value \(v); expected non-negative integers")
                }
                return u
            }
        }
        return try readConverted(path, as: UInt64.self, expected: "an integer dataset", requireInteger: true).values
    }

    // MARK: Attributes: reading

    /// Whether the object exists and has an attribute `name`.
    public func hasAttribute(_ name: String, at objectPath: String = "/") -> Bool {
        withHDF5 {
            let p = normalisedObjectPath(objectPath)
            guard fid >= 0, kind(of: p) != nil else { return false }
            return H5Aexists_by_name(fid, p, name, aedist_h5p_default()) > 0
        }
    }

    /// The names of the attributes of a group or dataset, sorted.
    public func attributeNames(at objectPath: String = "/") throws -> [String] {
        try withHDF5 {
            let p = normalisedObjectPath(objectPath)
            let fid = try openID(p)
            guard kind(of: p) != nil else { throw storageError(path, p, missingMessage(p, expected: "a group or dataset")) }
            let oid = H5Oopen(fid, p, aedist_h5p_default())
            guard oid >= 0 else { throw storageError(path, p, "cannot open the object", hdf5: true) }
            defer { H5Oclose(oid) }
            final class Names { var list: [String] = [] }
            let names = Names()
            let callback: H5A_operator2_t = { _, name, _, data in
                guard let name, let data else { return -1 }
                let names = Unmanaged<Names>.fromOpaque(data).takeUnretainedValue()
                names.list.append(String(cString: name))
                return names.list.count > 1_000_000 ? -1 : 0
            }
            let status = withExtendedLifetime(names) {
                H5Aiterate2(oid, H5_INDEX_NAME, H5_ITER_INC, nil, callback, Unmanaged.passUnretained(names).toOpaque())
            }
            guard status >= 0 else { throw storageError(path, p, "cannot list the attributes", hdf5: true) }
            return names.list
        }
    }

    /// Opens an attribute (caller closes), with errors naming what is missing.
    private func openAttribute(_ name: String, _ p: String, expected: String) throws -> hid_t {
        let fid = try openID(p)
        guard kind(of: p) != nil else {
            throw storageError(path, p, missingMessage(p, expected: "a group or dataset with attribute '\(name)'"))
        }
        let exists = H5Aexists_by_name(fid, p, name, aedist_h5p_default())
        guard exists >= 0 else { throw storageError(path, p, "cannot look up attribute '\(name)'", hdf5: true) }
        guard exists > 0 else {
            throw storageError(path, p, "has no attribute '\(name)'; expected \(expected)")
        }
        let aid = H5Aopen_by_name(fid, p, name, aedist_h5p_default(), aedist_h5p_default())
        guard aid >= 0 else { throw storageError(path, p, "cannot open attribute '\(name)'", hdf5: true) }
        return aid
    }

    /// Number of elements of an attribute's dataspace (1 for a scalar), bounded.
    private func attributeCount(_ aid: hid_t, _ name: String, _ p: String) throws -> Int {
        let sid = H5Aget_space(aid)
        guard sid >= 0 else { throw storageError(path, p, "cannot read the dataspace of attribute '\(name)'", hdf5: true) }
        defer { H5Sclose(sid) }
        if H5Sget_simple_extent_type(sid) == H5S_NULL { return 0 }
        let n = H5Sget_simple_extent_npoints(sid)
        guard n >= 0, n <= 1 << 26 else {
            throw storageError(path, p, "attribute '\(name)' claims \(n) elements; the file may be damaged", hdf5: n < 0)
        }
        return Int(n)
    }

    /// Reads `count` numeric values of an attribute converted to `T`.
    private func attributeValues<T: StorageScalar>(_ aid: hid_t, count: Int, as: T.Type, _ name: String, _ p: String) throws -> [T] {
        if count == 0 { return [] }
        var failure: StorageError?
        let values = [T](unsafeUninitializedCapacity: count) { buffer, initialised in
            if H5Aread(aid, T.elementType.nativeType, buffer.baseAddress) < 0 {
                failure = storageError(path, p, "reading attribute '\(name)' failed", hdf5: true)
                initialised = 0
            } else {
                initialised = count
            }
        }
        if let failure { throw failure }
        return values
    }

    /// The class of an attribute's type, and the element type when numeric.
    private func attributeType(_ aid: hid_t, _ name: String, _ p: String) throws -> (hid_t, H5T_class_t) {
        let tid = H5Aget_type(aid)
        guard tid >= 0 else { throw storageError(path, p, "cannot read the type of attribute '\(name)'", hdf5: true) }
        return (tid, H5Tget_class(tid))
    }

    /// Integer attribute values as Int64 (checking uint64 values fit).
    private func integerAttribute(_ name: String, _ p: String, expected: String, single: Bool) throws -> [Int64] {
        let aid = try openAttribute(name, p, expected: expected)
        defer { H5Aclose(aid) }
        let (tid, cls) = try attributeType(aid, name, p)
        defer { H5Tclose(tid) }
        guard cls == H5T_INTEGER else {
            throw storageError(path, p, "attribute '\(name)' holds \(typeDescription(tid)); expected \(expected)")
        }
        let type = try classify(tid, p, what: "attribute '\(name)' holds")
        let count = try attributeCount(aid, name, p)
        if single, count != 1 {
            throw storageError(path, p, "attribute '\(name)' holds \(count) values; expected \(expected)")
        }
        if type == .uint64 {
            return try attributeValues(aid, count: count, as: UInt64.self, name, p).map { v in
                guard let s = Int64(exactly: v) else {
                    throw storageError(path, p, "attribute '\(name)' holds \(v), too large for Int64; expected \(expected)")
                }
                return s
            }
        }
        return try attributeValues(aid, count: count, as: Int64.self, name, p)
    }

    /// A string attribute, fixed or variable length (one string: scalar or a 1-element array).
    public func stringAttribute(_ name: String, at objectPath: String = "/") throws -> String {
        try withHDF5 {
            let p = normalisedObjectPath(objectPath)
            let aid = try openAttribute(name, p, expected: "a string attribute")
            defer { H5Aclose(aid) }
            let (tid, cls) = try attributeType(aid, name, p)
            defer { H5Tclose(tid) }
            guard cls == H5T_STRING else {
                throw storageError(path, p, "attribute '\(name)' holds \(typeDescription(tid)); expected a string")
            }
            let count = try attributeCount(aid, name, p)
            guard count == 1 else {
                throw storageError(path, p, "attribute '\(name)' holds \(count) strings; expected one string")
            }
            if H5Tis_variable_str(tid) > 0 {
                // Variable-length strings live in the (unchecksummed) global heap: check it first.
                if !isWritable {
                    if heapCheck == nil { heapCheck = .some(globalHeapProblem(inFileAt: path)) }
                    if let problem = heapCheck!  {
                        throw storageError(path, p, "cannot read string attribute '\(name)': the file is damaged (\(problem))")
                    }
                }
                let memType = H5Tcopy(aedist_h5t_c_s1())
                guard memType >= 0 else { throw storageError(path, p, "cannot make a string type", hdf5: true) }
                defer { H5Tclose(memType) }
                _ = H5Tset_size(memType, aedist_h5t_variable())
                _ = H5Tset_cset(memType, H5Tget_cset(tid))
                var pointer: UnsafeMutablePointer<CChar>? = nil
                guard H5Aread(aid, memType, &pointer) >= 0 else {
                    throw storageError(path, p, "reading string attribute '\(name)' failed", hdf5: true)
                }
                defer { if let pointer { H5free_memory(pointer) } }
                return pointer.map { String(cString: $0) } ?? ""
            }
            let size = H5Tget_size(tid)
            guard size > 0, size <= 1 << 26 else {
                throw storageError(path, p, "attribute '\(name)' claims a \(size)-byte string; the file may be damaged")
            }
            let memType = H5Tcopy(tid)
            guard memType >= 0 else { throw storageError(path, p, "cannot copy a string type", hdf5: true) }
            defer { H5Tclose(memType) }
            var bytes = [UInt8](repeating: 0, count: size)
            guard H5Aread(aid, memType, &bytes) >= 0 else {
                throw storageError(path, p, "reading string attribute '\(name)' failed", hdf5: true)
            }
            var text = bytes.prefix { $0 != 0 }
            if H5Tget_strpad(tid) == H5T_STR_SPACEPAD {
                while text.last == 0x20 { text.removeLast() }
            }
            return String(decoding: text, as: UTF8.self)
        }
    }

    /// A scalar (or 1-element) integer attribute.
    public func int64Attribute(_ name: String, at objectPath: String = "/") throws -> Int64 {
        try withHDF5 {
            try integerAttribute(name, normalisedObjectPath(objectPath), expected: "one integer", single: true)[0]
        }
    }

    /// An integer attribute of any shape, flattened (a scalar gives one value).
    public func int64ArrayAttribute(_ name: String, at objectPath: String = "/") throws -> [Int64] {
        try withHDF5 {
            try integerAttribute(name, normalisedObjectPath(objectPath), expected: "an integer array", single: false)
        }
    }

    /// A scalar (or 1-element) float or integer attribute, as Double.
    public func doubleAttribute(_ name: String, at objectPath: String = "/") throws -> Double {
        try withHDF5 {
            let p = normalisedObjectPath(objectPath)
            let aid = try openAttribute(name, p, expected: "a number")
            defer { H5Aclose(aid) }
            let (tid, cls) = try attributeType(aid, name, p)
            defer { H5Tclose(tid) }
            guard cls == H5T_FLOAT || cls == H5T_INTEGER else {
                throw storageError(path, p, "attribute '\(name)' holds \(typeDescription(tid)); expected a number")
            }
            _ = try classify(tid, p, what: "attribute '\(name)' holds")
            let count = try attributeCount(aid, name, p)
            guard count == 1 else {
                throw storageError(path, p, "attribute '\(name)' holds \(count) values; expected one number")
            }
            return try attributeValues(aid, count: 1, as: Double.self, name, p)[0]
        }
    }

    /// Any attribute as text, for summaries: a string as is, numbers as "3" or "[8, 8]",
    /// anything else described ("<1 of a compound (record) type>").
    public func attributeText(_ name: String, at objectPath: String = "/") throws -> String {
        try withHDF5 {
            let p = normalisedObjectPath(objectPath)
            let aid = try openAttribute(name, p, expected: "an attribute")
            defer { H5Aclose(aid) }
            let (tid, cls) = try attributeType(aid, name, p)
            defer { H5Tclose(tid) }
            let count = try attributeCount(aid, name, p)
            let sid = H5Aget_space(aid)
            let isScalar = sid >= 0 && H5Sget_simple_extent_type(sid) == H5S_SCALAR
            if sid >= 0 { H5Sclose(sid) }
            func render<T>(_ values: [T]) -> String {
                isScalar && values.count == 1 ? "\(values[0])"
                    : "[" + values.map { "\($0)" }.joined(separator: ", ") + "]"
            }
            switch cls {
            case H5T_STRING where count == 1: return try stringAttribute(name, at: p)
            case H5T_INTEGER:
                if (try? classify(tid, p)) == .uint64 {
                    return render(try attributeValues(aid, count: count, as: UInt64.self, name, p))
                }
                return render(try integerAttribute(name, p, expected: "integers", single: false))
            case H5T_FLOAT:
                _ = try classify(tid, p, what: "attribute '\(name)' holds")
                return render(try attributeValues(aid, count: count, as: Double.self, name, p))
            default: return "<\(count) of \(typeDescription(tid))>"
            }
        }
    }

    // MARK: Writing

    /// A link-creation property list that creates missing intermediate groups, with UTF-8 names.
    private func makeLinkCreationList(_ p: String) throws -> hid_t {
        let lcpl = H5Pcreate(aedist_h5p_link_create())
        guard lcpl >= 0 else { throw storageError(path, p, "cannot make a link-creation property list", hdf5: true) }
        _ = H5Pset_create_intermediate_group(lcpl, 1)
        _ = H5Pset_char_encoding(lcpl, H5T_CSET_UTF8)
        return lcpl
    }

    /// Creates a group and any missing groups above it; nothing happens when it exists.
    public func createGroup(_ path: String) throws {
        try withHDF5 {
            let p = normalisedObjectPath(path)
            let fid = try writableID(p)
            switch kind(of: p) {
            case .group: return
            case .dataset: throw storageError(self.path, p, "is a dataset; expected a group (or nothing) at this path")
            case nil: break
            }
            let lcpl = try makeLinkCreationList(p)
            defer { H5Pclose(lcpl) }
            let gid = H5Gcreate2(fid, p, lcpl, aedist_h5p_default(), aedist_h5p_default())
            guard gid >= 0 else {
                throw storageError(self.path, p, "cannot create the group (is a parent a dataset?)", hdf5: true)
            }
            H5Gclose(gid)
        }
    }

    /// Writes `count` values at `base` (native `type`) as a contiguous dataset of `shape`,
    /// replacing a dataset already there.
    private func writeRaw(_ base: UnsafeRawPointer?, count: Int, type: ElementType, shape: [Int], to path: String) throws {
        try withHDF5 {
            let p = normalisedObjectPath(path)
            let fid = try writableID(p)
            guard p != "/" else { throw storageError(self.path, p, "is the root group; expected a dataset path") }
            guard shape.count <= 32 else {
                throw storageError(self.path, p, "shape \(describe(shape: shape)) has \(shape.count) dimensions; HDF5 allows at most 32")
            }
            guard let n = checkedProduct(shape) else {
                throw storageError(self.path, p, "shape \(describe(shape: shape)) is invalid; expected non-negative dimensions")
            }
            guard n == count else {
                throw storageError(self.path, p, "shape \(describe(shape: shape)) holds \(n) values but \(count) were given")
            }
            switch kind(of: p) {
            case .group: throw storageError(self.path, p, "is a group; expected a dataset path (or nothing) to write to")
            case .dataset:
                guard H5Ldelete(fid, p, aedist_h5p_default()) >= 0 else {
                    throw storageError(self.path, p, "cannot replace the existing dataset", hdf5: true)
                }
            case nil: break
            }
            let sid: hid_t
            if shape.isEmpty {
                sid = H5Screate(H5S_SCALAR)
            } else {
                let dims = shape.map { hsize_t($0) }
                sid = H5Screate_simple(Int32(dims.count), dims, nil)
            }
            guard sid >= 0 else { throw storageError(self.path, p, "cannot make a dataspace of shape \(describe(shape: shape))", hdf5: true) }
            defer { H5Sclose(sid) }
            let lcpl = try makeLinkCreationList(p)
            defer { H5Pclose(lcpl) }
            let did = H5Dcreate2(fid, p, type.fileType, sid, lcpl, aedist_h5p_default(), aedist_h5p_default())
            guard did >= 0 else {
                throw storageError(self.path, p, "cannot create the dataset (is a parent a dataset?)", hdf5: true)
            }
            defer { H5Dclose(did) }
            if count > 0 {
                guard H5Dwrite(did, type.nativeType, aedist_h5s_all(), aedist_h5s_all(), aedist_h5p_default(), base) >= 0 else {
                    throw storageError(self.path, p, "writing the data failed (disk full?)", hdf5: true)
                }
            }
        }
    }

    /// Writes values of any supported scalar type as a dataset of `shape` (row-major).
    public func write<T: StorageScalar>(_ values: UnsafeBufferPointer<T>, shape: [Int], to path: String) throws {
        try writeRaw(values.baseAddress.map(UnsafeRawPointer.init), count: values.count, type: T.elementType, shape: shape, to: path)
    }

    /// Writes values of any supported scalar type as a dataset of `shape` (row-major).
    public func write<T: StorageScalar>(_ values: [T], shape: [Int], to path: String) throws {
        try values.withUnsafeBufferPointer { try write($0, shape: shape, to: path) }
    }

    public func write(_ values: UnsafeBufferPointer<Float>, shape: [Int], to path: String) throws {
        try writeRaw(values.baseAddress.map(UnsafeRawPointer.init), count: values.count, type: .float32, shape: shape, to: path)
    }
    public func write(_ values: [Float], shape: [Int], to path: String) throws {
        try values.withUnsafeBufferPointer { try write($0, shape: shape, to: path) }
    }
    public func write(_ values: [Double], shape: [Int], to path: String) throws {
        try values.withUnsafeBufferPointer { try write($0, shape: shape, to: path) }
    }
    public func write(_ values: [Int64], shape: [Int], to path: String) throws {
        try values.withUnsafeBufferPointer { try write($0, shape: shape, to: path) }
    }
    public func write(_ values: [UInt64], shape: [Int], to path: String) throws {
        try values.withUnsafeBufferPointer { try write($0, shape: shape, to: path) }
    }
    public func write(_ values: [UInt8], shape: [Int], to path: String) throws {
        try values.withUnsafeBufferPointer { try write($0, shape: shape, to: path) }
    }

    /// Creates (or replaces) attribute `name` on an existing object and writes `data` (memory type `memType`).
    private func writeAttribute(_ name: String, _ objectPath: String, fileType: hid_t, memType: hid_t,
                                space: hid_t, data: UnsafeRawPointer?) throws {
        let p = normalisedObjectPath(objectPath)
        let fid = try writableID(p)
        guard !name.isEmpty else { throw storageError(path, p, "an attribute name must not be empty") }
        guard kind(of: p) != nil else {
            throw storageError(path, p, missingMessage(p, expected: "a group or dataset to attach attribute '\(name)' to"))
        }
        if H5Aexists_by_name(fid, p, name, aedist_h5p_default()) > 0 {
            guard H5Adelete_by_name(fid, p, name, aedist_h5p_default()) >= 0 else {
                throw storageError(path, p, "cannot replace attribute '\(name)'", hdf5: true)
            }
        }
        let aid = H5Acreate_by_name(fid, p, name, fileType, space, aedist_h5p_default(), aedist_h5p_default(), aedist_h5p_default())
        guard aid >= 0 else { throw storageError(path, p, "cannot create attribute '\(name)'", hdf5: true) }
        defer { H5Aclose(aid) }
        if let data {
            guard H5Awrite(aid, memType, data) >= 0 else {
                throw storageError(path, p, "writing attribute '\(name)' failed", hdf5: true)
            }
        }
    }

    private func scalarSpace(_ p: String) throws -> hid_t {
        let sid = H5Screate(H5S_SCALAR)
        guard sid >= 0 else { throw storageError(path, p, "cannot make a scalar dataspace", hdf5: true) }
        return sid
    }

    /// A variable-length UTF-8 string attribute (h5py reads it as `str`). Text after a NUL byte is lost.
    public func setAttribute(_ name: String, _ value: String, at objectPath: String = "/") throws {
        try withHDF5 {
            let p = normalisedObjectPath(objectPath)
            _ = try writableID(p)
            let tid = H5Tcopy(aedist_h5t_c_s1())
            guard tid >= 0 else { throw storageError(path, p, "cannot make a string type", hdf5: true) }
            defer { H5Tclose(tid) }
            _ = H5Tset_size(tid, aedist_h5t_variable())
            _ = H5Tset_cset(tid, H5T_CSET_UTF8)
            let sid = try scalarSpace(p)
            defer { H5Sclose(sid) }
            try value.withCString { cString in
                var pointer: UnsafePointer<CChar>? = cString
                try withUnsafePointer(to: &pointer) {
                    try writeAttribute(name, p, fileType: tid, memType: tid, space: sid, data: UnsafeRawPointer($0))
                }
            }
        }
    }

    /// A scalar int64 attribute.
    public func setAttribute(_ name: String, _ value: Int64, at objectPath: String = "/") throws {
        try setScalarAttribute(name, value, at: objectPath)
    }

    /// A scalar float64 attribute.
    public func setAttribute(_ name: String, _ value: Double, at objectPath: String = "/") throws {
        try setScalarAttribute(name, value, at: objectPath)
    }

    private func setScalarAttribute<T: StorageScalar>(_ name: String, _ value: T, at objectPath: String) throws {
        try withHDF5 {
            let p = normalisedObjectPath(objectPath)
            _ = try writableID(p)
            let sid = try scalarSpace(p)
            defer { H5Sclose(sid) }
            var v = value
            try withUnsafePointer(to: &v) {
                try writeAttribute(name, p, fileType: T.elementType.fileType, memType: T.elementType.nativeType,
                                   space: sid, data: UnsafeRawPointer($0))
            }
        }
    }

    /// A 1-D int64 array attribute (an empty array is stored with a null dataspace).
    public func setAttribute(_ name: String, _ value: [Int64], at objectPath: String = "/") throws {
        try withHDF5 {
            let p = normalisedObjectPath(objectPath)
            _ = try writableID(p)
            let sid: hid_t
            if value.isEmpty {
                sid = H5Screate(H5S_NULL)
            } else {
                var dims = [hsize_t(value.count)]
                sid = H5Screate_simple(1, &dims, nil)
            }
            guard sid >= 0 else { throw storageError(path, p, "cannot make a dataspace", hdf5: true) }
            defer { H5Sclose(sid) }
            try value.withUnsafeBufferPointer {
                try writeAttribute(name, p, fileType: ElementType.int64.fileType, memType: ElementType.int64.nativeType,
                                   space: sid, data: value.isEmpty ? nil : UnsafeRawPointer($0.baseAddress))
            }
        }
    }

    /// Writes everything buffered by HDF5 to the operating system (not an fsync).
    public func flush() throws {
        try withHDF5 {
            let fid = try openID(nil)
            guard H5Fflush(fid, H5F_SCOPE_GLOBAL) >= 0 else {
                throw storageError(path, nil, "flushing the file failed (disk full?)", hdf5: true)
            }
        }
    }
}
