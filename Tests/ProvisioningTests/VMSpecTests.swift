import Addressing
import Foundation
import HostFirewall
import Libvirt
import LibvirtXML
import Testing
@testable import Provisioning

@Suite("VM specs")
struct VMSpecTests {
    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "" } catch { return "\(error)" }
    }

    @Test("--network: every key, and each bad part named")
    func nicSpecs() throws {
        let full = try NICSpec(parsing: "lan,pool=p1,ip=203.0.113.9,ip=2001:db8::9,mac=52:54:00:AA:bb:01,model=e1000")
        #expect(full.network == "lan")
        #expect(full.pool == "p1")
        #expect(full.addresses.map(\.description) == ["203.0.113.9", "2001:db8::9"])
        #expect(full.mac?.description == "52:54:00:aa:bb:01")
        #expect(full.model == "e1000")
        #expect(try NICSpec(parsing: "lan").model == "virtio")
        #expect(message { _ = try NICSpec(parsing: "lan,ip=300.1.1.1") }.contains("ip=300.1.1.1"))
        #expect(message { _ = try NICSpec(parsing: "lan,ip=10.0.0.1,ip=10.0.0.2") }.contains("one ip= per address family"))
        #expect(message { _ = try NICSpec(parsing: "lan,mac=01:00:5e:00:00:01") }.contains("mac=01:00:5e:00:00:01"))
        #expect(message { _ = try NICSpec(parsing: "lan,model=ne2k") }.contains("model=ne2k"))
        #expect(message { _ = try NICSpec(parsing: "lan,colour=red") }.contains("unknown key 'colour'"))
        #expect(message { _ = try NICSpec(parsing: "pool=p1") }.contains("start with the network's name"))
        #expect(message { _ = try NICSpec(parsing: "lan,pool") }.contains("'pool' is not KEY=VALUE"))
    }

    @Test("sizes, durations and labels")
    func scalars() throws {
        #expect(try ByteSize(parsing: "512M", what: "x").bytes == 512 << 20)
        #expect(try ByteSize(parsing: "10G", what: "x").bytes == 10 << 30)
        #expect(try ByteSize(parsing: "1.5GiB", what: "x").bytes == 3 << 29)
        #expect(try ByteSize(parsing: "2t", what: "x").description == "2T")
        #expect(message { _ = try ByteSize(parsing: "10", what: "--disk-size") } .contains("invalid --disk-size '10'"))
        #expect(message { _ = try ByteSize(parsing: "-1G", what: "--disk-size") }.contains("'-1G'"))
        #expect(try DataDiskSpec(parsing: "size=4G").size.bytes == 4 << 30)
        #expect(message { _ = try DataDiskSpec(parsing: "4G") }.contains("size=SIZE"))
        #expect(try parseDuration("90m") == 5400)
        #expect(try parseDuration("1h30m") == 5400)
        #expect(try parseDuration("2d") == 172_800)
        #expect(message { _ = try parseDuration("90") }.contains("'90'"))
        #expect(message { _ = try parseDuration("1w") }.contains("'1w'"))
        #expect(try parseLabel("ci.job=1234").key == "ci.job")
        #expect(try parseLabel("empty=").value == "")
        #expect(message { _ = try parseLabel("novalue") }.contains("'novalue'"))
        #expect(message { _ = try parseLabel("bad key=1") }.contains("'bad key=1'"))
        #expect(diskTarget(0) == "vda" && diskTarget(1) == "vdb" && diskTarget(26) == "vdaa")
    }

    @Test("derived MACs are deterministic, in 52:54:00, and differ per seed")
    func derivedMACs() {
        let first = MACAddress.derived(from: "web1/0")
        #expect(first == MACAddress.derived(from: "web1/0"))
        #expect(first.bytes.prefix(3) == [0x52, 0x54, 0x00])
        #expect(!first.isMulticast)
        #expect(MACAddress.inDUIDLL(first.duidLL) == first)
        #expect(MACAddress.inDUIDLL("00:01:00:01:2a:2b:2c:2d:52:54:00:00:00:01") == nil)
        let many = Set((0..<1000).map { MACAddress.derived(from: "vm\($0)/0") })
        #expect(many.count >= 999)  // 24 bits: a collision among 1,000 is possible, more is not plausible
    }

    @Test("cloud-init: DHCPv4 where dnsmasq serves the reservation, static otherwise (a /32 with an on-link gateway for a routed --all-usable address, no DHCP beside it)")
    func guestNetworkConfiguration() throws {
        let network = try NetworkDefinition(xml: """
            <network><name>pub</name><forward mode='open'/><bridge name='vb1'/>
              <ip address='192.0.2.1' prefix='24'><dhcp><range start='192.0.2.100' end='192.0.2.200'/></dhcp></ip>
              <ip family='ipv6' address='2001:db8:aa::1' prefix='64'/></network>
            """)
        let mac = MACAddress("52:54:00:00:00:01")!
        // The routed address alone: static only, although the network serves DHCPv4.
        let routed = try guestConfiguration(mac: mac, addresses: [IPAddress("203.0.113.90")!, IPAddress("2001:db8:aa::10")!], network: network)
        #expect(!routed.dhcp4 && !routed.dhcp6 && !routed.acceptRA)
        #expect(routed.addresses.map { "\($0.address)/\($0.prefix)" } == ["203.0.113.90/32", "2001:db8:aa::10/64"])
        #expect(routed.gateway4 == IPAddress("192.0.2.1") && routed.gateway6 == IPAddress("2001:db8:aa::1"))
        // A reservation dnsmasq serves: DHCPv4; IPv6 unreserved on a SLAAC subnet: the EUI-64 address.
        let served = try guestConfiguration(mac: mac, addresses: [IPAddress("192.0.2.10")!], network: network)
        #expect(served.dhcp4 && !served.dhcp6 && served.acceptRA && served.gateway4 == nil && served.gateway6 == nil)
        #expect(served.addresses.map { "\($0.address)/\($0.prefix)" } == ["2001:db8:aa:0:5054:ff:fe00:1/64"])
        let seed = CloudInitSeed(instanceID: "web1-1", hostname: "web1", sshKeys: ["ssh-ed25519 AAAA key\"1"], userData: nil, nics: [routed, served])
        #expect(seed.networkConfig == """
            ethernets:
              nic0:
                addresses:
                - 203.0.113.90/32
                - 2001:db8:aa::10/64
                dhcp4: false
                dhcp6: false
                gateway4: 192.0.2.1
                gateway6: 2001:db8:aa::1
                match:
                  macaddress: '52:54:00:00:00:01'
              nic1:
                accept-ra: true
                addresses:
                - 2001:db8:aa:0:5054:ff:fe00:1/64
                dhcp4: true
                dhcp6: false
                match:
                  macaddress: '52:54:00:00:00:01'
            version: 2

            """)
        #expect(seed.metaData == "instance-id: \"web1-1\"\nlocal-hostname: \"web1\"\npublic-keys:\n  - \"ssh-ed25519 AAAA key\\\"1\"\n")
        #expect(seed.userDataText == "#cloud-config\nmanage_etc_hosts: localhost\n")
        #expect(CloudInitSeed(instanceID: "i", hostname: "h", sshKeys: [], userData: " \n", nics: []).userDataText == seed.userDataText)
        #expect(CloudInitSeed(instanceID: "i", hostname: "h", sshKeys: [], userData: "#cloud-config\n{}\n", nics: []).userDataText == "#cloud-config\n{}\n")
        let isolated = try NetworkDefinition(xml: "<network><name>iso</name></network>")
        #expect(message { _ = try guestConfiguration(mac: mac, addresses: [IPAddress("203.0.113.9")!], network: isolated) }
            .contains("has no IPv4 address"))
    }

    @Test("cloud-init: a DHCPv6 reservation is static too; DHCPv6 without one; SLAAC's address is the MAC's modified EUI-64")
    func guestIPv6Configuration() throws {
        let dhcp6 = try NetworkDefinition(xml: """
            <network><name>v6</name><forward mode='route'/><bridge name='vb2'/>
              <ip family='ipv6' address='2001:db8:bb::1' prefix='64'><dhcp><range start='2001:db8:bb::100' end='2001:db8:bb::1ff'/></dhcp></ip></network>
            """)
        let mac = MACAddress("52:54:00:ab:cd:ef")!
        let reserved = try guestConfiguration(mac: mac, addresses: [IPAddress("2001:db8:bb::20")!], network: dhcp6)
        #expect(!reserved.dhcp4 && !reserved.dhcp6 && reserved.gateway6 == IPAddress("2001:db8:bb::1"))
        #expect(reserved.addresses.map { "\($0.address)/\($0.prefix)" } == ["2001:db8:bb::20/64"])
        let dynamic = try guestConfiguration(mac: mac, addresses: [], network: dhcp6)
        #expect(dynamic.dhcp6 && dynamic.addresses.isEmpty && !dynamic.acceptRA)
        let bridged = try NetworkDefinition(xml: "<network><name>lan</name><forward mode='bridge'/><bridge name='br0'/></network>")
        let onLAN = try guestConfiguration(mac: mac, addresses: [], network: bridged)
        #expect(onLAN.dhcp4 && !onLAN.dhcp6 && onLAN.addresses.isEmpty)  // the LAN's DHCP server
        // One default route a family: the first NIC's (DHCPv4 here), not a later NIC's gateway.
        let routed = CloudInitSeed.NIC(mac: MACAddress("52:54:00:ab:cd:01")!, dhcp4: false, dhcp6: false, addresses: [(IPAddress("203.0.113.9")!, 32)],
                                       gateway4: IPAddress("192.0.2.1"), gateway6: IPAddress("2001:db8:cc::1"))
        let nics = CloudInitSeed.NIC.oneDefaultRoutePerFamily([onLAN, reserved, routed])
        #expect(nics.map { "\($0.gateway4?.description ?? "-") \($0.gateway6?.description ?? "-")" } == ["- -", "- 2001:db8:bb::1", "- -"])
        #expect(slaacAddress(of: MACAddress("02:00:00:00:00:01")!, in: Subnet("fd00:1::/64")!) == IPAddress("fd00:1::ff:fe00:1"))
        #expect(slaacAddress(of: mac, in: Subnet("2001:db8:cc::/64")!) == IPAddress("2001:db8:cc::5054:ff:feab:cdef"))
    }

    @Test("waiting for addresses: leases by MAC, any IPv4 lease, every static address of the seed answering from the NIC's MAC")
    func addressExpectations() throws {
        let mac = MACAddress("52:54:00:00:00:07")!
        func domain(seed: Bool) throws -> DomainDefinition {
            try DomainDefinition(xml: """
                <domain type='qemu'><name>w</name><metadata>
                  <vmctl:vm xmlns:vmctl='\(VMMetadata.namespace)'><vmctl:created>2026-11-21T10:00:00Z</vmctl:created>
                    \(seed ? "<vmctl:volume pool='vmctl' name='w-seed.iso' path='/s/w-seed.iso' role='seed'/>" : "")
                    <vmctl:address pool='p' network='lan' ip='192.0.2.10' mac='\(mac)'/>
                    <vmctl:address pool='q' network='lan' ip='203.0.113.5' mac='\(mac)'/></vmctl:vm></metadata>
                  <devices><interface type='network'><source network='lan'/><mac address='\(mac)'/></interface>
                    <interface type='network'><source network='lan'/><mac address='52:54:00:00:00:08'/></interface></devices></domain>
                """)
        }
        let lan = try NetworkDefinition(xml: """
            <network><name>lan</name><bridge name='vb7'/><ip address='192.0.2.1' prefix='24'><dhcp><range start='192.0.2.100' end='192.0.2.200'/></dhcp></ip>
              <ip family='ipv6' address='2001:db8:77::1' prefix='64'/></network>
            """)
        let expectations = AddressExpectation.of(try domain(seed: true), networks: ["lan": lan])
        #expect(expectations.count == 2)
        #expect(expectations[0].leased == [IPAddress("192.0.2.10")!])
        // The routed address and SLAAC's EUI-64 address, both configured by the seed.
        #expect(expectations[0].neighbours == [IPAddress("203.0.113.5")!, IPAddress("2001:db8:77::5054:ff:fe00:7")!])
        #expect(expectations[1].anyIPv4Lease && expectations[1].leased.isEmpty)
        #expect(expectations[1].neighbours == [IPAddress("2001:db8:77::5054:ff:fe00:8")!])
        // Without a seed nothing configures SLAAC's address for the guest: only the reservations.
        #expect(AddressExpectation.of(try domain(seed: false), networks: ["lan": lan])[0].neighbours == [IPAddress("203.0.113.5")!])
        func lease(_ mac: String, _ address: String) -> DHCPLease {
            DHCPLease(interface: "vb", expiry: Date(), family: .ipv4, mac: mac, iaid: nil, address: address, prefix: 24, hostname: nil, clientID: nil)
        }
        let answering: Set<Neighbour> = [Neighbour(address: IPAddress("203.0.113.5")!, mac: mac),
                                         Neighbour(address: IPAddress("2001:db8:77::5054:ff:fe00:7")!, mac: mac)]
        #expect(expectations[0].missing(leases: [], answering: .neighbours([])) == [
            "192.0.2.10 (lease on lan)", "203.0.113.5 (neighbour of vb7)", "2001:db8:77:0:5054:ff:fe00:7 (neighbour of vb7)"])
        #expect(expectations[0].missing(leases: [lease("52:54:00:00:00:08", "192.0.2.10")], answering: .neighbours(answering)) == ["192.0.2.10 (lease on lan)"])
        #expect(expectations[0].missing(leases: [lease(mac.description, "192.0.2.10")], answering: .neighbours(answering)).isEmpty)
        // Another MAC answering for the address is not this guest.
        let impostor: Set<Neighbour> = [Neighbour(address: IPAddress("203.0.113.5")!, mac: MACAddress("52:54:00:00:00:09")!)]
        #expect(expectations[0].missing(leases: [lease(mac.description, "192.0.2.10")], answering: .neighbours(impostor)).count == 2)
        // libvirt's ARP source has no IPv6 and no MACs.
        #expect(expectations[0].missing(leases: [lease(mac.description, "192.0.2.10")], answering: .arp([IPAddress("203.0.113.5")!], error: nil)).isEmpty)
        #expect(expectations[1].missing(leases: [lease("52:54:00:00:00:08", "192.0.2.150")], answering: .arp([], error: "wrong nlmsg len")).isEmpty)
    }

    @Test("list opens more connections only to a local daemon: not over SSH or TCP, not to the test driver")
    func sideConnections() {
        for uri in ["qemu:///system", "qemu:///session", "qemu:///system?socket=/tmp/vmctl-test/run/libvirt-sock", "lxc:///system", "qemu+unix:///system"] {
            #expect(VMReader.sideConnectionsAllowed(to: uri), "\(uri)")
        }
        for uri in ["qemu+ssh://root@host1/system", "qemu+tcp://host1/system", "qemu://host1/system", "qemu+libssh2://host1/system",
                    "test:///default", "test:///tmp/node.xml", "", "not a uri"] {
            #expect(!VMReader.sideConnectionsAllowed(to: uri), "\(uri)")
        }
    }

    @Test("many power-offs at once take a connection per four calls, at most four connections")
    func powerLanes() {
        let counts = [0, 1, 4, 5, 8, 9, 10, 16, 17, 50].map(PowerLanes.connectionCount(forCalls:))
        #expect(counts == [1, 1, 1, 2, 2, 3, 3, 4, 4, 4])
    }
}
