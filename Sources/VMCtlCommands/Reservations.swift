import Addressing
import AllocationStore
import Foundation
import Libvirt
import LibvirtXML

/// An address reserved for a NIC: the store's allocation and, where the network serves DHCP for
/// it, the DHCP host entry in libvirt, made and removed together.
///
/// Order matters. Reserving allocates in the store first (the store decides who owns an address)
/// and then adds the host entry, live and persistent, so it is in place before the guest first
/// boots; if the entry cannot be added the allocation is given back. Releasing removes the host
/// entry first and only then gives the address back, so an address never returns to the pool
/// while libvirt still hands it to the old MAC.
struct Reservations {
    let store: AllocationStore
    let connection: Connection

    /// Reserves one address of each requested family (or exactly the `requested` addresses) from
    /// `pool` for the NIC `mac`. All or nothing.
    func reserve(
        from pool: Pool, mac: MACAddress, owner: String, ownerUUID: UUID? = nil, requested: [IPAddress] = []
    ) async throws(VMCtlError) -> [Allocation] {
        let network = try await lookUpNetwork(pool.network, of: pool.name)
        let definition = try await read(network)
        let wanted: [(IPAddress.Family, IPAddress?)] = requested.isEmpty
            ? pool.layout.families.map { ($0, nil) }
            : requested.map { ($0.family, $0) }
        var done: [Allocation] = []
        do throws(VMCtlError) {
            for (family, address) in wanted {
                let allocation: Allocation
                do {
                    allocation = try store.allocate(
                        from: pool.name, family: family, requested: address, ownerUUID: ownerUUID, ownerName: owner, mac: mac)
                } catch {
                    throw VMCtlError(error.description)
                }
                done.append(allocation)
                if let (index, host) = hostEntry(for: allocation, in: definition) {
                    do {
                        try await network.update(.add, .dhcpHost, parentIndex: index, xml: host.xml,
                                                 affecting: try await affecting(network))
                    } catch {
                        _ = try? store.release(allocation.address, from: pool.name)
                        done.removeLast()
                        throw VMCtlError(
                            "cannot add the DHCP host entry for \(allocation.address) (MAC \(mac)) to network \(pool.network): \(error.message)",
                            hint: "the address was not reserved")
                    }
                }
            }
        } catch {
            for allocation in done.reversed() { try? await release(allocation) }
            throw error
        }
        return done
    }

    /// Removes an allocation's DHCP host entry (if libvirt still has one), then frees the address.
    func release(_ allocation: Allocation) async throws(VMCtlError) {
        if let network = try? await connection.network(named: allocation.network) {
            let definition = try await read(network)
            if let (index, host) = hostEntry(for: allocation, in: definition),
               definition.ips[index].hosts.contains(where: { $0.address == allocation.address }) {
                do {
                    try await network.update(.delete, .dhcpHost, parentIndex: index, xml: host.xml,
                                             affecting: try await affecting(network))
                } catch {
                    throw VMCtlError(
                        "cannot remove the DHCP host entry for \(allocation.address) from network \(allocation.network): \(error.message)",
                        hint: "the address stays allocated; retry, or see vmctl doctor")
                }
            }
        }
        do {
            _ = try store.release(allocation.address, from: allocation.pool)
        } catch {
            throw VMCtlError(error.description)
        }
    }

    /// The `<ip>` index and host entry an allocation needs, or `nil` when no `<ip>` with DHCP
    /// holds the address (a routed subnet with static guest configuration).
    func hostEntry(for allocation: Allocation, in definition: NetworkDefinition) -> (Int, NetworkDefinition.DHCPHost)? {
        guard let ip = definition.ipElement(containing: allocation.address), ip.hasDHCP else { return nil }
        return (ip.index, .reservation(mac: allocation.mac, address: allocation.address, owner: allocation.ownerName))
    }

    private func lookUpNetwork(_ name: String, of pool: String) async throws(VMCtlError) -> Network {
        do {
            return try await connection.network(named: name)
        } catch {
            throw VMCtlError("network \(name) of pool \(pool) does not exist on this connection",
                             hint: "check --connect, or recreate the network")
        }
    }

    private func read(_ network: Network) async throws(VMCtlError) -> NetworkDefinition {
        do {
            let active = try await network.isActive()
            return try NetworkDefinition(xml: try await network.xml(inactive: !active))
        } catch let error as LibvirtError {
            throw VMCtlError(while: "read network \(network.name)", error)
        } catch {
            throw VMCtlError("cannot read network \(network.name): \(error)")
        }
    }

    /// Live and persistent on a running network (a live-only entry is lost at the next restart),
    /// persistent only on a stopped one.
    private func affecting(_ network: Network) async throws(LibvirtError) -> Affect {
        try await network.isActive() ? [.live, .config] : [.config]
    }
}
