import Foundation
@testable import Libvirt

/// libvirt's in-process test driver. All connections of one process share its state, and tests
/// run in parallel: every test names its objects uniquely.
enum TestDriver {
    static let uri = "test:///default"

    static func connect() async throws -> Connection {
        try await Connection.open(uri)
    }

    /// A name no other test uses.
    static func uniqueName(_ base: String) -> String {
        "\(base)-\(UUID().uuidString.prefix(8).lowercased())"
    }

    static func domainXML(name: String, uuid: UUID? = nil, mac: String = "52:54:00:11:22:33") -> String {
        """
        <domain type='test'>
          <name>\(name)</name>
          \(uuid.map { "<uuid>\($0.uuidString.lowercased())</uuid>" } ?? "")
          <memory unit='MiB'>64</memory>
          <vcpu>2</vcpu>
          <os><type arch='x86_64'>hvm</type></os>
          <devices>
            <interface type='network'><source network='default'/><mac address='\(mac)'/></interface>
          </devices>
        </domain>
        """
    }

    static func networkXML(name: String, bridge: String, subnet: Int) -> String {
        """
        <network>
          <name>\(name)</name>
          <bridge name='\(bridge)'/>
          <forward mode='nat'/>
          <ip address='10.99.\(subnet).1' prefix='24'>
            <dhcp><range start='10.99.\(subnet).100' end='10.99.\(subnet).200'/></dhcp>
          </ip>
          <ip family='ipv6' address='fd00:99:\(subnet)::1' prefix='64'>
            <dhcp><range start='fd00:99:\(subnet)::100' end='fd00:99:\(subnet)::1ff'/></dhcp>
          </ip>
        </network>
        """
    }
}
