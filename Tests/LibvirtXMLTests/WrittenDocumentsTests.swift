import Addressing
import Foundation
import LibvirtXML
import Testing
import TestSupport

/// Every document vmctl writes, compared whole with a golden file, and read back.
@Suite("written documents")
struct WrittenDocumentsTests {
    static let metadata = VMMetadata(
        createdAt: Date(timeIntervalSince1970: 1_780_000_000), expiresAt: Date(timeIntervalSince1970: 1_780_007_200),
        labels: ["ci": "42", "note": "a'b<c>&\"d"], image: "/images/base.qcow2",
        volumes: [.init(pool: "vmctl", name: "web1-root.qcow2", path: "/var/lib/libvirt/vmctl/web1-root.qcow2", role: "root")],
        addresses: [.init(pool: "public", network: "routed", address: IPAddress("203.0.113.70")!, mac: MACAddress("52:54:00:12:34:56")!)],
        sshUser: "debian")

    @Test("a TCG domain booting a kernel, with a data disk, a seed, two NICs and a console log")
    func directKernelDomain() throws {
        let domain = DomainConfiguration(
            type: "qemu", hostCPU: false, name: "web1", uuid: "6f1c1b1e-3d5a-4c1e-9a55-0b9f1d2c3e4f", metadata: Self.metadata.xml,
            memoryMiB: 512, vcpus: 2, kernel: "/boot/vmlinuz", initrd: "/boot/initrd.img", cmdline: "console=ttyS0 quiet",
            disks: [.init(path: "/var/lib/libvirt/vmctl/web1-root.qcow2", format: "qcow2", target: "vda"),
                    .init(path: "/var/lib/libvirt/vmctl/web1-data1.qcow2", format: "qcow2", target: "vdb")],
            seed: .init(path: "/var/lib/libvirt/vmctl/web1-seed.iso"),
            interfaces: [.init(network: "routed", mac: "52:54:00:12:34:56", model: "virtio"),
                         .init(network: "nat0", mac: "52:54:00:12:34:57", model: "e1000")],
            consoleLog: "/var/log/vmctl/web1.log")
        let xml = try domain.xml
        #expect(goldenMismatch(xml, golden: "domain-kernel.xml") == nil)
        let read = try DomainDefinition(xml: xml)
        #expect(read.name == "web1" && read.type == "qemu" && read.vcpus == 2 && read.memoryKiB == 512 * 1024)
        #expect(read.interfaces.map(\.network) == ["routed", "nat0"] && read.interfaces.map(\.model) == ["virtio", "e1000"])
        #expect(read.disks.map(\.target) == ["vda", "vdb", "sda"] && read.disks.last?.device == "cdrom")
        #expect(read.metadata == Self.metadata)
        // What the metadata records for `vmctl list` is what the writer put in <devices>.
        let devices = domain.devices
        #expect(devices.disks == read.disks && devices.interfaces == read.interfaces)
        var recorded = Self.metadata
        recorded.devices = devices
        #expect(try VMMetadata(xml: recorded.xml) == recorded)
        let listed = try #require(DomainDefinition(listed: "web1", uuid: read.uuid!, memoryKiB: read.memoryKiB, vcpus: read.vcpus, metadata: recorded))
        #expect(listed.disks == read.disks && listed.interfaces == read.interfaces && listed.metadata == recorded)
        #expect(DomainDefinition(listed: "web1", uuid: read.uuid!, memoryKiB: 1, vcpus: 1, metadata: Self.metadata) == nil,
                "metadata without devices: the listing must read the XML")
    }

    @Test("a KVM domain booting its disk: host CPU, no kernel, no seed")
    func diskBootDomain() throws {
        let domain = DomainConfiguration(
            type: "kvm", hostCPU: true, name: "db1", uuid: "0a0b0c0d-0e0f-4a1b-8c2d-3e4f5a6b7c8d",
            metadata: VMMetadata(createdAt: Date(timeIntervalSince1970: 1_780_000_000), expiresAt: nil, labels: [:], image: nil,
                                 volumes: [], addresses: []).xml,
            memoryMiB: 2048, vcpus: 4, disks: [.init(path: "/images/db1.qcow2", format: "qcow2", target: "vda")])
        let xml = try domain.xml
        #expect(goldenMismatch(xml, golden: "domain-disk.xml") == nil)
        #expect(try DomainDefinition(xml: xml).type == "kvm")
    }

    @Test("networks of each shape", arguments: [
        ("network-nat.xml", NetworkConfiguration(
            name: "nat0", forwardMode: "nat", forwardDevice: "eth0", bridge: "vmbr0", managedBridge: true, domain: "lab.test",
            dnsDisabled: false, ipv4: .init(gateway: "10.0.10.1", prefix: 24, dhcpStart: "10.0.10.100", dhcpEnd: "10.0.10.200"),
            ipv6: .init(gateway: "fd00:10::1", prefix: 64))),
        ("network-open.xml", NetworkConfiguration(
            name: "public", forwardMode: "open", forwardDevice: nil, bridge: "vmbr1", managedBridge: true, domain: nil, dnsDisabled: true,
            ipv4: .init(gateway: "203.0.113.1", prefix: 28),
            ipv6: .init(gateway: "2001:db8:aa::1", prefix: 64, dhcpStart: "2001:db8:aa::100", dhcpEnd: "2001:db8:aa::1ff"))),
        ("network-isolated.xml", NetworkConfiguration(
            name: "lab", forwardMode: nil, forwardDevice: nil, bridge: "vmbr2", managedBridge: true, domain: "a'b<c>&d", dnsDisabled: false,
            ipv4: .init(gateway: "192.168.50.1", prefix: 24, dhcpStart: "192.168.50.10", dhcpEnd: "192.168.50.99"), ipv6: nil)),
        ("network-bridge.xml", NetworkConfiguration(
            name: "lan", forwardMode: "bridge", forwardDevice: nil, bridge: "br0", managedBridge: false, domain: nil, dnsDisabled: false,
            ipv4: nil, ipv6: nil)),
    ])
    func networks(file: String, network: NetworkConfiguration) throws {
        #expect(goldenMismatch(network.xml, golden: file) == nil)
        let read = try NetworkDefinition(xml: network.xml)
        #expect(read.name == network.name && read.forwardMode == network.forwardMode && read.bridge == network.bridge)
        #expect(read.domain == network.domain && read.dnsEnabled == !network.dnsDisabled)
        #expect(read.ips.map(\.address.description) == [network.ipv4?.gateway, network.ipv6?.gateway].compactMap { $0 })
    }

    @Test("volumes: an overlay on a base image, a blank disk, a raw seed; vmctl's dir pool")
    func volumesAndPool() throws {
        let overlay = VolumeConfiguration(name: "web1-root.qcow2", capacityBytes: 10 << 30, format: "qcow2",
                                          backing: ("/images/a'b&c.qcow2", "qcow2"))
        #expect(goldenMismatch(overlay.xml, golden: "volume-overlay.xml") == nil)
        #expect(try VolumeDefinition(xml: overlay.xml).backingPath == "/images/a'b&c.qcow2")
        let blank = VolumeConfiguration(name: "web1-data1.qcow2", capacityBytes: 4 << 30, format: "qcow2")
        #expect(goldenMismatch(blank.xml, golden: "volume-blank.xml") == nil)
        let seed = VolumeConfiguration(name: "web1-seed.iso", capacityBytes: 374_784, format: "raw")
        #expect(goldenMismatch(seed.xml, golden: "volume-seed.xml") == nil)
        // A base image about to be uploaded into: sparse, and read-only once written.
        let image = VolumeConfiguration(name: "debian-12.image.qcow2", capacityBytes: 659_685_376, format: "raw", allocationBytes: 0, mode: "0444")
        #expect(goldenMismatch(image.xml, golden: "volume-image.xml") == nil)
        let console = VolumeConfiguration(name: "web1-console.log", capacityBytes: 0, format: "raw", allocationBytes: 0)
        #expect(goldenMismatch(console.xml, golden: "volume-console.xml") == nil)
        let pool = StoragePoolConfiguration(name: "vmctl", path: "/var/lib/libvirt/vmctl")
        #expect(goldenMismatch(pool.xml, golden: "pool.xml") == nil)
    }

    @Test("DHCP host entries and vmctl's metadata")
    func hostsAndMetadata() throws {
        let mac = MACAddress("52:54:00:12:34:56")!
        let hosts = [NetworkDefinition.DHCPHost.reservation(mac: mac, address: IPAddress("203.0.113.70")!, owner: "web1"),
                     .reservation(mac: mac, address: IPAddress("2001:db8:aa::70")!, owner: "web1"),
                     .reservation(mac: mac, address: IPAddress("10.0.10.5")!, owner: "not a host name")]
        #expect(goldenMismatch(hosts.map(\.xml).joined(separator: "\n") + "\n", golden: "dhcp-hosts.xml") == nil)
        #expect(goldenMismatch(Self.metadata.xml + "\n", golden: "metadata.xml") == nil)
        #expect(try VMMetadata(xml: Self.metadata.xml) == Self.metadata)
    }
}
