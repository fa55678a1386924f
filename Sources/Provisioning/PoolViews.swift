public import Addressing
public import AllocationStore
public import Foundation

/// One allocation as vmctl prints it (JSON documented in docs/cli.md).
public struct AllocationView: Codable, Equatable, Sendable {
    public var address: IPAddress
    public var family: IPAddress.Family
    public var pool: String
    public var network: String
    public var owner: String
    public var ownerUUID: UUID?
    public var mac: MACAddress
    public var allocatedAt: Date

    public init(_ allocation: Allocation) {
        address = allocation.address
        family = allocation.family
        pool = allocation.pool
        network = allocation.network
        owner = allocation.ownerName
        ownerUUID = allocation.ownerUUID
        mac = allocation.mac
        allocatedAt = allocation.createdAt
    }
}

/// A pool with its counts, and with its allocations in `pool show`.
public struct PoolSummary: Codable, Equatable, Sendable {
    public var name: String
    public var network: String
    public var ranges: [AddressRange]
    public var exclusions: [AddressRange]
    public var allUsable: Bool
    /// Addresses the pool can hand out; saturates at 2^64-1 (an IPv6 /64 and larger).
    public var size: UInt64
    public var used: Int
    public var free: UInt64
    public var allocations: [AllocationView]?

    public init(_ pool: Pool, allocations: [Allocation], detailed: Bool = true) {
        name = pool.name
        network = pool.network
        ranges = pool.layout.ranges
        exclusions = pool.layout.exclusions
        allUsable = pool.allUsable
        let size = pool.layout.size
        self.size = UInt64(clamping: size)
        used = allocations.count
        free = UInt64(clamping: size - UInt128(min(UInt128(allocations.count), size)))
        self.allocations = detailed ? allocations.map(AllocationView.init) : nil
    }
}

/// `pool list`: every pool, an array in JSON.
public struct PoolTable: Encodable, Sendable {
    public var pools: [PoolSummary]
    public init(pools: [PoolSummary]) { self.pools = pools }
    public func encode(to encoder: any Encoder) throws { try pools.encode(to: encoder) }
}

/// `pool reserve`: the allocations made, an array in JSON.
public struct ReservationList: Encodable, Sendable {
    public var allocations: [AllocationView]
    public init(allocations: [AllocationView]) { self.allocations = allocations }
    public func encode(to encoder: any Encoder) throws { try allocations.encode(to: encoder) }
}
