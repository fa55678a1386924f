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
                guard let mac = MACAddress(pair[1]), !mac.isMulticast else {
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

    public init(parsing text: String, what: String) throws(ProvisioningError) {
        let units: [(String, UInt64)] = [
            ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
            ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40),
        ]
        for (suffix, factor) in units where text.uppercased().hasSuffix(suffix.uppercased()) {
            let number = text.dropLast(suffix.count)
            if let value = Double(number), value > 0, value * Double(factor) < Double(UInt64.max / 2) {
                bytes = UInt64(value * Double(factor))
                return
            }
            break
        }
        throw ProvisioningError.invalid("invalid \(what) '\(text)': give a positive number with a unit, such as 512M or 10G")
    }

    public var mebibytes: UInt64 { bytes >> 20 }

    public var description: String {
        for (suffix, factor) in [("T", UInt64(1) << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)]
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
        size = try ByteSize(parsing: pairs[0][1], what: "data disk size")
    }
}

/// `--label KEY=VALUE`.
public func parseLabel(_ text: String) throws(ProvisioningError) -> (key: String, value: String) {
    let pair = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
    let keyAllowed = pair.first?.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_./".contains($0)) } ?? false
    guard pair.count == 2, !pair[0].isEmpty, keyAllowed, pair[0].count <= 63 else {
        throw ProvisioningError.invalid("invalid label '\(text)': give KEY=VALUE, the key made of letters, digits, '-', '_', '.' or '/'")
    }
    return (pair[0], pair[1])
}

/// `--ttl 90m`, `2h`, `1h30m`, `7d`, `45s`: a duration in seconds.
public func parseDuration(_ text: String) throws(ProvisioningError) -> TimeInterval {
    let units: [Character: TimeInterval] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
    var total: TimeInterval = 0
    var number = ""
    for character in text {
        if character.isNumber {
            number.append(character)
        } else if let unit = units[character], let value = Double(number) {
            total += value * unit
            number = ""
        } else {
            number = "x"
            break
        }
    }
    guard number.isEmpty, total > 0 else {
        throw ProvisioningError.invalid("invalid duration '\(text)': give a number with a unit s, m, h or d, such as 90m or 1h30m")
    }
    return total
}

