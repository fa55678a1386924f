/// An inclusive run of addresses of one family: `203.0.113.8-203.0.113.15`, a CIDR block, or one
/// address.
public struct AddressRange: Hashable, Sendable, Comparable, TextCodable {
    public let first: IPAddress
    public let last: IPAddress

    /// `nil` unless both ends are of one family and `first <= last`.
    public init?(first: IPAddress, last: IPAddress) {
        guard first.family == last.family, first <= last else { return nil }
        self.first = first
        self.last = last
    }

    /// All addresses of a subnet, network and broadcast included.
    public init(_ subnet: Subnet) {
        first = subnet.network
        last = subnet.last
    }

    /// One address.
    public init(_ address: IPAddress) {
        first = address
        last = address
    }

    /// Parses `CIDR`, `FIRST-LAST` or a single address.
    public init?(_ text: some StringProtocol) {
        if text.contains("/") {
            guard let subnet = Subnet(text) else { return nil }
            self.init(subnet)
        } else if let dash = text.firstIndex(of: "-") {
            guard let first = IPAddress(text[..<dash]), let last = IPAddress(text[text.index(after: dash)...]),
                  let range = AddressRange(first: first, last: last)
            else { return nil }
            self = range
        } else {
            guard let address = IPAddress(text) else { return nil }
            self.init(address)
        }
    }

    public var family: IPAddress.Family { first.family }

    /// How many addresses the range holds (saturating at `UInt128.max`).
    public var count: UInt128 { spanCount(first.number, last.number) }

    public func contains(_ address: IPAddress) -> Bool {
        address.family == family && first <= address && address <= last
    }

    public func overlaps(_ other: AddressRange) -> Bool {
        family == other.family && first <= other.last && other.first <= last
    }

    /// The addresses both ranges hold, if any.
    public func intersection(_ other: AddressRange) -> AddressRange? {
        guard overlaps(other) else { return nil }
        return AddressRange(first: max(first, other.first), last: min(last, other.last))
    }

    public var description: String { first == last ? first.description : "\(first)-\(last)" }

    public static func < (lhs: Self, rhs: Self) -> Bool { (lhs.first, lhs.last) < (rhs.first, rhs.last) }

}

extension Array where Element == AddressRange {
    /// Sorted, with overlapping and adjacent ranges of a family merged into one.
    public func merged() -> [AddressRange] {
        var result: [AddressRange] = []
        for range in sorted() {
            if let last = result.last, last.family == range.family,
               range.first.number <= last.last.number || range.first.number - last.last.number == 1 {
                result[result.count - 1] = AddressRange(first: last.first, last: Swift.max(last.last, range.last))!
            } else {
                result.append(range)
            }
        }
        return result
    }
}

extension AddressRange {
    public static var textKind: String { "an address range" }

    /// Parses text (`LosslessStringConvertible`).
    public init?(_ description: String) { self.init(Substring(description)) }
}

extension AddressRange {
    /// The fewest subnets that together hold exactly this range (`203.0.113.16-203.0.113.31` is
    /// `203.0.113.16/28`; `.1-.6` is `.1/32 .2/31 .4/31 .6/32`), in order.
    public var subnets: [Subnet] {
        var result: [Subnet] = []
        var start = first.number
        let end = last.number
        let bits = family.bits
        while true {
            // The largest aligned block at `start` that does not run past `end`.
            var prefix = bits
            while prefix > 0 {
                let candidate = prefix - 1
                let hostBits = bits - candidate
                let blockMask: UInt128 = hostBits >= 128 ? .max : (UInt128(1) << hostBits) - 1
                guard start & blockMask == 0 else { break }
                let (blockEnd, overflow) = start.addingReportingOverflow(blockMask)
                guard !overflow, blockEnd <= end else { break }
                prefix = candidate
            }
            result.append(Subnet(containing: IPAddress(family: family, number: start), prefix: prefix)!)
            let hostBits = bits - prefix
            let blockMask: UInt128 = hostBits >= 128 ? .max : (UInt128(1) << hostBits) - 1
            let (blockEnd, _) = start.addingReportingOverflow(blockMask)
            if blockEnd >= end { return result }
            start = blockEnd + 1
        }
    }
}
