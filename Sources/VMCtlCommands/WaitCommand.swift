public import ArgumentParser
import Addressing
import Foundation
import Libvirt
import LibvirtXML

/// `vmctl wait NAME --for ip|running|shutoff [--timeout SECONDS]`
public struct Wait: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Wait until a VM holds its addresses, runs, or is shut off.",
        discussion: "Exit status 1 when the timeout passes first (the VM is left as it is).")

    public enum Condition: String, ExpressibleByArgument, CaseIterable, Sendable {
        case ip, running, shutoff
    }

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The VM's name.") var name: String
    @Option(name: .customLong("for"), help: "ip, running or shutoff.") var condition: Condition
    @Option(help: "Seconds to wait.") var timeout = 120

    public init() {}

    public func validate() throws {
        if timeout < 1 { throw ValidationError("invalid --timeout \(timeout): give a number of seconds, 1 or more") }
    }

    public func run() async throws {
        let connection = try await global.connect()
        guard let domain = try await connection.domainIfExists(name) else {
            throw VMCtlError("no VM named \(name)", hint: "see vmctl list")
        }
        switch condition {
        case .ip:
            try await waitForAddresses(of: domain, on: connection, timeout: .seconds(timeout))
        case .running, .shutoff:
            try await waitForState(condition.rawValue, of: domain, timeout: .seconds(timeout))
        }
    }
}

/// Polls until the domain's state has the name `wanted` (`running`, `shutoff`).
func waitForState(_ wanted: String, of domain: Domain, timeout: Duration) async throws(VMCtlError) {
    let deadline = ContinuousClock.now + timeout
    var last = "unknown"
    while ContinuousClock.now < deadline {
        do {
            last = VMView.name(of: try await domain.state().state)
        } catch {
            throw VMCtlError(while: "read the state of VM \(domain.name)", error)
        }
        if last == wanted { return }
        try? await Task.sleep(for: .milliseconds(100))
    }
    throw VMCtlError("VM \(domain.name) is still \(last) after \(timeout.components.seconds) s", hint: "wait longer with --timeout")
}

/// What "the guest holds its addresses" means for one NIC: the reserved addresses its network's
/// dnsmasq serves must be leased to its MAC; a NIC without reservation on a network with IPv4
/// DHCP must hold some IPv4 lease; a reserved IPv4 address configured statically (cloud-init)
/// must show in the host's ARP table. Static IPv6 addresses cannot be observed without an agent
/// and are not waited for.
struct AddressExpectation: Equatable {
    var network: String
    var mac: MACAddress
    var leased: [IPAddress]
    var anyIPv4Lease: Bool
    var inARP: [IPAddress]

    static func of(_ definition: DomainDefinition, networks: [String: NetworkDefinition]) -> [AddressExpectation] {
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
    func missing(leases: [DHCPLease], arp: Set<IPAddress>) -> [String] {
        let mine = leases.filter { $0.belongs(to: mac) }.compactMap { IPAddress($0.address) }
        var missing = leased.filter { !mine.contains($0) }.map { "\($0) (lease on \(network))" }
        if anyIPv4Lease && !mine.contains(where: { $0.family == .ipv4 }) { missing.append("an IPv4 lease for \(mac) on \(network)") }
        missing += inARP.filter { !arp.contains($0) }.map { "\($0) (ARP on \(network))" }
        return missing
    }
}

/// Polls until every expectation of the domain's NICs holds; the VM is never touched.
func waitForAddresses(of domain: Domain, on connection: Connection, timeout: Duration) async throws(VMCtlError) {
    let reader = VMReader(connection: connection)
    let (definition, _) = try await reader.read(domain)
    var networks: [String: Network] = [:]
    var definitions: [String: NetworkDefinition] = [:]
    for name in Set(definition.networks) {
        guard let network = try await connection.networkIfExists(name) else { continue }
        networks[name] = network
        do {
            definitions[name] = try NetworkDefinition(xml: try await network.xml())
        } catch {
            throw VMCtlError("cannot read network \(name): \(error)")
        }
    }
    let expectations = AddressExpectation.of(definition, networks: definitions)
    let deadline = ContinuousClock.now + timeout
    var missing: [String] = []
    while true {
        let state: Domain.State
        do { state = try await domain.state().state } catch { throw VMCtlError(while: "read the state of VM \(domain.name)", error) }
        guard VMView.name(of: state) == "running" else {
            throw VMCtlError("VM \(domain.name) is \(VMView.name(of: state)), it will not get addresses", hint: "start it, or see its console")
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
    throw VMCtlError("VM \(domain.name) does not hold its addresses after \(timeout.components.seconds) s (missing: \(missing.joined(separator: ", "))); the VM is kept",
                     hint: "see vmctl show \(domain.name), or remove it with vmctl destroy \(domain.name)")
}
