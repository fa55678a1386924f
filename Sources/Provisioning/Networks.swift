import Addressing
public import AllocationStore
import Foundation
public import HostFirewall
public import Libvirt
public import LibvirtXML
import Logging

/// Networks of every mode: defined from a `NetworkSpec`, compared with what exists, listed,
/// started, stopped and destroyed, and the host firewall of open networks.
public struct Networks: Sendable {
    /// The connection; a local one lets vmctl read and change this host's interfaces and firewall.
    public let session: Session

    public init(session: Session) {
        self.session = session
    }

    private var connection: Connection { session.connection }
    private var uri: String { session.uri }
    private var logger: Logger { session.logger }

    /// The other networks and the host's interfaces, for checking a new network against.
    public func surroundings() async throws(ProvisioningError) -> NetworkSurroundings {
        var surroundings = NetworkSurroundings()
        for network in try await libvirtCall("list the networks", { () async throws(LibvirtError) in try await connection.networks() }) {
            let definition = try await network.definition()
            surroundings.networks.append((network.name, definition.bridge, definition.ips.map(\.subnet)))
        }
        for name in (try? await connection.interfaceNames()) ?? [] { surroundings.interfaces[name] = [] }
        if isLocal(uri) {
            for (interface, addresses) in localInterfaceAddresses() {
                surroundings.interfaces[interface, default: []] += addresses
            }
        }
        return surroundings
    }

    /// The network called `name` with its persistent (else live) definition, or `nil`.
    public func existing(_ name: String) async throws(ProvisioningError) -> (Network, NetworkDefinition)? {
        guard let network = try await connection.networkIfExists(name) else { return nil }
        let persistent = try await libvirtCall("read network \(name)") { () async throws(LibvirtError) in try await network.isPersistent() }
        return (network, try await network.definition(inactive: persistent))
    }

    /// Defines and starts the network `spec` describes. An identical network already there is
    /// started if needed and left as it is; a different one is an error unless `replace`.
    public func create(_ spec: NetworkSpec, existing: (Network, NetworkDefinition)?, templates: Templates, autostart: Bool,
                       replace: Bool) async throws(ProvisioningError) -> Network {
        if let (network, definition) = existing {
            let differences = NetworkSummary(definition).differences(to: NetworkSummary(spec))
            if differences.isEmpty {
                try await libvirtCall("start network \(spec.name)") { () async throws(LibvirtError) in
                    if try await !network.isActive() { try await network.start() }
                }
                return network
            }
            guard replace else {
                throw ProvisioningError(.conflict, "network \(spec.name) exists with another definition (\(differences.joined(separator: "; ")))",
                                        hint: "replace it to redefine it")
            }
            logger.debug("replacing network \(spec.name): \(differences.joined(separator: "; "))")
            try await libvirtCall("remove network \(spec.name)") { () async throws(LibvirtError) in
                if try await network.isActive() { try await network.destroy() }
                try await network.undefine()
            }
        }
        let xml = try templates.render(spec.configuration)
        let network: Network
        do {
            network = try await connection.defineNetwork(xml: xml)
        } catch {
            throw ProvisioningError(.libvirt, "libvirt refused the network definition: \(error.message)", cause: error)
        }
        // One that cannot start is undefined again, so nothing is left half-made.
        do {
            try await network.start()
            if autostart { try await network.setAutostart(true) }
        } catch {
            try? await network.undefine()
            throw ProvisioningError(.libvirt, "network \(network.name) could not be started: \(error.message)", hint: "nothing was defined", cause: error)
        }
        return network
    }

    /// How vmctl describes a network: its persistent (else live) definition, and its state.
    public func summary(of network: Network) async throws(ProvisioningError) -> NetworkSummary {
        let (persistent, active, autostart): (Bool, Bool, Bool)
        do {
            // Three independent round trips, in flight together.
            async let isPersistent = network.isPersistent()
            async let isActive = network.isActive()
            async let isAutostart = network.autostart()
            (persistent, active, autostart) = (try await isPersistent, try await isActive, try await isAutostart)
        } catch let error as LibvirtError {
            throw ProvisioningError(while: "read network \(network.name)", error)
        } catch {
            throw ProvisioningError(.libvirt, "cannot read network \(network.name): \(error)")
        }
        return NetworkSummary(try await network.definition(inactive: persistent), active: active, autostart: autostart)
    }

    /// Every network, in name order.
    public func list() async throws(ProvisioningError) -> NetworkTable {
        let networks = try await libvirtCall("list the networks") { () async throws(LibvirtError) in try await connection.networks() }
        var summaries: [NetworkSummary] = []
        for network in networks.sorted(by: { $0.name < $1.name }) { summaries.append(try await summary(of: network)) }
        return NetworkTable(networks: summaries)
    }

    /// The names of every network, in order (`network list -q`): one listing, no definitions read.
    public func names() async throws(ProvisioningError) -> [String] {
        try await libvirtCall("list the networks") { () async throws(LibvirtError) in try await connection.networks() }.map(\.name).sorted()
    }

    /// Starts a network, then routes the addresses its pools hold outside its subnets to its new
    /// bridge: the routes went with the old bridge when the network stopped.
    public func start(_ name: String, state: State) async throws(ProvisioningError) -> Network {
        let network = try await connection.existingNetwork(name)
        // Read once: the bridge's name is in the definition before the network starts.
        let definition = try await network.definition()
        let routed = try await routedAllocations(of: name, definition: definition, state: state)
        if !routed.isEmpty, !isLocal(uri) || geteuid() != 0 {
            throw ProvisioningError(.unsupported, "network \(name) routes \(routed.map(\.address.description).joined(separator: ", ")) to its bridge, and only root on the bridge's host can add those routes",
                                    hint: "start it as root where libvirtd's bridges are")
        }
        try await libvirtCall("start network \(name)") { () async throws(LibvirtError) in
            if try await !network.isActive() { try await network.start() }
        }
        guard !routed.isEmpty, let bridge = definition.bridge else { return network }
        if let reason = session.host.routesUnavailable(bridge: bridge) {
            throw ProvisioningError(.unsupported, "network \(name) runs, but the routes of \(routed.map(\.address.description).joined(separator: ", ")) to bridge \(bridge) cannot be added: \(reason)",
                                    hint: "run vmctl doctor --fix where libvirtd's bridges are")
        }
        for allocation in routed { try await session.host.addRoute(to: allocation.address, bridge: bridge) }
        return network
    }

    /// The allocations on network `name` outside every one of its subnets.
    private func routedAllocations(of name: String, definition: NetworkDefinition, state: State) async throws(ProvisioningError) -> [Allocation] {
        try await state.run { store throws(StoreError) in try store.allocations() }
            .filter { $0.network == name && definition.ipElement(containing: $0.address) == nil }
    }

    public func stop(_ name: String) async throws(ProvisioningError) -> Network {
        let network = try await connection.existingNetwork(name)
        try await libvirtCall("stop network \(name)") { () async throws(LibvirtError) in
            if try await network.isActive() { try await network.destroy() }
        }
        return network
    }

    /// Stops and undefines a network (refused while domains use it, unless `force`), then
    /// removes what vmctl made for it: its port forwards in the state file, and its firewall
    /// chains and nft table (open-network rules, port forwards) in this network namespace. With
    /// port forwards recorded it is refused, before anything is done, where their rules cannot be
    /// removed: another host, or another namespace than the bridge's.
    public func destroy(_ name: String, force: Bool, state: State) async throws(ProvisioningError) -> Network {
        let network = try await connection.existingNetwork(name)
        let bridge = try await network.definition().bridge ?? ""
        if !force {
            var users: [String] = []
            for domain in try await libvirtCall("list the domains", { () async throws(LibvirtError) in try await connection.domains() }) {
                let xml = try await libvirtCall("read VM \(domain.name)") { () async throws(LibvirtError) in try await domain.xml(.inactive) }
                if (try? DomainDefinition(xml: xml))?.networks.contains(name) == true { users.append(domain.name) }
            }
            if !users.isEmpty {
                throw ProvisioningError(.conflict, "network \(name) is used by \(users.sorted().joined(separator: ", "))",
                                        hint: "destroy those VMs first, or force it")
            }
        }
        let active = try await libvirtCall("read network \(name)") { () async throws(LibvirtError) in try await network.isActive() }
        // A stopped network has no bridge to look for: its rules, if any, are taken to be here.
        let rulesHere = isLocal(uri) && (!active || Firewall.interfaceExists(bridge))
        let forwards = try await state.run { store throws(StoreError) in try store.portForwards(on: name) }
        if !forwards.isEmpty && !rulesHere {
            try requireBridgeHere(bridge, network: name, uri: uri)
        }
        try await libvirtCall("destroy network \(name)") { () async throws(LibvirtError) in
            if active { try await network.destroy() }
            if try await network.isPersistent() { try await network.undefine() }
        }
        _ = try await state.run { store throws(StoreError) in try store.removePortForwards(on: name) }
        // Only root can have written vmctl's rules (iptables needs CAP_NET_ADMIN): a user of
        // qemu:///system destroys networks without running iptables, which would refuse them.
        if rulesHere && !bridge.isEmpty && geteuid() == 0 {
            do {
                let removed = try await Firewall(logger: logger).removeRules(ofBridge: bridge)
                if !removed.isEmpty { logger.debug("removed the firewall rules of network \(name): \(removed.joined(separator: ", "))") }
            } catch {
                throw ProvisioningError(.tool, "network \(name) is destroyed, but removing its firewall rules failed: \(error.description)",
                                        hint: "remove the chains VMCTL-*-\(bridge) (iptables -S) and the nft table vmctl_\(bridge) by hand", cause: error)
            }
        }
        return network
    }

    // MARK: The host firewall of open networks

    /// The rules an open network needs, covering its subnets and the ranges of its pools outside
    /// them (routed `--all-usable` pools); other modes are refused (libvirt owns their firewall).
    public func firewallRules(_ name: String, state: State) async throws(ProvisioningError) -> FirewallRules {
        let network = try await connection.existingNetwork(name)
        let definition = try await network.definition()
        guard definition.forwardMode == "open" else {
            throw ProvisioningError(.conflict, "network \(name) is \(definition.forwardMode ?? "isolated"): libvirt manages its firewall",
                                    hint: "vmctl network firewall is for open networks")
        }
        let pools = try await state.run { store throws(StoreError) in try store.pools() }.filter { $0.network == name }
        return FirewallRules(definition, pools: pools)
    }

    /// Loads the open network's rules into this host's firewall, with forwarding on.
    public func applyFirewall(_ rules: FirewallRules, nft: Bool) async throws(ProvisioningError) {
        try requireBridgeHere(rules.bridge, network: rules.network, uri: uri)
        let firewall = Firewall(logger: logger)
        do {
            try firewall.enableForwarding(ipv6: !rules.ipv6.isEmpty)
        } catch {
            throw ProvisioningError(.file, error.description, cause: error)
        }
        do {
            if nft {
                try await firewall.applyNFT(rules.nft)
            } else {
                try await firewall.apply(rules.ipv4Rules, header: rules.ipv4Header)
                if let v6 = rules.ipv6Rules {
                    try await firewall.apply(v6, header: rules.ipv6Header)
                }
            }
        } catch {
            throw ProvisioningError(.tool, error.description, cause: error)
        }
    }
}

extension FirewallRules {
    /// The rules of an open network's definition: its subnets and the ranges of `pools` outside
    /// them (as the fewest subnets that hold them), and DHCPv6 when it serves it.
    public init(_ definition: NetworkDefinition, pools: [Pool] = []) {
        let routed = pools.flatMap(\.layout.ranges).filter { definition.ipElement(containing: $0.first) == nil }.flatMap(\.subnets)
        let subnets = definition.ips.map(\.subnet) + routed
        self.init(network: definition.name, bridge: definition.bridge ?? "",
                  ipv4: subnets.filter { $0.family == .ipv4 },
                  ipv6: subnets.filter { $0.family == .ipv6 },
                  dhcpv6: definition.ips.contains { $0.subnet.family == .ipv6 && $0.dhcpRange != nil })
    }
}

/// A URI without a host (`qemu:///system`) talks to this machine.
public func isLocal(_ uri: String) -> Bool {
    guard let range = uri.range(of: "://") else { return false }
    return uri[range.upperBound...].hasPrefix("/")
}

/// Refuses to change a firewall other than the one libvirtd's bridge `bridge` lives behind.
func requireBridgeHere(_ bridge: String, network: String, uri: String) throws(ProvisioningError) {
    // vmctl writes a host's firewall with that host's own iptables or nft, never over a
    // connection: on another host, the same command runs there (the packaged binary).
    guard isLocal(uri) else {
        let there = URLComponents(string: uri).flatMap { url in
            url.host.map { host in "ssh \(url.port.map { "-p \($0) " } ?? "")\(url.user.map { "\($0)@" } ?? "")\(host) vmctl ..." }
        } ?? "vmctl on that host"
        throw ProvisioningError(.unsupported, "the firewall rules of network \(network) are written on its host, and \(uri) is another host",
                                hint: "run the same command there (\(there)), with vmctl installed from its package")
    }
    guard Firewall.interfaceExists(bridge) else {
        throw ProvisioningError(.unsupported, "bridge \(bridge) of network \(network) is not in this network namespace",
                                hint: "run vmctl where libvirtd's bridges are (e.g. ip netns exec NS vmctl ...)")
    }
}
