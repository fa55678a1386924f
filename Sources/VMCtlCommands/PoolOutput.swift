import Addressing
import AllocationStore
import Foundation

/// One allocation as vmctl prints it (JSON documented in docs/cli.md).
struct AllocationView: Codable, Equatable {
    var address: IPAddress
    var family: IPAddress.Family
    var pool: String
    var network: String
    var owner: String
    var ownerUUID: UUID?
    var mac: MACAddress
    var allocatedAt: Date

    init(_ allocation: Allocation) {
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
struct PoolSummary: Codable, Equatable, TextRenderable {
    var name: String
    var network: String
    var ranges: [AddressRange]
    var exclusions: [AddressRange]
    var allUsable: Bool
    /// Addresses the pool can hand out; saturates at 2^64-1 (an IPv6 /64 and larger).
    var size: UInt64
    var used: Int
    var free: UInt64
    var allocations: [AllocationView]?

    init(_ pool: Pool, allocations: [Allocation], detailed: Bool = true) {
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

    var text: String {
        var lines = Output.table([
            ("pool", name),
            ("network", network),
            ("ranges", ranges.map(\.description).joined(separator: " ")),
            ("excluded", exclusions.isEmpty ? "-" : exclusions.map(\.description).joined(separator: " ")),
            ("all usable", allUsable ? "yes" : "no"),
            ("size", "\(size)"),
            ("used", "\(used)"),
            ("free", "\(free)"),
        ])
        if let allocations, !allocations.isEmpty {
            lines += "\n" + Output.columns(
                ["ADDRESS", "OWNER", "MAC", "NETWORK"],
                allocations.map { [$0.address.description, $0.owner, $0.mac.description, $0.network] })
        }
        return lines
    }
}

/// `pool list`: a table in text, an array in JSON.
struct PoolTable: Encodable, TextRenderable {
    var pools: [PoolSummary]

    func encode(to encoder: any Encoder) throws { try pools.encode(to: encoder) }

    var text: String {
        Output.columns(
            ["NAME", "NETWORK", "RANGES", "SIZE", "USED", "FREE"],
            pools.map { [$0.name, $0.network, $0.ranges.map(\.description).joined(separator: ","), "\($0.size)", "\($0.used)", "\($0.free)"] })
    }
}

/// `pool reserve`: one address a line in text, an array of allocations in JSON.
struct ReservationList: Encodable, TextRenderable {
    var allocations: [AllocationView]

    func encode(to encoder: any Encoder) throws { try allocations.encode(to: encoder) }

    var text: String { allocations.map { $0.address.description + "\n" }.joined() }
}
