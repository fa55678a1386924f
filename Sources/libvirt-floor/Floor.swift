import Foundation
import Libvirt

/// The floor libvirt sets for scripts/bench: the libvirt calls a VM with an overlay disk and a
/// reserved address needs, made directly through the binding by a small program, nothing else.
///
///   libvirt-floor create NAME BASE NETWORK MAC IP KERNEL INITRD [wait]
///   libvirt-floor create-seeded NAME BASE NETWORK MAC IP KERNEL INITRD CMDLINE SEED.iso
///       (512 MiB, the cloud-init seed on a SATA CD-ROM: the Debian guest of `vmctl-bench ssh`)
///   libvirt-floor destroy NAME NETWORK MAC IP
///
/// Volumes go to the storage pool `vmctl`; uses $VMCTL_CONNECT.
@main
enum Floor {
    static func main() async {
        do {
            try await run(Array(CommandLine.arguments.dropFirst()))
        } catch {
            FileHandle.standardError.write(Data("libvirt-floor: \(error)\n".utf8))
            exit(1)
        }
    }

    static func run(_ arguments: [String]) async throws {
        let connection = try await Connection.open(ProcessInfo.processInfo.environment["VMCTL_CONNECT"] ?? "qemu:///system")
        switch (arguments.first, arguments.count) {
        case ("create", 8), ("create", 9):
            let (name, base, networkName, mac, ip, kernel, initrd) =
                (arguments[1], arguments[2], arguments[3], arguments[4], arguments[5], arguments[6], arguments[7])
            let network = try await create(name, base: base, network: networkName, mac: mac, ip: ip, kernel: kernel, initrd: initrd,
                                           cmdline: "console=ttyS0 quiet", memoryMiB: 160, seed: nil, on: connection)
            if arguments.count == 9 {
                while try await !network.dhcpLeases(mac: mac).contains(where: { $0.address == ip }) {
                    try await Task.sleep(for: .milliseconds(250))
                }
            }
        case ("create-seeded", 10):
            _ = try await create(arguments[1], base: arguments[2], network: arguments[3], mac: arguments[4], ip: arguments[5],
                                 kernel: arguments[6], initrd: arguments[7], cmdline: arguments[8], memoryMiB: 512, seed: arguments[9],
                                 on: connection)
        case ("destroy", 5):
            let (name, networkName, mac, ip) = (arguments[1], arguments[2], arguments[3], arguments[4])
            let domain = try await connection.domain(named: name)
            try await domain.destroy()
            try await domain.undefine([.nvram])
            try await connection.storagePool(named: "vmctl").volume(named: "\(name)-root.qcow2").delete()
            try await connection.network(named: networkName)
                .update(.delete, .dhcpHost, parentIndex: 0, xml: "<host mac='\(mac)' ip='\(ip)'/>", affecting: [.live, .config])
        default:
            throw FloorError.usage
        }
    }

    /// The overlay volume, the DHCP reservation (live and config), the domain (with the seed on a
    /// SATA CD-ROM when given), started. Returns the network, for waiting on its leases.
    static func create(_ name: String, base: String, network networkName: String, mac: String, ip: String, kernel: String, initrd: String,
                       cmdline: String, memoryMiB: Int, seed: String?, on connection: Connection) async throws -> Network {
        let pool = try await connection.storagePool(named: "vmctl")
        let volume = try await pool.createVolume(xml: """
            <volume><name>\(name)-root.qcow2</name><capacity unit='bytes'>0</capacity>
              <target><format type='qcow2'/><compat>1.1</compat></target>
              <backingStore><path>\(base)</path><format type='qcow2'/></backingStore></volume>
            """)
        let network = try await connection.network(named: networkName)
        try await network.update(.add, .dhcpHost, parentIndex: 0, xml: "<host mac='\(mac)' ip='\(ip)'/>", affecting: [.live, .config])
        let seedDisk = seed.map {
            "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='\($0)'/><target dev='sda' bus='sata'/><readonly/></disk>"
        } ?? ""
        let domain = try await connection.defineDomain(xml: """
            <domain type='qemu'><name>\(name)</name><memory unit='MiB'>\(memoryMiB)</memory><vcpu>1</vcpu>
              <os><type arch='x86_64'>hvm</type><kernel>\(kernel)</kernel><initrd>\(initrd)</initrd>
                <cmdline>\(cmdline)</cmdline></os>
              <features><acpi/><apic/></features>
              <devices>
                <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
                  <source file='\(try await volume.path())'/><target dev='vda' bus='virtio'/></disk>
                \(seedDisk)
                <interface type='network'><source network='\(networkName)'/><mac address='\(mac)'/><model type='virtio'/></interface>
                <serial type='pty'><target port='0'/></serial><console type='pty'><target type='serial' port='0'/></console>
              </devices></domain>
            """)
        try await domain.start()
        return network
    }

    enum FloorError: Error, CustomStringConvertible {
        case usage
        var description: String { "usage: libvirt-floor create|create-seeded|destroy ..." }
    }
}
