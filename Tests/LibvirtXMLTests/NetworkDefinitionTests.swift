import Addressing
import LibvirtXML
import Testing

@Suite("Network XML")
struct NetworkDefinitionTests {
    let xml = """
        <network>
          <name>dual</name>
          <forward mode='nat'/>
          <bridge name='vmbr1'/>
          <ip address='192.0.2.1' netmask='255.255.255.0'>
            <dhcp>
              <range start='192.0.2.100' end='192.0.2.200'/>
              <host mac='52:54:00:00:00:01' name='web' ip='192.0.2.10'/>
            </dhcp>
          </ip>
          <ip family='ipv6' address='2001:db8:aa::1' prefix='64'>
            <dhcp><host id='00:03:00:01:52:54:00:00:00:01' ip='2001:db8:aa::10'/></dhcp>
          </ip>
          <ip family='ipv6' address='2001:db8:bb::1' prefix='64'/>
        </network>
        """

    @Test("ip elements are read in document order with their subnets, DHCP and hosts")
    func parse() throws {
        let network = try NetworkDefinition(xml: xml)
        #expect(network.name == "dual")
        #expect(network.forwardMode == "nat")
        #expect(network.ips.map(\.index) == [0, 1, 2])
        #expect(network.ips.map(\.subnet.description) == ["192.0.2.0/24", "2001:db8:aa::/64", "2001:db8:bb::/64"])
        #expect(network.ips.map(\.hasDHCP) == [true, true, false])
        #expect(network.ips[0].hosts == [.init(mac: MACAddress("52:54:00:00:00:01"), id: nil, name: "web", address: IPAddress("192.0.2.10"))])
        #expect(network.ips[1].hosts.first?.id == "00:03:00:01:52:54:00:00:00:01")
        #expect(network.ipElement(containing: IPAddress("2001:db8:bb::5")!)?.index == 2)
        #expect(network.ipElement(containing: IPAddress("198.51.100.1")!) == nil)
    }

    @Test("an isolated network has no forward mode; garbage is refused")
    func isolatedAndGarbage() throws {
        let isolated = try NetworkDefinition(xml: "<network><name>iso</name><ip address='10.0.0.1' prefix='24'/></network>")
        #expect(isolated.forwardMode == nil)
        #expect(throws: XMLProblem.self) { try NetworkDefinition(xml: "not xml") }
        #expect(throws: XMLProblem.self) { try NetworkDefinition(xml: "<domain/>") }
    }

    @Test("reservation host entries: IPv4 by MAC and name, IPv6 by DUID-LL; values escaped")
    func hostEntries() {
        let mac = MACAddress("52:54:00:ab:cd:ef")!
        #expect(NetworkDefinition.DHCPHost.reservation(mac: mac, address: IPAddress("192.0.2.7")!, owner: "web-1").xml
                == "<host mac='52:54:00:ab:cd:ef' name='web-1' ip='192.0.2.7'/>")
        #expect(NetworkDefinition.DHCPHost.reservation(mac: mac, address: IPAddress("2001:db8::7")!, owner: "web-1").xml
                == "<host id='00:03:00:01:52:54:00:ab:cd:ef' name='web-1' ip='2001:db8::7'/>")
        // An owner that is no host name is kept out of dnsmasq's configuration.
        #expect(NetworkDefinition.DHCPHost.reservation(mac: mac, address: IPAddress("192.0.2.7")!, owner: "ci job #4").xml
                == "<host mac='52:54:00:ab:cd:ef' ip='192.0.2.7'/>")
        #expect(NetworkDefinition.DHCPHost(mac: nil, id: nil, name: "a'b<c>&\"", address: nil).xml
                == "<host name='a&apos;b&lt;c&gt;&amp;&quot;'/>")
        #expect(isHostName("web-1.example"))
        #expect(!isHostName("-web") && !isHostName("a b") && !isHostName(""))
    }
}
