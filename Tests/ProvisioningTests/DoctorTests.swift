import Addressing
import AllocationStore
import Foundation
import HostFirewall
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

    @Test("host routes: a routed allocation without its route, and vmctl's route that no allocation holds, on bridges in this namespace only")
    func routes() {
        let open = try! NetworkDefinition(xml: """
            <network><name>n</name><forward mode='open'/><bridge name='vb5'/><ip address='192.0.2.1' prefix='24'/></network>
            """)
        let routed = Allocation(pool: "pub", network: "n", address: IPAddress("203.0.113.16")!, ownerUUID: owner, ownerName: "edge1", mac: MACAddress("52:54:00:00:00:10")!)
        let held = Allocation(pool: "pub", network: "n", address: IPAddress("203.0.113.17")!, ownerUUID: owner, ownerName: "edge2", mac: MACAddress("52:54:00:00:00:11")!)
        let inside = allocation(10, mac: "52:54:00:00:00:0a", ownerUUID: owner)
        let routes = [HostRoute(address: IPAddress("203.0.113.17")!, bridge: "vb5"), HostRoute(address: IPAddress("203.0.113.30")!, bridge: "vb5"),
                      HostRoute(address: IPAddress("198.51.100.9")!, bridge: "gone0")]
        let views = ["n": NetworkView(live: open, persistent: open)]
        let findings = diagnoseRoutes(allocations: [routed, held, inside], networks: views, routes: routes, bridgesHere: ["vb5"], canChangeRoutes: true)
        #expect(findings.map { "\($0.kind.rawValue) \($0.address) \($0.bridge ?? "-") \($0.network)" } == [
            "routeMissing 203.0.113.16 vb5 n", "routeWithoutOwner 198.51.100.9 gone0 ", "routeWithoutOwner 203.0.113.30 vb5 n"])
        #expect(findings[0].message == "203.0.113.16 on n (owner edge1, pool pub): no host route to bridge vb5, the guest is unreachable; --fix adds it")
        #expect(findings[1].message == "198.51.100.9: vmctl's host route to bridge gone0 that no allocation holds; --fix removes it")
        // Where the bridge is not in this namespace, nothing is expected of its routes; a stopped network neither.
        #expect(diagnoseRoutes(allocations: [routed], networks: views, routes: [], bridgesHere: [], canChangeRoutes: true).isEmpty)
        #expect(diagnoseRoutes(allocations: [routed], networks: ["n": NetworkView(live: nil, persistent: open)], routes: [], bridgesHere: ["vb5"], canChangeRoutes: true).isEmpty)
        #expect(diagnoseRoutes(allocations: [routed], networks: views, routes: [], bridgesHere: ["vb5"], canChangeRoutes: false).first?.fixable == false)
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
