import Addressing
import AllocationStore
import Foundation
import Libvirt
import LibvirtXML
import Testing
@testable import Provisioning

@Suite("doctor's diagnosis")
struct DoctorTests {
    let pool = Pool(name: "p", network: "n",
                    layout: try! PoolLayout(ranges: [AddressRange("192.0.2.10-192.0.2.19")!],
                                            subnets: [(Subnet("192.0.2.0/24")!, IPAddress("192.0.2.1"))]),
                    allUsable: false)
    let owner = UUID()

    func allocation(_ last: Int, mac: String, ownerUUID: UUID? = nil) -> Allocation {
        Allocation(pool: "p", network: "n", address: IPAddress("192.0.2.\(last)")!, ownerUUID: ownerUUID,
                   ownerName: "vm\(last)", mac: MACAddress(mac)!)
    }

    func network(_ hosts: String) -> NetworkDefinition {
        try! NetworkDefinition(xml: """
            <network><name>n</name><forward mode='nat'/>
              <ip address='192.0.2.1' prefix='24'><dhcp><range start='192.0.2.100' end='192.0.2.200'/>\(hosts)</dhcp></ip>
            </network>
            """)
    }

    @Test("a consistent state has no findings")
    func consistent() {
        let hosts = "<host mac='52:54:00:00:00:0a' name='vm10' ip='192.0.2.10'/>"
        let findings = diagnose(
            allocations: [allocation(10, mac: "52:54:00:00:00:0a", ownerUUID: owner)], pools: [pool],
            networks: ["n": NetworkView(live: network(hosts), persistent: network(hosts))], domains: [owner])
        #expect(findings.isEmpty)
    }

    @Test("each kind of disagreement is found, with the copies it concerns")
    func everyFinding() {
        let a10 = allocation(10, mac: "52:54:00:00:00:0a", ownerUUID: owner)  // its VM is gone
        let a11 = allocation(11, mac: "52:54:00:00:00:0b")                   // entry only live
        let a12 = allocation(12, mac: "52:54:00:00:00:0c")                   // no entry at all
        let a13 = allocation(13, mac: "52:54:00:00:00:0d")                   // leased to another MAC
        let live = network("""
            <host mac='52:54:00:00:00:0a' ip='192.0.2.10'/><host mac='52:54:00:00:00:0b' ip='192.0.2.11'/>
            <host mac='52:54:00:00:00:0d' ip='192.0.2.13'/><host mac='52:54:00:00:00:99' ip='192.0.2.15'/>
            <host mac='52:54:00:00:00:98' ip='192.0.2.150'/>
            """)
        let persistent = network("""
            <host mac='52:54:00:00:00:0a' ip='192.0.2.10'/><host mac='52:54:00:00:00:0d' ip='192.0.2.13'/>
            <host mac='52:54:00:00:00:99' ip='192.0.2.15'/>
            """)
        let lease = DHCPLease(interface: "vmbr0", expiry: Date(), family: .ipv4, mac: "52:54:00:00:00:77", iaid: nil,
                              address: "192.0.2.13", prefix: 24, hostname: nil, clientID: nil)
        let gone = allocation(14, mac: "52:54:00:00:00:0e")
        var elsewhere = gone
        elsewhere.network = "deleted-net"
        let findings = diagnose(
            allocations: [a10, a11, a12, a13, elsewhere], pools: [pool],
            networks: ["n": NetworkView(live: live, persistent: persistent, leases: [lease])], domains: [])
        #expect(findings.map(\.kind) == [.ownerGone, .entryDrift, .entryMissing, .leaseByOtherMAC, .networkGone, .entryWithoutOwner])
        #expect(findings[0].address == a10.address)
        #expect(findings[1].presentIn == ["live"])
        #expect(findings[3].mac == MACAddress("52:54:00:00:00:77") && !findings[3].fixable)
        #expect(findings[5].address == IPAddress("192.0.2.15") && findings[5].presentIn == ["live", "persistent"])
        // 192.0.2.150 is outside every pool: someone else's entry, not vmctl's business.
        #expect(!findings.contains { $0.address == IPAddress("192.0.2.150") })
        #expect(findings[2].message.contains("192.0.2.12 on n (owner vm12, pool p): no DHCP host entry"))
    }

    @Test("on a transient network only the live config counts")
    func transientNetwork() {
        let hosts = "<host mac='52:54:00:00:00:0b' ip='192.0.2.11'/>"
        let view = NetworkView(live: network(hosts), persistent: nil)
        #expect(view.existingCopies == .live)
        #expect(diagnose(allocations: [allocation(11, mac: "52:54:00:00:00:0b")], pools: [pool],
                         networks: ["n": view], domains: []).isEmpty)
        let missing = diagnose(allocations: [allocation(12, mac: "52:54:00:00:00:0c")], pools: [pool],
                               networks: ["n": view], domains: [])
        #expect(missing.map(\.kind) == [.entryMissing, .entryWithoutOwner])
    }

    @Test("on a stopped network only the persistent config counts")
    func stoppedNetwork() {
        let hosts = "<host mac='52:54:00:00:00:0b' ip='192.0.2.11'/>"
        let findings = diagnose(allocations: [allocation(11, mac: "52:54:00:00:00:0b")], pools: [pool],
                                networks: ["n": NetworkView(live: nil, persistent: network(hosts))], domains: [])
        #expect(findings.isEmpty)
    }
}
