public import AllocationStore
public import Foundation
import HostFirewall
import Libvirt
import LibvirtXML

/// Base images: pulled over HTTP(S) or imported from a file, checked, and kept read-only as
/// volumes of vmctl's storage pool (uploaded through libvirt, so a remote host works too), with
/// their record (checksum, source, user) in the state file.
public struct Images: Sendable {
    public let state: State
    public let session: Session
    /// The storage pool new images go to.
    public let storagePool: String

    public init(state: State, session: Session, storagePool: String = VMStorage.defaultName) {
        self.state = state
        self.session = session
        self.storagePool = storagePool
    }

    /// Where partial downloads and their locks live: beside the state file.
    var downloads: String { SSHFiles(directory: state.store.localDirectory).directory + "/images" }

    /// What `image pull` is asked for, settled before anything is fetched.
    public struct PullRequest: Sendable, Equatable {
        public var name: String
        public var url: URL
        public var sha256: String?
        public var checksums: URL?
        public var user: String?

        /// `source` is a catalogue name or an http(s) URL; a URL's image is named after its file
        /// unless `name` is given. A checksum is required: `--sha256`, `--checksums` or the
        /// catalogue's.
        public init(source: String, name: String?, sha256: String?, checksums: String?, catalogue: ImageCatalogue) throws(ProvisioningError) {
            if let sha256 { try validateSHA256(sha256) }
            var entry: ImageCatalogue.Entry
            if let url = URL(string: source), ["http", "https"].contains(url.scheme?.lowercased() ?? "") {
                entry = ImageCatalogue.Entry(url: source)
                self.name = name ?? Self.name(fromFile: url.lastPathComponent)
            } else if let known = catalogue.entries[source] {
                entry = known
                self.name = name ?? source
            } else {
                throw .invalid("unknown image '\(source)': give an http(s) URL or one of \(catalogue.entries.keys.sorted().joined(separator: ", "))",
                               hint: "a user catalogue (--catalogue FILE) can add names")
            }
            if sha256 != nil || checksums != nil {
                entry.sha256 = sha256
                entry.checksums = checksums
            }
            try validateImageName(self.name)
            url = URL(string: entry.url)!
            self.sha256 = entry.sha256?.lowercased()
            self.user = entry.user
            if let text = entry.checksums {
                guard let list = URL(string: text), ["http", "https"].contains(list.scheme?.lowercased() ?? "") else {
                    throw .invalid("invalid checksums URL '\(text)': give an http(s) URL of a SHA256SUMS-style list")
                }
                self.checksums = list
            } else {
                self.checksums = nil
            }
            if self.sha256 == nil && self.checksums == nil {
                throw .invalid("no checksum for \(entry.url): vmctl uses only images it has checked", hint: "give --sha256 HEX or --checksums URL")
            }
        }

        /// `debian-12-generic-amd64.qcow2` -> `debian-12-generic-amd64`.
        static func name(fromFile file: String) -> String {
            var name = file.lowercased()
            for suffix in [".qcow2", ".img", ".raw"] where name.hasSuffix(suffix) { name.removeLast(suffix.count) }
            return String(name.map { "abcdefghijklmnopqrstuvwxyz0123456789._-".contains($0) ? $0 : "-" })
        }
    }

    /// What `image pull` did: the image, whether it was there already, where the download resumed.
    public struct Pulled: Sendable {
        public var image: ImageView
        public var alreadyPresent: Bool
        public var resumedAt: UInt64
    }

    /// Pulls the image once however many vmctl processes ask at the same time: the others wait
    /// for the first and find it done.
    public func pull(_ request: PullRequest, progress: @escaping @Sendable (UInt64, UInt64?) -> Void) async throws(ProvisioningError) -> Pulled {
        try makeDownloads()
        let part = downloads + "/\(request.name).part"
        return try await withFileLock(downloads + "/\(request.name).lock") { () async throws(ProvisioningError) -> Pulled in
            if let existing = try await record(request.name) {
                guard existing.source == request.url.absoluteString, request.sha256.map({ $0 == existing.sha256 }) ?? true else {
                    throw ProvisioningError(.alreadyExists, "image \(request.name) exists, pulled from \(existing.source) with sha256 \(existing.sha256)",
                                            hint: "pick another name with --name, or vmctl image rm \(request.name) first")
                }
                return Pulled(image: try await view(of: existing), alreadyPresent: true, resumedAt: 0)
            }
            let expected: Checksum = if let sha256 = request.sha256 {
                Checksum(.sha256, sha256)
            } else {
                try await listedChecksum(of: request.url, in: request.checksums!)
            }
            let outcome = try await Download(url: request.url, file: part, progress: progress).run()
            let actual = try await digest(of: part, expected.algorithm)
            guard actual == expected.hex else {
                try? FileManager.default.removeItem(atPath: part)
                throw ProvisioningError(.conflict, "checksum mismatch for \(request.url.absoluteString): expected \(expected.algorithm.rawValue) \(expected.hex), got \(actual); the download was deleted",
                                        hint: "check the checksum, or the server")
            }
            let sha256 = expected.algorithm == .sha256 ? actual : try await digest(of: part, .sha256)
            defer { try? FileManager.default.removeItem(atPath: part) }
            let made = try await store(file: part, name: request.name, sha256: sha256, source: request.url.absoluteString, user: request.user)
            return Pulled(image: try await view(of: made), alreadyPresent: false, resumedAt: outcome.resumedAt)
        }
    }

    /// Imports a local qcow2 or raw image file as `name`.
    public func importFile(_ path: String, name: String, user: String?) async throws(ProvisioningError) -> ImageView {
        try validateImageName(name)
        _ = try probeImage(path)
        try makeDownloads()
        return try await withFileLock(downloads + "/\(name).lock") { () async throws(ProvisioningError) -> ImageView in
            if try await record(name) != nil { throw ProvisioningError(StoreError.imageExists(name)) }
            let absolute = URL(fileURLWithPath: path).standardizedFileURL
            let made = try await store(file: path, name: name, sha256: try await digest(of: path, .sha256), source: absolute.absoluteString, user: user)
            return try await view(of: made)
        }
    }

    /// Every image, with the VMs standing on it.
    public func list() async throws(ProvisioningError) -> [ImageView] {
        let records = try await state.run { store throws(StoreError) in try store.images() }
        guard !records.isEmpty else { return [] }
        let users = try await usersByPath()
        return records.map { ImageView($0, usedBy: users[$0.path] ?? []) }
    }

    /// Deletes the image's volume and record; refused while a VM or another volume stands on it.
    public func remove(_ name: String) async throws(ProvisioningError) -> ImageView {
        guard let image = try await record(name) else { throw ProvisioningError(StoreError.noSuchImage(name)) }
        let users = try await usersByPath()[image.path] ?? []
        guard users.isEmpty else {
            throw ProvisioningError(.conflict, "image \(name) is in use by \(users.joined(separator: ", "))", hint: "destroy those VMs first")
        }
        let kept = try await deleteVolumes(["\(image.pool)/\(image.volume)"], on: session.connection, directory: state.store.localDirectory)
        if let user = kept.first {
            throw ProvisioningError(.conflict, "image \(name) is in use: \(user)", hint: "delete that volume first")
        }
        try await state.run { store throws(StoreError) in try store.removeImage(named: name) }
        return ImageView(image, usedBy: [])
    }

    /// The image called `name`, or nil.
    public func record(_ name: String) async throws(ProvisioningError) -> ImageRecord? {
        try await state.run { store throws(StoreError) in try store.image(named: name) }
    }

    // MARK: Steps

    private func makeDownloads() throws(ProvisioningError) { try makePrivateDirectory(downloads) }

    private func listedChecksum(of url: URL, in list: URL) async throws(ProvisioningError) -> Checksum {
        let text = try await Download.text(of: list)
        guard let found = Checksum.find(url.lastPathComponent, inList: text) else {
            throw ProvisioningError(.notFound, "\(list.absoluteString) lists no checksum for \(url.lastPathComponent)",
                                    hint: "give --sha256 HEX, or the checksum list that names the file")
        }
        return found
    }

    /// Uploads `file` as a read-only volume and records it; nothing is left when a step fails.
    private func store(file: String, name: String, sha256: String, source: String, user: String?) async throws(ProvisioningError) -> ImageRecord {
        let (format, virtualSize) = try probeImage(file)
        let storage = try await VMStorage.open(storagePool, on: session.connection)
        let volumeName = "\(name).image.\(format)"
        // Under the image's lock and without its record, a volume of that name is what an
        // interrupted pull left half-uploaded.
        if let leftover = try? await storage.pool.volume(named: volumeName) {
            try await libvirtCall("delete the half-uploaded volume \(volumeName)") { () async throws(LibvirtError) in try await leftover.delete() }
        }
        let volume = try await libvirtCall("upload image \(name) to pool \(storagePool)") { () async throws(LibvirtError) in
            try await storage.createRaw(named: volumeName, from: URL(fileURLWithPath: file), readOnly: true)
        }
        do throws(ProvisioningError) {
            let path = try await libvirtCall("read the path of volume \(volumeName)") { () async throws(LibvirtError) in try await volume.path() }
            let record = ImageRecord(name: name, pool: storagePool, volume: volumeName, path: path, format: format, size: fileSize(file) ?? 0,
                                     virtualSize: virtualSize, sha256: sha256, source: source, user: user)
            try await state.run { store throws(StoreError) in try store.add(record) }
            return record
        } catch {
            try? await volume.delete()
            throw error
        }
    }

    /// The VMs standing on each base image path (from vmctl's metadata).
    private func usersByPath() async throws(ProvisioningError) -> [String: [String]] {
        var users: [String: [String]] = [:]
        for (domain, definition) in try await session.reader.readAll() {
            if let image = definition.metadata?.image { users[image, default: []].append(domain.name) }
        }
        return users.mapValues { $0.sorted() }
    }

    private func view(of record: ImageRecord) async throws(ProvisioningError) -> ImageView {
        ImageView(record, usedBy: try await usersByPath()[record.path] ?? [])
    }
}

/// A directory of vmctl's beside the state file (downloads, locks), `0700`, made if missing.
func makePrivateDirectory(_ path: String) throws(ProvisioningError) {
    do {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    } catch {
        throw ProvisioningError(.file, "cannot make \(path): \(error.localizedDescription)", hint: "check the state directory's permissions")
    }
}

/// The checksum of a local file, by coreutils (sha256sum takes about 2 s for 630 MB here).
func digest(of file: String, _ algorithm: Checksum.Algorithm) async throws(ProvisioningError) -> String {
    do {
        let output = try await SystemTool("\(algorithm.rawValue)sum").run([file])
        return String(output.prefix { !$0.isWhitespace }).lowercased()
    } catch {
        throw ProvisioningError(.tool, "cannot compute the \(algorithm.rawValue) of \(file): \(error)", hint: "install coreutils")
    }
}

/// An image as `image list` prints it.
public struct ImageView: Encodable, Sendable, Equatable {
    public var name: String
    public var format: String
    public var size: UInt64
    public var virtualSize: UInt64
    public var sha256: String
    public var source: String
    public var user: String?
    public var pool: String
    public var path: String
    /// The VMs whose root disk is an overlay on it.
    public var usedBy: [String]

    public init(_ record: ImageRecord, usedBy: [String]) {
        name = record.name
        format = record.format
        size = record.size
        virtualSize = record.virtualSize
        sha256 = record.sha256
        source = record.source
        user = record.user
        pool = record.pool
        path = record.path
        self.usedBy = usedBy
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(format, forKey: .format)
        try container.encode(size, forKey: .size)
        try container.encode(virtualSize, forKey: .virtualSize)
        try container.encode(sha256, forKey: .sha256)
        try container.encode(source, forKey: .source)
        try container.encode(user, forKey: .user)
        try container.encode(pool, forKey: .pool)
        try container.encode(path, forKey: .path)
        try container.encode(usedBy, forKey: .usedBy)
    }
    enum CodingKeys: String, CodingKey { case name, format, size, virtualSize, sha256, source, user, pool, path, usedBy }
}
