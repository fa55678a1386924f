public import Addressing
public import AllocationStore
public import Foundation
public import Libvirt
public import LibvirtXML

/// An address reserved for a NIC: the store's allocation and, where the network serves DHCP for
/// it, the DHCP host entry in libvirt, and, for an address outside every subnet of its network,
/// the host route to the network's bridge; made and removed together.
///
/// Order matters. Reserving allocates in the store first (the store decides who owns an address)
/// and then adds the host entry, live and persistent, so it is in place before the guest first
/// boots, then the route; if either cannot be made the allocation is given back. An address
/// dnsmasq still leases to another MAC is skipped (or, asked for by name, refused): dnsmasq
/// would not hand it to the new NIC. Releasing removes the host entry, ends the lease and removes
/// the route first and only then gives the address back, so an address never returns to the pool
/// while libvirt still hands it (or the host still routes it) to the old guest.
public struct Reservations: Sendable {
    public let state: State
    /// Where the pools' networks are looked up: a libvirt connection, or a test's fake.
    public let networks: any NetworkDirectory
    /// Where routes and leases are changed: this host, or a test's recorder.
    public let host: any HostSide

    public init(state: State, connection: some NetworkDirectory, host: some HostSide) {
        self.state = state
        self.networks = connection
        self.host = host
    }

    public init(state: State, session: Session) {
        self.init(state: state, connection: session.connection, host: session.host)
    }

    /// Reserves one address of each requested family (or exactly the `requested` addresses) from
    /// `pool` for the NIC `mac`. All or nothing.
    public func reserve(
        from pool: Pool, mac: MACAddress, owner: String, ownerUUID: UUID? = nil, requested: [IPAddress] = [], host fleetHost: String? = nil
    ) async throws(ProvisioningError) -> [Allocation] {
        // libvirt's view of the network is read while the store allocates: neither needs the other.
        async let prepared = prepare(pool.network, of: pool.name)
        let wanted: [(IPAddress.Family, IPAddress?)] = requested.isEmpty
            ? pool.layout.families.map { ($0, nil) }
            : requested.map { ($0.family, $0) }
        var done: [Allocation] = []
        do throws(ProvisioningError) {
            for (family, address) in wanted {
                var leasedElsewhere: Set<IPAddress> = []
                while true {
                    let avoiding = leasedElsewhere
                    let allocation = try await state.run { store throws(StoreError) in
                        try store.allocate(from: pool.name, family: family, requested: address, avoiding: avoiding,
                                           ownerUUID: ownerUUID, ownerName: owner, mac: mac, host: fleetHost)
                    }
                    done.append(allocation)
                    let (network, view) = try await prepared.get()
                    if let lease = try await staleLease(on: allocation, of: network, view: view) {
                        done.removeLast()
                        _ = try? await state.run { store throws(StoreError) in try store.release(allocation.address, from: pool.name) }
                        guard address == nil else {
                            throw ProvisioningError(
                                .conflict, "address \(allocation.address) is still leased by network \(pool.network)'s dnsmasq to MAC \(lease.mac ?? "?")",
                                hint: "take another address, or end that lease (dhcp_release \(lease.interface) \(allocation.address) \(lease.mac ?? "MAC") where the bridge is)")
                        }
                        leasedElsewhere.insert(allocation.address)
                        continue
                    }
                    if let (index, host) = expectedEntry(for: allocation, in: view.definition) {
                        do {
                            try await network.update(.add, .dhcpHost, parentIndex: index, xml: host.xml,
                                                     affecting: view.existingCopies)
                        } catch {
                            _ = try? await state.run { store throws(StoreError) in try store.release(allocation.address, from: pool.name) }
                            done.removeLast()
                            throw ProvisioningError(
                                .libvirt, "cannot add the DHCP host entry for \(allocation.address) (MAC \(mac)) to network \(pool.network): \(error.message)",
                                hint: "the address was not reserved", cause: error)
                        }
                    }
                    if let bridge = routedBridge(of: allocation.address, in: view) {
                        if let reason = self.host.routesUnavailable(bridge: bridge) {
                            throw ProvisioningError(
                                .unsupported, "address \(allocation.address) of pool \(pool.name) is outside the subnets of network \(pool.network) and needs a host route to bridge \(bridge), but \(reason)",
                                hint: "run vmctl as root where libvirtd's bridges are (e.g. ip netns exec NS vmctl ...)")
                        }
                        try await self.host.addRoute(to: allocation.address, bridge: bridge)
                    }
                    break
                }
            }
        } catch {
            for allocation in done.reversed() { try? await release(allocation) }
            throw error
        }
        return done
    }

    /// Removes an allocation's DHCP host entry from whichever configs hold it, then frees the
    /// address. An address already released (by a concurrent destroy, say) counts as released.
    public func release(_ allocation: Allocation) async throws(ProvisioningError) {
        if let network = try await networks.reservableNetwork(named: allocation.network) {
            let view = try await views(of: network)
            if let (index, host) = expectedEntry(for: allocation, in: view.definition) {
                try await change(.delete, host, index: index, on: network, in: view.copies(holding: host, at: index))
                if let bridge = view.live?.bridge, allocation.family == .ipv4 {
                    // Without the release, dnsmasq keeps the address for the old MAC until the
                    // lease ends (an hour) and the next owner gets none; reserve skips it then.
                    _ = await self.host.releaseLease(allocation.address, mac: allocation.mac, bridge: bridge)
                }
            }
            // Where the route cannot be removed (another host or namespace) it stays until its
            // bridge goes; doctor --fix where the bridge is removes it (routeWithoutOwner).
            if let bridge = routedBridge(of: allocation.address, in: view), self.host.routesUnavailable(bridge: bridge) == nil {
                try await self.host.removeRoute(to: allocation.address, bridge: bridge)
            }
            if let bridge = view.live?.bridge { await self.host.forgetNeighbour(allocation.address, bridge: bridge) }
        }
        do {
            _ = try await state.run { store throws(StoreError) in try store.release(allocation.address, from: allocation.pool) }
        } catch where error.isNotAllocated {
            return
        }
    }

    /// Adds or deletes one host entry in exactly the copies named (live, persistent).
    public func change(
        _ command: Network.UpdateCommand, _ host: NetworkDefinition.DHCPHost, index: Int, on network: some ReservableNetwork, in copies: Affect
    ) async throws(ProvisioningError) {
        guard !copies.isEmpty else { return }
        do {
            try await network.update(command, .dhcpHost, parentIndex: index, xml: host.xml, affecting: copies)
        } catch {
            // A concurrent release (two destroys of one VM) may have deleted it first: gone is done.
            if command == .delete, error.code == .operationInvalid,
               let now = try? await views(of: network), now.copies(holding: host, at: index).intersection(copies).isEmpty {
                return
            }
            let verb = command == .delete ? "remove the DHCP host entry for" : "add the DHCP host entry for"
            throw ProvisioningError(.libvirt, "cannot \(verb) \(host.address?.description ?? "?") on network \(network.name): \(error.message)",
                                    hint: "retry, or see vmctl doctor", cause: error)
        }
    }

    /// The live (when running) and persistent definitions of a network.
    public func views(of network: some ReservableNetwork) async throws(ProvisioningError) -> NetworkView {
        do {
            // Four independent round trips: in flight together on the one connection.
            async let active = network.isActive()
            async let persistent = network.isPersistent()
            async let liveXML = network.xml(inactive: false)
            async let persistentXML = network.xml(inactive: true)
            return NetworkView(
                live: try await active ? try NetworkDefinition(xml: try await liveXML) : nil,
                persistent: try await persistent ? try NetworkDefinition(xml: try await persistentXML) : nil)
        } catch let error as LibvirtError {
            throw ProvisioningError(while: "read network \(network.name)", error)
        } catch {
            throw ProvisioningError(.libvirt, "cannot read network \(network.name): \(error)")
        }
    }

    /// The bridge a running network routes `address` to when it lies outside every one of the
    /// network's subnets (an `--all-usable` pool of a routed subnet), else `nil`.
    func routedBridge(of address: IPAddress, in view: NetworkView) -> String? {
        guard let live = view.live, live.ipElement(containing: address) == nil, let bridge = live.bridge, !bridge.isEmpty else { return nil }
        return bridge
    }

    /// A lease dnsmasq holds on the allocation's IPv4 address for another client, when the
    /// network serves the address by DHCP and runs. (IPv6 reservations are configured statically
    /// in the seed: a DHCPv6 lease does not decide what the guest gets.)
    private func staleLease(on allocation: Allocation, of network: any ReservableNetwork, view: NetworkView) async throws(ProvisioningError) -> DHCPLease? {
        guard allocation.family == .ipv4, view.live != nil, expectedEntry(for: allocation, in: view.definition) != nil else { return nil }
        let leases: [DHCPLease]
        do { leases = try await network.dhcpLeases(mac: nil) } catch { throw ProvisioningError(while: "read the leases of network \(network.name)", error) }
        return leases.first { IPAddress($0.address) == allocation.address && !$0.belongs(to: allocation.mac) }
    }

    /// The pool's network and libvirt's view of it, as a value so that it can be read in an
    /// `async let` while the store works.
    private func prepare(_ name: String, of pool: String) async -> Result<(any ReservableNetwork, NetworkView), ProvisioningError> {
        do throws(ProvisioningError) {
            let network = try await lookUpNetwork(name, of: pool)
            return .success((network, try await views(of: network)))
        } catch {
            return .failure(error)
        }
    }

    private func lookUpNetwork(_ name: String, of pool: String) async throws(ProvisioningError) -> any ReservableNetwork {
        guard let network = try await networks.reservableNetwork(named: name) else {
            throw ProvisioningError(.notFound, "network \(name) of pool \(pool) does not exist on this connection",
                                    hint: "check the connection URI, or recreate the network")
        }
        return network
    }
}

/// What a reservation needs of a network: its state, its definitions, and DHCP host updates.
/// `Network` is one; tests use a fake that keeps the XML in memory.
public protocol ReservableNetwork: Sendable {
    var name: String { get }
    func isActive() async throws(LibvirtError) -> Bool
    func isPersistent() async throws(LibvirtError) -> Bool
    func xml(inactive: Bool) async throws(LibvirtError) -> String
    func update(_ command: Network.UpdateCommand, _ section: Network.UpdateSection, parentIndex: Int?, xml: String,
                affecting: Affect) async throws(LibvirtError)
    func dhcpLeases(mac: String?) async throws(LibvirtError) -> [DHCPLease]
}

/// Where reservations find networks by name: `nil` when there is none of that name.
public protocol NetworkDirectory: Sendable {
    func reservableNetwork(named name: String) async throws(ProvisioningError) -> (any ReservableNetwork)?
}

extension Network: ReservableNetwork {}

extension Connection: NetworkDirectory {
    public func reservableNetwork(named name: String) async throws(ProvisioningError) -> (any ReservableNetwork)? {
        try await networkIfExists(name)
    }
}
