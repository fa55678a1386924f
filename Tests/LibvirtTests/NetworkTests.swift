import Foundation
import Testing
@testable import Libvirt

@Suite("Network")
struct NetworkTests {
    @Test("define, start, update DHCP hosts live and persistently, stop and undefine")
    func lifecycleAndUpdate() async throws {
        let connection = try await TestDriver.connect()
        let name = TestDriver.uniqueName("net")
        let network = try await connection.defineNetwork(xml: TestDriver.networkXML(name: name, bridge: "vt-\(name.suffix(8))", subnet: 1))
        #expect(try await connection.network(named: name).uuid == network.uuid)
        #expect(try await connection.network(uuid: network.uuid).name == name)
        try await network.start()
        #expect(try await network.isActive())
        #expect(try await network.bridgeName() == "vt-\(name.suffix(8))")
        try await network.setAutostart(true)
        #expect(try await network.autostart())

        let host = "<host mac='52:54:00:00:00:01' name='web' ip='10.99.1.42'/>"
        try await network.update(.add, .dhcpHost, parentIndex: 0, xml: host, affecting: [.live, .config])
        // (The test driver has no separate persistent XML; the integration tests check it.)
        #expect(try await network.xml().contains("ip='10.99.1.42'"))

        // A second entry with the same address is refused: ADD compares mac, name and ip.
        let clash = "<host mac='52:54:00:00:00:02' name='other' ip='10.99.1.42'/>"
        let error = await #expect(throws: LibvirtError.self) {
            try await network.update(.add, .dhcpHost, parentIndex: 0, xml: clash, affecting: [.live, .config])
        }
        #expect(error?.code == .operationInvalid)

        // IPv6 hosts go under the second <ip> by its explicit index.
        let host6 = "<host id='00:03:00:01:52:54:00:00:00:01' name='web' ip='fd00:99:1::42'/>"
        try await network.update(.add, .dhcpHost, parentIndex: 1, xml: host6, affecting: [.live, .config])
        #expect(try await network.xml().contains("ip='fd00:99:1::42'"))

        try await network.update(.delete, .dhcpHost, parentIndex: 0, xml: host, affecting: [.live, .config])
        try await network.update(.delete, .dhcpHost, parentIndex: 1, xml: host6, affecting: [.live, .config])
        #expect(try await !network.xml().contains("10.99.1.42"))
        #expect(try await !network.xml().contains("fd00:99:1::42"))

        #expect(try await connection.networks(.active).map(\.name).contains(name))
        try await network.destroy()
        #expect(try await connection.networks(.inactive).map(\.name).contains(name))
        try await network.undefine()
        let missing = await #expect(throws: LibvirtError.self) { _ = try await connection.network(named: name) }
        #expect(missing?.code == .noNetwork)
    }

    @Test("a transient network disappears when stopped")
    func transient() async throws {
        let connection = try await TestDriver.connect()
        let name = TestDriver.uniqueName("tnet")
        let network = try await connection.createNetwork(xml: TestDriver.networkXML(name: name, bridge: "vu-\(name.suffix(8))", subnet: 2))
        #expect(try await network.isActive())
        #expect(try await !network.isPersistent())
        try await network.destroy()
        #expect(try await !connection.networks().map(\.name).contains(name))
    }
}
