import Foundation
import Libvirt
import Testing
import TestSupport

/// The whole path a VM takes, against the harness's real libvirtd and a real TCG guest.
extension Integration {
    @Suite("guest lifecycle")
    struct GuestLifecycleTests {
        @Test("a TCG guest on a qcow2 overlay gets exactly its reserved DHCP address; teardown leaves nothing",
              .timeLimit(.minutes(4)))
        func reservedAddressEndToEnd() async throws {
            let harness = try Harness.require()
            let connection = try await harness.connect()
            let id = uniqueSuffix()
            let octet = Int.random(in: 10...250)
            let gateway = "10.213.\(octet).1"
            let reserved = "10.213.\(octet).50"
            let mac = String(format: "52:54:00:%02x:%02x:%02x", octet, Int.random(in: 0...255), Int.random(in: 0...255))
            let bridge = "vmit\(id)"
            let scratch = try harness.scratch(id)

            // Storage: a dir pool, a base image and a qcow2 v3 overlay backed by it.
            let pool = try await harness.makeDirPool("it-pool-\(id)", in: scratch, on: connection)
            let base = try await pool.createVolume(xml: """
                <volume><name>base.qcow2</name><capacity unit='MiB'>64</capacity>
                  <target><format type='qcow2'/></target></volume>
                """)
            let basePath = try await base.path()
            let overlay = try await pool.createVolume(xml: """
                <volume><name>vm-\(id).qcow2</name><capacity unit='MiB'>64</capacity>
                  <target><format type='qcow2'/><compat>1.1</compat></target>
                  <backingStore><path>\(basePath)</path><format type='qcow2'/></backingStore></volume>
                """)
            let overlayPath = try await overlay.path()
            #expect(try await overlay.xml().contains("<path>\(basePath)</path>"))
            let image = try runProcess("/usr/bin/qemu-img", ["info", "--output=json", overlayPath])
            #expect(image.status == 0, "\(image.standardError)")
            #expect(image.standardOutput.contains("\"backing-filename\": \"\(basePath)\""), "\(image.standardOutput)")
            #expect(image.standardOutput.contains("\"compat\": \"1.1\""), "\(image.standardOutput)")
            let duplicate = await #expect(throws: LibvirtError.self) {
                _ = try await pool.createVolume(xml: "<volume><name>base.qcow2</name><capacity>1</capacity></volume>")
            }
            #expect(duplicate?.code == .storageVolumeExists)

            // Network: NAT with DHCP, and a host entry made live and persistent before first boot.
            let network = try await connection.defineNetwork(xml: """
                <network><name>it-net-\(id)</name><forward mode='nat'/><bridge name='\(bridge)'/>
                  <ip address='\(gateway)' prefix='24'>
                    <dhcp><range start='10.213.\(octet).100' end='10.213.\(octet).200'/></dhcp></ip></network>
                """)
            try await network.start()
            #expect(try await network.bridgeName() == bridge)
            let addresses = try harness.ip("-o", "-4", "addr", "show", "dev", bridge)
            #expect(addresses.standardOutput.contains("inet \(gateway)/24"), "\(addresses.standardOutput)\(addresses.standardError)")
            let host = "<host mac='\(mac)' name='vm-\(id)' ip='\(reserved)'/>"
            try await network.update(.add, .dhcpHost, parentIndex: 0, xml: host, affecting: [.live, .config])
            #expect(try await network.xml().contains("ip='\(reserved)'"))
            #expect(try await network.xml(inactive: true).contains("ip='\(reserved)'"))

            // Domain: TCG, direct kernel boot, the overlay as vda, one NIC, the console to a file.
            let events = EventRecorder(try await connection.domainEvents())
            let console = scratch.appendingPathComponent("console.log")
            let domain = try await connection.defineDomain(xml: harness.guestXML(
                name: "it-vm-\(id)", network: "it-net-\(id)", mac: mac, disk: overlayPath, console: console))
            try await domain.start()
            #expect(try await events.wait(for: .started, of: domain.uuid) != nil, "no started event")
            #expect(try await domain.state().state == .running)

            // The guest asks for a lease; dnsmasq must hand out exactly the reserved address.
            let lease = try await eventually(timeout: .seconds(90)) {
                try await network.dhcpLeases(mac: mac).first
            }
            #expect(lease?.address == reserved, "lease: \(String(describing: lease))")
            #expect(lease?.family == .ipv4)
            #expect(lease?.prefix == 24)
            let seen = try await domain.interfaceAddresses(source: .lease)
            #expect(seen.first { $0.mac == mac }?.addresses.map(\.address) == [reserved])
            let consoleText = try await harness.waitForConsoleLease(console, mac: mac, address: reserved, router: gateway)
            #expect(consoleText != nil, "console: \((try? String(contentsOf: console, encoding: .utf8)) ?? "<none>")")
            #expect(consoleText?.contains("vmctl-guest: disk vda sectors=131072") == true)

            // Teardown, step by step, each checked against libvirt's own view.
            try await domain.destroy()
            let stopped = try await events.wait(for: .stopped, of: domain.uuid)
            #expect(stopped?.detail == DomainEvent.StoppedDetail.destroyed.rawValue)
            try await domain.undefine()
            #expect(try await events.wait(for: .undefined, of: domain.uuid) != nil)
            await events.stop()
            let missing = await #expect(throws: LibvirtError.self) { _ = try await connection.domain(named: "it-vm-\(id)") }
            #expect(missing?.code == .noDomain)

            try await network.update(.delete, .dhcpHost, parentIndex: 0, xml: host, affecting: [.live, .config])
            #expect(try await !network.xml().contains(mac))
            #expect(try await !network.xml(inactive: true).contains(mac))
            try await network.destroy()
            try await network.undefine()
            #expect(try await !connection.networks().map(\.name).contains("it-net-\(id)"))
            #expect(try harness.ip("link", "show", "dev", bridge).status != 0, "bridge \(bridge) is still there")

            try await overlay.delete()
            try await base.delete()
            #expect(try await pool.volumes().isEmpty)
            #expect(!FileManager.default.fileExists(atPath: overlayPath))
            try await harness.removeDirPool(pool)
            #expect(try await !connection.storagePools().map(\.name).contains("it-pool-\(id)"))
            #expect(!FileManager.default.fileExists(atPath: scratch.appendingPathComponent("pool").path))
        }

        @Test("a volume is filled through libvirt's upload stream, from memory and from a file")
        func upload() async throws {
            let harness = try Harness.require()
            let connection = try await harness.connect()
            let id = uniqueSuffix()
            let scratch = try harness.scratch(id)
            let pool = try await harness.makeDirPool("it-upload-\(id)", in: scratch, on: connection)
            let size = 3 << 20 + 12_345  // several chunks and a partial one
            let volume = try await pool.createVolume(xml: """
                <volume><name>data.raw</name><capacity>\(size)</capacity><target><format type='raw'/></target></volume>
                """)
            let path = try await volume.path()

            let pattern = Data((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
            try await volume.upload(pattern)
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == pattern)

            let source = scratch.appendingPathComponent("source.bin")
            let other = Data(pattern.reversed())
            try other.write(to: source)
            try await volume.upload(contentsOf: source)
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == other)

            let missing = await #expect(throws: LibvirtError.self) {
                try await volume.upload(contentsOf: scratch.appendingPathComponent("nope"))
            }
            #expect(missing?.message.contains("nope") == true)

            try await volume.delete()
            try await harness.removeDirPool(pool)
        }

        @Test("the QEMU driver's errors carry its code and the name that was looked up")
        func qemuDriverErrors() async throws {
            let harness = try Harness.require()
            let connection = try await harness.connect()
            let error = await #expect(throws: LibvirtError.self) { _ = try await connection.domain(named: "it-missing-vm") }
            #expect(error?.code == .noDomain)
            #expect(error?.domain == .qemu)
            #expect(error?.message.contains("'it-missing-vm'") == true)
            #expect(try await connection.setKeepAlive(interval: 5, count: 3))
            #expect(try await connection.isAlive())
        }
    }
}
