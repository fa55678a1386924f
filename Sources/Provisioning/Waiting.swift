public import Addressing
import Foundation
public import HostFirewall
public import Libvirt
public import LibvirtXML

/// Waits until the domain's state has the name `wanted` (`running`, `shutoff`): the state is
/// read again whenever libvirt reports a lifecycle event of the domain, so the wait ends as the
/// change happens rather than at the next poll.
public func waitForState(_ wanted: String, of domain: Domain, on connection: Connection, timeout: Duration) async throws(ProvisioningError) {
    let deadline = ContinuousClock.now + timeout
    // Registered before the first read, so that no change between the two is missed.
    let events = try await libvirtCall("watch the events of VM \(domain.name)") { () async throws(LibvirtError) in try await connection.domainEvents() }
    let current: @Sendable () async -> Result<String, ProvisioningError> = {
        do throws(LibvirtError) { return .success(VMView.name(of: try await domain.state().state)) } catch {
            return .failure(ProvisioningError(while: "read the state of VM \(domain.name)", error))
        }
    }
    let first = try await current().get()
    if first == wanted { return }
    let outcome = await withTaskGroup(of: Result<String, ProvisioningError>?.self) { group in
        group.addTask {
            for await event in events where event.domainUUID == domain.uuid {
                let state = await current()
                if case .success(let name) = state, name != wanted { continue }
                return state
            }
            return nil
        }
        group.addTask {
            try? await Task.sleep(until: deadline, clock: .continuous)
            return nil
        }
        let first = await group.next() ?? nil
        group.cancelAll()
        return first
    }
    switch outcome {
    case .success?: return
    case .failure(let error)?: throw error
    case nil:
        let last = (try? await current().get()) ?? first
        if last == wanted { return }
        throw ProvisioningError(.timedOut, "VM \(domain.name) is still \(last) after \(timeout.components.seconds) s", hint: "wait longer")
    }
}

/// What "the guest holds its addresses" means for one NIC, from what its seed tells it to
/// configure (`guestConfiguration`): a reserved IPv4 address its network's dnsmasq serves must be
/// leased to its MAC; a NIC without a reserved IPv4 address on a network with IPv4 DHCP must hold
/// some IPv4 lease; every address the seed configures statically (routed /32s and /128s,
/// addresses of subnets without DHCP, DHCPv6 reservations, SLAAC's EUI-64 address) must answer
/// from the NIC's MAC in the neighbour table of the bridge. Without a cloud-init seed only the
/// reserved addresses are expected.
public struct AddressExpectation: Equatable, Sendable {
    var network: String
    var bridge: String?
    var mac: MACAddress
    var leased: [IPAddress]
    var anyIPv4Lease: Bool
    var neighbours: [IPAddress]

    public static func of(_ definition: DomainDefinition, networks: [String: NetworkDefinition]) -> [AddressExpectation] {
        let hasSeed = definition.metadata?.volumes.contains { $0.role == "seed" } ?? false
        return definition.interfaces.compactMap { interface in
            guard let name = interface.network, let mac = interface.mac, let network = networks[name] else { return nil }
            let reserved = (definition.metadata?.addresses ?? []).filter { $0.mac == mac && $0.network == name }.map(\.address)
            let served = reserved.filter { $0.family == .ipv4 && network.ipElement(containing: $0)?.hasDHCP == true }
            var statics = reserved.filter { !served.contains($0) }
            if hasSeed, let nic = try? guestConfiguration(mac: mac, addresses: reserved, network: network) {
                statics = nic.addresses.map(\.address)
            }
            return AddressExpectation(
                network: name, bridge: network.bridge, mac: mac, leased: served,
                anyIPv4Lease: !reserved.contains { $0.family == .ipv4 } && network.ips.contains { $0.address.family == .ipv4 && $0.hasDHCP },
                neighbours: statics)
        }
    }

    /// What is still missing, given the network's leases and what answers for which address
    /// (`answering`: the bridge's neighbour table, or libvirt's ARP source, which has no MACs).
    public func missing(leases: [DHCPLease], answering: Answering) -> [String] {
        let mine = leases.filter { $0.belongs(to: mac) }.compactMap { IPAddress($0.address) }
        var missing = leased.filter { !mine.contains($0) }.map { "\($0) (lease on \(network))" }
        if anyIPv4Lease && !mine.contains(where: { $0.family == .ipv4 }) { missing.append("an IPv4 lease for \(mac) on \(network)") }
        switch answering {
        case .neighbours(let table):
            missing += neighbours.filter { !table.contains(Neighbour(address: $0, mac: mac)) }.map { "\($0) (neighbour of \(bridge ?? network))" }
        case .arp(let addresses, _):
            missing += neighbours.filter { $0.family == .ipv4 && !addresses.contains($0) }.map { "\($0) (ARP on \(network))" }
        }
        return missing
    }

    /// Where static addresses were looked for.
    public enum Answering: Sendable {
        /// The bridge's neighbour table, read in its network namespace: address and MAC.
        case neighbours(Set<Neighbour>)
        /// libvirt's ARP source (`virDomainInterfaceAddresses`), and its error if it failed. IPv6
        /// is not in it: static IPv6 addresses are then not waited for.
        case arp(Set<IPAddress>, error: String?)
    }
}

/// Polls until every expectation of the domain's NICs holds; the VM is never touched. Static
/// addresses are looked for in the bridge's neighbour table (after a probe that makes the kernel
/// resolve them) where vmctl runs beside the bridge, else through libvirt's ARP source, whose
/// failure is reported.
public func waitForAddresses(of domain: Domain, on connection: Connection, host: LocalHost, timeout: Duration) async throws(ProvisioningError) {
    let reader = VMReader(connection: connection)
    let (definition, _) = try await reader.read(domain)
    var networks: [String: Network] = [:]
    var definitions: [String: NetworkDefinition] = [:]
    for name in Set(definition.networks) {
        guard let network = try await connection.networkIfExists(name) else { continue }
        networks[name] = network
        definitions[name] = try await network.definition()
    }
    let expectations = AddressExpectation.of(definition, networks: definitions)
    let hostNetwork = HostNetwork(logger: host.logger)
    let deadline = ContinuousClock.now + timeout
    var missing: [String] = []
    var arpError: String?
    // The leases are asked for every `leaseInterval`: libvirt reads them from the file dnsmasq's
    // helper writes, so a lease is seen within that of its grant (one call per network, ~0.2 ms
    // of libvirtd's time). The state and the static addresses (probes, the neighbour table or
    // libvirt's ARP source) are checked every `slowInterval`, as before.
    let leaseInterval = Duration.milliseconds(15), slowInterval = Duration.milliseconds(250)
    var answers: [Int: AddressExpectation.Answering] = [:]
    var lastSlowCheck: ContinuousClock.Instant?
    while true {
        // vmctl run ends a wait on a signal.
        if Task.isCancelled { throw ProvisioningError(.interrupted, "interrupted while waiting for \(domain.name)'s addresses") }
        let now = ContinuousClock.now
        let slowCheck = lastSlowCheck.map { now - $0 >= slowInterval } ?? true
        if slowCheck {
            lastSlowCheck = now
            let state: Domain.State
            do { state = try await domain.state().state } catch { throw ProvisioningError(while: "read the state of VM \(domain.name)", error) }
            guard VMView.name(of: state) == "running" else {
                throw ProvisioningError(.conflict, "VM \(domain.name) is \(VMView.name(of: state)), it will not get addresses", hint: "start it, or see its console")
            }
        }
        var leases: [String: [DHCPLease]] = [:]
        for (name, network) in networks { leases[name] = (try? await network.dhcpLeases()) ?? [] }
        missing = []
        for (index, expectation) in expectations.enumerated() {
            if slowCheck && !expectation.neighbours.isEmpty {
                if let bridge = expectation.bridge, isLocal(host.uri), Firewall.interfaceExists(bridge) {
                    for address in expectation.neighbours { hostNetwork.probe(address) }
                    do {
                        answers[index] = .neighbours(Set(try await hostNetwork.neighbours(on: bridge)))
                    } catch {
                        throw ProvisioningError(.tool, "cannot read the neighbours of bridge \(bridge): \(error.description)", cause: error)
                    }
                } else {
                    do throws(LibvirtError) {
                        let interfaces = try await domain.interfaceAddresses(source: .arp)
                        answers[index] = .arp(Set(interfaces.flatMap(\.addresses).compactMap { IPAddress($0.address) }), error: nil)
                        arpError = nil
                    } catch {
                        arpError = error.message
                        answers[index] = .arp([], error: error.message)
                    }
                }
            }
            missing += expectation.missing(leases: leases[expectation.network] ?? [], answering: answers[index] ?? .neighbours([]))
        }
        if missing.isEmpty { return }
        if ContinuousClock.now >= deadline { break }
        try? await Task.sleep(for: leaseInterval)
    }
    let arp = arpError.map { "; libvirt's ARP source failed: \($0) (run vmctl in the network namespace of the bridge to read its neighbour table instead)" } ?? ""
    throw ProvisioningError(.timedOut, "VM \(domain.name) does not hold its addresses after \(timeout.components.seconds) s (missing: \(missing.joined(separator: ", ")))\(arp); the VM is kept",
                            hint: "see what the guest printed with vmctl console \(domain.name) --log, or remove it with vmctl destroy \(domain.name)")
}
