public import Addressing
import Foundation
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

/// What "the guest holds its addresses" means for one NIC: the reserved addresses its network's
/// dnsmasq serves must be leased to its MAC; a NIC without reservation on a network with IPv4
/// DHCP must hold some IPv4 lease; a reserved IPv4 address configured statically (cloud-init)
/// must show in the host's ARP table. Static IPv6 addresses cannot be observed without an agent
/// and are not waited for.
public struct AddressExpectation: Equatable, Sendable {
    var network: String
    var mac: MACAddress
    var leased: [IPAddress]
    var anyIPv4Lease: Bool
    var inARP: [IPAddress]

    public static func of(_ definition: DomainDefinition, networks: [String: NetworkDefinition]) -> [AddressExpectation] {
        definition.interfaces.compactMap { interface in
            guard let name = interface.network, let mac = interface.mac, let network = networks[name] else { return nil }
            let reserved = (definition.metadata?.addresses ?? []).filter { $0.mac == mac && $0.network == name }.map(\.address)
            let served = reserved.filter { network.ipElement(containing: $0)?.hasDHCP == true }
            return AddressExpectation(
                network: name, mac: mac, leased: served,
                anyIPv4Lease: reserved.isEmpty && network.ips.contains { $0.address.family == .ipv4 && $0.hasDHCP },
                inARP: reserved.filter { $0.family == .ipv4 && !served.contains($0) })
        }
    }

    /// What is still missing, given the network's leases and the domain's ARP entries.
    public func missing(leases: [DHCPLease], arp: Set<IPAddress>) -> [String] {
        let mine = leases.filter { $0.belongs(to: mac) }.compactMap { IPAddress($0.address) }
        var missing = leased.filter { !mine.contains($0) }.map { "\($0) (lease on \(network))" }
        if anyIPv4Lease && !mine.contains(where: { $0.family == .ipv4 }) { missing.append("an IPv4 lease for \(mac) on \(network)") }
        missing += inARP.filter { !arp.contains($0) }.map { "\($0) (ARP on \(network))" }
        return missing
    }
}

/// Polls until every expectation of the domain's NICs holds; the VM is never touched.
public func waitForAddresses(of domain: Domain, on connection: Connection, timeout: Duration) async throws(ProvisioningError) {
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
    let deadline = ContinuousClock.now + timeout
    var missing: [String] = []
    while true {
        let state: Domain.State
        do { state = try await domain.state().state } catch { throw ProvisioningError(while: "read the state of VM \(domain.name)", error) }
        guard VMView.name(of: state) == "running" else {
            throw ProvisioningError(.conflict, "VM \(domain.name) is \(VMView.name(of: state)), it will not get addresses", hint: "start it, or see its console")
        }
        var leases: [String: [DHCPLease]] = [:]
        for (name, network) in networks { leases[name] = (try? await network.dhcpLeases()) ?? [] }
        var arp: Set<IPAddress> = []
        if expectations.contains(where: { !$0.inARP.isEmpty }) {
            let interfaces = (try? await domain.interfaceAddresses(source: .arp)) ?? []
            arp = Set(interfaces.flatMap(\.addresses).compactMap { IPAddress($0.address) })
        }
        missing = expectations.flatMap { $0.missing(leases: leases[$0.network] ?? [], arp: arp) }
        if missing.isEmpty { return }
        if ContinuousClock.now >= deadline { break }
        try? await Task.sleep(for: .milliseconds(250))
    }
    throw ProvisioningError(.timedOut, "VM \(domain.name) does not hold its addresses after \(timeout.components.seconds) s (missing: \(missing.joined(separator: ", "))); the VM is kept",
                            hint: "see vmctl show \(domain.name), or remove it with vmctl destroy \(domain.name)")
}
