import Addressing
import LibvirtXML

/// The host firewall an `open` network needs (seeds 002 "Custom NAT" and 004 "Custom routed"):
/// forwarding for its subnets, NAT for private IPv4 subnets, DHCP and DNS from guests, and the
/// DHCP checksum fix. Pure: rendered from the network's definition, in iptables-restore or nft form.
struct FirewallRules: Equatable {
    var network: String
    var bridge: String
    var ipv4: [Subnet]
    var ipv6: [Subnet]
    var dhcpv6: Bool

    init(_ definition: NetworkDefinition) {
        network = definition.name
        bridge = definition.bridge ?? ""
        ipv4 = definition.ips.map(\.subnet).filter { $0.family == .ipv4 }
        ipv6 = definition.ips.map(\.subnet).filter { $0.family == .ipv6 }
        dhcpv6 = definition.ips.contains { $0.subnet.family == .ipv6 && $0.dhcpRange != nil }
    }

    /// Private (RFC 1918) IPv4 subnets are masqueraded; public ones are routed as they are.
    func isPrivate(_ subnet: Subnet) -> Bool {
        ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"].compactMap { Subnet($0) }.contains { $0.contains(subnet.network) }
    }

    /// vmctl's own chains, one set per network, so that rules can be replaced without touching
    /// anyone else's: `VMCTL-IN-<bridge>`, `VMCTL-FWD-<bridge>`, `VMCTL-NAT-<bridge>`, `VMCTL-CSUM-<bridge>`.
    func chain(_ kind: String) -> String { "VMCTL-\(kind)-\(bridge)" }

    /// iptables-restore input (apply with `--noflush`): chains are declared (and so emptied) and
    /// filled; the jumps from the built-in chains are listed apart, in `jumps`.
    var iptables: String {
        var out = ["# vmctl: host firewall for open network \(network) (bridge \(bridge)); iptables-restore --noflush"]
        var nat: [String] = []
        for subnet in ipv4 where isPrivate(subnet) {
            let s = subnet.description
            nat += ["-A \(chain("NAT")) -s \(s) -d 224.0.0.0/24 -j RETURN",
                    "-A \(chain("NAT")) -s \(s) -d 255.255.255.255/32 -j RETURN",
                    "-A \(chain("NAT")) -s \(s) ! -d \(s) -p tcp -j MASQUERADE --to-ports 1024-65535",
                    "-A \(chain("NAT")) -s \(s) ! -d \(s) -p udp -j MASQUERADE --to-ports 1024-65535",
                    "-A \(chain("NAT")) -s \(s) ! -d \(s) -j MASQUERADE"]
        }
        if !nat.isEmpty { out += ["*nat", ":\(chain("NAT")) - [0:0]"] + nat + ["COMMIT"] }
        if !ipv4.isEmpty {
            out += ["*mangle", ":\(chain("CSUM")) - [0:0]",
                    "# DHCP replies to guests carry no checksum (a longstanding bug); fill it in.",
                    "-A \(chain("CSUM")) -o \(bridge) -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill", "COMMIT"]
        }
        out += ["*filter", ":\(chain("IN")) - [0:0]", ":\(chain("FWD")) - [0:0]",
                "# DNS and DHCP from guests.",
                "-A \(chain("IN")) -i \(bridge) -p udp -m udp -m multiport --dports 53,67 -j ACCEPT",
                "-A \(chain("IN")) -i \(bridge) -p tcp -m tcp -m multiport --dports 53,67 -j ACCEPT"]
        out += forwardRules(ipv4, reject: "icmp-port-unreachable", natted: isPrivate)
        out += ["COMMIT"]
        return out.joined(separator: "\n") + "\n"
    }

    /// ip6tables-restore input, or `nil` without IPv6.
    var ip6tables: String? {
        guard !ipv6.isEmpty else { return nil }
        var out = ["# vmctl: host IPv6 firewall for open network \(network) (bridge \(bridge)); ip6tables-restore --noflush",
                   "*filter", ":\(chain("IN")) - [0:0]", ":\(chain("FWD")) - [0:0]",
                   "-A \(chain("IN")) -i \(bridge) -p udp -m udp --dport 53 -j ACCEPT",
                   "-A \(chain("IN")) -i \(bridge) -p tcp -m tcp --dport 53 -j ACCEPT"]
        if dhcpv6 { out.append("-A \(chain("IN")) -i \(bridge) -p udp -m udp --dport 547 -j ACCEPT") }
        out += forwardRules(ipv6, reject: "icmp6-port-unreachable", natted: { _ in false })
        out += ["COMMIT"]
        return out.joined(separator: "\n") + "\n"
    }

    private func forwardRules(_ subnets: [Subnet], reject: String, natted: (Subnet) -> Bool) -> [String] {
        var rules: [String] = []
        for subnet in subnets {
            let s = subnet.description
            rules.append(natted(subnet)
                ? "-A \(chain("FWD")) -d \(s) -o \(bridge) -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
                : "-A \(chain("FWD")) -d \(s) -o \(bridge) -j ACCEPT")
            rules.append("-A \(chain("FWD")) -s \(s) -i \(bridge) -j ACCEPT")
        }
        return rules + ["-A \(chain("FWD")) -i \(bridge) -o \(bridge) -j ACCEPT",
                        "-A \(chain("FWD")) -o \(bridge) -m conntrack --ctstate DNAT -j ACCEPT",
                        "-A \(chain("FWD")) -i \(bridge) -j REJECT --reject-with \(reject)",
                        "-A \(chain("FWD")) -o \(bridge) -j REJECT --reject-with \(reject)"]
    }

    /// The jumps from the built-in chains into vmctl's: (table, built-in chain, vmctl chain), for
    /// iptables (`ipv6` false) or ip6tables.
    func jumps(ipv6 family6: Bool) -> [(table: String, chain: String, target: String)] {
        if family6 { return ipv6.isEmpty ? [] : [("filter", "INPUT", chain("IN")), ("filter", "FORWARD", chain("FWD"))] }
        var jumps: [(String, String, String)] = [("filter", "INPUT", chain("IN")), ("filter", "FORWARD", chain("FWD"))]
        if !ipv4.isEmpty { jumps.append(("mangle", "POSTROUTING", chain("CSUM"))) }
        if ipv4.contains(where: isPrivate) { jumps.append(("nat", "POSTROUTING", chain("NAT"))) }
        return jumps
    }

    /// The same rules as one nft table (`nft -f`), replacing any earlier version of it. nft has no
    /// checksum-fill: guests with old DHCP clients may need the iptables form.
    var nft: String {
        let table = "vmctl_" + bridge.replacingOccurrences(of: "-", with: "_")
        var forward: [String] = []
        for subnet in ipv4 {
            forward.append(isPrivate(subnet)
                ? "ip daddr \(subnet) oifname \"\(bridge)\" ct state related,established accept"
                : "ip daddr \(subnet) oifname \"\(bridge)\" accept")
            forward.append("ip saddr \(subnet) iifname \"\(bridge)\" accept")
        }
        for subnet in ipv6 {
            forward.append("ip6 daddr \(subnet) oifname \"\(bridge)\" accept")
            forward.append("ip6 saddr \(subnet) iifname \"\(bridge)\" accept")
        }
        forward += ["iifname \"\(bridge)\" oifname \"\(bridge)\" accept", "oifname \"\(bridge)\" ct status dnat accept",
                    "iifname \"\(bridge)\" reject", "oifname \"\(bridge)\" reject"]
        var input = ["iifname \"\(bridge)\" udp dport { 53, 67 } accept", "iifname \"\(bridge)\" tcp dport { 53, 67 } accept"]
        if dhcpv6 { input.append("iifname \"\(bridge)\" udp dport 547 accept") }
        var lines = ["# vmctl: host firewall for open network \(network) (bridge \(bridge)); nft -f",
                     "table inet \(table)", "delete table inet \(table)", "table inet \(table) {",
                     "  chain input {", "    type filter hook input priority 0; policy accept;"]
        lines += input.map { "    " + $0 } + ["  }", "  chain forward {", "    type filter hook forward priority 0; policy accept;"]
        lines += forward.map { "    " + $0 } + ["  }"]
        let natted = ipv4.filter(isPrivate)
        if !natted.isEmpty {
            lines += ["  chain postrouting {", "    type nat hook postrouting priority 100; policy accept;"]
            for subnet in natted {
                lines += ["    ip saddr \(subnet) ip daddr { 224.0.0.0/24, 255.255.255.255 } return",
                          "    ip saddr \(subnet) ip daddr != \(subnet) masquerade"]
            }
            lines += ["  }"]
        }
        return (lines + ["}"]).joined(separator: "\n") + "\n"
    }
}
