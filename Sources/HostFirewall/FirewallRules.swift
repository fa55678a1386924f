public import Addressing

/// The host firewall an `open` network needs (seeds 002 "Custom NAT" and 004 "Custom routed"):
/// forwarding for its subnets, NAT for private IPv4 subnets, DHCP and DNS from guests, and the
/// DHCP checksum fix, as rule sets in vmctl's own chains. Pure.
public struct FirewallRules: Equatable, Sendable {
    public var network: String
    public var bridge: String
    public var ipv4: [Subnet]
    public var ipv6: [Subnet]
    /// Whether the network serves DHCPv6 (port 547 is then open to guests).
    public var dhcpv6: Bool

    public init(network: String, bridge: String, ipv4: [Subnet], ipv6: [Subnet], dhcpv6: Bool) {
        self.network = network
        self.bridge = bridge
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.dhcpv6 = dhcpv6
    }

    /// The private IPv4 ranges (RFC 1918): their guests are masqueraded; public ones are routed
    /// as they are.
    public static let privateIPv4 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"].compactMap { Subnet($0) }

    public func isPrivate(_ subnet: Subnet) -> Bool {
        subnet.family == .ipv4 && Self.privateIPv4.contains { $0.contains(subnet.network) }
    }

    /// vmctl's own chains, one set per network, so that rules can be replaced without touching
    /// anyone else's: `VMCTL-IN-<bridge>`, `VMCTL-FWD-<bridge>`, `VMCTL-NAT-<bridge>`, `VMCTL-CSUM-<bridge>`.
    public func chain(_ kind: String) -> String { "VMCTL-\(kind)-\(bridge)" }

    /// The IPv4 rules: nat (private subnets), mangle (checksum) and filter.
    public var ipv4Rules: RuleSet {
        let nat = ipv4.filter(isPrivate).flatMap { subnet -> [Rule] in
            [Rule([.source(subnet), .destination(Subnet("224.0.0.0/24")!)], .return),
             Rule([.source(subnet), .destination(Subnet("255.255.255.255/32")!)], .return),
             Rule([.source(subnet), .destination(subnet, negated: true), .transport(.tcp)], .masquerade(ports: 1024...65535)),
             Rule([.source(subnet), .destination(subnet, negated: true), .transport(.udp)], .masquerade(ports: 1024...65535)),
             Rule([.source(subnet), .destination(subnet, negated: true)], .masquerade(ports: nil))]
        }
        let checksum = ipv4.isEmpty ? [] : [Rule(
            [.outInterface(bridge), .destinationPorts(.udp, [68])], .checksumFill,
            comment: "DHCP replies to guests carry no checksum (a longstanding bug); fill it in.")]
        let input = [Rule([.inInterface(bridge), .destinationPorts(.udp, [53, 67])], .accept, comment: "DNS and DHCP from guests."),
                     Rule([.inInterface(bridge), .destinationPorts(.tcp, [53, 67])], .accept)]
        return RuleSet(family: .ipv4, tables: [
            Table(.nat, nat.isEmpty ? [] : [Chain(chain("NAT"), hook: .postrouting, nat)]),
            Table(.mangle, checksum.isEmpty ? [] : [Chain(chain("CSUM"), hook: .postrouting, checksum)]),
            Table(.filter, [Chain(chain("IN"), hook: .input, input),
                            Chain(chain("FWD"), hook: .forward, forwardRules(ipv4))]),
        ])
    }

    /// The IPv6 rules, or `nil` without IPv6.
    public var ipv6Rules: RuleSet? {
        guard !ipv6.isEmpty else { return nil }
        var input = [Rule([.inInterface(bridge), .destinationPorts(.udp, [53])], .accept),
                     Rule([.inInterface(bridge), .destinationPorts(.tcp, [53])], .accept)]
        if dhcpv6 { input.append(Rule([.inInterface(bridge), .destinationPorts(.udp, [547])], .accept)) }
        return RuleSet(family: .ipv6, tables: [
            Table(.filter, [Chain(chain("IN"), hook: .input, input), Chain(chain("FWD"), hook: .forward, forwardRules(ipv6))]),
        ])
    }

    /// Inbound traffic reaches a private (masqueraded) subnet only as replies; public subnets are
    /// reached both ways; guests talk among themselves; DNAT'ed traffic (port forwards) passes;
    /// everything else to or from the bridge is refused.
    private func forwardRules(_ subnets: [Subnet]) -> [Rule] {
        var rules: [Rule] = []
        for subnet in subnets {
            rules.append(isPrivate(subnet)
                ? Rule([.destination(subnet), .outInterface(bridge), .connectionState([.related, .established])], .accept)
                : Rule([.destination(subnet), .outInterface(bridge)], .accept))
            rules.append(Rule([.source(subnet), .inInterface(bridge)], .accept))
        }
        return rules + [Rule([.inInterface(bridge), .outInterface(bridge)], .accept),
                        Rule([.outInterface(bridge), .destinationNATed], .accept),
                        Rule([.inInterface(bridge)], .reject),
                        Rule([.outInterface(bridge)], .reject)]
    }

    /// The comment heading the IPv4 and the IPv6 restore input, printed and applied alike.
    public var ipv4Header: String { "vmctl: host firewall for open network \(network) (bridge \(bridge)); iptables-restore --noflush" }
    public var ipv6Header: String { "vmctl: host IPv6 firewall for open network \(network) (bridge \(bridge)); ip6tables-restore --noflush" }

    /// iptables-restore input for IPv4.
    public var iptables: String { ipv4Rules.iptablesRestore(header: ipv4Header) }

    /// ip6tables-restore input, or `nil` without IPv6.
    public var ip6tables: String? { ipv6Rules?.iptablesRestore(header: ipv6Header) }

    /// The jumps from the built-in chains into vmctl's, for iptables (`ipv6` false) or ip6tables.
    public func jumps(ipv6 family6: Bool) -> [Jump] {
        family6 ? ipv6Rules?.jumps ?? [] : ipv4Rules.jumps
    }

    /// The nft table's name: `vmctl_<bridge>`.
    public var nftTable: String { "vmctl_" + bridge.replacingOccurrences(of: "-", with: "_") }

    /// The same rules as one nft table (`nft -f`), replacing any earlier version of it. nft has no
    /// checksum-fill: guests with old DHCP clients may need the iptables form.
    public var nft: String {
        nftScript([ipv4Rules] + (ipv6Rules.map { [$0] } ?? []), table: nftTable,
                  header: "vmctl: host firewall for open network \(network) (bridge \(bridge)); nft -f")
    }

    /// The text `network firewall --format iptables` prints: both restore inputs, each with the
    /// jumps it needs as comments.
    public var iptablesWithJumps: String {
        var text = iptables + ipv4Rules.jumps.map { "# once: " + ipv4Rules.command(for: $0).joined(separator: " ") + "\n" }.joined()
        if let v6 = ipv6Rules, let restore = ip6tables {
            text += restore + v6.jumps.map { "# once: " + v6.command(for: $0).joined(separator: " ") + "\n" }.joined()
        }
        return text
    }
}
