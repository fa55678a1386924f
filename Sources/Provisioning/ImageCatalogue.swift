public import Foundation
import Yams

/// Images `vmctl image pull` knows by name: where a distribution publishes its cloud image,
/// where its checksums are, and the user its cloud-init makes. Pure: parsed and looked up
/// without a network.
public struct ImageCatalogue: Sendable, Equatable {
    public struct Entry: Sendable, Equatable, Codable {
        public var url: String
        /// A checksum list (`SHA256SUMS`, `SHA512SUMS`, BSD-style `CHECKSUM`) naming the file.
        public var checksums: String?
        public var sha256: String?
        /// The user cloud-init makes on the image.
        public var user: String?

        public init(url: String, checksums: String? = nil, sha256: String? = nil, user: String? = nil) {
            self.url = url
            self.checksums = checksums
            self.sha256 = sha256
            self.user = user
        }
    }

    public var entries: [String: Entry]

    public init(entries: [String: Entry]) {
        self.entries = entries
    }

    /// The distributions' generic cloud images (Debian's `generic`, not `genericcloud`: the
    /// cloud kernel has no AHCI driver and never sees the seed on its SATA CD-ROM).
    public static let builtIn = ImageCatalogue(entries: [
        "debian-12": Entry(url: "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-generic-amd64.qcow2",
                           checksums: "https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS", user: "debian"),
        "debian-13": Entry(url: "https://cloud.debian.org/images/cloud/trixie/latest/debian-13-generic-amd64.qcow2",
                           checksums: "https://cloud.debian.org/images/cloud/trixie/latest/SHA512SUMS", user: "debian"),
        "ubuntu-22.04": Entry(url: "https://cloud-images.ubuntu.com/releases/22.04/release/ubuntu-22.04-server-cloudimg-amd64.img",
                              checksums: "https://cloud-images.ubuntu.com/releases/22.04/release/SHA256SUMS", user: "ubuntu"),
        "ubuntu-24.04": Entry(url: "https://cloud-images.ubuntu.com/releases/24.04/release/ubuntu-24.04-server-cloudimg-amd64.img",
                              checksums: "https://cloud-images.ubuntu.com/releases/24.04/release/SHA256SUMS", user: "ubuntu"),
        "alma-9": Entry(url: "https://repo.almalinux.org/almalinux/9/cloud/x86_64/images/AlmaLinux-9-GenericCloud-latest.x86_64.qcow2",
                        checksums: "https://repo.almalinux.org/almalinux/9/cloud/x86_64/images/CHECKSUM", user: "almalinux"),
    ])

    /// A user catalogue: a YAML mapping of names to `url`, `sha256` or `checksums`, `user`.
    public init(yaml text: String, file: String) throws(ProvisioningError) {
        let decoded: [String: Entry]?
        do {
            // An empty file (or only comments) is an empty catalogue.
            let blank = text.split(whereSeparator: \.isNewline).allSatisfy { $0.trimmingCharacters(in: .whitespaces).isEmpty || $0.trimmingCharacters(in: .whitespaces).hasPrefix("#") }
            decoded = blank ? [:] : try YAMLDecoder().decode([String: Entry].self, from: text)
        } catch {
            throw ProvisioningError(.invalidValue, "invalid image catalogue \(file): \(error)",
                                    hint: "give a mapping of names to url, sha256 or checksums, and user")
        }
        for (name, entry) in decoded ?? [:] {
            try validateImageName(name)
            guard let url = URL(string: entry.url), ["http", "https"].contains(url.scheme ?? "") else {
                throw ProvisioningError(.invalidValue, "invalid image catalogue \(file): \(name)'s url '\(entry.url)' is not http(s)")
            }
            if let sha256 = entry.sha256 { try validateSHA256(sha256) }
        }
        entries = decoded ?? [:]
    }

    /// The built-in catalogue with a user's: the file `named` (which must be readable), else
    /// `defaultFile` when it exists.
    public static func builtIn(adding named: String?, orIfPresent defaultFile: String) throws(ProvisioningError) -> ImageCatalogue {
        let file = named ?? defaultFile
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            if named != nil { throw .invalid("cannot read image catalogue \(file)", hint: "give a readable YAML file") }
            return .builtIn
        }
        return builtIn.adding(try ImageCatalogue(yaml: text, file: file))
    }

    /// This catalogue with `other`'s entries added, replacing those of the same name.
    public func adding(_ other: ImageCatalogue) -> ImageCatalogue {
        ImageCatalogue(entries: entries.merging(other.entries) { $1 })
    }
}

/// Image names: what a volume name and a command line take without quoting.
public func validateImageName(_ name: String) throws(ProvisioningError) {
    let allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyz0123456789._-")
    guard !name.isEmpty, name.count <= 64, name.unicodeScalars.allSatisfy(allowed.contains),
          let first = name.unicodeScalars.first, CharacterSet.lowercaseLetters.union(.decimalDigits).contains(first) else {
        throw .invalid("invalid image name '\(name)': use up to 64 lower-case letters, digits, '.', '_' and '-', starting with a letter or digit")
    }
}

public func validateSHA256(_ hex: String) throws(ProvisioningError) {
    guard hex.count == 64, hex.allSatisfy(\.isHexDigit) else {
        throw .invalid("invalid SHA-256 '\(hex)': give 64 hexadecimal digits")
    }
}

/// A checksum an image must have: the algorithm and the digest in lower-case hex.
public struct Checksum: Sendable, Equatable, CustomStringConvertible {
    public enum Algorithm: String, Sendable {
        case sha256, sha512
    }
    public var algorithm: Algorithm
    public var hex: String

    public init(_ algorithm: Algorithm, _ hex: String) {
        self.algorithm = algorithm
        self.hex = hex.lowercased()
    }

    public var description: String { "\(algorithm.rawValue):\(hex)" }

    /// The entry for `file` in a checksum list: GNU style (`HEX  NAME`, `HEX *NAME`) or BSD style
    /// (`SHA256 (NAME) = HEX`); the algorithm from the tag or the digest's length.
    public static func find(_ file: String, inList text: String) -> Checksum? {
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if let open = line.firstIndex(of: "("), let close = line.range(of: ") = ", options: .backwards) {
                let tag = line[..<open].trimmingCharacters(in: .whitespaces).lowercased()
                let name = String(line[line.index(after: open)..<close.lowerBound])
                let hex = String(line[close.upperBound...]).trimmingCharacters(in: .whitespaces)
                if name == file, let algorithm = Algorithm(rawValue: tag), hex.count == length(of: algorithm) { return Checksum(algorithm, hex) }
                continue
            }
            let fields = line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            guard fields.count == 2 else { continue }
            var name = fields[1].trimmingCharacters(in: .whitespaces)
            if name.hasPrefix("*") { name.removeFirst() }
            if name.hasPrefix("./") { name.removeFirst(2) }
            let hex = String(fields[0])
            guard name == file, hex.allSatisfy(\.isHexDigit) else { continue }
            if hex.count == 64 { return Checksum(.sha256, hex) }
            if hex.count == 128 { return Checksum(.sha512, hex) }
        }
        return nil
    }

    private static func length(of algorithm: Algorithm) -> Int { algorithm == .sha256 ? 64 : 128 }
}
