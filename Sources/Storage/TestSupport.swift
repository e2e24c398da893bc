import CHDF5

// Internal helpers used by the tests (via @testable import) to write what the public API does not:
// fixed-length string attributes and string datasets, as other tools write them.
extension HDF5File {
    /// A fixed-length (NUL-padded) ASCII string attribute of `value.utf8.count` bytes.
    func setFixedLengthStringAttribute(_ name: String, _ value: String, at objectPath: String = "/") throws {
        try withHDF5 {
            let p = normalisedObjectPath(objectPath)
            let bytes = Array(value.utf8)
            let tid = H5Tcopy(aedist_h5t_c_s1())
            defer { H5Tclose(tid) }
            _ = H5Tset_size(tid, max(1, bytes.count))
            _ = H5Tset_strpad(tid, H5T_STR_NULLPAD)
            let sid = H5Screate(H5S_SCALAR)
            defer { H5Sclose(sid) }
            let aid = H5Acreate_by_name(try fileID(), p, name, tid, sid, aedist_h5p_default(), aedist_h5p_default(), aedist_h5p_default())
            guard aid >= 0 else { throw StorageError("cannot create fixed string attribute \(name)") }
            defer { H5Aclose(aid) }
            var padded = bytes.isEmpty ? [UInt8(0)] : bytes
            _ = H5Awrite(aid, tid, &padded)
        }
    }

    /// A 1-D dataset of fixed-length strings (for the "string dataset" error).
    func writeFixedLengthStrings(_ values: [String], length: Int, to path: String) throws {
        try withHDF5 {
            let tid = H5Tcopy(aedist_h5t_c_s1())
            defer { H5Tclose(tid) }
            _ = H5Tset_size(tid, length)
            var dims = [hsize_t(values.count)]
            let sid = H5Screate_simple(1, &dims, nil)
            defer { H5Sclose(sid) }
            let did = H5Dcreate2(try fileID(), normalisedObjectPath(path), tid, sid,
                                 aedist_h5p_default(), aedist_h5p_default(), aedist_h5p_default())
            guard did >= 0 else { throw StorageError("cannot create string dataset \(path)") }
            defer { H5Dclose(did) }
            var buffer = [UInt8](repeating: 0, count: values.count * length)
            for (i, v) in values.enumerated() {
                for (j, b) in v.utf8.prefix(length).enumerated() { buffer[i * length + j] = b }
            }
            _ = H5Dwrite(did, tid, aedist_h5s_all(), aedist_h5s_all(), aedist_h5p_default(), &buffer)
        }
    }
}
