import Addressing
import AllocationStore
import Foundation
public import HostFirewall
import Libvirt
import LibvirtXML
import Logging

/// Host ports forwarded to guests on nat and open networks: recorded in the store, and the
/// network's DNAT rules rebuilt whole from it on every change.
public struct PortForwards: Sendable {
    public let state: State
    public let session: Session

    public init(state: State, session: Session) {
        self.state = state
        self.session = session
    }

    private var connection: Connection { session.connection }
    private var uri: String { session.uri }
    private var logger: Logger { session.logger }

    /// Forwards `hostPort` to `vm`'s `guestPort`; the VM's IPv4 address on the network is looked up now.
    public func add(on name: String, proto: TransportProtocol, hostPort: Int, vm: String, guestPort: Int) async throws(ProvisioningError) -> PortForwardView {
        let network = try await connection.existingNetwork(name)
        let definition = try await network.definition()
        guard definition.forwardMode == "nat" || definition.forwardMode == "open" else {
            throw ProvisioningError(.conflict, "network \(name) is \(definition.forwardMode ?? "isolated"): port forwards are for nat and open networks")
        }
        let bridge = definition.bridge ?? ""
        try requireBridgeHere(bridge, network: name, uri: uri)
        let address = try await guestAddress(of: vm, on: network)
        let forward = try await state.run { store throws(StoreError) in
            try store.add(PortForward(network: name, proto: proto.rawValue, hostPort: hostPort, vm: vm, guestAddress: address, guestPort: guestPort))
        }
        do {
            try await rebuild(name, bridge: bridge)
        } catch {
            _ = try? await state.run { store throws(StoreError) in try store.removePortForward(network: name, proto: forward.proto, hostPort: forward.hostPort) }
            throw error
        }
        return PortForwardView(forward)
    }

    /// Removes a forward and rebuilds the network's rules; put back if they cannot be.
    public func remove(on name: String, proto: TransportProtocol, hostPort: Int) async throws(ProvisioningError) -> PortForwardView {
        let network = try await connection.existingNetwork(name)
        let bridge = try await network.definition().bridge ?? ""
        try requireBridgeHere(bridge, network: name, uri: uri)
        let removed = try await state.run { store throws(StoreError) in try store.removePortForward(network: name, proto: proto.rawValue, hostPort: hostPort) }
        do {
            try await rebuild(name, bridge: bridge)
        } catch {
            _ = try? await state.run { store throws(StoreError) in try store.add(removed) }
            throw error
        }
        return PortForwardView(removed)
    }

    /// Loads the network's forwards, as the store has them now, into this host's firewall.
    func rebuild(_ network: String, bridge: String) async throws(ProvisioningError) {
        let forwards = try await state.run { store throws(StoreError) in try store.portForwards(on: network) }
        let rules = PortForwardRules(bridge: bridge, forwards: forwards.map(\.rule))
        do {
            try await Firewall(logger: logger).apply(rules.rules, header: rules.header)
        } catch {
            throw ProvisioningError(.tool, error.description, cause: error)
        }
    }

    /// The VM's IPv4 address on `network`: its allocation there, else its current DHCP lease.
    private func guestAddress(of vm: String, on network: Network) async throws(ProvisioningError) -> IPAddress {
        guard let domain = try await connection.domainIfExists(vm) else {
            throw ProvisioningError(.notFound, "no VM named \(vm)", hint: "forward to an existing domain")
        }
        let (definition, _) = try await VMReader(connection: connection).read(domain)
        let macs = definition.interfaces.filter { $0.network == network.name }.compactMap(\.mac)
        guard !macs.isEmpty else { throw ProvisioningError(.conflict, "VM \(vm) has no interface on network \(network.name)") }
        let allocations = try await state.run { store throws(StoreError) in try store.allocations() }
        if let allocation = allocations.first(where: { $0.network == network.name && $0.family == .ipv4 && macs.contains($0.mac) }) {
            return allocation.address
        }
        for mac in macs {
            let leases = try await libvirtCall("read the leases of network \(network.name)") { () async throws(LibvirtError) in
                try await network.dhcpLeases(mac: mac.description)
            }
            if let lease = leases.first(where: { $0.family == .ipv4 }), let address = IPAddress(lease.address) {
                return address
            }
        }
        throw ProvisioningError(.conflict, "VM \(vm) has no IPv4 address on network \(network.name) yet",
                                hint: "reserve one (vmctl pool reserve) or wait for its DHCP lease")
    }
}

extension PortForward {
    /// The firewall's view of the forward.
    var rule: PortForwardRule {
        PortForwardRule(proto: TransportProtocol(rawValue: proto) ?? .tcp, hostPort: hostPort, guestAddress: guestAddress, guestPort: guestPort)
    }
}

/// `network forward list`: every forward, an array in JSON.
public struct PortForwardTable: Encodable, Sendable {
    public var forwards: [PortForwardView]
    public init(forwards: [PortForwardView]) { self.forwards = forwards }
    public func encode(to encoder: any Encoder) throws { try forwards.encode(to: encoder) }
}

extension State {
    /// Every port forward, or those of one network.
    public func portForwards(on network: String?) async throws(ProvisioningError) -> PortForwardTable {
        PortForwardTable(forwards: try await run { store throws(StoreError) in try store.portForwards(on: network) }.map(PortForwardView.init))
    }
}
