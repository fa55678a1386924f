public import Addressing
public import Foundation
import Timestamps
#if canImport(FoundationXML)
import FoundationXML
#endif

/// The parts of a domain's XML that vmctl reads: size, interfaces, disks and vmctl's metadata.
public struct DomainDefinition: Sendable, Equatable {
    public var name: String
    public var uuid: UUID?
    /// The domain type: `kvm`, `qemu`, ...
    public var type: String
    /// `<memory>`, in KiB.
    public var memoryKiB: UInt64
    public var vcpus: Int
    public var interfaces: [Interface]
    public var disks: [Disk]
    /// vmctl's `<metadata>` element, for VMs vmctl created.
    public var metadata: VMMetadata?
    /// The file the first serial port is logged to (`<serial><log file=...>`), if any.
    public var consoleLog: String?

    /// One `<interface>`.
    public struct Interface: Sendable, Equatable {
        /// `network`, `bridge`, `direct`, ...
        public var type: String
        /// The libvirt network, for `type='network'`.
        public var network: String?
        public var mac: MACAddress?
        public var model: String?
    }

    /// One `<disk>`.
    public struct Disk: Sendable, Equatable {
        /// `disk` or `cdrom`.
        public var device: String
        /// The guest's name for it: `vda`, `sda`.
        public var target: String
        /// The file or block device, if any (an empty CD-ROM drive has none).
        public var path: String?
        /// The driver's format: `qcow2`, `raw`.
        public var format: String?
        /// The first backing file, where libvirt shows the chain (live XML).
        public var backingPath: String?
    }

    /// The libvirt networks the domain's interfaces attach to, in order.
    public var networks: [String] { interfaces.compactMap(\.network) }

    /// A VM vmctl created, from what a listing reports (name, UUID, size) and its metadata's
    /// devices, without its XML: what `vmctl list` shows. `nil` when the metadata has no devices.
    /// The type and console log stay unknown (empty, `nil`).
    public init?(listed name: String, uuid: UUID, memoryKiB: UInt64, vcpus: Int, metadata: VMMetadata) {
        guard let devices = metadata.devices else { return nil }
        self.name = name
        self.uuid = uuid
        type = ""
        self.memoryKiB = memoryKiB
        self.vcpus = vcpus
        interfaces = devices.interfaces
        disks = devices.disks
        self.metadata = metadata
        consoleLog = nil
    }

    /// Parses `virDomainGetXMLDesc` output.
    public init(xml: String) throws(XMLProblem) {
        guard let document = try? XMLDocument(xmlString: xml), let root = document.rootElement(), root.name == "domain" else {
            throw XMLProblem("not a libvirt domain definition")
        }
        name = root.child("name")?.stringValue ?? ""
        uuid = root.child("uuid")?.stringValue.flatMap(UUID.init(uuidString:))
        type = root.attribute(forName: "type")?.stringValue ?? ""
        let memory = root.child("memory")
        memoryKiB = kibibytes(memory?.stringValue ?? "0", unit: memory?.attribute(forName: "unit")?.stringValue ?? "KiB")
        vcpus = Int(root.child("vcpu")?.stringValue?.trimmingCharacters(in: .whitespaces) ?? "") ?? 1
        let devices = root.elements(forName: "devices")
        interfaces = devices.flatMap { $0.elements(forName: "interface") }.map { element in
            Interface(
                type: element.attribute(forName: "type")?.stringValue ?? "",
                network: element.child("source")?.attribute(forName: "network")?.stringValue,
                mac: element.child("mac")?.attribute(forName: "address")?.stringValue.flatMap(MACAddress.init),
                model: element.child("model")?.attribute(forName: "type")?.stringValue)
        }
        disks = devices.flatMap { $0.elements(forName: "disk") }.map { element in
            let source = element.child("source")
            let backing = element.child("backingStore")?.child("source")
            return Disk(
                device: element.attribute(forName: "device")?.stringValue ?? "disk",
                target: element.child("target")?.attribute(forName: "dev")?.stringValue ?? "",
                path: (source?.attribute(forName: "file") ?? source?.attribute(forName: "dev"))?.stringValue,
                format: element.child("driver")?.attribute(forName: "type")?.stringValue,
                backingPath: (backing?.attribute(forName: "file") ?? backing?.attribute(forName: "dev"))?.stringValue)
        }
        consoleLog = devices.flatMap { $0.elements(forName: "serial") }.first?.child("log")?.attribute(forName: "file")?.stringValue
        let ours = root.child("metadata")?.children?.compactMap { $0 as? XMLElement }
            .first { $0.uri == VMMetadata.namespace }
        metadata = try ours.map { element throws(XMLProblem) in try VMMetadata(element: element) }
    }
}

/// What vmctl must know about a VM it created, kept in the domain's `<metadata>` under
/// ``VMMetadata/namespace`` so that the VM describes itself (`virsh dumpxml` shows it).
public struct VMMetadata: Sendable, Equatable {
    /// vmctl's XML namespace.
    public static let namespace = "https://vmctl.dev/xmlns/vm/1"
    /// The prefix libvirt writes for it.
    public static let prefix = "vmctl"

    public var createdAt: Date
    /// When `vmctl destroy --expired` may destroy the VM.
    public var expiresAt: Date?
    public var labels: [String: String]
    /// The base image of the root disk's overlay, if any.
    public var image: String?
    /// Volumes vmctl created for the VM, deleted with it.
    public var volumes: [Volume]
    /// Addresses reserved for the VM's NICs, released with it.
    public var addresses: [Address]
    /// The user `vmctl ssh` logs in as when none is given (the image's default user).
    public var sshUser: String?
    /// The fleet host (`vmctl host add`) the VM was created on, when it was placed on one.
    public var host: String?
    /// The disks and NICs vmctl's own writer put in the domain, so that `vmctl list` needs no
    /// full XML read; `nil` when a user's template wrote the domain (or vmctl 0.2 made it).
    public var devices: Devices?

    /// What `<devices>` held as vmctl wrote it: the parts `list` shows.
    public struct Devices: Sendable, Equatable {
        public var disks: [DomainDefinition.Disk]
        public var interfaces: [DomainDefinition.Interface]
        public init(disks: [DomainDefinition.Disk], interfaces: [DomainDefinition.Interface]) {
            self.disks = disks
            self.interfaces = interfaces
        }
    }

    /// A volume vmctl made: its storage pool, name, path and role (`root`, `data`, `seed`).
    public struct Volume: Sendable, Equatable, Codable {
        public var pool: String
        public var name: String
        public var path: String
        public var role: String
        public init(pool: String, name: String, path: String, role: String) {
            self.pool = pool
            self.name = name
            self.path = path
            self.role = role
        }
    }

    /// An address reserved from a pool for one NIC.
    public struct Address: Sendable, Equatable, Codable {
        public var pool: String
        public var network: String
        public var address: IPAddress
        public var mac: MACAddress
        public init(pool: String, network: String, address: IPAddress, mac: MACAddress) {
            self.pool = pool
            self.network = network
            self.address = address
            self.mac = mac
        }
    }

    public init(createdAt: Date, expiresAt: Date?, labels: [String: String], image: String?,
                volumes: [Volume], addresses: [Address], sshUser: String? = nil, host: String? = nil, devices: Devices? = nil) {
        self.devices = devices
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.labels = labels
        self.image = image
        self.volumes = volumes
        self.addresses = addresses
        self.sshUser = sshUser
        self.host = host
    }

    /// The element as it goes into `<metadata>` of a domain definition, namespace declared.
    public var xml: String {
        let p = Self.prefix
        var lines = ["<\(p):vm xmlns:\(p)='\(Self.namespace)'>"]
        lines.append("  <\(p):created>\(timestamp(createdAt))</\(p):created>")
        if let expiresAt { lines.append("  <\(p):expires>\(timestamp(expiresAt))</\(p):expires>") }
        for (key, value) in labels.sorted(by: { $0.key < $1.key }) {
            lines.append("  <\(p):label key='\(escapeXML(key))'>\(escapeXML(value))</\(p):label>")
        }
        if let image { lines.append("  <\(p):image>\(escapeXML(image))</\(p):image>") }
        if let sshUser { lines.append("  <\(p):ssh user='\(escapeXML(sshUser))'/>") }
        if let host { lines.append("  <\(p):host name='\(escapeXML(host))'/>") }
        for volume in volumes {
            lines.append("  <\(p):volume pool='\(escapeXML(volume.pool))' name='\(escapeXML(volume.name))' path='\(escapeXML(volume.path))' role='\(escapeXML(volume.role))'/>")
        }
        for address in addresses {
            lines.append("  <\(p):address pool='\(escapeXML(address.pool))' network='\(escapeXML(address.network))' ip='\(address.address)' mac='\(address.mac)'/>")
        }
        if let devices {
            lines.append("  <\(p):devices>")
            for disk in devices.disks {
                var attributes = "device='\(escapeXML(disk.device))' target='\(escapeXML(disk.target))'"
                if let path = disk.path { attributes += " path='\(escapeXML(path))'" }
                if let format = disk.format { attributes += " format='\(escapeXML(format))'" }
                lines.append("    <\(p):disk \(attributes)/>")
            }
            for interface in devices.interfaces {
                var attributes = "type='\(escapeXML(interface.type))'"
                if let network = interface.network { attributes += " network='\(escapeXML(network))'" }
                if let mac = interface.mac { attributes += " mac='\(mac)'" }
                if let model = interface.model { attributes += " model='\(escapeXML(model))'" }
                lines.append("    <\(p):nic \(attributes)/>")
            }
            lines.append("  </\(p):devices>")
        }
        lines.append("</\(p):vm>")
        return lines.joined(separator: "\n")
    }

    /// Parses the element (as `virDomainGetXMLDesc` or `virDomainGetMetadata` return it).
    public init(xml: String) throws(XMLProblem) {
        guard let root = ParsedElement.parse(xml) else { throw XMLProblem("vmctl metadata is not XML") }
        try self.init(root: root)
    }

    /// The element as it stands in a domain's XML (its namespace is declared on it).
    init(element: XMLElement) throws(XMLProblem) {
        try self.init(xml: element.xmlString)
    }

    private init(root: ParsedElement) throws(XMLProblem) {
        func attribute(_ element: ParsedElement, _ name: String) throws(XMLProblem) -> String {
            guard let value = element[attribute: name] else {
                throw XMLProblem("vmctl metadata: <\(element.name)> has no \(name)")
            }
            return value
        }
        guard let created = root.child("created").flatMap({ parseTimestamp($0.text) }) else {
            throw XMLProblem("vmctl metadata without a valid <created>")
        }
        createdAt = created
        expiresAt = root.child("expires").flatMap { parseTimestamp($0.text) }
        var labels: [String: String] = [:]
        var volumes: [Volume] = []
        var addresses: [Address] = []
        // One pass over the children, in the order they came.
        for element in root.elements {
            switch element.name {
            case "label":
                labels[try attribute(element, "key")] = element.text
            case "volume":
                volumes.append(Volume(pool: try attribute(element, "pool"), name: try attribute(element, "name"),
                                      path: try attribute(element, "path"), role: try attribute(element, "role")))
            case "address":
                guard let ip = IPAddress(try attribute(element, "ip")), let mac = MACAddress(try attribute(element, "mac")) else {
                    throw XMLProblem("vmctl metadata: an <address> with an invalid ip or mac")
                }
                addresses.append(Address(pool: try attribute(element, "pool"), network: try attribute(element, "network"),
                                         address: ip, mac: mac))
            default:
                break
            }
        }
        self.labels = labels
        self.volumes = volumes
        self.addresses = addresses
        image = root.child("image")?.text
        sshUser = root.child("ssh")?[attribute: "user"]
        host = root.child("host")?[attribute: "name"]
        devices = try root.child("devices").map { devices throws(XMLProblem) in
            var disks: [DomainDefinition.Disk] = []
            var interfaces: [DomainDefinition.Interface] = []
            for device in devices.elements {
                switch device.name {
                case "disk":
                    disks.append(DomainDefinition.Disk(device: try attribute(device, "device"), target: try attribute(device, "target"),
                                                       path: device[attribute: "path"], format: device[attribute: "format"], backingPath: nil))
                case "nic":
                    let mac = try device[attribute: "mac"].map { text throws(XMLProblem) in
                        guard let mac = MACAddress(text) else { throw XMLProblem("vmctl metadata: a <nic> with an invalid mac") }
                        return mac
                    }
                    interfaces.append(DomainDefinition.Interface(type: try attribute(device, "type"), network: device[attribute: "network"],
                                                                 mac: mac, model: device[attribute: "model"]))
                default:
                    break
                }
            }
            return Devices(disks: disks, interfaces: interfaces)
        }
    }
}

/// An element as Foundation's event parser reports it, with its children: enough of a tree for
/// vmctl's metadata. `vmctl list` parses one element per domain, and building an XMLDocument
/// (a node object for every element, attribute and text, made anew at each read) cost most of
/// list's own time.
struct ParsedElement: Equatable {
    /// The name without its namespace prefix.
    var name: String
    /// In the order the text has them (a few each: a list is cheaper to make and search than a
    /// dictionary, and `list` makes thousands).
    var attributes: [Attribute] = []
    /// The text directly inside it.
    var text = ""
    var elements: [ParsedElement] = []

    struct Attribute: Equatable {
        var name: String
        var value: String
    }

    /// The value of the attribute called `name`.
    subscript(attribute name: String) -> String? { attributes.first { $0.name == name }?.value }

    /// The first child element called `name`.
    func child(_ name: String) -> ParsedElement? { elements.first { $0.name == name } }

    /// Equal trees whatever order the attributes came in (Foundation's parser hands them over
    /// as a dictionary).
    static func == (lhs: ParsedElement, rhs: ParsedElement) -> Bool {
        lhs.name == rhs.name && lhs.text == rhs.text && lhs.elements == rhs.elements && lhs.attributes.count == rhs.attributes.count
            && lhs.attributes.allSatisfy { rhs[attribute: $0.name] == $0.value }
    }

    /// The root element of `xml`, or `nil` when it is not well-formed XML.
    static func parse(_ xml: String) -> ParsedElement? {
        var scanner = ElementScanner(xml)
        if let element = scanner.root() { return element }
        return parseWithFoundation(xml)
    }

    /// ``parse(_:)`` by Foundation's event parser, which reads any XML: the way for what
    /// ``ElementScanner`` leaves (comments, CDATA, a declaration, unknown entities).
    static func parseWithFoundation(_ xml: String) -> ParsedElement? {
        let parser = XMLParser(data: Data(xml.utf8))
        let builder = TreeBuilder()
        parser.delegate = builder
        guard parser.parse() else { return nil }
        return builder.root
    }

    private final class TreeBuilder: NSObject, XMLParserDelegate {
        /// The elements opened and not yet closed, outermost first.
        var open: [ParsedElement] = []
        var root: ParsedElement?

        func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                    qualifiedName: String?, attributes: [String: String] = [:]) {
            open.append(ParsedElement(name: ElementScanner.local(elementName),
                                      attributes: attributes.map { ParsedElement.Attribute(name: $0.key, value: $0.value) }))
        }

        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
            guard let element = open.popLast() else { return }
            if open.isEmpty { root = element } else { open[open.count - 1].elements.append(element) }
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            if !open.isEmpty { open[open.count - 1].text += string }
        }

        func parser(_ parser: XMLParser, foundCDATA block: Data) {
            if !open.isEmpty { open[open.count - 1].text += String(decoding: block, as: UTF8.self) }
        }
    }
}

extension XMLElement {
    /// The first child element called `name`.
    func child(_ name: String) -> XMLElement? { elements(forName: name).first }
}

/// ISO 8601 as `Date.ISO8601FormatStyle` writes it, through ``UTCTime``: the format style's
/// calendar looks the current time zone up in ICU (memory every create and list would map).
private func timestamp(_ date: Date) -> String {
    UTCTime.iso8601(date)
}

/// What ``timestamp(_:)`` writes, else any ISO 8601 text Foundation reads (an offset, fractions).
private func parseTimestamp(_ text: String) -> Date? {
    // vmctl's own text first, untrimmed: Foundation's trimming cost list 23k instructions a date.
    if let time = UTCTime(iso8601: text) { return time.date }
    let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
    if let time = UTCTime(iso8601: trimmed) { return time.date }
    return try? Date(trimmed, strategy: .iso8601)
}

/// A libvirt memory size in `unit` as KiB.
private func kibibytes(_ text: String, unit: String) -> UInt64 {
    let value = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    switch unit.lowercased() {
    case "b", "bytes": return value / 1024
    case "k", "kib": return value
    case "kb": return value * 1000 / 1024
    case "m", "mib": return value * 1024
    case "mb": return value * 1_000_000 / 1024
    case "g", "gib": return value * 1024 * 1024
    case "gb": return value * 1_000_000_000 / 1024
    default: return value
    }
}

/// The parts of a storage volume's XML that vmctl reads.
public struct VolumeDefinition: Sendable, Equatable {
    /// The volume's own file (`<target><path>`).
    public var path: String?
    /// The file it is an overlay on (`<backingStore><path>`), if any.
    public var backingPath: String?

    /// Parses `virStorageVolGetXMLDesc` output.
    public init(xml: String) throws(XMLProblem) {
        guard let document = try? XMLDocument(xmlString: xml), let root = document.rootElement(), root.name == "volume" else {
            throw XMLProblem("not a libvirt volume definition")
        }
        path = root.child("target")?.child("path")?.stringValue
        backingPath = root.child("backingStore")?.child("path")?.stringValue
    }
}

/// Reads one element as libvirt hands vmctl's metadata back (libxml2's serialisation: elements,
/// attributes, text, the five named entities and character references), a tenth of what
/// Foundation's event parser costs a domain (its 200 domains were 32M instructions of `list`).
/// Anything else (a comment, CDATA, a declaration, another entity, malformed text) gives `nil`,
/// and ``ParsedElement/parse(_:)`` hands it to Foundation's parser.
struct ElementScanner {
    private let bytes: [UInt8]
    private var position = 0

    init(_ xml: String) { bytes = Array(xml.utf8) }

    /// The root element, when the whole text is one element and white space.
    mutating func root() -> ParsedElement? {
        skipSpace()
        guard let element = element() else { return nil }
        skipSpace()
        return position == bytes.count ? element : nil
    }

    private mutating func element() -> ParsedElement? {
        guard peek() == UInt8(ascii: "<") else { return nil }
        advance()
        guard let name = name() else { return nil }
        var element = ParsedElement(name: local(name))
        while true {
            let spaced = skipSpace()
            switch peek() {
            case UInt8(ascii: "/"):
                advance()
                guard peek() == UInt8(ascii: ">") else { return nil }
                advance()
                return element
            case UInt8(ascii: ">"):
                advance()
                return content(of: &element, named: name) ? element : nil
            default:
                guard spaced, let attribute = self.name() else { return nil }
                skipSpace()
                guard peek() == UInt8(ascii: "=") else { return nil }
                advance()
                skipSpace()
                guard let quote = peek(), quote == UInt8(ascii: "\"") || quote == UInt8(ascii: "'") else { return nil }
                advance()
                guard let value = text(until: quote) else { return nil }
                advance()
                let attributeName = string(attribute)
                // Twice the same attribute is not XML: Foundation's parser says so.
                guard element[attribute: attributeName] == nil else { return nil }
                element.attributes.append(.init(name: attributeName, value: value))  // namespace declarations too, as Foundation's parser reports them
            }
        }
    }

    /// Text and child elements up to `</name>`.
    private mutating func content(of element: inout ParsedElement, named name: Range<Int>) -> Bool {
        while true {
            guard let text = text(until: UInt8(ascii: "<")) else { return false }
            element.text += text
            guard position + 1 < bytes.count else { return false }
            if bytes[position + 1] == UInt8(ascii: "/") {
                position += 2
                guard let closing = self.name(), bytes[closing].elementsEqual(bytes[name]) else { return false }
                skipSpace()
                guard peek() == UInt8(ascii: ">") else { return false }
                advance()
                return true
            }
            guard let child = self.element() else { return false }
            element.elements.append(child)
        }
    }

    /// Text up to (not including) `end`, its references resolved; `nil` at the end of the input,
    /// at a `<` inside an attribute, and at a reference it does not know.
    private mutating func text(until end: UInt8) -> String? {
        // Most text has no reference: one copy of its bytes.
        let start = position
        while let byte = peek(), byte != UInt8(ascii: "&") {
            if byte == end { return string(start..<position) }
            if Self.isOutOfPlace(byte, before: end) { return nil }
            advance()
        }
        var result = Array(bytes[start..<position])
        while let byte = peek() {
            if byte == end { return String(decoding: result, as: UTF8.self) }
            if Self.isOutOfPlace(byte, before: end) { return nil }
            advance()
            guard byte == UInt8(ascii: "&") else { result.append(byte); continue }
            guard let semicolon = bytes[position...].firstIndex(of: UInt8(ascii: ";")), semicolon - position <= 10 else { return nil }
            let reference = string(position..<semicolon)
            position = semicolon + 1
            switch reference {
            case "lt": result.append(UInt8(ascii: "<"))
            case "gt": result.append(UInt8(ascii: ">"))
            case "amp": result.append(UInt8(ascii: "&"))
            case "quot": result.append(UInt8(ascii: "\""))
            case "apos": result.append(UInt8(ascii: "'"))
            default:
                let number = reference.hasPrefix("#x") ? UInt32(reference.dropFirst(2), radix: 16)
                    : reference.hasPrefix("#") ? UInt32(reference.dropFirst(), radix: 10) : nil
                guard let number, let scalar = Unicode.Scalar(number) else { return nil }
                result.append(contentsOf: Array(String(Character(scalar)).utf8))
            }
        }
        return nil
    }

    /// `<` anywhere in text, and `>` inside an attribute's value (text ends at `<`): what the
    /// scanner leaves to Foundation's parser.
    private static func isOutOfPlace(_ byte: UInt8, before end: UInt8) -> Bool {
        byte == UInt8(ascii: "<") || (byte == UInt8(ascii: ">") && end != UInt8(ascii: "<"))
    }

    /// A name, where it stands: letters, digits and `_:.-`, or non-ASCII.
    private mutating func name() -> Range<Int>? {
        let start = position
        while let byte = peek(), byte >= 0x80 || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ":")
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-") {
            advance()
        }
        return position > start ? start..<position : nil
    }

    /// The name at `range` without its namespace prefix.
    private func local(_ range: Range<Int>) -> String {
        string((bytes[range].lastIndex(of: UInt8(ascii: ":")).map { $0 + 1 } ?? range.lowerBound)..<range.upperBound)
    }

    private func string(_ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }

    @discardableResult
    private mutating func skipSpace() -> Bool {
        let start = position
        while let byte = peek(), byte == 0x20 || byte == 0x0A || byte == 0x09 || byte == 0x0D { advance() }
        return position > start
    }

    private func peek() -> UInt8? { position < bytes.count ? bytes[position] : nil }
    private mutating func advance() { position += 1 }

    /// An element's name without its namespace prefix (both readers name elements so).
    static func local(_ name: String) -> String {
        name.utf8.lastIndex(of: UInt8(ascii: ":")).map { String(name[name.utf8.index(after: $0)...]) } ?? name
    }
}
