import Addressing
import Foundation
import LibvirtXML
import Testing

@Suite("Domain definitions")
struct DomainDefinitionTests {
    let metadata = VMMetadata(
        createdAt: Date(timeIntervalSince1970: 1_790_000_000), expiresAt: Date(timeIntervalSince1970: 1_790_003_600),
        labels: ["ci": "job <42>", "team": "a&b"], image: "/images/base's.qcow2",
        volumes: [.init(pool: "vmctl", name: "web1-root.qcow2", path: "/var/lib/libvirt/vmctl/web1-root.qcow2", role: "root")],
        addresses: [.init(pool: "p1", network: "lan", address: IPAddress("2001:db8::10")!, mac: MACAddress("52:54:00:00:00:01")!)],
        sshUser: "o'brien", host: "rack<1>")

    @Test("vmctl metadata survives writing and reading, special characters included")
    func metadataRoundTrip() throws {
        #expect(try VMMetadata(xml: metadata.xml) == metadata)
        #expect(metadata.xml.hasPrefix("<vmctl:vm xmlns:vmctl='\(VMMetadata.namespace)'>"))
        #expect(throws: XMLProblem.self) { try VMMetadata(xml: "<vm/>") }
    }

    @Test("a domain's size, interfaces, disks (backing chain included) and vmctl metadata")
    func parse() throws {
        // As libvirt returns a running domain: the metadata's namespace declared on the element.
        let definition = try DomainDefinition(xml: """
            <domain type='qemu' id='3'><name>web1</name><uuid>7056b11c-eba9-4045-a9c4-d4032fcafd74</uuid>
              <metadata>
                <other:thing xmlns:other='https://example.com/x'/>
                \(metadata.xml)
              </metadata>
              <memory unit='KiB'>196608</memory><vcpu placement='static'>2</vcpu>
              <devices>
                <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
                  <source file='/var/lib/libvirt/vmctl/web1-root.qcow2'/>
                  <backingStore type='file'><format type='qcow2'/><source file='/images/base.qcow2'/><backingStore/></backingStore>
                  <target dev='vda' bus='virtio'/></disk>
                <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='sda' bus='sata'/></disk>
                <interface type='network'><mac address='52:54:00:00:00:01'/><source network='lan'/><model type='virtio'/></interface>
                <interface type='bridge'><mac address='52:54:00:00:00:02'/><source bridge='br0'/></interface>
                <serial type='pty'><log file='/var/lib/libvirt/vmctl/web1-console.log' append='on'/><target port='0'/></serial>
              </devices></domain>
            """)
        #expect(definition.name == "web1" && definition.type == "qemu")
        #expect(definition.uuid == UUID(uuidString: "7056b11c-eba9-4045-a9c4-d4032fcafd74"))
        #expect(definition.memoryKiB == 196_608 && definition.vcpus == 2)
        #expect(definition.networks == ["lan"])
        #expect(definition.interfaces.map(\.type) == ["network", "bridge"])
        #expect(definition.interfaces[0].model == "virtio")
        #expect(definition.disks.map(\.target) == ["vda", "sda"])
        #expect(definition.disks[0].backingPath == "/images/base.qcow2")
        #expect(definition.disks[1].path == nil && definition.disks[1].device == "cdrom")
        #expect(definition.metadata == metadata)
        #expect(definition.consoleLog == "/var/lib/libvirt/vmctl/web1-console.log")
        let plain = try DomainDefinition(xml: "<domain type='kvm'><name>x</name><memory unit='GiB'>2</memory></domain>")
        #expect(plain.metadata == nil && plain.memoryKiB == 2 * 1024 * 1024 && plain.vcpus == 1 && plain.consoleLog == nil)
    }

    @Test("a volume's own path and the file it is an overlay on")
    func volume() throws {
        let overlay = try VolumeDefinition(xml: """
            <volume type='file'><name>web1-root.qcow2</name>
              <target><path>/var/lib/libvirt/vmctl/web1-root.qcow2</path><format type='qcow2'/></target>
              <backingStore><path>/images/base&apos;s &amp; co.qcow2</path><format type='qcow2'/></backingStore></volume>
            """)
        #expect(overlay.path == "/var/lib/libvirt/vmctl/web1-root.qcow2")
        #expect(overlay.backingPath == "/images/base's & co.qcow2")
        #expect(try VolumeDefinition(xml: "<volume><target><path>/a</path></target></volume>").backingPath == nil)
        #expect(throws: XMLProblem.self) { try VolumeDefinition(xml: "<pool/>") }
    }
}
