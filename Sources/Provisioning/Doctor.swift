import AllocationStore
public import Foundation
import HostFirewall
import Libvirt
import Logging

/// `vmctl doctor`: compares the store, the networks' DHCP host entries (live and persistent),
/// the leases and the domains, and repairs what can be repaired.
///
/// It looks only at what belongs to its session's host: the allocations and creates recorded
/// with that fleet host (`Session.hostName`), or, on a connection not reached as a fleet host,
/// those recorded with none. An address whose host it did not ask is never freed.
public struct Doctor: Sendable {
    public let state: State
    public let session: Session

    public init(state: State, session: Session) {
        self.state = state
        self.session = session
    }

    private var connection: Connection { session.connection }
    private var logger: Logger { session.logger }

    private var reservations: Reservations { Reservations(state: state, connection: connection, host: session.host) }

    /// Examines everything; with `fix`, first undoes abandoned creates, then repairs each fixable
    /// finding, and reports what is left.
    public func run(fix: Bool) async throws(ProvisioningError) -> DoctorReport {
        var abandoned = try await abandonedCreates()
        var undone: [AbandonedCreate] = []
        if fix {
            // First: they own allocations that must not be taken for another finding.
            for create in abandoned {
                logger.debug("undoing the abandoned create of \(create.name)")
                try await rollBack(create.pending, state: state, connection: connection, host: session.host)
                undone.append(create)
            }
            abandoned = try await abandonedCreates()
        }
        var findings = try await examine()
        var strays = try await strayFirewallRules()
        var repaired: [Finding] = []
        var removed: [StrayFirewallRules] = []
        if fix {
            for finding in findings where finding.fixable {
                logger.debug("repairing \(finding.kind.rawValue) of \(finding.address) on \(finding.network)")
                try await repair(finding)
                repaired.append(finding)
            }
            for stray in strays where stray.fixable {
                do {
                    _ = try await Firewall(logger: logger).removeRules(ofBridge: stray.bridge)
                } catch {
                    throw ProvisioningError(.tool, "cannot remove the firewall rules of bridge \(stray.bridge): \(error.description)", cause: error)
                }
                removed.append(stray)
            }
            findings = try await examine()
            strays = try await strayFirewallRules()
        }
        return DoctorReport(findings: findings, repaired: repaired, abandonedCreates: abandoned, undoneCreates: undone,
                            strayFirewallRules: strays, removedFirewallRules: removed)
    }

    /// vmctl's chains and nft tables (in this network namespace) for bridges no network on the
    /// connection has: left by a network destroyed without vmctl, they would refuse the guests of
    /// the next network given that bridge name. Only root can read them; elsewhere none are reported.
    private func strayFirewallRules() async throws(ProvisioningError) -> [StrayFirewallRules] {
        guard isLocal(session.uri), geteuid() == 0 else { return [] }
        var bridges: Set<String> = []
        for network in try await libvirtCall("list the networks", { () async throws(LibvirtError) in try await connection.networks() }) {
            if let bridge = try await network.definition().bridge {
                bridges.insert(bridge)
                bridges.insert(bridge.replacingOccurrences(of: "-", with: "_"))
            }
        }
        let found: [String: [String]]
        do { found = try await Firewall(logger: logger).rulesByBridge() } catch {
            throw ProvisioningError(.tool, "cannot list the firewall's chains: \(error.description)", cause: error)
        }
        return found.filter { !bridges.contains($0.key) }.sorted { $0.key < $1.key }
            .map { StrayFirewallRules(bridge: $0.key, rules: $0.value, fixable: true) }
    }

    /// Creates whose process is gone: killed before they finished.
    private func abandonedCreates() async throws(ProvisioningError) -> [AbandonedCreate] {
        try await state.run { store throws(StoreError) in try store.pendingCreates() }
            .filter { $0.host == session.hostName && !ProcessTag.isAlive($0.process) }.map(AbandonedCreate.init)
    }

    /// Gathers libvirt's view of every network the store mentions and diagnoses it.
    private func examine() async throws(ProvisioningError) -> [Finding] {
        let (everyAllocation, pools, everyCreate) = try await state.run { store throws(StoreError) in
            (try store.allocations(), try store.pools(), try store.pendingCreates())
        }
        let scope = session.hostName
        let allocations = everyAllocation.filter { $0.host == scope }
        let pending = everyCreate.filter { $0.host == scope }
        var networks: [String: NetworkView] = [:]
        for name in Set(pools.map(\.network) + allocations.map(\.network)) {
            guard let network = try await connection.networkIfExists(name) else { continue }
            var view = try await reservations.views(of: network)
            if view.live != nil { view.leases = (try? await network.dhcpLeases()) ?? [] }
            networks[name] = view
        }
        let vms = try await VMReader(connection: connection).readAll()
        let recorded = vms.compactMap { domain, definition in
            definition.metadata.map { RecordedAddresses(uuid: domain.uuid, name: domain.name, addresses: $0.addresses) }
        }
        // Addresses the VMs record and the store lost are theirs: their host entries are not
        // strays, and they are adopted, not deleted.
        let lost = unrecorded(recorded, allocations: everyAllocation)
        // A create under way owns its addresses before its domain exists.
        let found = diagnose(allocations: allocations + lost, pools: pools, networks: networks,
                             domains: Set(vms.map(\.0.uuid) + pending.map(\.uuid)))
            .filter { finding in !lost.contains { $0.network == finding.network && $0.address == finding.address } }
        return found + adoptable(recorded, allocations: everyAllocation, pools: pools) + (try await routeFindings(allocations + lost, networks: networks))
    }

    /// Host routes missing or left over, where vmctl can see the bridges' routing table.
    private func routeFindings(_ allocations: [Allocation], networks: [String: NetworkView]) async throws(ProvisioningError) -> [Finding] {
        guard isLocal(session.uri) else { return [] }
        let bridges = Set(networks.values.compactMap { $0.live?.bridge }.filter(Firewall.interfaceExists))
        let routes: [HostRoute]
        do { routes = try await HostNetwork(logger: logger).routes() } catch {
            throw ProvisioningError(.tool, "cannot list the host's routes: \(error.description)", cause: error)
        }
        return diagnoseRoutes(allocations: allocations, networks: networks, routes: routes, bridgesHere: bridges, canChangeRoutes: geteuid() == 0)
    }

    private func repair(_ finding: Finding) async throws(ProvisioningError) {
        let allocation = try await state.run { store throws(StoreError) in try store.allocations() }
            .first { $0.network == finding.network && $0.address == finding.address }
        switch finding.kind {
        case .ownerGone:
            if let allocation { try await reservations.release(allocation) }
        case .networkGone:
            if let allocation {
                _ = try await state.run { store throws(StoreError) in try store.release(allocation.address, from: allocation.pool) }
            }
        case .entryMissing, .entryDrift:
            guard let allocation, let network = try await connection.networkIfExists(finding.network) else { return }
            let view = try await reservations.views(of: network)
            guard let (index, host) = expectedEntry(for: allocation, in: view.definition) else { return }
            try await reservations.change(.add, host, index: index, on: network, in: view.copies(missing: host, at: index))
        case .entryWithoutOwner:
            guard let network = try await connection.networkIfExists(finding.network) else { return }
            let view = try await reservations.views(of: network)
            for definition in [view.live, view.persistent].compactMap({ $0 }) {
                for ip in definition.ips {
                    for host in ip.hosts where host.address == finding.address && host.mac == finding.mac {
                        try await reservations.change(.delete, host, index: ip.index, on: network,
                                                      in: view.copies(holding: host, at: ip.index))
                        return
                    }
                }
            }
        case .routeMissing:
            if let bridge = finding.bridge { try await session.host.addRoute(to: finding.address, bridge: bridge) }
        case .routeWithoutOwner:
            if let bridge = finding.bridge { try await session.host.removeRoute(to: finding.address, bridge: bridge) }
        case .leaseByOtherMAC:
            return
        case .adoptable:
            guard let pool = finding.pool, let mac = finding.mac, let owner = finding.owner,
                  let domain = try await connection.domainIfExists(owner) else { return }
            let address = finding.address
            _ = try await state.run { store throws(StoreError) in
                try store.allocate(from: pool, family: address.family, requested: address, ownerUUID: domain.uuid, ownerName: owner, mac: mac,
                                   host: session.hostName)
            }
        }
    }
}

/// A create killed before it finished, as doctor reports it.
public struct AbandonedCreate: Encodable, Sendable {
    public var name: String
    public var uuid: UUID
    public var startedAt: Date
    public var volumes: [String]
    /// The fleet host it was placed on, in a doctor across the fleet.
    public var host: String?
    let pending: PendingCreate

    init(_ pending: PendingCreate) {
        name = pending.name
        uuid = pending.uuid
        startedAt = pending.startedAt
        volumes = pending.volumes
        host = pending.host
        self.pending = pending
    }

    enum CodingKeys: String, CodingKey { case name, uuid, startedAt, volumes, host }

    public var message: String {
        "VM \(name): its create was killed before it finished; --fix removes its domain, addresses and volumes (\(volumes.isEmpty ? "none" : volumes.joined(separator: ", ")))"
    }
}

/// What `vmctl doctor` found: the findings left, and with repair those repaired.
public struct DoctorReport: Encodable, Sendable {
    public var findings: [Finding]
    public var repaired: [Finding]
    public var abandonedCreates: [AbandonedCreate]
    public var undoneCreates: [AbandonedCreate]
    public var strayFirewallRules: [StrayFirewallRules]
    public var removedFirewallRules: [StrayFirewallRules]
    /// Hosts of the fleet that did not answer, why: nothing of theirs was examined.
    public var unreachableHosts: [String] = []

    /// Whether anything is left to report.
    public var isClean: Bool { findings.isEmpty && abandonedCreates.isEmpty && strayFirewallRules.isEmpty && unreachableHosts.isEmpty }
}

/// vmctl's firewall chains and nft table for a bridge no network has.
public struct StrayFirewallRules: Encodable, Sendable {
    public var bridge: String
    public var rules: [String]
    public var fixable: Bool

    public var message: String {
        "bridge \(bridge): vmctl's firewall rules, but no network has that bridge (\(rules.joined(separator: ", "))); --fix removes them"
    }
}
