/// Which addresses a pool may hand out: its ranges, less its exclusions, less the addresses that
/// are never given to a VM (the subnet's network and broadcast addresses and the gateway, unless
/// the pool is "all usable"). A pure value: the allocator's decisions need no database or daemon.
public struct PoolLayout: Hashable, Sendable, Codable {
    /// The ranges, sorted; they never overlap one another.
    public private(set) var ranges: [AddressRange]
    /// Excluded addresses, merged and sorted.
    public private(set) var exclusions: [AddressRange]
    /// Addresses inside the ranges that are never handed out, sorted.
    public private(set) var reserved: [IPAddress]

    /// Why a layout cannot be made.
    public enum Problem: Error, Equatable, Sendable, CustomStringConvertible {
        case noRanges
        case overlappingRanges(AddressRange, AddressRange)
        case empty

        public var description: String {
            switch self {
            case .noRanges: "a pool needs at least one --range"
            case .overlappingRanges(let a, let b): "the ranges \(a) and \(b) overlap; give each address once"
            case .empty: "no address is left to hand out once the exclusions and reserved addresses are taken off"
            }
        }
    }

    /// - Parameters:
    ///   - subnets: the network's subnets (with their gateway) that the ranges lie in. Their
    ///     network address, IPv4 broadcast address and gateway are reserved unless `allUsable`.
    ///   - allUsable: every address in the ranges can be handed out (a routed subnet served by
    ///     per-address routes and static guest configuration, seed 000).
    public init(
        ranges: [AddressRange], exclusions: [AddressRange] = [],
        subnets: [(subnet: Subnet, gateway: IPAddress?)] = [], allUsable: Bool = false
    ) throws(Problem) {
        guard !ranges.isEmpty else { throw .noRanges }
        let sorted = ranges.sorted()
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.overlaps(b) {
            throw .overlappingRanges(a, b)
        }
        self.ranges = sorted
        self.exclusions = exclusions.merged()
        var reserved: Set<IPAddress> = []
        if !allUsable {
            for (subnet, gateway) in subnets {
                reserved.insert(subnet.network)
                if subnet.family == .ipv4 && subnet.prefix < 31 { reserved.insert(subnet.last) }
                if let gateway { reserved.insert(gateway) }
            }
        }
        let merged = self.exclusions
        self.reserved = reserved.filter { address in
            sorted.contains { $0.contains(address) } && !merged.contains { $0.contains(address) }
        }.sorted()
        guard size > 0 else { throw .empty }
    }

    /// The families the pool hands out.
    public var families: [IPAddress.Family] {
        [.ipv4, .ipv6].filter { family in ranges.contains { $0.family == family } }
    }

    /// How many addresses the pool can hand out in all (saturating at `UInt128.max`).
    public var size: UInt128 { families.reduce(0) { $0.addingSaturating(size(of: $1)) } }

    /// How many addresses of `family` the pool can hand out.
    public func size(of family: IPAddress.Family) -> UInt128 {
        var total: UInt128 = 0
        for range in ranges where range.family == family {
            var count = range.count
            for exclusion in exclusions {
                if let overlap = range.intersection(exclusion) { count -= overlap.count }
            }
            total = total.addingSaturating(count)
        }
        return total - UInt128(reserved.filter { $0.family == family }.count)
    }

    /// Whether the pool may hand out `address` at all (allocated or not).
    public func allows(_ address: IPAddress) -> Bool {
        ranges.contains { $0.contains(address) }
            && !exclusions.contains { $0.contains(address) }
            && !reserved.contains(address)
    }

    /// The lowest address of `family` the pool may hand out that is not in `allocated`, or `nil`
    /// when every one is taken. Costs O(exclusions + reserved + allocated), whatever the
    /// range's size: a /64 is as cheap as a /29.
    public func firstFree(_ family: IPAddress.Family, allocated: Set<IPAddress>) -> IPAddress? {
        firstAllowed(family, after: nil, skipping: allocated)
    }

    /// The lowest address of `family` above `after` (from the start when nil) that the pool may
    /// hand out and that is not in `skipping`, or `nil` when there is none.
    public func firstAllowed(_ family: IPAddress.Family, after: IPAddress?, skipping: Set<IPAddress> = []) -> IPAddress? {
        for range in ranges where range.family == family {
            let last = range.last.number
            var candidate = range.first.number
            if let after, after.family == family {
                guard after.number < last else { continue }
                candidate = max(candidate, after.number + 1)
            }
            while candidate <= last {
                let address = IPAddress(family: family, number: candidate)
                if let exclusion = exclusions.first(where: { $0.contains(address) }) {
                    guard exclusion.last.number < last else { break }
                    candidate = exclusion.last.number + 1
                } else if reserved.contains(address) || skipping.contains(address) {
                    guard candidate < last else { break }
                    candidate += 1
                } else {
                    return address
                }
            }
        }
        return nil
    }
}

extension UInt128 {
    func addingSaturating(_ other: UInt128) -> UInt128 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? .max : sum
    }
}
