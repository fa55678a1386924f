/// An Ethernet MAC address.
public struct MACAddress: Hashable, Comparable, Sendable, TextCodable {
    public let bytes: [UInt8]

    /// Six bytes; `nil` otherwise.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 6 else { return nil }
        self.bytes = bytes
    }

    /// Parses `52:54:00:ab:cd:ef` (either case, `-` also accepted as separator).
    public init?(_ text: some StringProtocol) {
        // Byte by byte: `list` reads two MACs a VM, and splitting into strings cost 14k
        // instructions a MAC.
        var text = String(text)
        guard let bytes = text.withUTF8({ Self.parse($0) }) else { return nil }
        self.bytes = bytes
    }

    /// Six pairs of hex digits, each pair but the last followed by `:` or `-`.
    private static func parse(_ text: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard text.count == 17 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(6)
        for index in 0..<6 {
            let offset = index * 3
            guard let high = hexDigit(text[offset]), let low = hexDigit(text[offset + 1]) else { return nil }
            if index < 5 { guard text[offset + 2] == UInt8(ascii: ":") || text[offset + 2] == UInt8(ascii: "-") else { return nil } }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    private static func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Lower-case, colon-separated: the form libvirt writes.
    public var description: String {
        bytes.map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined(separator: ":")
    }

    /// Multicast addresses (lowest bit of the first byte) cannot be a NIC's address.
    public var isMulticast: Bool { bytes[0] & 1 == 1 }

    /// Whether a NIC may have it: unicast and not all zeros.
    public var isUsableByNIC: Bool { !isMulticast && bytes.contains { $0 != 0 } }

    /// The DHCPv6 client identifier vmctl reserves IPv6 addresses by: the DUID-LL (RFC 8415
    /// section 11.4, DUID type 3, hardware type 1 = Ethernet) built from this MAC address,
    /// `00:03:00:01:` followed by the MAC. A guest whose DHCPv6 client sends a DUID-LL of its NIC
    /// (systemd-networkd `DUIDType=link-layer`, dhclient `-D LL`) matches it.
    public var duidLL: String { "00:03:00:01:" + description }

    /// The MAC inside a DUID-LL (``duidLL``); `nil` for any other client identifier.
    public static func inDUIDLL(_ duid: String) -> MACAddress? {
        guard duid.lowercased().hasPrefix("00:03:00:01:") else { return nil }
        return MACAddress(duid.dropFirst(12))
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.bytes.lexicographicallyPrecedes(rhs.bytes) }

}

extension MACAddress {
    public static var textKind: String { "a MAC address" }

    /// Parses text (`LosslessStringConvertible`).
    public init?(_ description: String) { self.init(Substring(description)) }
}

extension MACAddress {
    /// A MAC in libvirt's (QEMU's) `52:54:00` range derived from `seed`: the same seed always gives
    /// the same MAC, so a VM's NIC keeps it for life and a retried create does not pick a new one.
    /// The last three bytes are the low bytes of the seed's 64-bit FNV-1a hash.
    public static func derived(from seed: String) -> MACAddress {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in seed.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return MACAddress(bytes: [0x52, 0x54, 0x00, UInt8(truncatingIfNeeded: hash >> 16),
                                  UInt8(truncatingIfNeeded: hash >> 8), UInt8(truncatingIfNeeded: hash)])!
    }
}
