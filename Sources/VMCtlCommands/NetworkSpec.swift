public import ArgumentParser
import Addressing
import Foundation
import LibvirtXML

/// The kinds of network vmctl builds (the seeds' scenarios).
public enum NetworkMode: String, ExpressibleByArgument, CaseIterable, Codable, Sendable {
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
struct IPConfig: Equatable, Sendable {
    var subnet: Subnet
    var gateway: IPAddress
    var dhcp: AddressRange?
}

/// What `vmctl network create` builds, before anything reaches libvirt.
struct NetworkSpec: Equatable, Sendable {
    var name: String
    var mode: NetworkMode
    var bridge: String
    var forwardDevice: String?
    var ipv4: IPConfig?
    var ipv6: IPConfig?
    /// The local DNS domain; `nil` for none.
    var domain: String?
    var dnsDisabled: Bool

    /// The values the network template sees; every one is escaped when rendered.
    var templateValues: [String: Any] {
        func ip(_ config: IPConfig?) -> Any {
            guard let config else { return false }
            var values: [String: Any] = ["gateway": config.gateway.description, "prefix": config.subnet.prefix]
            if let dhcp = config.dhcp {
                values["dhcpStart"] = dhcp.first.description
                values["dhcpEnd"] = dhcp.last.description
            }
            return values
        }
        var values: [String: Any] = [
            "name": name, "bridge": bridge, "managedBridge": mode != .bridge,
            "dnsDisabled": dnsDisabled, "ipv4": ip(ipv4), "ipv6": ip(ipv6),
        ]
        if mode != .isolated { values["forwardMode"] = mode.rawValue }
        if let forwardDevice { values["forwardDevice"] = forwardDevice }
        if let domain { values["domain"] = domain }
        return values
    }
}

/// What vmctl knows of the host and its other networks when it checks a new one.
struct NetworkSurroundings: Sendable {
    /// Other libvirt networks: name, bridge and subnets.
    var networks: [(name: String, bridge: String?, subnets: [Subnet])] = []
    /// The host's interfaces and their addresses (local connections only).
    var interfaces: [String: [(address: IPAddress, prefix: Int)]] = [:]
}

extension NetworkSpec {
    /// Every rule a network must satisfy before it is defined; the error names the bad value.
    func validate(in surroundings: NetworkSurroundings) throws(VMCtlError) {
        switch mode {
        case .bridge:
            if ipv4 != nil || ipv6 != nil || forwardDevice != nil || domain != nil {
                throw VMCtlError("a bridge network takes no addresses, DHCP, DNS or forward device (network \(name))",
                                 hint: "configure addresses on the host bridge \(bridge) itself")
            }
            guard surroundings.interfaces[bridge] != nil else {
                throw VMCtlError("host bridge \(bridge) does not exist", hint: "create it first (seed 002: br0 enslaving eth0); vmctl does not change it")
            }
            return
        case .nat:
            guard ipv4 != nil else { throw VMCtlError("a nat network needs --ipv4 SUBNET (network \(name))") }
        case .route, .open:
            guard ipv4 != nil || ipv6 != nil else {
                throw VMCtlError("a \(mode.rawValue) network needs --ipv4 SUBNET and/or --ipv6 SUBNET (network \(name))")
            }
        case .isolated:
            break
        }
        if forwardDevice != nil && !(mode == .nat || mode == .route) {
            throw VMCtlError("--forward-dev applies to nat and route networks, not \(mode.rawValue)")
        }
        for config in [ipv4, ipv6].compactMap({ $0 }) {
            try check(config)
        }
        if let ipv6, ipv6.dhcp == nil, ipv6.subnet.prefix != 64 {
            throw VMCtlError("SLAAC needs a /64, not \(ipv6.subnet)", hint: "use a /64, or give --dhcp6 FIRST-LAST for DHCPv6")
        }
        for other in surroundings.networks where other.name != name {
            if other.bridge == bridge {
                throw VMCtlError("bridge \(bridge) is already used by network \(other.name)", hint: "pick another --bridge, or leave it out")
            }
            for subnet in [ipv4?.subnet, ipv6?.subnet].compactMap({ $0 }) {
                if let clash = other.subnets.first(where: { $0.overlaps(subnet) }) {
                    throw VMCtlError("subnet \(subnet) overlaps \(clash) of network \(other.name)", hint: "choose a subnet of its own")
                }
            }
        }
        if surroundings.interfaces[bridge] != nil && !surroundings.networks.contains(where: { $0.name == name && $0.bridge == bridge }) {
            throw VMCtlError("bridge \(bridge) is already a host interface", hint: "pick another --bridge, or leave it out")
        }
        for (interface, addresses) in surroundings.interfaces.sorted(by: { $0.key < $1.key }) where interface != bridge {
            for (address, prefix) in addresses {
                for subnet in [ipv4?.subnet, ipv6?.subnet].compactMap({ $0 }) where address.family == subnet.family {
                    guard let hostSubnet = Subnet(containing: address, prefix: prefix), hostSubnet.overlaps(subnet) else { continue }
                    throw VMCtlError("subnet \(subnet) overlaps \(address)/\(prefix) of host interface \(interface)",
                                     hint: "choose a subnet the host does not use")
                }
            }
        }
    }

    private func check(_ config: IPConfig) throws(VMCtlError) {
        let subnet = config.subnet
        guard subnet.contains(config.gateway) else {
            throw VMCtlError("gateway \(config.gateway) is outside its subnet \(subnet)")
        }
        if config.gateway == subnet.network || (subnet.family == .ipv4 && subnet.prefix < 31 && config.gateway == subnet.last) {
            throw VMCtlError("gateway \(config.gateway) is the network or broadcast address of \(subnet)")
        }
        if let dhcp = config.dhcp {
            guard subnet.contains(dhcp.first), subnet.contains(dhcp.last) else {
                throw VMCtlError("DHCP range \(dhcp) is outside the subnet \(subnet)")
            }
            if dhcp.contains(config.gateway) {
                throw VMCtlError("DHCP range \(dhcp) covers the gateway \(config.gateway)", hint: "start the range after it")
            }
            if dhcp.contains(subnet.network) || (subnet.family == .ipv4 && dhcp.contains(subnet.last)) {
                throw VMCtlError("DHCP range \(dhcp) covers the network or broadcast address of \(subnet)")
            }
        }
    }
}

/// A bridge name no libvirt network and no host interface uses: vmbr0, vmbr1, ...
func freeBridgeName(in surroundings: NetworkSurroundings) -> String {
    let taken = Set(surroundings.networks.compactMap(\.bridge)).union(surroundings.interfaces.keys)
    return (0...).lazy.map { "vmbr\($0)" }.first { !taken.contains($0) }!
}

/// Parses one family's options into an `IPConfig`, naming the bad value on failure.
func ipConfig(subnet text: String, gateway: String?, dhcp: String?, family: IPAddress.Family, flag: String) throws(VMCtlError) -> IPConfig {
    guard let subnet = Subnet(text) ?? Subnet(containingText: text), subnet.family == family else {
        throw VMCtlError("invalid \(flag) '\(text)': give an \(family) subnet in CIDR form, such as \(family == .ipv4 ? "10.0.10.0/24" : "2001:db8:aa::/64")")
    }
    let gatewayAddress: IPAddress
    if let gateway {
        guard let parsed = IPAddress(gateway), parsed.family == family else {
            throw VMCtlError("invalid gateway '\(gateway)': give one \(family) address")
        }
        gatewayAddress = parsed
    } else if let given = Subnet.hostPart(of: text) {
        gatewayAddress = given  // 10.0.10.1/24: the address given is the gateway
    } else {
        gatewayAddress = IPAddress(family: family, number: subnet.network.number + 1)
    }
    var range: AddressRange?
    if let dhcp {
        guard let parsed = AddressRange(dhcp), parsed.family == family else {
            throw VMCtlError("invalid DHCP range '\(dhcp)': give FIRST-LAST of \(family) addresses")
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
