import Addressing
import Foundation
@testable import HostFirewall
import Testing
import TestSupport

/// Every rule set vmctl writes, compared whole with golden files: order and completeness count.
@Suite("firewall rule sets")
struct RuleSetTests {
    static func subnets(_ texts: [String]) -> [Subnet] { texts.map { Subnet($0)! } }

    /// The open networks of the seeds: private IPv4 (NAT'ed), a 172.16/12 one, public dual stack
    /// with DHCPv6, and public IPv4 alone.
    static let networks: [(String, FirewallRules)] = [
        ("private", FirewallRules(network: "lab", bridge: "vmbr4", ipv4: subnets(["10.9.0.0/24"]), ipv6: [], dhcpv6: false)),
        ("private-172", FirewallRules(network: "lab172", bridge: "vmbr5", ipv4: subnets(["172.20.0.0/24"]), ipv6: [], dhcpv6: false)),
        ("public-dual", FirewallRules(network: "public", bridge: "vmbr6", ipv4: subnets(["203.0.113.0/28"]),
                                      ipv6: subnets(["2001:db8:aa::/64"]), dhcpv6: true)),
        ("mixed-slaac", FirewallRules(network: "mixed", bridge: "vm-br7", ipv4: subnets(["192.168.7.0/24", "198.51.100.0/29"]),
                                      ipv6: subnets(["2001:db8:bb::/64"]), dhcpv6: false)),
    ]

    @Test("open networks: iptables, ip6tables and nft, whole", arguments: networks)
    func openNetwork(name: String, rules: FirewallRules) {
        #expect(goldenMismatch(rules.iptablesWithJumps, golden: "\(name).iptables") == nil)
        #expect(goldenMismatch(rules.nft, golden: "\(name).nft") == nil)
    }

    @Test("private IPv4 ranges are RFC 1918's, 172.16.0.0/12 whole")
    func privateRanges() {
        let rules = FirewallRules(network: "n", bridge: "b", ipv4: [], ipv6: [], dhcpv6: false)
        for text in ["10.0.0.0/8", "10.255.0.0/16", "172.16.0.0/24", "172.31.255.0/24", "192.168.1.0/24"] {
            #expect(rules.isPrivate(Subnet(text)!), "\(text)")
        }
        for text in ["172.15.0.0/24", "172.32.0.0/24", "203.0.113.0/24", "11.0.0.0/8", "192.169.0.0/16"] {
            #expect(!rules.isPrivate(Subnet(text)!), "\(text)")
        }
    }

    @Test("inbound traffic to a private subnet is only let through as replies; REJECT comes last")
    func forwardOrder() throws {
        let rules = try #require(Self.networks.first { $0.0 == "private" }?.1)
        let forward = try #require(rules.ipv4Rules.chain("VMCTL-FWD-vmbr4", in: .filter)).rules
        #expect(forward.first?.matches.contains(.connectionState([.related, .established])) == true)
        #expect(forward.suffix(2).map(\.verdict) == [.reject, .reject])
        #expect(forward.dropLast(2).allSatisfy { $0.verdict == .accept })
    }

    @Test("port forwards: DNAT from outside the bridge, accepted only as DNAT'ed traffic")
    func portForwards() {
        let rules = PortForwardRules(bridge: "vmbr0", forwards: [
            PortForwardRule(proto: .tcp, hostPort: 18080, guestAddress: IPAddress("10.0.10.5")!, guestPort: 80),
            PortForwardRule(proto: .udp, hostPort: 15353, guestAddress: IPAddress("10.0.10.6")!, guestPort: 53),
        ])
        #expect(goldenMismatch(rules.iptables, golden: "port-forwards.iptables") == nil)
        #expect(rules.rules.jumps.map(\.target) == ["VMCTL-PFWD-vmbr0", "VMCTL-DNAT-vmbr0"])
        let none = PortForwardRules(bridge: "vmbr0", forwards: [])
        #expect(goldenMismatch(none.iptables, golden: "port-forwards-none.iptables") == nil)
    }
}

@Suite("the host's routes and neighbours, as ip prints them")
struct HostNetworkParsingTests {
    @Test("host routes from ip -j route show: the bare address of a /32 or /128 and its device")
    func routes() {
        let v4 = #"[{"dst":"203.0.113.5","dev":"br0","scope":"link","flags":[]},{"dst":"default","dev":"eth0","gateway":"198.51.100.1","flags":[]}]"#
        let v6 = #"[{"dst":"2001:db8::5","dev":"br0","metric":1024,"flags":[],"pref":"medium"}]"#
        #expect(HostRoute.parse(v4) + HostRoute.parse(v6) == [HostRoute(address: IPAddress("203.0.113.5")!, bridge: "br0"),
                                                              HostRoute(address: IPAddress("2001:db8::5")!, bridge: "br0")])
        #expect(HostRoute.parse("").isEmpty)
    }

    @Test("neighbours from ip -j neigh show: only confirmed ones (REACHABLE, PERMANENT), with their MAC")
    func neighbours() {
        let json = #"""
            [{"dst":"203.0.113.5","lladdr":"52:54:00:00:00:01","state":["REACHABLE"]},
             {"dst":"203.0.113.6","lladdr":"52:54:00:00:00:02","state":["STALE"]},
             {"dst":"203.0.113.7","state":["FAILED"]},
             {"dst":"2001:db8::7","lladdr":"52:54:00:00:00:03","state":["PERMANENT"]}]
            """#
        #expect(Neighbour.parse(json) == [Neighbour(address: IPAddress("203.0.113.5")!, mac: MACAddress("52:54:00:00:00:01")!),
                                          Neighbour(address: IPAddress("2001:db8::7")!, mac: MACAddress("52:54:00:00:00:03")!)])
    }
}
