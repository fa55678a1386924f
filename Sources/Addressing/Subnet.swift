/// A subnet in CIDR form: a network address and a prefix length.
public struct Subnet: Hashable, Sendable, CustomStringConvertible {
    /// The subnet's first address (host bits zero).
    public let network: IPAddress
    public let prefix: Int

    /// A subnet from any address in it and a prefix length; the host bits are dropped.
    /// `nil` if the prefix does not fit the family.
    public init?(containing address: IPAddress, prefix: Int) {
        guard prefix >= 0, prefix <= address.family.bits else { return nil }
        self.prefix = prefix
        self.network = IPAddress(family: address.family, number: address.number & Subnet.mask(address.family, prefix))
    }

    /// Parses `ADDRESS/PREFIX`. A host part that is not zero is refused: `10.0.0.1/24` is most
    /// likely a typing error for a subnet (use ``init(containing:prefix:)`` for a gateway's subnet).
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPAddress(parts[0]), parts[1].allSatisfy(\.isNumber),
              let prefix = Int(parts[1]), let subnet = Subnet(containing: address, prefix: prefix),
              subnet.network == address
        else { return nil }
        self = subnet
    }

    public var family: IPAddress.Family { network.family }

    /// The last address of the subnet (the IPv4 broadcast address).
    public var last: IPAddress {
        IPAddress(family: family, number: network.number | ~Subnet.mask(family, prefix) & Subnet.allOnes(family))
    }

    /// How many addresses the subnet spans (saturating at `UInt128.max` for `::/0`).
    public var size: UInt128 { spanCount(network.number, last.number) }

    public func contains(_ address: IPAddress) -> Bool {
        address.family == family && address.number & Subnet.mask(family, prefix) == network.number
    }

    public func overlaps(_ other: Subnet) -> Bool {
        family == other.family && (contains(other.network) || other.contains(network))
    }

    public var description: String { "\(network)/\(prefix)" }

    static func allOnes(_ family: IPAddress.Family) -> UInt128 {
        family == .ipv4 ? UInt128(UInt32.max) : UInt128.max
    }

    static func mask(_ family: IPAddress.Family, _ prefix: Int) -> UInt128 {
        let bits = family.bits
        guard prefix > 0 else { return 0 }
        return (allOnes(family) << (bits - prefix)) & allOnes(family)
    }
}

/// The number of addresses from `first` through `last`, saturating at `UInt128.max`.
func spanCount(_ first: UInt128, _ last: UInt128) -> UInt128 {
    let (count, overflow) = (last - first).addingReportingOverflow(1)
    return overflow ? .max : count
}
