public import Addressing
public import AllocationStore
public import Foundation
public import Libvirt
public import LibvirtXML
public import HostFirewall

/// One inconsistency between vmctl's store, libvirt's networks and leases, and its domains.
public struct Finding: Codable, Equatable, Hashable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// An allocation whose owning domain no longer exists.
        case ownerGone
        /// An allocation on a network that no longer exists.
        case networkGone
        /// An allocation whose DHCP host entry is in neither the live nor the persistent config.
        case entryMissing
        /// An allocation's host entry in only one of the live and persistent configs.
        case entryDrift
        /// A host entry inside a pool's ranges that no allocation owns.
        case entryWithoutOwner
        /// A DHCP lease on a reserved address held by a MAC other than the owner's.
        case leaseByOtherMAC
        /// An address a VM's metadata records that the store has no allocation for (a lost or
        /// restored state file): `--fix` allocates it to the VM again.
        case adoptable
        /// An allocation outside its running network's subnets without its host route to the
        /// bridge (the network was restarted by someone else, or the route was deleted).
        case routeMissing
        /// A host route of vmctl's (protocol 118) for an address no allocation on that bridge holds.
        case routeWithoutOwner
    }

    public var kind: Kind
    public var network: String
    public var address: IPAddress
    /// The MAC the store (or the stray entry or lease) names.
    public var mac: MACAddress?
    /// The pool and owner, for findings about an allocation.
    public var pool: String?
    public var owner: String?
    /// Which copies of the network's config hold the entry: `live`, `persistent`.
    public var presentIn: [String]?
    /// The bridge, for findings about host routes.
    public var bridge: String?
    /// Whether `doctor --fix` can repair it.
    public var fixable: Bool
    /// The fleet host it was found on, in a doctor across the fleet.
    public var host: String?

    public var message: String {
        let who = owner.map { " (owner \($0), pool \(pool ?? "?"))" } ?? ""
        switch kind {
        case .ownerGone: return "\(address) on \(network)\(who): the owning VM no longer exists; --fix releases it"
        case .networkGone: return "\(address)\(who): network \(network) no longer exists; --fix frees the allocation"
        case .entryMissing: return "\(address) on \(network)\(who): no DHCP host entry, the guest would get a random address; --fix adds it"
        case .entryDrift:
            return "\(address) on \(network)\(who): host entry only in the \((presentIn ?? []).joined(separator: ", ")) config; --fix adds it to the other"
        case .entryWithoutOwner:
            return "\(address) on \(network): host entry for \(mac?.description ?? "an unknown client") that no allocation owns (\((presentIn ?? []).joined(separator: ", "))); --fix deletes it"
        case .leaseByOtherMAC:
            return "\(address) on \(network)\(who): leased to \(mac?.description ?? "another client"), not to the owner; stop that machine or wait for its lease to expire"
        case .adoptable where fixable:
            return "\(address) on \(network)\(who): recorded in the VM's metadata but not in the state file; --fix allocates it to the VM again"
        case .adoptable:
            return "\(address) on \(network)\(who): recorded in the VM's metadata but not in the state file, whose pool \(pool ?? "?") is gone too; recreate the pool, then run --fix"
        case .routeMissing:
            return "\(address) on \(network)\(who): no host route to bridge \(bridge ?? "?"), the guest is unreachable; " + (fixable ? "--fix adds it" : "run --fix as root")
        case .routeWithoutOwner:
            return "\(address): vmctl's host route to bridge \(bridge ?? "?")\(network.isEmpty ? "" : " (network \(network))") that no allocation holds; " + (fixable ? "--fix removes it" : "run --fix as root")
        }
    }
}

/// libvirt's view of one network: its live definition (when running), its persistent one (unless
/// the network is transient), and (for doctor) its leases.
public struct NetworkView: Sendable {
    public var live: NetworkDefinition?
    public var persistent: NetworkDefinition?
    public var leases: [DHCPLease] = []

    public init(live: NetworkDefinition?, persistent: NetworkDefinition?, leases: [DHCPLease] = []) {
        self.live = live
        self.persistent = persistent
        self.leases = leases
    }

    /// The definition to read the network's layout from.
    public var definition: NetworkDefinition { (persistent ?? live)! }

    /// The configs that exist: live when running, persistent unless transient (libvirt refuses
    /// AFFECT_CONFIG on a transient network, and AFFECT_LIVE on a stopped one).
    public var existingCopies: Affect {
        var copies: Affect = []
        if live != nil { copies.insert(.live) }
        if persistent != nil { copies.insert(.config) }
        return copies
    }

    /// The configs whose `<ip>` number `index` holds an entry like `host`.
    public func copies(holding host: NetworkDefinition.DHCPHost, at index: Int) -> Affect {
        var copies: Affect = []
        if let live, live.holds(host, at: index) { copies.insert(.live) }
        if let persistent, persistent.holds(host, at: index) { copies.insert(.config) }
        return copies
    }

    /// The configs (of those that exist) that lack such an entry.
    public func copies(missing host: NetworkDefinition.DHCPHost, at index: Int) -> Affect {
        existingCopies.subtracting(copies(holding: host, at: index))
    }
}

/// Compares the store with libvirt. Pure: every input is a value, so each finding is tested
/// without a daemon as well as against one.
public func diagnose(
    allocations: [Allocation], pools: [Pool], networks: [String: NetworkView], domains: Set<UUID>
) -> [Finding] {
    var findings: [Finding] = []
    for allocation in allocations {
        func finding(_ kind: Finding.Kind, presentIn: [String]? = nil, mac: MACAddress? = nil, fixable: Bool = true) -> Finding {
            Finding(kind: kind, network: allocation.network, address: allocation.address, mac: mac ?? allocation.mac,
                    pool: allocation.pool, owner: allocation.ownerName, presentIn: presentIn, fixable: fixable)
        }
        if let owner = allocation.ownerUUID, !domains.contains(owner) {
            findings.append(finding(.ownerGone))
            continue
        }
        guard let view = networks[allocation.network] else {
            findings.append(finding(.networkGone))
            continue
        }
        if let (index, host) = expectedEntry(for: allocation, in: view.definition) {
            let present = view.copies(holding: host, at: index)
            if present.isEmpty {
                findings.append(finding(.entryMissing))
            } else if !view.copies(missing: host, at: index).isEmpty {
                findings.append(finding(.entryDrift, presentIn: present.names))
            }
        }
        for lease in view.leases where IPAddress(lease.address) == allocation.address {
            if let leaseMAC = lease.mac.flatMap(MACAddress.init), leaseMAC != allocation.mac {
                findings.append(finding(.leaseByOtherMAC, mac: leaseMAC, fixable: false))
            }
        }
    }
    // Host entries inside a pool's ranges that no allocation owns.
    for (name, view) in networks.sorted(by: { $0.key < $1.key }) {
        let ranges = pools.filter { $0.network == name }.flatMap(\.layout.ranges)
        let owned = Set(allocations.filter { $0.network == name }.compactMap { expectedEntry(for: $0, in: view.definition)?.host.key })
        var stray: [NetworkDefinition.DHCPHost: [String]] = [:]
        for (copy, definition) in [("live", view.live), ("persistent", view.persistent)] {
            for ip in definition?.ips ?? [] {
                for host in ip.hosts where !owned.contains(host.key) {
                    guard let address = host.address, ranges.contains(where: { $0.contains(address) }) else { continue }
                    stray[host, default: []].append(copy)
                }
            }
        }
        for (host, copies) in stray.sorted(by: { ($0.key.address?.description ?? "") < ($1.key.address?.description ?? "") }) {
            findings.append(Finding(kind: .entryWithoutOwner, network: name, address: host.address!, mac: host.mac,
                                    pool: nil, owner: nil, presentIn: copies, fixable: true))
        }
    }
    return findings
}

/// Compares the allocations outside their networks' subnets with vmctl's host routes (those of
/// this network namespace: `bridgesHere` are the running networks' bridges found in it). Pure.
public func diagnoseRoutes(
    allocations: [Allocation], networks: [String: NetworkView], routes: [HostRoute], bridgesHere: Set<String>, canChangeRoutes: Bool
) -> [Finding] {
    var findings: [Finding] = []
    var wanted: Set<HostRoute> = []
    for allocation in allocations {
        guard let live = networks[allocation.network]?.live, live.ipElement(containing: allocation.address) == nil,
              let bridge = live.bridge, bridgesHere.contains(bridge) else { continue }
        let route = HostRoute(address: allocation.address, bridge: bridge)
        wanted.insert(route)
        if !routes.contains(route) {
            findings.append(Finding(kind: .routeMissing, network: allocation.network, address: allocation.address, mac: allocation.mac,
                                    pool: allocation.pool, owner: allocation.ownerName, bridge: bridge, fixable: canChangeRoutes))
        }
    }
    for route in routes.sorted(by: { ($0.bridge, $0.address) < ($1.bridge, $1.address) }) where !wanted.contains(route) {
        // A route on the bridge of a network whose allocation lies inside its subnets is a stray too.
        let network = networks.first { $0.value.live?.bridge == route.bridge }?.key ?? ""
        findings.append(Finding(kind: .routeWithoutOwner, network: network, address: route.address, mac: nil, pool: nil, owner: nil,
                                bridge: route.bridge, fixable: canChangeRoutes))
    }
    return findings
}

/// The host entry an allocation should have, with the index of its `<ip>`; `nil` when no
/// DHCP-serving `<ip>` holds the address.
public func expectedEntry(for allocation: Allocation, in definition: NetworkDefinition) -> (index: Int, host: NetworkDefinition.DHCPHost)? {
    guard let ip = definition.ipElement(containing: allocation.address), ip.hasDHCP else { return nil }
    return (ip.index, .reservation(mac: allocation.mac, address: allocation.address, owner: allocation.ownerName))
}

extension NetworkDefinition {
    /// Whether `<ip>` number `index` holds an entry with the same client (MAC or DUID) and
    /// address as `host`; the name may differ.
    public func holds(_ host: DHCPHost, at index: Int) -> Bool {
        index < ips.count && ips[index].hosts.contains { $0.key == host.key }
    }
}

extension Affect {
    /// `live`, `persistent`: how findings name the copies.
    public var names: [String] { (contains(.live) ? ["live"] : []) + (contains(.config) ? ["persistent"] : []) }
}

extension NetworkDefinition.DHCPHost {
    /// What identifies an entry for vmctl: the client (MAC or DUID) and the address, not the name.
    public var key: String { "\(mac?.description ?? id ?? "-") \(address?.description ?? "-")" }
}

/// A VM's record of its addresses, as doctor compares it with the store.
public struct RecordedAddresses: Sendable {
    public var uuid: UUID
    public var name: String
    public var addresses: [VMMetadata.Address]

    public init(uuid: UUID, name: String, addresses: [VMMetadata.Address]) {
        self.uuid = uuid
        self.name = name
        self.addresses = addresses
    }
}

/// The addresses the VMs' metadata records and the store does not (a lost or restored state
/// file), as the allocations they were. Pure.
public func unrecorded(_ vms: [RecordedAddresses], allocations: [Allocation]) -> [Allocation] {
    let held = Set(allocations.map { "\($0.network) \($0.address)" })
    return vms.flatMap { vm in
        vm.addresses.filter { !held.contains("\($0.network) \($0.address)") }.map {
            Allocation(pool: $0.pool, network: $0.network, address: $0.address, ownerUUID: vm.uuid, ownerName: vm.name, mac: $0.mac)
        }
    }
}

/// The `adoptable` findings for those: fixable where the pool still exists. Pure.
public func adoptable(_ vms: [RecordedAddresses], allocations: [Allocation], pools: [Pool]) -> [Finding] {
    let poolNames = Set(pools.map(\.name))
    return unrecorded(vms, allocations: allocations).map { lost in
        Finding(kind: .adoptable, network: lost.network, address: lost.address, mac: lost.mac, pool: lost.pool,
                owner: lost.ownerName, presentIn: nil, fixable: poolNames.contains(lost.pool))
    }
}
