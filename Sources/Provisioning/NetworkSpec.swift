public import Addressing
import Foundation
public import LibvirtXML

/// The kinds of network vmctl builds (the seeds' scenarios).
public enum NetworkMode: String, CaseIterable, Codable, Sendable {
    /// Guests behind the host's address (libvirt's NAT and firewall rules).
    case nat
    /// Guests' subnet routed by the host (libvirt's forwarding rules).
    case route
    /// Routed or NATed by the operator's own firewall: libvirt adds no rules (seed 004).
    case open
    /// Guests reach only each other and the host.
    case isolated
    /// Guests on an existing host bridge (e.g. br0 enslaving eth0, seed 002).
    case bridge
}

/// One address family of a network: its subnet, the host's (gateway's) address on the bridge, and
/// the DHCP range (for IPv6: DHCPv6; none means SLAAC, router advertisements only).
public struct IPConfig: Equatable, Sendable {
    public var subnet: Subnet
    public var gateway: IPAddress
    public var dhcp: AddressRange?
}

/// What `vmctl network create` builds, before anything reaches libvirt.
public struct NetworkSpec: Equatable, Sendable {
    public var name: String
    public var mode: NetworkMode
    public var bridge: String
    public var forwardDevice: String?
    public var ipv4: IPConfig?
    public var ipv6: IPConfig?
    /// The local DNS domain; `nil` for none.
    public var domain: String?
    public var dnsDisabled: Bool

    public init(name: String, mode: NetworkMode, bridge: String, forwardDevice: String?, ipv4: IPConfig?, ipv6: IPConfig?,
                domain: String?, dnsDisabled: Bool) {
        self.name = name
        self.mode = mode
        self.bridge = bridge
        self.forwardDevice = forwardDevice
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.domain = domain
        self.dnsDisabled = dnsDisabled
    }

    /// The definition libvirt gets (and a user's template sees).
    public var configuration: NetworkConfiguration {
        func ip(_ config: IPConfig?) -> NetworkConfiguration.IP? {
            config.map { .init(gateway: $0.gateway.description, prefix: $0.subnet.prefix,
                               dhcpStart: $0.dhcp?.first.description, dhcpEnd: $0.dhcp?.last.description) }
        }
        return NetworkConfiguration(
            name: name, forwardMode: mode == .isolated ? nil : mode.rawValue, forwardDevice: forwardDevice, bridge: bridge,
            managedBridge: mode != .bridge, domain: domain, dnsDisabled: dnsDisabled, ipv4: ip(ipv4), ipv6: ip(ipv6))
    }
}

/// What vmctl knows of the host and its other networks when it checks a new one.
public struct NetworkSurroundings: Sendable {
    /// Other libvirt networks: name, bridge and subnets.
    public var networks: [(name: String, bridge: String?, subnets: [Subnet])] = []
    /// The host's interfaces and their addresses (local connections only).
    public var interfaces: [String: [(address: IPAddress, prefix: Int)]] = [:]

    public init() {}
}

extension NetworkSpec {
    /// Every rule a network must satisfy before it is defined; the error names the bad value.
    public func validate(in surroundings: NetworkSurroundings) throws(ProvisioningError) {
        switch mode {
        case .bridge:
            if ipv4 != nil || ipv6 != nil || forwardDevice != nil || domain != nil {
                throw ProvisioningError.invalid("a bridge network takes no addresses, DHCP, DNS or forward device (network \(name))",
                                 hint: "configure addresses on the host bridge \(bridge) itself")
            }
            guard surroundings.interfaces[bridge] != nil else {
                throw ProvisioningError(.notFound, "host bridge \(bridge) does not exist", hint: "create it first (seed 002: br0 enslaving eth0); vmctl does not change it")
            }
            return
        case .nat:
            guard ipv4 != nil else { throw ProvisioningError.invalid("a nat network needs an IPv4 subnet (network \(name))") }
        case .route, .open:
            guard ipv4 != nil || ipv6 != nil else {
                throw ProvisioningError.invalid("a \(mode.rawValue) network needs an IPv4 or an IPv6 subnet, or both (network \(name))")
            }
        case .isolated:
            break
        }
        // libvirt 9.0 writes the domain name back unescaped: only a DNS name may go in.
        if let domain, !isHostName(domain) {
            throw ProvisioningError.invalid("invalid DNS domain '\(domain)': use letters, digits, '-' and dots, labels of at most 63")
        }
        if forwardDevice != nil && !(mode == .nat || mode == .route) {
            throw ProvisioningError.invalid("--forward-dev applies to nat and route networks, not \(mode.rawValue)")
        }
        for config in [ipv4, ipv6].compactMap({ $0 }) {
            try check(config)
        }
        if let ipv6, ipv6.dhcp == nil, ipv6.subnet.prefix != 64 {
            throw ProvisioningError.invalid("SLAAC needs a /64, not \(ipv6.subnet)", hint: "use a /64, or give a DHCPv6 range")
        }
        for other in surroundings.networks where other.name != name {
            if other.bridge == bridge {
                throw ProvisioningError(.conflict, "bridge \(bridge) is already used by network \(other.name)", hint: "pick another bridge name, or let vmctl choose one")
            }
            for subnet in [ipv4?.subnet, ipv6?.subnet].compactMap({ $0 }) {
                if let clash = other.subnets.first(where: { $0.overlaps(subnet) }) {
                    throw ProvisioningError(.conflict, "subnet \(subnet) overlaps \(clash) of network \(other.name)", hint: "choose a subnet of its own")
                }
            }
        }
        if surroundings.interfaces[bridge] != nil && !surroundings.networks.contains(where: { $0.name == name && $0.bridge == bridge }) {
            throw ProvisioningError(.conflict, "bridge \(bridge) is already a host interface", hint: "pick another bridge name, or let vmctl choose one")
        }
        for (interface, addresses) in surroundings.interfaces.sorted(by: { $0.key < $1.key }) where interface != bridge {
            for (address, prefix) in addresses {
                for subnet in [ipv4?.subnet, ipv6?.subnet].compactMap({ $0 }) where address.family == subnet.family {
                    guard let hostSubnet = Subnet(containing: address, prefix: prefix), hostSubnet.overlaps(subnet) else { continue }
                    throw ProvisioningError(.conflict, "subnet \(subnet) overlaps \(address)/\(prefix) of host interface \(interface)",
                                     hint: "choose a subnet the host does not use")
                }
            }
        }
    }

    private func check(_ config: IPConfig) throws(ProvisioningError) {
        let subnet = config.subnet
        guard subnet.contains(config.gateway) else {
            throw ProvisioningError.invalid("gateway \(config.gateway) is outside its subnet \(subnet)")
        }
        if config.gateway == subnet.network || (subnet.family == .ipv4 && subnet.prefix < 31 && config.gateway == subnet.last) {
            throw ProvisioningError.invalid("gateway \(config.gateway) is the network or broadcast address of \(subnet)")
        }
        if let dhcp = config.dhcp {
            guard subnet.contains(dhcp.first), subnet.contains(dhcp.last) else {
                throw ProvisioningError.invalid("DHCP range \(dhcp) is outside the subnet \(subnet)")
            }
            if dhcp.contains(config.gateway) {
                throw ProvisioningError.invalid("DHCP range \(dhcp) covers the gateway \(config.gateway)", hint: "start the range after it")
            }
            if dhcp.contains(subnet.network) || (subnet.family == .ipv4 && dhcp.contains(subnet.last)) {
                throw ProvisioningError.invalid("DHCP range \(dhcp) covers the network or broadcast address of \(subnet)")
            }
        }
    }
}

/// A bridge name no libvirt network and no host interface uses: vmbr0, vmbr1, ...
public func freeBridgeName(in surroundings: NetworkSurroundings) -> String {
    let taken = Set(surroundings.networks.compactMap(\.bridge)).union(surroundings.interfaces.keys)
    return (0...).lazy.map { "vmbr\($0)" }.first { !taken.contains($0) }!
}

/// Parses one family's options into an `IPConfig`, naming the bad value on failure.
public func ipConfig(subnet text: String, gateway: String?, dhcp: String?, family: IPAddress.Family, flag: String) throws(ProvisioningError) -> IPConfig {
    guard let subnet = Subnet(text) ?? Subnet(containingText: text), subnet.family == family else {
        throw ProvisioningError.invalid("invalid \(flag) '\(text)': give an \(family) subnet in CIDR form, such as \(family == .ipv4 ? "10.0.10.0/24" : "2001:db8:aa::/64")")
    }
    // ::ffff:a.b.c.d is IPv4 written as IPv6: no IPv6 host or guest can use such a subnet.
    if family == .ipv6, let mapped = Subnet("::ffff:0:0/96"), mapped.overlaps(subnet) {
        throw ProvisioningError.invalid("invalid \(flag) '\(text)': an IPv4-mapped IPv6 subnet (::ffff:0:0/96) is IPv4; give the IPv4 subnet as such")
    }
    let gatewayAddress: IPAddress
    if let gateway {
        guard let parsed = IPAddress(gateway), parsed.family == family else {
            throw ProvisioningError.invalid("invalid gateway '\(gateway)': give one \(family) address")
        }
        gatewayAddress = parsed
    } else if let given = Subnet.hostPart(of: text) {
        gatewayAddress = given  // 10.0.10.1/24: the address given is the gateway
    } else {
        // The first address after the network's own; a /32 or /128 has none.
        let (next, overflow) = subnet.network.number.addingReportingOverflow(1)
        let candidate = IPAddress(family: family, number: next)
        guard !overflow, subnet.contains(candidate) else {
            throw ProvisioningError.invalid("invalid \(flag) '\(text)': the subnet has no address for the host's gateway",
                                            hint: "give a larger subnet, or the gateway itself")
        }
        gatewayAddress = candidate
    }
    var range: AddressRange?
    if let dhcp {
        guard let parsed = AddressRange(dhcp), parsed.family == family else {
            throw ProvisioningError.invalid("invalid DHCP range '\(dhcp)': give FIRST-LAST of \(family) addresses")
        }
        range = parsed
    }
    return IPConfig(subnet: subnet, gateway: gatewayAddress, dhcp: range)
}

extension Subnet {
    /// `10.0.10.1/24` read as "the subnet 10.0.10.0/24, host part given".
    init?(containingText text: String) {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let address = IPAddress(parts[0]), let prefix = Int(parts[1]) else { return nil }
        self.init(containing: address, prefix: prefix)
    }

    /// The address of `ADDRESS/PREFIX` when it is not the subnet's network address.
    static func hostPart(of text: String) -> IPAddress? {
        guard let subnet = Subnet(containingText: text), let address = IPAddress(text.split(separator: "/")[0]),
              address != subnet.network else { return nil }
        return address
    }
}
