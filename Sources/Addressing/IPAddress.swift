import Foundation

/// An IPv4 address as a 32-bit number, so that ranges and subnets are arithmetic.
public struct IPv4Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    /// Parses dotted-quad text (`203.0.113.9`); `nil` for anything else.
    public init?(_ text: some StringProtocol) {
        // Byte by byte: splitting into substrings cost `list` 14k instructions an address.
        var text = String(text)
        guard let value = text.withUTF8({ Self.parse($0) }) else { return nil }
        self.value = value
    }

    /// Four decimal octets (0-255, no leading zero) between dots.
    private static func parse(_ text: UnsafeBufferPointer<UInt8>) -> UInt32? {
        var value: UInt32 = 0
        var octets = 0
        var index = 0
        while octets < 4 {
            if octets > 0 {
                guard index < text.count, text[index] == UInt8(ascii: ".") else { return nil }
                index += 1
            }
            let start = index
            var octet: UInt32 = 0
            while index < text.count, index - start < 3, text[index] >= UInt8(ascii: "0"), text[index] <= UInt8(ascii: "9") {
                octet = octet * 10 + UInt32(text[index] - UInt8(ascii: "0"))
                index += 1
            }
            let digits = index - start
            guard digits > 0, octet <= 255, digits == 1 || text[start] != UInt8(ascii: "0") else { return nil }
            value = value << 8 | octet
            octets += 1
        }
        return index == text.count ? value : nil
    }

    public var description: String {
        "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.value < rhs.value }
}

/// An IPv6 address as a 128-bit number.
public struct IPv6Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var value: UInt128

    public init(_ value: UInt128) { self.value = value }

    /// Parses any RFC 4291 text form (`2001:db8::1`, `::ffff:192.0.2.1`); `nil` for anything else.
    public init?(_ text: some StringProtocol) {
        var raw = in6_addr()
        guard !text.contains("%"), inet_pton(AF_INET6, String(text), &raw) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: raw) { Array($0) }
        self.value = bytes.reduce(UInt128(0)) { $0 << 8 | UInt128($1) }
    }

    /// The canonical RFC 5952 text form (lower case, longest zero run as `::`).
    public var description: String {
        var raw = in6_addr()
        withUnsafeMutableBytes(of: &raw) { bytes in
            for index in 0..<16 { bytes[index] = UInt8(truncatingIfNeeded: value >> (8 * (15 - index))) }
        }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        return buffer.withUnsafeMutableBufferPointer { pointer in
            guard inet_ntop(AF_INET6, &raw, pointer.baseAddress, socklen_t(INET6_ADDRSTRLEN)) != nil else { return "::" }
            return String(cString: pointer.baseAddress!)
        }
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.value < rhs.value }
}

/// An IP address of either family.
public enum IPAddress: Hashable, Comparable, Sendable, TextCodable {
    case v4(IPv4Address)
    case v6(IPv6Address)

    /// Parses an IPv4 or IPv6 address.
    public init?(_ text: some StringProtocol) {
        if let v4 = IPv4Address(text) { self = .v4(v4) }
        else if let v6 = IPv6Address(text) { self = .v6(v6) }
        else { return nil }
    }

    public enum Family: String, Sendable, Hashable, Codable, CustomStringConvertible {
        case ipv4, ipv6
        public var description: String { rawValue == "ipv4" ? "IPv4" : "IPv6" }
        /// Address width in bits.
        public var bits: Int { self == .ipv4 ? 32 : 128 }
    }

    public var family: Family {
        switch self {
        case .v4: .ipv4
        case .v6: .ipv6
        }
    }

    /// The address as a number (IPv4 addresses fit in the low 32 bits).
    public var number: UInt128 {
        switch self {
        case .v4(let address): UInt128(address.value)
        case .v6(let address): address.value
        }
    }

    /// The address of `family` whose number is `number` (which must fit the family).
    public init(family: Family, number: UInt128) {
        switch family {
        case .ipv4: self = .v4(IPv4Address(UInt32(truncatingIfNeeded: number)))
        case .ipv6: self = .v6(IPv6Address(number))
        }
    }

    public var description: String {
        switch self {
        case .v4(let address): address.description
        case .v6(let address): address.description
        }
    }

    /// IPv4 sorts before IPv6; within a family, numerically.
    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.family == .ipv4 ? 0 : 1, lhs.number) < (rhs.family == .ipv4 ? 0 : 1, rhs.number)
    }

}

extension IPAddress {
    public static var textKind: String { "an IP address" }

    /// Parses text (`LosslessStringConvertible`).
    public init?(_ description: String) { self.init(Substring(description)) }
}
