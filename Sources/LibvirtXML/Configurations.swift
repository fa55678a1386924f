import Addressing
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

// The documents vmctl writes, as typed values. Each renders itself through FoundationXML, which
// escapes every value; the same values feed a user's Mustache templates (`Templates` in
// Provisioning), so their stored properties are the templates' keys (docs in templates/README.md).

/// A domain as `vmctl create` defines it (`virDomainDefineXML`).
public struct DomainConfiguration: Sendable, Equatable {
    /// `kvm` or `qemu` (TCG).
    public var type: String
    /// The host CPU passed through (KVM only).
    public var hostCPU: Bool
    public var name: String
    /// Lower-case UUID.
    public var uuid: String
    /// vmctl's `<vmctl:vm>` element, already XML (``VMMetadata/xml``).
    public var metadata: String
    public var memoryMiB: UInt64
    public var vcpus: Int
    public var kernel: String?
    public var initrd: String?
    public var cmdline: String?
    public var disks: [Disk]
    public var seed: Seed?
    public var interfaces: [Interface]
    /// A file the serial console is written to (on the libvirt host).
    public var consoleLog: String?
    /// Whether the console log is appended to rather than truncated.
    public var consoleLogAppend: Bool

    public struct Disk: Sendable, Equatable {
        public var path: String
        public var format: String
        /// `vda`, `vdb`, ...
        public var target: String
        public init(path: String, format: String, target: String) {
            self.path = path
            self.format = format
            self.target = target
        }
    }

    /// The cloud-init seed, attached as a SATA CD-ROM.
    public struct Seed: Sendable, Equatable {
        public var path: String
        public init(path: String) { self.path = path }
    }

    public struct Interface: Sendable, Equatable {
        public var network: String
        public var mac: String
        public var model: String
        public init(network: String, mac: String, model: String) {
            self.network = network
            self.mac = mac
            self.model = model
        }
    }

    public init(type: String, hostCPU: Bool, name: String, uuid: String, metadata: String, memoryMiB: UInt64, vcpus: Int,
                kernel: String? = nil, initrd: String? = nil, cmdline: String? = nil, disks: [Disk] = [], seed: Seed? = nil,
                interfaces: [Interface] = [], consoleLog: String? = nil, consoleLogAppend: Bool = false) {
        self.type = type
        self.hostCPU = hostCPU
        self.name = name
        self.uuid = uuid
        self.metadata = metadata
        self.memoryMiB = memoryMiB
        self.vcpus = vcpus
        self.kernel = kernel
        self.initrd = initrd
        self.cmdline = cmdline
        self.disks = disks
        self.seed = seed
        self.interfaces = interfaces
        self.consoleLog = consoleLog
        self.consoleLogAppend = consoleLogAppend
    }

    /// The guest's name for the seed's CD-ROM drive.
    static let seedTarget = "sda"

    /// The disks and NICs ``xml`` writes, as vmctl's metadata records them for `vmctl list`.
    public var devices: VMMetadata.Devices {
        var listed = disks.map { DomainDefinition.Disk(device: "disk", target: $0.target, path: $0.path, format: $0.format, backingPath: nil) }
        if let seed { listed.append(DomainDefinition.Disk(device: "cdrom", target: Self.seedTarget, path: seed.path, format: "raw", backingPath: nil)) }
        return VMMetadata.Devices(disks: listed, interfaces: interfaces.map {
            DomainDefinition.Interface(type: "network", network: $0.network, mac: MACAddress($0.mac), model: $0.model)
        })
    }

    /// The `<domain>` document.
    public var xml: String {
        get throws(XMLProblem) {
            let metadataElement: XMLElement
            do { metadataElement = try XMLElement(xmlString: metadata) } catch { throw XMLProblem("vmctl metadata is not XML") }
            var os: [XMLElement] = [element("type", ["arch": "x86_64"], text: "hvm")]
            if let kernel { os.append(element("kernel", text: kernel)) }
            if let initrd { os.append(element("initrd", text: initrd)) }
            if let cmdline { os.append(element("cmdline", text: cmdline)) }
            if kernel == nil { os.append(element("boot", ["dev": "hd"])) }
            var devices: [XMLElement] = disks.map { disk in
                element("disk", ["type": "file", "device": "disk"], [
                    element("driver", ["name": "qemu", "type": disk.format, "discard": "unmap"]),
                    element("source", ["file": disk.path]),
                    element("target", ["dev": disk.target, "bus": "virtio"]),
                ])
            }
            if let seed {
                devices.append(element("disk", ["type": "file", "device": "cdrom"], [
                    element("driver", ["name": "qemu", "type": "raw"]),
                    element("source", ["file": seed.path]),
                    element("target", ["dev": Self.seedTarget, "bus": "sata"]),
                    element("readonly"),
                ]))
            }
            devices += interfaces.map { interface in
                element("interface", ["type": "network"], [
                    element("source", ["network": interface.network]),
                    element("mac", ["address": interface.mac]),
                    element("model", ["type": interface.model]),
                ])
            }
            var serial: [XMLElement] = []
            if let consoleLog { serial.append(element("log", ["file": consoleLog, "append": consoleLogAppend ? "on" : "off"])) }
            serial.append(element("target", ["port": "0"]))
            devices += [
                element("serial", ["type": "pty"], serial),
                element("console", ["type": "pty"], [element("target", ["type": "serial", "port": "0"])]),
                element("channel", ["type": "unix"], [element("target", ["type": "virtio", "name": "org.qemu.guest_agent.0"])]),
                element("rng", ["model": "virtio"], [element("backend", ["model": "random"], text: "/dev/urandom")]),
            ]
            var children: [XMLElement] = [
                element("name", text: name), element("uuid", text: uuid), element("metadata", [:], [metadataElement]),
                element("memory", ["unit": "MiB"], text: "\(memoryMiB)"), element("vcpu", text: "\(vcpus)"),
                element("os", [:], os), element("features", [:], [element("acpi"), element("apic")]),
            ]
            if hostCPU { children.append(element("cpu", ["mode": "host-passthrough"])) }
            children += [element("on_poweroff", text: "destroy"), element("on_reboot", text: "restart"),
                         element("on_crash", text: "destroy"), element("devices", [:], devices)]
            return document(element("domain", ["type": type], children))
        }
    }
}

/// A network as `vmctl network create` defines it (`virNetworkDefineXML`).
public struct NetworkConfiguration: Sendable, Equatable {
    public var name: String
    /// `nat`, `route`, `open` or `bridge`; `nil` for an isolated network.
    public var forwardMode: String?
    public var forwardDevice: String?
    public var bridge: String
    /// Whether libvirt makes the bridge (every mode but `bridge`).
    public var managedBridge: Bool
    /// The local DNS domain served to guests.
    public var domain: String?
    public var dnsDisabled: Bool
    public var ipv4: IP?
    public var ipv6: IP?

    /// One address family: the host's address on the bridge, the prefix, the DHCP range.
    public struct IP: Sendable, Equatable {
        public var gateway: String
        public var prefix: Int
        public var dhcpStart: String?
        public var dhcpEnd: String?
        public init(gateway: String, prefix: Int, dhcpStart: String? = nil, dhcpEnd: String? = nil) {
            self.gateway = gateway
            self.prefix = prefix
            self.dhcpStart = dhcpStart
            self.dhcpEnd = dhcpEnd
        }
    }

    public init(name: String, forwardMode: String?, forwardDevice: String?, bridge: String, managedBridge: Bool,
                domain: String?, dnsDisabled: Bool, ipv4: IP?, ipv6: IP?) {
        self.name = name
        self.forwardMode = forwardMode
        self.forwardDevice = forwardDevice
        self.bridge = bridge
        self.managedBridge = managedBridge
        self.domain = domain
        self.dnsDisabled = dnsDisabled
        self.ipv4 = ipv4
        self.ipv6 = ipv6
    }

    /// The `<network>` document.
    public var xml: String {
        var children: [XMLElement] = [element("name", text: name)]
        if let forwardMode {
            var attributes: [String: String] = ["mode": forwardMode]
            if let forwardDevice { attributes["dev"] = forwardDevice }
            children.append(element("forward", attributes))
        }
        children.append(element("bridge", managedBridge ? ["name": bridge, "stp": "on", "delay": "0"] : ["name": bridge]))
        if let domain { children.append(element("domain", ["name": domain, "localOnly": "yes"])) }
        if dnsDisabled { children.append(element("dns", ["enable": "no"])) }
        for (family, ip) in [("ipv4", ipv4), ("ipv6", ipv6)] {
            guard let ip else { continue }
            var attributes = ["address": ip.gateway, "prefix": "\(ip.prefix)"]
            if family == "ipv6" { attributes["family"] = "ipv6" }
            var dhcp: [XMLElement] = []
            if let start = ip.dhcpStart, let end = ip.dhcpEnd {
                dhcp.append(element("dhcp", [:], [element("range", ["start": start, "end": end])]))
            }
            children.append(element("ip", attributes, dhcp))
        }
        return document(element("network", [:], children))
    }
}

/// A storage volume vmctl creates (`virStorageVolCreateXML`): a qcow2 overlay or blank disk, or
/// a raw volume for a seed.
public struct VolumeConfiguration: Sendable, Equatable {
    public var name: String
    public var capacityBytes: UInt64
    /// `qcow2` or `raw`.
    public var format: String
    /// The image a qcow2 overlay stands on: its path and format.
    public var backing: (path: String, format: String)?
    /// Sparse (0) rather than written out in full when given: a volume about to be uploaded into.
    public var allocationBytes: UInt64?
    /// The file's mode, in octal (`0444` for a read-only base image).
    public var mode: String?

    public init(name: String, capacityBytes: UInt64, format: String, backing: (path: String, format: String)? = nil,
                allocationBytes: UInt64? = nil, mode: String? = nil) {
        self.name = name
        self.capacityBytes = capacityBytes
        self.format = format
        self.backing = backing
        self.allocationBytes = allocationBytes
        self.mode = mode
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.name == rhs.name && lhs.capacityBytes == rhs.capacityBytes && lhs.format == rhs.format
            && lhs.backing?.path == rhs.backing?.path && lhs.backing?.format == rhs.backing?.format
            && lhs.allocationBytes == rhs.allocationBytes && lhs.mode == rhs.mode
    }

    /// The `<volume>` document; qcow2 volumes get compat 1.1.
    public var xml: String {
        var target: [XMLElement] = [element("format", ["type": format])]
        if format == "qcow2" { target.append(element("compat", text: "1.1")) }
        if let mode { target.append(element("permissions", [:], [element("mode", text: mode)])) }
        var children: [XMLElement] = [element("name", text: name),
                                      element("capacity", ["unit": "bytes"], text: "\(capacityBytes)")]
        if let allocationBytes { children.append(element("allocation", ["unit": "bytes"], text: "\(allocationBytes)")) }
        children.append(element("target", [:], target))
        if let backing {
            children.append(element("backingStore", [:], [element("path", text: backing.path), element("format", ["type": backing.format])]))
        }
        return document(element("volume", [:], children))
    }
}

/// A directory storage pool (`virStoragePoolDefineXML`).
public struct StoragePoolConfiguration: Sendable, Equatable {
    public var name: String
    public var path: String

    public init(name: String, path: String) {
        self.name = name
        self.path = path
    }

    public var xml: String {
        document(element("pool", ["type": "dir"], [element("name", text: name), element("target", [:], [element("path", text: path)])]))
    }
}

/// An element with attributes (written in name order) and either children or text.
private func element(_ name: String, _ attributes: [String: String] = [:], _ children: [XMLElement] = [], text: String? = nil) -> XMLElement {
    let element = XMLElement(name: name)
    for (key, value) in attributes.sorted(by: { $0.key < $1.key }) {
        element.addAttribute(XMLNode.attribute(withName: key, stringValue: value) as! XMLNode)
    }
    for child in children { element.addChild(child) }
    if let text { element.stringValue = text }
    return element
}

/// The document's text: indented by two, no XML declaration (libvirt wants none), one newline at the end.
private func document(_ root: XMLElement) -> String {
    root.xmlString(options: [.nodePrettyPrint]) + "\n"
}
