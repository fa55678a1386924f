import CLibvirt
public import Foundation

/// A libvirt storage pool, such as a directory of disk images.
///
/// Owns one reference to its `virStoragePoolPtr`, released in `deinit` (`virStoragePoolFree`).
public final class StoragePool: @unchecked Sendable {
    let handle: OpaquePointer
    /// The pool's name. The corresponding C function is `virStoragePoolGetName`.
    public let name: String
    /// The pool's UUID. The corresponding C function is `virStoragePoolGetUUID`.
    public let uuid: UUID

    init(owning handle: OpaquePointer) {
        self.handle = handle
        self.name = virStoragePoolGetName(handle).map { String(cString: $0) } ?? ""
        self.uuid = readUUID(of: handle, virStoragePoolGetUUID)
    }

    deinit { virStoragePoolFree(handle) }

    /// Builds the pool's backing storage; for a dir pool, creates the directory.
    ///
    /// The corresponding C function is `virStoragePoolBuild`.
    public func build() async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in _ = try check(virStoragePoolBuild(self.handle, 0)) }
    }

    /// Starts (activates) the defined pool.
    ///
    /// The corresponding C function is `virStoragePoolCreate`.
    public func start() async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in _ = try check(virStoragePoolCreate(self.handle, 0)) }
    }

    /// Stops the pool; its volumes stay on disk.
    ///
    /// The corresponding C function is `virStoragePoolDestroy`.
    public func destroy() async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in _ = try check(virStoragePoolDestroy(self.handle)) }
    }

    /// Removes the pool's persistent definition.
    ///
    /// The corresponding C function is `virStoragePoolUndefine`.
    public func undefine() async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in _ = try check(virStoragePoolUndefine(self.handle)) }
    }

    /// Deletes the pool's backing storage (for a dir pool, the now empty directory).
    ///
    /// The corresponding C function is `virStoragePoolDelete`.
    public func delete() async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in _ = try check(virStoragePoolDelete(self.handle, 0)) }
    }

    /// Rescans the pool's volumes. Fails while another volume job runs in the pool.
    ///
    /// The corresponding C function is `virStoragePoolRefresh`.
    public func refresh() async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in _ = try check(virStoragePoolRefresh(self.handle, 0)) }
    }

    /// Sets whether the pool starts when libvirtd starts.
    ///
    /// The corresponding C function is `virStoragePoolSetAutostart`.
    public func setAutostart(_ enabled: Bool) async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in
            _ = try check(virStoragePoolSetAutostart(self.handle, enabled ? 1 : 0))
        }
    }

    /// Whether the pool is running.
    ///
    /// The corresponding C function is `virStoragePoolIsActive`.
    public func isActive() async throws(LibvirtError) -> Bool {
        try await blocking { () throws(LibvirtError) in try check(virStoragePoolIsActive(self.handle)) == 1 }
    }

    /// The pool's XML description; `inactive` gives the persistent definition.
    ///
    /// The corresponding C function is `virStoragePoolGetXMLDesc`.
    public func xml(inactive: Bool = false) async throws(LibvirtError) -> String {
        try await blocking { () throws(LibvirtError) in
            try takeString(virStoragePoolGetXMLDesc(self.handle, inactive ? VIR_STORAGE_XML_INACTIVE.rawValue : 0))
        }
    }

    /// The pool's state and sizes.
    ///
    /// The corresponding C function is `virStoragePoolGetInfo`.
    public func info() async throws(LibvirtError) -> Info {
        try await blocking { () throws(LibvirtError) in
            var raw = virStoragePoolInfo()
            try check(virStoragePoolGetInfo(self.handle, &raw))
            return Info(
                isRunning: raw.state == Int32(VIR_STORAGE_POOL_RUNNING.rawValue),
                capacity: raw.capacity, allocation: raw.allocation, available: raw.available)
        }
    }

    /// Creates a volume in the pool from its XML. A qcow2 overlay names its base image in
    /// `<backingStore>`; `<target><compat>1.1</compat></target>` asks for qcow2 v3.
    /// ``LibvirtError/Code/storageVolumeExists`` means the name is taken.
    ///
    /// The corresponding C function is `virStorageVolCreateXML`.
    public func createVolume(xml: String) async throws(LibvirtError) -> StorageVolume {
        try await blocking { () throws(LibvirtError) in
            StorageVolume(owning: try check(virStorageVolCreateXML(self.handle, xml, 0)))
        }
    }

    /// The volume called `name` in this pool; throws ``LibvirtError/Code/noStorageVolume`` when
    /// there is none.
    ///
    /// The corresponding C function is `virStorageVolLookupByName`.
    public func volume(named name: String) async throws(LibvirtError) -> StorageVolume {
        try await blocking { () throws(LibvirtError) in
            StorageVolume(owning: try check(virStorageVolLookupByName(self.handle, name)))
        }
    }

    /// Every volume of the running pool.
    ///
    /// The corresponding C function is `virStoragePoolListAllVolumes`.
    public func volumes() async throws(LibvirtError) -> [StorageVolume] {
        try await blocking { () throws(LibvirtError) in
            var list: UnsafeMutablePointer<OpaquePointer?>?
            let count = try check(virStoragePoolListAllVolumes(self.handle, &list, 0))
            return takeHandles(list, count: count, StorageVolume.init(owning:))
        }
    }

    /// What `virStoragePoolGetInfo` reports, sizes in bytes.
    public struct Info: Sendable, Hashable {
        /// Whether the pool is running (`VIR_STORAGE_POOL_RUNNING`).
        public var isRunning: Bool
        /// The pool's total size (`capacity`).
        public var capacity: UInt64
        /// The space its volumes use (`allocation`).
        public var allocation: UInt64
        /// The space left (`available`).
        public var available: UInt64
    }

    /// Which pools ``Connection/storagePools(_:)`` returns (`virConnectListAllStoragePoolsFlags`).
    /// Empty means all.
    public struct ListFilter: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// `VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE`
        public static let active = ListFilter(rawValue: VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE.rawValue)
        /// `VIR_CONNECT_LIST_STORAGE_POOLS_INACTIVE`
        public static let inactive = ListFilter(rawValue: VIR_CONNECT_LIST_STORAGE_POOLS_INACTIVE.rawValue)
        /// `VIR_CONNECT_LIST_STORAGE_POOLS_PERSISTENT`
        public static let persistent = ListFilter(rawValue: VIR_CONNECT_LIST_STORAGE_POOLS_PERSISTENT.rawValue)
        /// `VIR_CONNECT_LIST_STORAGE_POOLS_DIR`
        public static let directory = ListFilter(rawValue: VIR_CONNECT_LIST_STORAGE_POOLS_DIR.rawValue)
    }
}

/// A volume (a disk image) in a storage pool.
///
/// Owns one reference to its `virStorageVolPtr`, released in `deinit` (`virStorageVolFree`).
public final class StorageVolume: @unchecked Sendable {
    let handle: OpaquePointer
    /// The volume's name in its pool. The corresponding C function is `virStorageVolGetName`.
    public let name: String
    /// The volume's unique key (for file volumes, its path). The corresponding C function is
    /// `virStorageVolGetKey`.
    public let key: String

    init(owning handle: OpaquePointer) {
        self.handle = handle
        self.name = virStorageVolGetName(handle).map { String(cString: $0) } ?? ""
        self.key = virStorageVolGetKey(handle).map { String(cString: $0) } ?? ""
    }

    deinit { virStorageVolFree(handle) }

    /// The volume's path on the host.
    ///
    /// The corresponding C function is `virStorageVolGetPath`.
    public func path() async throws(LibvirtError) -> String {
        try await blocking { () throws(LibvirtError) in try takeString(virStorageVolGetPath(self.handle)) }
    }

    /// The volume's type and sizes.
    ///
    /// The corresponding C function is `virStorageVolGetInfo`.
    public func info() async throws(LibvirtError) -> Info {
        try await blocking { () throws(LibvirtError) in
            var raw = virStorageVolInfo()
            try check(virStorageVolGetInfo(self.handle, &raw))
            return Info(isFile: raw.type == Int32(VIR_STORAGE_VOL_FILE.rawValue),
                        capacity: raw.capacity, allocation: raw.allocation)
        }
    }

    /// The volume's XML description.
    ///
    /// The corresponding C function is `virStorageVolGetXMLDesc`.
    public func xml() async throws(LibvirtError) -> String {
        try await blocking { () throws(LibvirtError) in try takeString(virStorageVolGetXMLDesc(self.handle, 0)) }
    }

    /// Deletes the volume from its pool and from disk.
    ///
    /// The corresponding C function is `virStorageVolDelete`.
    public func delete() async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in _ = try check(virStorageVolDelete(self.handle, 0)) }
    }

    /// Writes the contents of a local file into the volume from its start, through libvirt (so
    /// it works on remote connections too).
    ///
    /// The corresponding C functions are `virStreamNew`, `virStorageVolUpload`, `virStreamSend`
    /// and `virStreamFinish` (`virStreamAbort` on failure).
    public func upload(contentsOf file: URL) async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in
            guard let reader = FileHandle(forReadingAtPath: file.path) else {
                throw LibvirtError(code: .invalidArgument, domain: .none,
                                   message: "cannot read \(file.path): no such readable file")
            }
            defer { try? reader.close() }
            let length = (try? reader.seekToEnd()) ?? 0
            try? reader.seek(toOffset: 0)
            try self.upload(length: length) { reader.readData(ofLength: 1 << 20) }
        }
    }

    /// Writes `data` into the volume from its start, through libvirt.
    ///
    /// The corresponding C functions are `virStreamNew`, `virStorageVolUpload`, `virStreamSend`
    /// and `virStreamFinish` (`virStreamAbort` on failure).
    public func upload(_ data: Data) async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in
            var offset = 0
            try self.upload(length: UInt64(data.count)) {
                let chunk = data[data.startIndex + offset ..< data.startIndex + min(data.count, offset + (1 << 20))]
                offset += chunk.count
                return Data(chunk)
            }
        }
    }

    /// Streams `length` bytes, read chunk by chunk until `nextChunk` returns empty data.
    private func upload(length: UInt64, nextChunk: () -> Data) throws(LibvirtError) {
        let stream = Stream(owning: try check(virStreamNew(virStorageVolGetConnect(handle), 0)))
        try check(virStorageVolUpload(handle, stream.handle, 0, length, 0))
        do throws(LibvirtError) {
            while true {
                let chunk = nextChunk()
                if chunk.isEmpty { break }
                try stream.sendNow(chunk)
            }
            try check(virStreamFinish(stream.handle))
        } catch {
            virStreamAbort(stream.handle)
            throw error
        }
    }

    /// The volume's contents from `offset` to its end, through libvirt (so it works on remote
    /// connections too). For a file that grows (a console log) it is what the file holds now.
    ///
    /// The corresponding C functions are `virStreamNew`, `virStorageVolDownload`, `virStreamRecv`
    /// and `virStreamFinish` (`virStreamAbort` on failure).
    public func download(from offset: UInt64 = 0) async throws(LibvirtError) -> Data {
        try await blocking { () throws(LibvirtError) in
            let stream = Stream(owning: try check(virStreamNew(virStorageVolGetConnect(self.handle), 0)))
            try check(virStorageVolDownload(self.handle, stream.handle, offset, 0, 0))
            var contents = Data()
            do throws(LibvirtError) {
                while true {
                    let chunk = try stream.receiveNow(upTo: 1 << 20)
                    if chunk.isEmpty { break }
                    contents.append(chunk)
                }
                try check(virStreamFinish(stream.handle))
            } catch {
                virStreamAbort(stream.handle)
                throw error
            }
            return contents
        }
    }

    /// What `virStorageVolGetInfo` reports, sizes in bytes.
    public struct Info: Sendable, Hashable {
        /// A plain file (as opposed to a block device, directory or network volume).
        public var isFile: Bool
        /// The size the guest sees (`capacity`).
        public var capacity: UInt64
        /// The space the volume takes on the host (`allocation`).
        public var allocation: UInt64
    }
}

extension Connection {
    /// Defines a persistent storage pool from its XML, without building or starting it.
    ///
    /// The corresponding C function is `virStoragePoolDefineXML`.
    public func defineStoragePool(xml: String) async throws(LibvirtError) -> StoragePool {
        try await blocking { () throws(LibvirtError) in
            StoragePool(owning: try check(virStoragePoolDefineXML(self.handle, xml, 0)))
        }
    }

    /// The storage pool called `name`; throws ``LibvirtError/Code/noStoragePool`` when there is none.
    ///
    /// The corresponding C function is `virStoragePoolLookupByName`.
    public func storagePool(named name: String) async throws(LibvirtError) -> StoragePool {
        try await blocking { () throws(LibvirtError) in
            StoragePool(owning: try check(virStoragePoolLookupByName(self.handle, name)))
        }
    }

    /// All storage pools that match `filter` (all of them when it is empty).
    ///
    /// The corresponding C function is `virConnectListAllStoragePools`.
    public func storagePools(_ filter: StoragePool.ListFilter = []) async throws(LibvirtError) -> [StoragePool] {
        try await blocking { () throws(LibvirtError) in
            var list: UnsafeMutablePointer<OpaquePointer?>?
            let count = try check(virConnectListAllStoragePools(self.handle, &list, filter.rawValue))
            return takeHandles(list, count: count, StoragePool.init(owning:))
        }
    }

    /// The volume whose file is at `path`, in whichever running pool holds it.
    ///
    /// The corresponding C function is `virStorageVolLookupByPath`.
    public func storageVolume(path: String) async throws(LibvirtError) -> StorageVolume {
        try await blocking { () throws(LibvirtError) in
            StorageVolume(owning: try check(virStorageVolLookupByPath(self.handle, path)))
        }
    }
}
