public import Addressing
public import AllocationStore
public import Foundation
public import Libvirt
public import LibvirtXML

/// An address reserved for a NIC: the store's allocation and, where the network serves DHCP for
/// it, the DHCP host entry in libvirt, made and removed together.
///
/// Order matters. Reserving allocates in the store first (the store decides who owns an address)
/// and then adds the host entry, live and persistent, so it is in place before the guest first
/// boots; if the entry cannot be added the allocation is given back. Releasing removes the host
/// entry first and only then gives the address back, so an address never returns to the pool
/// while libvirt still hands it to the old MAC.
public struct Reservations: Sendable {
    public let state: State
    /// Where the pools' networks are looked up: a libvirt connection, or a test's fake.
    public let networks: any NetworkDirectory

    public init(state: State, connection: some NetworkDirectory) {
        self.state = state
        self.networks = connection
    }

    /// Reserves one address of each requested family (or exactly the `requested` addresses) from
    /// `pool` for the NIC `mac`. All or nothing.
    public func reserve(
        from pool: Pool, mac: MACAddress, owner: String, ownerUUID: UUID? = nil, requested: [IPAddress] = []
    ) async throws(ProvisioningError) -> [Allocation] {
        // libvirt's view of the network is read while the store allocates: neither needs the other.
        async let prepared = prepare(pool.network, of: pool.name)
        let wanted: [(IPAddress.Family, IPAddress?)] = requested.isEmpty
            ? pool.layout.families.map { ($0, nil) }
            : requested.map { ($0.family, $0) }
        var done: [Allocation] = []
        do throws(ProvisioningError) {
            for (family, address) in wanted {
                let allocation = try await state.run { store throws(StoreError) in
                    try store.allocate(from: pool.name, family: family, requested: address, ownerUUID: ownerUUID, ownerName: owner, mac: mac)
                }
                done.append(allocation)
                let (network, view) = try await prepared.get()
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
            }
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
