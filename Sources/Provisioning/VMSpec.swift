public import Addressing
public import Foundation

/// One `--network NET[,pool=POOL][,ip=ADDR]...[,mac=MAC][,model=MODEL]`.
public struct NICSpec: Equatable, Sendable {
    public var network: String
    public var pool: String?
    /// Exact addresses to reserve (one a family).
    public var addresses: [IPAddress] = []
    public var mac: MACAddress?
    public var model: String = "virtio"

    public static let models = ["virtio", "e1000", "e1000e", "rtl8139"]

    /// Parses the option's value; the error names the bad part.
    public init(parsing text: String) throws(ProvisioningError) {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard let network = parts.first, !network.isEmpty, !network.contains("=") else {
            throw ProvisioningError.invalid("invalid NIC '\(text)': start with the network's name, as in NET,pool=POOL")
        }
        self.network = network
        for part in parts.dropFirst() {
            let pair = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2, !pair[1].isEmpty else {
                throw ProvisioningError.invalid("invalid NIC '\(text)': '\(part)' is not KEY=VALUE (keys: pool, ip, mac, model)")
            }
            switch pair[0] {
            case "pool":
                guard pool == nil else { throw ProvisioningError.invalid("invalid NIC '\(text)': give pool= once") }
                pool = pair[1]
            case "ip":
                guard let address = IPAddress(pair[1]) else {
                    throw ProvisioningError.invalid("invalid NIC '\(text)': ip=\(pair[1]) is not an IPv4 or IPv6 address")
                }
                guard !addresses.contains(where: { $0.family == address.family }) else {
                    throw ProvisioningError.invalid("invalid NIC '\(text)': give at most one ip= per address family")
                }
                addresses.append(address)
            case "mac":
                guard let mac = MACAddress(pair[1]), mac.isUsableByNIC else {
                    throw ProvisioningError.invalid("invalid NIC '\(text)': mac=\(pair[1]) is not a unicast MAC such as 52:54:00:12:34:56")
                }
                self.mac = mac
            case "model":
                guard Self.models.contains(pair[1]) else {
                    throw ProvisioningError.invalid("invalid NIC '\(text)': model=\(pair[1]) is not one of \(Self.models.joined(separator: ", "))")
                }
                model = pair[1]
            default:
                throw ProvisioningError.invalid("invalid NIC '\(text)': unknown key '\(pair[0])' (keys: pool, ip, mac, model)")
            }
        }
    }
}

/// A size with a binary unit: `512M`, `10G`, `1.5T`, `64MiB`.
public struct ByteSize: Equatable, Sendable, CustomStringConvertible {
    public var bytes: UInt64

    public init(bytes: UInt64) { self.bytes = bytes }

    /// The largest virtual size a qcow2 image with QEMU's default 64 KiB clusters can have: its
    /// L1 table holds at most 32 MiB of entries (`qemu-img` refuses 2049T, takes 2048T).
    public static let qcow2Limit = ByteSize(bytes: 1 << 51)

    /// Decimal digits, an optional fraction, and a unit (K, M, G, T, P, or KiB ... PiB, any
    /// case). Nothing else: no sign, hex, exponent or spaces, and never more than 2^63 bytes.
    public init(parsing text: String, what: String) throws(ProvisioningError) {
        let units: [(String, UInt64)] = [
            ("KIB", 1 << 10), ("MIB", 1 << 20), ("GIB", 1 << 30), ("TIB", 1 << 40), ("PIB", 1 << 50),
            ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40), ("P", 1 << 50),
        ]
        let bad = ProvisioningError.invalid("invalid \(what) '\(text)': give a positive number with a unit, such as 512M or 10G")
        guard let (suffix, factor) = units.first(where: { text.uppercased().hasSuffix($0.0) }) else { throw bad }
        let number = text.dropLast(suffix.count)
        let parts = number.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, !whole.isEmpty, whole.allSatisfy({ $0.isASCII && $0.isNumber }),
              parts.count == 1 || (!parts[1].isEmpty && parts[1].count <= 9 && parts[1].allSatisfy({ $0.isASCII && $0.isNumber })),
              let integer = UInt64(whole) else { throw bad }
        let (scaled, overflow) = integer.multipliedReportingOverflow(by: factor)
        guard !overflow, scaled < 1 << 63 else { throw bad }
        var total = scaled
        if parts.count == 2, let fraction = UInt64(parts[1]) {
            var divisor: UInt128 = 1
            for _ in 0..<parts[1].count { divisor *= 10 }
            // Below one unit: factor < 2^51, so the sum stays below 2^64.
            total += UInt64(UInt128(factor) * UInt128(fraction) / divisor)
            guard total < 1 << 63 else { throw bad }
        }
        guard total > 0 else { throw bad }
        bytes = total
    }

    public var mebibytes: UInt64 { bytes >> 20 }

    public var description: String {
        for (suffix, factor) in [("P", UInt64(1) << 50), ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)]
        where bytes >= factor && bytes % factor == 0 {
            return "\(bytes / factor)\(suffix)"
        }
        return "\(bytes) bytes"
    }
}

/// `--disk size=SIZE`: a blank data disk.
public struct DataDiskSpec: Equatable, Sendable {
    public var size: ByteSize

    public init(parsing text: String) throws(ProvisioningError) {
        let pairs = text.split(separator: ",").map { $0.split(separator: "=", maxSplits: 1).map(String.init) }
        guard pairs.count == 1, pairs[0].count == 2, pairs[0][0] == "size" else {
            throw ProvisioningError.invalid("invalid data disk '\(text)': give size=SIZE, such as size=10G")
        }
        do {
            size = try ByteSize(parsing: pairs[0][1], what: "data disk size")
        } catch {
            throw ProvisioningError.invalid("invalid data disk '\(text)': give size=SIZE, a positive size with a unit, such as size=10G")
        }
    }
}

/// `--label KEY=VALUE`: the key of letters, digits, `-_./` (at most 63), the value of printable
/// characters (no control characters: XML would turn a CR into an LF, and the label would
/// no longer match itself), at most 255.
public func parseLabel(_ text: String) throws(ProvisioningError) -> (key: String, value: String) {
    let pair = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
    let keyAllowed = pair.first?.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_./".contains($0)) } ?? false
    guard pair.count == 2, !pair[0].isEmpty, keyAllowed, pair[0].count <= 63 else {
        throw ProvisioningError.invalid("invalid label '\(text)': give KEY=VALUE, the key made of letters, digits, '-', '_', '.' or '/'")
    }
    guard pair[1].unicodeScalars.allSatisfy({ $0.properties.generalCategory != .control }), pair[1].count <= 255 else {
        throw ProvisioningError.invalid("invalid label value in '\(text.debugDescription.dropFirst().dropLast())': use at most 255 printable characters, no control characters")
    }
    return (pair[0], pair[1])
}

/// The longest duration vmctl takes (`--ttl`): ten years.
public let longestDuration: TimeInterval = 10 * 365 * 86400

/// `--ttl 90m`, `2h`, `1h30m`, `7d`, `45s`: a duration in seconds, at most ten years.
public func parseDuration(_ text: String) throws(ProvisioningError) -> TimeInterval {
    let units: [Character: TimeInterval] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
    var total: TimeInterval = 0
    var number = ""
    var valid = !text.isEmpty
    for character in text {
        if character.isASCII && character.isNumber {
            number.append(character)
        } else if let unit = units[character], number.count <= 12, let value = Double(number) {
            total += value * unit
            number = ""
        } else {
            valid = false
            break
        }
    }
    guard valid, number.isEmpty, total > 0 else {
        throw ProvisioningError.invalid("invalid duration '\(text)': give a number with a unit s, m, h or d, such as 90m or 1h30m")
    }
    guard total <= longestDuration else {
        throw ProvisioningError.invalid("invalid duration '\(text)': at most 3650d (ten years)")
    }
    return total
}
