import Addressing
import AllocationStore
import LibvirtXML
import Testing
@testable import Provisioning

@Suite("open network firewall rules")
struct FirewallRulesTests {
    func rules(_ ips: String) throws -> FirewallRules {
        FirewallRules(try NetworkDefinition(xml: "<network><name>o</name><forward mode='open'/><bridge name='vmbr4'/>\(ips)</network>"))
    }

    @Test("a private IPv4 subnet is masqueraded and answered only for established traffic")
    func privateSubnet() throws {
        let r = try rules("<ip address='10.9.0.1' prefix='24'><dhcp><range start='10.9.0.100' end='10.9.0.200'/></dhcp></ip>")
        #expect(r.iptables.contains("-A VMCTL-NAT-vmbr4 -s 10.9.0.0/24 ! -d 10.9.0.0/24 -j MASQUERADE"))
        #expect(r.iptables.contains("-A VMCTL-FWD-vmbr4 -d 10.9.0.0/24 -o vmbr4 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"))
        #expect(r.iptables.contains("-A VMCTL-CSUM-vmbr4 -o vmbr4 -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill"))
        #expect(r.iptables.contains("-A VMCTL-IN-vmbr4 -i vmbr4 -p udp -m udp -m multiport --dports 53,67 -j ACCEPT"))
        #expect(r.jumps(ipv6: false).map(\.target) == ["VMCTL-IN-vmbr4", "VMCTL-FWD-vmbr4", "VMCTL-CSUM-vmbr4", "VMCTL-NAT-vmbr4"])
        #expect(r.ip6tables == nil)
        #expect(r.nft.contains("ip saddr 10.9.0.0/24 ip daddr != 10.9.0.0/24 masquerade"))
    }

    @Test("a public subnet is routed both ways, never masqueraded; IPv6 with DHCPv6 opens port 547")
    func publicDualStack() throws {
        let r = try rules("""
            <ip address='203.0.113.1' prefix='28'/>
            <ip family='ipv6' address='2001:db8:aa::1' prefix='64'><dhcp><range start='2001:db8:aa::100' end='2001:db8:aa::1ff'/></dhcp></ip>
            """)
        #expect(!r.iptables.contains("MASQUERADE"))
        #expect(!r.iptables.contains("*nat"))
        #expect(r.iptables.contains("-A VMCTL-FWD-vmbr4 -d 203.0.113.0/28 -o vmbr4 -j ACCEPT"))
        #expect(r.iptables.contains("-A VMCTL-FWD-vmbr4 -o vmbr4 -j REJECT --reject-with icmp-port-unreachable"))
        let v6 = try #require(r.ip6tables)
        #expect(v6.contains("-A VMCTL-FWD-vmbr4 -d 2001:db8:aa::/64 -o vmbr4 -j ACCEPT"))
        #expect(v6.contains("--dport 547 -j ACCEPT"))
        #expect(v6.contains("icmp6-port-unreachable"))
        #expect(!r.nft.contains("postrouting"))
        #expect(r.nft.hasPrefix("# vmctl: host firewall for open network o (bridge vmbr4); nft -f\ntable inet vmctl_vmbr4\ndelete table inet vmctl_vmbr4\n"))
    }

    @Test("a routed --all-usable pool outside the network's subnets is covered too (seed 000), as the fewest subnets; pools inside add nothing")
    func routedPools() throws {
        let definition = try NetworkDefinition(xml: """
            <network><name>o</name><forward mode='open'/><bridge name='vmbr4'/>
              <ip address='10.9.0.1' prefix='24'/><ip family='ipv6' address='2001:db8:aa::1' prefix='64'/></network>
            """)
        let routed = Pool(name: "pub", network: "o", layout: try PoolLayout(
            ranges: [AddressRange("203.0.113.16-203.0.113.31")!, AddressRange("2001:db8:bb::10-2001:db8:bb::11")!], subnets: [], allUsable: true), allUsable: true)
        let inside = Pool(name: "lan", network: "o", layout: try PoolLayout(
            ranges: [AddressRange("10.9.0.10-10.9.0.20")!], subnets: [(Subnet("10.9.0.0/24")!, IPAddress("10.9.0.1"))]), allUsable: false)
        let r = FirewallRules(definition, pools: [routed, inside])
        #expect(r.ipv4.map(\.description) == ["10.9.0.0/24", "203.0.113.16/28"])
        #expect(r.ipv6.map(\.description) == ["2001:db8:aa::/64", "2001:db8:bb::10/127"])
        #expect(r.iptables.contains("-A VMCTL-FWD-vmbr4 -d 203.0.113.16/28 -o vmbr4 -j ACCEPT"))
        #expect(r.iptables.contains("-A VMCTL-FWD-vmbr4 -s 203.0.113.16/28 -i vmbr4 -j ACCEPT"))
        #expect(!r.iptables.contains("-s 203.0.113.16/28 ! -d"))  // public: routed, never masqueraded
    }
}
