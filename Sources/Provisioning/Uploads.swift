import Foundation
import Libvirt

/// A base image given by path to a create on another host: libvirt there cannot read the local
/// file, so it goes to the host as a volume of the VM's storage pool, uploaded once and shared
/// by every VM standing on it. The volume is named by the file's SHA-256 (`base-HEX.FORMAT`, the
/// first 128 bits), and a marker volume (`base-HEX.FORMAT.uploaded`, empty) is made only when
/// the upload is whole, so a half-uploaded base (a create killed meanwhile) is never taken for
/// one. The last VM's destroy deletes both: a base lives while an overlay in its pool stands on
/// it. Uploads, reuse and deletion of one base are serialised by a lock file beside the state
/// file, so that a create taking an existing base and a destroy deleting it cannot cross.
struct SharedBase: Sendable {
    /// The base's volume name.
    let name: String

    init(sha256: String, format: String) {
        name = "base-\(sha256.prefix(32)).\(format)"
    }

    /// Whether `volume` is a shared base (vmctl's VM volumes are `NAME-...`, never this shape).
    static func isBase(_ volume: String) -> Bool {
        let parts = volume.split(separator: ".")
        guard parts.count == 2, ["qcow2", "raw"].contains(parts[1]), parts[0].hasPrefix("base-") else { return false }
        let hex = parts[0].dropFirst(5)
        return hex.count == 32 && hex.allSatisfy { $0.isHexDigit && !$0.isUppercase }
    }

    static func marker(of base: String) -> String { base + ".uploaded" }

    /// The lock file of `base`, under the client's own directory (`StateStore.localDirectory`).
    static func lock(_ base: String, directory clientDirectory: String) throws(ProvisioningError) -> String {
        let directory = clientDirectory + "/uploads"
        try makePrivateDirectory(directory)
        return directory + "/\(base).lock"
    }

    /// Runs `body` with the base's path on the host: uploaded from `file` first unless a whole
    /// upload is there already (same name, hence same SHA-256; its marker; a capacity among
    /// `sizes`, the file's size or, once libvirt has probed a qcow2, its virtual size).
    /// `journal` is called with the base's reference before anything is made, so that an undo
    /// (or doctor, after a SIGKILL) deletes it when no overlay stands on it. Under the lock.
    func use<T>(
        file: String, sizes: [UInt64], in storage: VMStorage, directory: String,
        journal: (String) async throws(ProvisioningError) -> Void,
        progress: @Sendable (String) -> Void,
        _ body: (String) async throws(ProvisioningError) -> T
    ) async throws(ProvisioningError) -> T {
        try await withFileLock(try Self.lock(name, directory: directory)) { () async throws(ProvisioningError) -> T in
            try await journal("\(storage.pool.name)/\(name)")
            let path = try await libvirtCall("upload the base image \(file) to pool \(storage.pool.name)") { () async throws(LibvirtError) -> String in
                let existing = try? await storage.pool.volume(named: name)
                let marked = (try? await storage.pool.volume(named: Self.marker(of: name))) != nil
                if let existing, marked, sizes.contains(try await existing.info().capacity) {
                    return try await existing.path()
                }
                // No whole upload: what is there is a killed upload's (under the lock, no one
                // else is uploading) or a marker whose base is gone.
                if let existing { try await existing.delete() }
                if marked { try? await storage.pool.volume(named: Self.marker(of: name)).delete() }
                progress("uploading \(file) (\(ByteSize(bytes: sizes[0]))) to the libvirt host")
                let volume = try await storage.createRaw(named: name, from: URL(fileURLWithPath: file), readOnly: true)
                _ = try await storage.createEmpty(named: Self.marker(of: name))
                return try await volume.path()
            }
            return try await body(path)
        }
    }

    /// Deletes the base and its marker unless an overlay in its pool stands on it; true when
    /// they are gone. Under the lock.
    static func release(_ base: StorageVolume, in pool: StoragePool, directory: String) async throws(ProvisioningError) -> Bool {
        try await withFileLock(try lock(base.name, directory: directory)) { () async throws(ProvisioningError) -> Bool in
            try await libvirtCall("delete the base image \(base.name)") { () async throws(LibvirtError) -> Bool in
                let path = try await base.path()
                if try await overlays(in: pool)[path] != nil { return false }
                try await base.delete()
                do throws(LibvirtError) {
                    try await pool.volume(named: marker(of: base.name)).delete()
                } catch where error.code == .noStorageVolume {}
                return true
            }
        }
    }
}
