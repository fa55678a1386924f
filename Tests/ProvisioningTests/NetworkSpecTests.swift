import Addressing
import Foundation
import LibvirtXML
import Testing
@testable import Provisioning

@Suite("network specs")
struct NetworkSpecTests {
    func spec(_ mode: NetworkMode, ipv4: String? = "10.0.10.0/24", dhcp4: String? = "10.0.10.100-10.0.10.200",
              ipv6: String? = nil, dhcp6: String? = nil, domain: String? = nil) throws -> NetworkSpec {
        NetworkSpec(
            name: "lab", mode: mode, bridge: "vmbr7", forwardDevice: nil,
            ipv4: try ipv4.map { text throws(ProvisioningError) in try ipConfig(subnet: text, gateway: nil, dhcp: dhcp4, family: .ipv4, flag: "--ipv4") },
            ipv6: try ipv6.map { text throws(ProvisioningError) in try ipConfig(subnet: text, gateway: nil, dhcp: dhcp6, family: .ipv6, flag: "--ipv6") },
            domain: domain, dnsDisabled: false)
    }

    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "" } catch { return "\(error)" }
    }

    /// vmctl's own writer, and the shipped template fed the same value.
    static let renderers: [Templates] = [.builtIn, try! .at(shippedTemplates)]

    @Test("each mode renders to XML that reads back as what was asked, by vmctl's writer and by the shipped template",
          arguments: [NetworkMode.nat, .route, .open, .isolated], renderers)
    func renderRoundTrip(mode: NetworkMode, templates: Templates) throws {
        let asked = try spec(mode, ipv6: "fd00:10::/64", dhcp6: mode == .open ? "fd00:10::100-fd00:10::1ff" : nil, domain: "lab.test")
        let xml = try templates.render(asked.configuration)
        let definition = try NetworkDefinition(xml: xml)
        #expect(NetworkSummary(definition) == NetworkSummary(asked))
        #expect(definition.forwardMode == (mode == .isolated ? nil : mode.rawValue))
        #expect(definition.ips.map(\.index) == [0, 1])
    }

    @Test("values are XML-escaped in the rendered network")
    func escaping() throws {
        let asked = try spec(.nat, domain: "a'b<c>&d")
        let xml = try Templates.at(shippedTemplates).render(asked.configuration)
        #expect(xml.contains("<domain name='a&#39;b&lt;c&gt;&amp;d' localOnly='yes'/>"))
        #expect(try NetworkDefinition(xml: xml).domain == "a'b<c>&d")
        #expect(try NetworkDefinition(xml: try Templates.builtIn.render(asked.configuration)).domain == "a'b<c>&d")
    }

    @Test("the gateway is the first address unless given; ADDRESS/PREFIX gives it")
    func gateways() throws {
        #expect(try ipConfig(subnet: "10.0.10.0/24", gateway: nil, dhcp: nil, family: .ipv4, flag: "--ipv4").gateway == IPAddress("10.0.10.1"))
        #expect(try ipConfig(subnet: "10.0.10.254/24", gateway: nil, dhcp: nil, family: .ipv4, flag: "--ipv4").gateway == IPAddress("10.0.10.254"))
        #expect(try ipConfig(subnet: "10.0.10.0/24", gateway: "10.0.10.5", dhcp: nil, family: .ipv4, flag: "--ipv4").gateway == IPAddress("10.0.10.5"))
        #expect(message { _ = try ipConfig(subnet: "10.0.10.0/33", gateway: nil, dhcp: nil, family: .ipv4, flag: "--ipv4") }
                .contains("invalid --ipv4 '10.0.10.0/33'"))
        #expect(message { _ = try ipConfig(subnet: "fd00::/64", gateway: nil, dhcp: nil, family: .ipv4, flag: "--ipv4") }
                .contains("invalid --ipv4 'fd00::/64'"))
    }

    @Test("validation refuses each bad definition, naming the value")
    func validation() throws {
        var surroundings = NetworkSurroundings()
        surroundings.networks = [(name: "other", bridge: "vmbr0", subnets: [Subnet("10.0.20.0/24")!])]
        surroundings.interfaces = ["eth0": [(IPAddress("192.0.2.2")!, 24)], "br0": []]
        func problem(_ spec: NetworkSpec) -> String { message { try spec.validate(in: surroundings) } }

        #expect(problem(try spec(.nat)) == "")
        var outside = try spec(.nat)
        outside.ipv4?.gateway = IPAddress("10.0.11.1")!
        #expect(problem(outside) == "gateway 10.0.11.1 is outside its subnet 10.0.10.0/24")
        #expect(problem(try spec(.nat, dhcp4: "10.0.9.5-10.0.10.9")) == "DHCP range 10.0.9.5-10.0.10.9 is outside the subnet 10.0.10.0/24")
        #expect(problem(try spec(.nat, dhcp4: "10.0.10.1-10.0.10.9")).hasPrefix("DHCP range 10.0.10.1-10.0.10.9 covers the gateway 10.0.10.1"))
        #expect(problem(try spec(.route, ipv4: nil, ipv6: "fd00::/48")).hasPrefix("SLAAC needs a /64, not fd00::/48"))
        #expect(problem(try spec(.route, ipv4: nil, ipv6: "fd00::/48", dhcp6: "fd00::100-fd00::1ff")) == "")
        #expect(problem(try spec(.nat, ipv4: "10.0.20.128/25", dhcp4: nil)).hasPrefix("subnet 10.0.20.128/25 overlaps 10.0.20.0/24 of network other"))
        #expect(problem(try spec(.nat, ipv4: "192.0.2.0/25", dhcp4: nil)).hasPrefix("subnet 192.0.2.0/25 overlaps 192.0.2.2/24 of host interface eth0"))
        var taken = try spec(.nat)
        taken.bridge = "vmbr0"
        #expect(problem(taken).hasPrefix("bridge vmbr0 is already used by network other"))
        taken.bridge = "eth0"
        #expect(problem(taken).hasPrefix("bridge eth0 is already a host interface"))
        #expect(problem(try spec(.nat, ipv4: nil)).hasPrefix("a nat network needs an IPv4 subnet"))
        var bridged = try spec(.bridge, ipv4: nil)
        bridged.bridge = "br0"
        #expect(problem(bridged) == "")
        bridged.bridge = "br9"
        #expect(problem(bridged).hasPrefix("host bridge br9 does not exist"))
        #expect(freeBridgeName(in: surroundings) == "vmbr1")
    }

    @Test("differences between an existing network and the one asked for are listed")
    func differences() throws {
        let existing = NetworkSummary(try spec(.nat))
        var asked = try spec(.nat, dhcp4: "10.0.10.100-10.0.10.150")
        asked.bridge = "vmbr9"
        #expect(existing.differences(to: NetworkSummary(asked)) == [
            "bridge: vmbr7 -> vmbr9", "dhcp4: 10.0.10.100-10.0.10.200 -> 10.0.10.100-10.0.10.150",
        ])
        #expect(existing.differences(to: existing).isEmpty)
    }
}
