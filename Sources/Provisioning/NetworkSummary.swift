import Addressing
import Foundation
public import LibvirtXML

/// A network as vmctl describes it: what `network show` prints and what `network create`
/// compares to decide whether an existing network is the one asked for.
public struct NetworkSummary: Codable, Equatable, Sendable {
    public var name: String
    public var mode: String
    public var bridge: String
    public var forwardDevice: String?
    /// `GATEWAY/PREFIX`
    public var ipv4: String?
    public var dhcp4: String?
    public var ipv6: String?
    /// A DHCPv6 range, or `slaac`.
    public var ipv6Addressing: String?
    public var domain: String?
    public var dns: Bool
    public var active: Bool?
    public var autostart: Bool?

    public init(_ spec: NetworkSpec) {
        name = spec.name
        mode = spec.mode.rawValue
        bridge = spec.bridge
        forwardDevice = spec.forwardDevice
        ipv4 = spec.ipv4.map { "\($0.gateway)/\($0.subnet.prefix)" }
        dhcp4 = spec.ipv4?.dhcp?.description
        ipv6 = spec.ipv6.map { "\($0.gateway)/\($0.subnet.prefix)" }
        ipv6Addressing = spec.ipv6.map { $0.dhcp?.description ?? "slaac" }
        domain = spec.domain
        dns = !spec.dnsDisabled
    }

    public init(_ definition: NetworkDefinition, active: Bool? = nil, autostart: Bool? = nil) {
        name = definition.name
        mode = definition.forwardMode ?? "isolated"
        bridge = definition.bridge ?? ""
        forwardDevice = definition.forwardDevice
        let v4 = definition.ips.first { $0.subnet.family == .ipv4 }
        let v6 = definition.ips.first { $0.subnet.family == .ipv6 }
        ipv4 = v4.map { "\($0.address)/\($0.subnet.prefix)" }
        dhcp4 = v4?.dhcpRange?.description
        ipv6 = v6.map { "\($0.address)/\($0.subnet.prefix)" }
        ipv6Addressing = v6.map { $0.dhcpRange?.description ?? "slaac" }
        domain = definition.domain
        dns = definition.dnsEnabled
        self.active = active
        self.autostart = autostart
    }

    /// `field: existing -> asked` for every field that differs (state aside).
    public func differences(to asked: NetworkSummary) -> [String] {
        func text(_ value: String?) -> String { value ?? "-" }
        var lines: [String] = []
        func compare(_ field: String, _ a: String?, _ b: String?) { if a != b { lines.append("\(field): \(text(a)) -> \(text(b))") } }
        compare("mode", mode, asked.mode)
        compare("bridge", bridge, asked.bridge)
        compare("forward-dev", forwardDevice, asked.forwardDevice)
        compare("ipv4", ipv4, asked.ipv4)
        compare("dhcp4", dhcp4, asked.dhcp4)
        compare("ipv6", ipv6, asked.ipv6)
        compare("ipv6 addressing", ipv6Addressing, asked.ipv6Addressing)
        compare("domain", domain, asked.domain)
        compare("dns", dns ? "on" : "off", asked.dns ? "on" : "off")
        return lines
    }
}

/// `network list`: every network, an array in JSON.
public struct NetworkTable: Encodable, Sendable {
    public var networks: [NetworkSummary]
    public init(networks: [NetworkSummary]) { self.networks = networks }
    public func encode(to encoder: any Encoder) throws { try networks.encode(to: encoder) }
}
