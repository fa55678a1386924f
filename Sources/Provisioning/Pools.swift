public import Addressing
public import AllocationStore
import Foundation
public import Libvirt
public import LibvirtXML
public import Logging

/// Address pools: created against a network's subnets, listed, destroyed, and addresses
/// reserved and released one NIC at a time.
public struct Pools: Sendable {
    public let state: State
    public let logger: Logger

    public init(state: State, logger: Logger) {
        self.state = state
        self.logger = logger
    }

    /// Creates a pool of `ranges` on `network`: inside its subnets (whose network, broadcast and
    /// gateway addresses are never handed out) unless `allUsable`, and overlapping no other pool.
    public func create(_ name: String, network: String, ranges: [AddressRange], exclusions: [AddressRange], allUsable: Bool,
                       on connection: Connection) async throws(ProvisioningError) -> PoolSummary {
        guard let libvirtNetwork = try await connection.networkIfExists(network) else {
            throw ProvisioningError(.notFound, "network \(network) does not exist", hint: "create it first, or check the connection URI")
        }
        let definition = try await libvirtNetwork.definition(inactive: true)
        let pools = try await state.run { store throws(StoreError) in try store.pools() }
        let pool = try Self.plan(name, network: network, ranges: ranges, exclusions: exclusions, allUsable: allUsable,
                                 definition: definition, others: pools)
        try await state.run { store throws(StoreError) in try store.create(pool) }
        return PoolSummary(pool, allocations: [])
    }

    /// The pool `create` makes, checked against the network's subnets and the other pools. Pure.
    public static func plan(_ name: String, network: String, ranges: [AddressRange], exclusions: [AddressRange], allUsable: Bool,
                            definition: NetworkDefinition, others: [Pool]) throws(ProvisioningError) -> Pool {
        var subnets: [(subnet: Subnet, gateway: IPAddress?)] = []
        for range in ranges {
            if let ip = definition.ips.first(where: { $0.subnet.contains(range.first) && $0.subnet.contains(range.last) }) {
                if !subnets.contains(where: { $0.subnet == ip.subnet }) { subnets.append((ip.subnet, ip.address)) }
            } else if !allUsable {
                let known = definition.ips.map(\.subnet.description).joined(separator: ", ")
                throw ProvisioningError(
                    .conflict, "range \(range) is outside every subnet of network \(network) (\(known.isEmpty ? "it has none" : known))",
                    hint: "give a range inside one, or make it an all-usable pool for a routed subnet configured statically")
            }
        }
        for other in others where other.network == network {
            for range in ranges {
                if let clash = other.layout.ranges.first(where: { $0.overlaps(range) }) {
                    throw ProvisioningError(.conflict, "range \(range) overlaps range \(clash) of pool \(other.name) on network \(network)",
                                            hint: "give each address to one pool")
                }
            }
        }
        do {
            let layout = try PoolLayout(ranges: ranges, exclusions: exclusions, subnets: subnets, allUsable: allUsable)
            return Pool(name: name, network: network, layout: layout, allUsable: allUsable)
        } catch {
            throw ProvisioningError(.invalidValue, "cannot create pool \(name): \(error)")
        }
    }

    /// Every pool with its counts.
    public func list() async throws(ProvisioningError) -> PoolTable {
        let (pools, allocations) = try await state.run { store throws(StoreError) in (try store.pools(), try store.allocations()) }
        return PoolTable(pools: pools.map { pool in
            PoolSummary(pool, allocations: allocations.filter { $0.pool == pool.name }, detailed: false)
        })
    }

    /// One pool with every allocation.
    public func show(_ name: String) async throws(ProvisioningError) -> PoolSummary {
        let (pool, allocations) = try await state.run { store throws(StoreError) in (try store.pool(named: name), try store.allocations(in: name)) }
        return PoolSummary(pool, allocations: allocations)
    }

    /// Deletes a pool; refused while addresses are allocated unless `force`, which releases
    /// them first (host entries too, connecting to `uri` only then).
    public func destroy(_ name: String, force: Bool, uri: String) async throws(ProvisioningError) -> PoolSummary {
        let (pool, allocations) = try await state.run { store throws(StoreError) in (try store.pool(named: name), try store.allocations(in: name)) }
        if !allocations.isEmpty {
            guard force else {
                throw ProvisioningError(.conflict, StoreError.poolInUse(name, allocations: allocations.count).description,
                                        hint: "release them with vmctl pool release, or destroy it with force",
                                        cause: StoreError.poolInUse(name, allocations: allocations.count))
            }
            let reservations = Reservations(state: state, session: try await Session.open(uri, logger: logger))
            for allocation in allocations { try await reservations.release(allocation) }
        }
        try await state.run { store throws(StoreError) in try store.deletePool(named: name, force: force) }
        return PoolSummary(pool, allocations: allocations)
    }

    /// Reserves addresses for a NIC; a domain called `owner` becomes their owner, so that doctor
    /// notices when it is gone.
    public func reserve(from name: String, mac: MACAddress, owner: String, requested: [IPAddress],
                        on session: Session) async throws(ProvisioningError) -> ReservationList {
        let connection = session.connection
        let pool = try await state.run { store throws(StoreError) in try store.pool(named: name) }
        let ownerUUID = try await connection.domainIfExists(owner)?.uuid
        let made = try await Reservations(state: state, session: session)
            .reserve(from: pool, mac: mac, owner: owner, ownerUUID: ownerUUID, requested: requested)
        return ReservationList(allocations: made.map(AllocationView.init))
    }

    /// Removes an address's host entry, then returns it to its pool.
    public func release(_ address: IPAddress, from name: String, uri: String) async throws(ProvisioningError) -> AllocationView {
        let allocations = try await state.run { store throws(StoreError) in
            _ = try store.pool(named: name)
            return try store.allocations(in: name)
        }
        guard let allocation = allocations.first(where: { $0.address == address }) else {
            throw ProvisioningError(StoreError.notAllocated(address, pool: name))
        }
        try await Reservations(state: state, session: try await Session.open(uri, logger: logger)).release(allocation)
        return AllocationView(allocation)
    }

    /// The pools' names, in order (`pool list -q`).
    public func names() async throws(ProvisioningError) -> [String] {
        try await state.run { store throws(StoreError) in try store.pools() }.map(\.name).sorted()
    }
}
