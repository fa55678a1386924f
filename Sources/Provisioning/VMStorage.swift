import Foundation
import Libvirt
import LibvirtXML

/// The dir storage pool where vmctl keeps the volumes it creates for VMs (overlays, blank and
/// data disks, cloud-init seeds).
public struct VMStorage: Sendable {
    let connection: Connection
    let pool: StoragePool

    /// The default pool's name and directory (on the libvirt host).
    public static let defaultName = "vmctl"
    public static let defaultPath = "/var/lib/libvirt/vmctl"

    /// The pool `name`, started; the default pool is defined, built and started if missing.
    /// Concurrent vmctl processes may race to do that: whoever loses looks the pool up again.
    static func open(_ name: String, on connection: Connection) async throws(ProvisioningError) -> VMStorage {
        var lastError: LibvirtError?
        for _ in 0..<3 {
            do {
                let pool: StoragePool
                do {
                    pool = try await connection.storagePool(named: name)
                } catch where error.code == .noStoragePool && name == defaultName {
                    pool = try await connection.defineStoragePool(xml: StoragePoolConfiguration(name: name, path: defaultPath).xml)
                    try? await pool.setAutostart(true)
                    try await pool.build()
                }
                if try await !pool.isActive() { try await pool.start() }
                return VMStorage(connection: connection, pool: pool)
            } catch where error.code == .noStoragePool && name != defaultName {
                throw ProvisioningError(.notFound, "no storage pool named \(name)",
                                        hint: "create it (virsh pool-define-as), or use vmctl's own (\(defaultName))")
            } catch {
                lastError = error  // another vmctl defined or started it meanwhile: look again
            }
        }
        throw ProvisioningError(.libvirt, "cannot prepare storage pool \(name): \(lastError?.message ?? "unknown error")",
                                hint: "check it with virsh pool-info \(name)", cause: lastError)
    }

    /// A qcow2 volume: an overlay (compat 1.1) on `backing` when given, else blank.
    func createQcow2(named name: String, capacity: UInt64?, backing: (path: String, format: String)?) async throws(LibvirtError) -> StorageVolume {
        try await pool.createVolume(xml: VolumeConfiguration(name: name, capacityBytes: capacity ?? 0, format: "qcow2", backing: backing).xml)
    }

    /// An empty raw volume, for a file something else writes (the console log).
    func createEmpty(named name: String) async throws(LibvirtError) -> StorageVolume {
        try await pool.createVolume(xml: VolumeConfiguration(name: name, capacityBytes: 0, format: "raw", allocationBytes: 0).xml)
    }

    /// A volume holding the contents of the local file `file`, uploaded through libvirt (so the
    /// libvirt host may be another machine); `readOnly` makes its file mode 0444 (a base image).
    func createRaw(named name: String, from file: URL, readOnly: Bool = false) async throws(LibvirtError) -> StorageVolume {
        let size = ((try? FileManager.default.attributesOfItem(atPath: file.path))?[.size] as? NSNumber)?.uint64Value ?? 0
        let volume = try await pool.createVolume(xml: VolumeConfiguration(name: name, capacityBytes: size, format: "raw", allocationBytes: 0,
                                                                          mode: readOnly ? "0444" : nil).xml)
        do {
            try await volume.upload(contentsOf: file)
        } catch {
            try? await volume.delete()
            throw error
        }
        return volume
    }
}

/// Deletes `POOL/NAME` volumes, unless something still uses one as a backing file: another
/// volume of its pool, or a VM whose image (`imagesInUse`, from vmctl's metadata) it is. Those
/// are kept and named in the result. Missing pools and volumes count as deleted. Shared bases
/// (uploaded to a remote host, `SharedBase`) go last, after the overlays in the list, under
/// their lock, and only when no overlay stands on them; keeping one is no news (other VMs share
/// it), so it is not in the result.
func deleteVolumes(_ references: [String], on connection: Connection, imagesInUse: [String: String] = [:],
                   directory: String) async throws(ProvisioningError) -> [String] {
    var kept: [String] = []
    var backingFiles: [String: [String: String]] = [:]  // per pool: backing path -> the overlay on it
    let parsed = references.compactMap { reference -> (pool: String, name: String)? in
        let parts = reference.split(separator: "/", maxSplits: 1).map(String.init)
        return parts.count == 2 ? (parts[0], parts[1]) : nil
    }
    let bases = parsed.filter { SharedBase.isBase($0.name) }
    let others = parsed.filter { !SharedBase.isBase($0.name) && !$0.name.hasSuffix(".uploaded") }
    for (poolName, name) in others {
        do {
            let pool = try await connection.storagePool(named: poolName)
            let volume = try await pool.volume(named: name)
            let path = try await volume.path()
            if let user = imagesInUse[path] {
                kept.append("\(path) (the image of VM \(user))")
                continue
            }
            if backingFiles[poolName] == nil { backingFiles[poolName] = try await overlays(in: pool) }
            if let user = backingFiles[poolName]?[path] {
                kept.append("\(path) (the backing file of \(user))")
                continue
            }
            try await volume.delete()
        } catch where error.code == .noStoragePool || error.code == .noStorageVolume {
            continue
        } catch {
            throw ProvisioningError(while: "delete volume \(poolName)/\(name)", error)
        }
    }
    for (poolName, name) in bases {
        let found: (StoragePool, StorageVolume)
        do {
            let pool = try await connection.storagePool(named: poolName)
            found = (pool, try await pool.volume(named: name))
        } catch where error.code == .noStoragePool || error.code == .noStorageVolume {
            continue
        } catch {
            throw ProvisioningError(while: "look up the base image \(poolName)/\(name)", error)
        }
        _ = try await SharedBase.release(found.1, in: found.0, directory: directory)
    }
    return kept
}

/// The pool's overlays by the path of their backing file: libvirt keeps no count of overlays,
/// so vmctl looks before it deletes.
func overlays(in pool: StoragePool) async throws(LibvirtError) -> [String: String] {
    var overlays: [String: String] = [:]
    for volume in try await pool.volumes() {
        do {
            let xml = try await volume.xml()
            guard let definition = try? VolumeDefinition(xml: xml), let base = definition.backingPath else { continue }
            overlays[base] = definition.path ?? volume.name
        } catch where error.code == .noStorageVolume {
            continue  // deleted meanwhile (another destroy): not a user
        }
    }
    return overlays
}

/// The format and virtual size of a local image file, checked: a regular file or block device;
/// qcow2 with a sane header (version 2 or 3, cluster size 512 B to 2 MiB, virtual size within
/// qcow2's limit), or raw, which is taken only when `format` says `raw` or the file really is a
/// disk image (an MBR boot signature or a GPT header), so that a text file or a truncated
/// download is refused by name.
public func probeImage(_ path: String, format: String? = nil) throws(ProvisioningError) -> (format: String, virtualSize: UInt64) {
    var status = stat()
    guard stat(path, &status) == 0 else {
        throw ProvisioningError(.notFound, "cannot read image \(path)", hint: "give the path of an existing qcow2 or raw image")
    }
    let kind = status.st_mode & S_IFMT
    guard kind == S_IFREG || kind == S_IFBLK else {
        let what = kind == S_IFDIR ? "a directory" : kind == S_IFCHR ? "a character device" : "not a regular file"
        throw ProvisioningError(.invalidValue, "image \(path) is \(what)", hint: "give a qcow2 or raw image file, or a block device")
    }
    guard let handle = FileHandle(forReadingAtPath: path) else {
        throw ProvisioningError(.file, "cannot read image \(path)", hint: "check its permissions")
    }
    defer { try? handle.close() }
    let header = (try? handle.read(upToCount: 1024)) ?? Data()
    let fileSize = kind == S_IFBLK ? ((try? handle.seekToEnd()) ?? 0) : UInt64(status.st_size)
    func bigEndian(_ range: Range<Int>) -> UInt64 { header[range].reduce(UInt64(0)) { $0 << 8 | UInt64($1) } }
    let isQcow2 = header.count >= 4 && header.prefix(4) == Data([0x51, 0x46, 0x49, 0xfb])
    if isQcow2 && format != "raw" {
        let version = header.count >= 8 ? bigEndian(4..<8) : 0
        let clusterBits = header.count >= 24 ? bigEndian(20..<24) : 0
        let size = header.count >= 32 ? bigEndian(24..<32) : UInt64.max
        guard header.count >= 72, version == 2 || version == 3, (9...21).contains(clusterBits), size > 0,
              size <= ByteSize.qcow2Limit.bytes else {
            throw ProvisioningError(.invalidValue, "image \(path) has a qcow2 signature but no valid qcow2 header (version \(version), virtual size \(size))",
                                    hint: "check the file (qemu-img check), or download it again")
        }
        return ("qcow2", size)
    }
    if format == "qcow2" {
        throw ProvisioningError(.invalidValue, "image \(path) is not qcow2", hint: "give a qcow2 image, or say raw")
    }
    let mbr = header.count >= 512 && header[510] == 0x55 && header[511] == 0xaa
    let gpt = header.count >= 520 && header[512..<520] == Data("EFI PART".utf8)
    guard format == "raw" || mbr || gpt else {
        throw ProvisioningError(.invalidValue, "image \(path) is neither qcow2 nor a disk image (no partition table)",
                                hint: "give a qcow2 image, or say raw if it is a raw disk")
    }
    guard fileSize > 0 else { throw ProvisioningError(.invalidValue, "image \(path) is empty", hint: "give a qcow2 or raw image") }
    return ("raw", fileSize)
}
