public import Addressing
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// The parts of a libvirt network's XML that vmctl reads: its forward mode, its `<ip>` elements
/// (in document order: libvirt's `parentIndex` for `virNetworkUpdate` counts them that way) and
/// their DHCP host entries.
public struct NetworkDefinition: Sendable, Equatable {
    public var name: String
    /// `nat`, `route`, `open`, `bridge`, ...; `nil` for an isolated network.
    public var forwardMode: String?
    /// The forward device (`<forward dev=...>`), if any.
    public var forwardDevice: String?
    /// The bridge's name.
    public var bridge: String?
    /// The local DNS domain, if any.
    public var domain: String?
    /// Whether libvirt's dnsmasq answers DNS (`<dns enable='no'/>` turns it off).
    public var dnsEnabled: Bool
    public var ips: [IPElement]

    /// One `<ip>` element.
    public struct IPElement: Sendable, Equatable {
        /// Its position among all `<ip>` elements: the `parentIndex` of its DHCP entries.
        public var index: Int
        /// The host's (gateway's) address on the bridge.
        public var address: IPAddress
        public var subnet: Subnet
        /// Whether it has a `<dhcp>` element, so dnsmasq serves DHCP (or DHCPv6) there.
        public var hasDHCP: Bool
        /// The first dynamic range of that `<dhcp>`, if any.
        public var dhcpRange: AddressRange?
        public var hosts: [DHCPHost]
    }

    /// One `<host>` under `<ip><dhcp>`.
    public struct DHCPHost: Sendable, Equatable, Hashable {
        public var mac: MACAddress?
        /// The DHCPv6 client identifier (DUID), for IPv6 hosts.
        public var id: String?
        public var name: String?
        public var address: IPAddress?

        public init(mac: MACAddress?, id: String?, name: String?, address: IPAddress?) {
            self.mac = mac
            self.id = id
            self.name = name
            self.address = address
        }
    }

    /// Parses `virNetworkGetXMLDesc` output.
    public init(xml: String) throws(XMLProblem) {
        guard let document = try? XMLDocument(xmlString: xml), let root = document.rootElement(), root.name == "network" else {
            throw XMLProblem("not a libvirt network definition")
        }
        name = root.elements(forName: "name").first?.stringValue ?? ""
        let forward = root.elements(forName: "forward").first
        forwardMode = forward.map { $0.attribute(forName: "mode")?.stringValue ?? "nat" }
        forwardDevice = forward?.attribute(forName: "dev")?.stringValue
        bridge = root.elements(forName: "bridge").first?.attribute(forName: "name")?.stringValue
        domain = root.elements(forName: "domain").first?.attribute(forName: "name")?.stringValue
        dnsEnabled = root.elements(forName: "dns").first?.attribute(forName: "enable")?.stringValue != "no"
        var ips: [IPElement] = []
        for (index, element) in root.elements(forName: "ip").enumerated() {
            guard let addressText = element.attribute(forName: "address")?.stringValue,
                  let address = IPAddress(addressText)
            else { throw XMLProblem("an <ip> element without a valid address") }
            let prefix: Int
            if let text = element.attribute(forName: "prefix")?.stringValue, let value = Int(text) {
                prefix = value
            } else if let mask = element.attribute(forName: "netmask")?.stringValue.flatMap(IPv4Address.init) {
                prefix = mask.value.nonzeroBitCount
            } else {
                prefix = address.family == .ipv4 ? 24 : 64  // libvirt's defaults
            }
            guard let subnet = Subnet(containing: address, prefix: prefix) else {
                throw XMLProblem("the <ip> element \(addressText) has an invalid prefix \(prefix)")
            }
            let dhcp = element.elements(forName: "dhcp").first
            let hosts = (dhcp?.elements(forName: "host") ?? []).map { host in
                DHCPHost(
                    mac: host.attribute(forName: "mac")?.stringValue.flatMap(MACAddress.init),
                    id: host.attribute(forName: "id")?.stringValue,
                    name: host.attribute(forName: "name")?.stringValue,
                    address: host.attribute(forName: "ip")?.stringValue.flatMap(IPAddress.init))
            }
            let range = dhcp?.elements(forName: "range").first.flatMap { element -> AddressRange? in
                guard let start = element.attribute(forName: "start")?.stringValue.flatMap(IPAddress.init),
                      let end = element.attribute(forName: "end")?.stringValue.flatMap(IPAddress.init) else { return nil }
                return AddressRange(first: start, last: end)
            }
            ips.append(IPElement(index: index, address: address, subnet: subnet, hasDHCP: dhcp != nil, dhcpRange: range, hosts: hosts))
        }
        self.ips = ips
    }

    /// The `<ip>` element whose subnet holds `address`.
    public func ipElement(containing address: IPAddress) -> IPElement? {
        ips.first { $0.subnet.contains(address) }
    }
}

extension NetworkDefinition.DHCPHost {
    /// The host entry vmctl writes for an address reserved to a NIC: IPv4 by MAC (with the
    /// owner's name when it is a valid host name), IPv6 by the DUID-LL of the NIC's MAC, since
    /// libvirt refuses `mac` on IPv6 hosts.
    public static func reservation(mac: MACAddress, address: IPAddress, owner: String) -> Self {
        let name = isHostName(owner) ? owner : nil
        switch address.family {
        case .ipv4: return .init(mac: mac, id: nil, name: name, address: address)
        case .ipv6: return .init(mac: nil, id: mac.duidLL, name: name, address: address)
        }
    }

    /// `<host .../>` with every value XML-escaped, as `virNetworkUpdate` takes it.
    public var xml: String {
        var attributes: [String] = []
        if let mac { attributes.append("mac='\(escapeXML(mac.description))'") }
        if let id { attributes.append("id='\(escapeXML(id))'") }
        if let name { attributes.append("name='\(escapeXML(name))'") }
        if let address { attributes.append("ip='\(escapeXML(address.description))'") }
        return "<host " + attributes.joined(separator: " ") + "/>"
    }
}

/// Whether `text` is a DNS host name dnsmasq will accept (letters, digits, hyphens; dots
/// between labels; at most 63 characters a label).
public func isHostName(_ text: String) -> Bool {
    guard !text.isEmpty, text.count <= 253 else { return false }
    return text.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
        !label.isEmpty && label.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
            && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
    }
}

/// Escapes the five XML special characters.
public func escapeXML(_ text: String) -> String {
    var result = ""
    for character in text {
        switch character {
        case "&": result += "&amp;"
        case "<": result += "&lt;"
        case ">": result += "&gt;"
        case "'": result += "&apos;"
        case "\"": result += "&quot;"
        default: result.append(character)
        }
    }
    return result
}

/// XML that vmctl cannot read.
public struct XMLProblem: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
