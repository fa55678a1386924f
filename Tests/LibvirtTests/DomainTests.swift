import Foundation
import Testing
@testable import Libvirt

@Suite("Domain")
struct DomainTests {
    @Test("define, look up, start, inspect, destroy and undefine")
    func lifecycle() async throws {
        let connection = try await TestDriver.connect()
        let name = TestDriver.uniqueName("dom")
        let uuid = UUID()
        let domain = try await connection.defineDomain(xml: TestDriver.domainXML(name: name, uuid: uuid))
        #expect(domain.name == name)
        #expect(domain.uuid == uuid)
        #expect(try await domain.isPersistent())
        #expect(try await domain.isActive() == false)
        #expect(try await domain.state().state == .shutoff)
        #expect(await domain.id() == nil)

        #expect(try await connection.domain(named: name).uuid == uuid)
        #expect(try await connection.domain(uuid: uuid).name == name)

        try await domain.start()
        #expect(try await domain.state().state == .running)
        #expect(await domain.id() != nil)
        let info = try await domain.info()
        #expect(info.vcpus == 2)
        #expect(info.maxMemoryKiB == 64 * 1024)
        #expect(try await domain.xml().contains("<name>\(name)</name>"))
        #expect(try await domain.xml(.inactive).contains("<uuid>\(uuid.uuidString.lowercased())</uuid>"))

        // One statistics call reports what a listing shows, for a running domain and a stopped one.
        let other = try await connection.defineDomain(xml: TestDriver.domainXML(name: TestDriver.uniqueName("dom"), uuid: UUID()))
        defer { Task { try? await other.undefine() } }
        let statistics = try await connection.domainStatistics([.state, .vcpu, .balloon])
        let mine = try #require(statistics.first { $0.domain.uuid == uuid })
        #expect(mine.domain.name == name && mine.state == .running && mine.values["state.reason"] != nil)
        // The test driver reports only the state group (QEMU's reports vcpu.* and balloon.* too,
        // inactive domains included: the integration tests' listing relies on it).
        let stoppedRecord = try #require(statistics.first { $0.domain.uuid == other.uuid })
        #expect(stoppedRecord.state == .shutoff)
        #expect(try await connection.domainStatistics(.state, filter: .shutoff).allSatisfy { $0.state == .shutoff })

        let running = try await connection.domains(.active).map(\.name)
        let stopped = try await connection.domains(.inactive).map(\.name)
        #expect(running.contains(name))
        #expect(!stopped.contains(name))

        try await domain.setAutostart(true)
        #expect(try await domain.autostart())

        try await domain.destroy()
        #expect(try await domain.state().state == .shutoff)
        #expect(try await connection.domains(.inactive).map(\.name).contains(name))

        try await domain.undefine()
        let error = await #expect(throws: LibvirtError.self) { _ = try await connection.domain(named: name) }
        #expect(error?.code == .noDomain)
        #expect(try await !connection.domains().map(\.name).contains(name))
    }

    @Test("defining invalid XML throws an XML error naming the problem")
    func invalidXML() async throws {
        let connection = try await TestDriver.connect()
        let error = await #expect(throws: LibvirtError.self) {
            _ = try await connection.defineDomain(xml: "<domain type='test'><name>x</name>")
        }
        #expect(error?.code == .xmlDetail || error?.code == .xmlError)
    }

    @Test("metadata in a custom namespace is set, read back, replaced and removed")
    func metadata() async throws {
        let connection = try await TestDriver.connect()
        let domain = try await connection.defineDomain(xml: TestDriver.domainXML(name: TestDriver.uniqueName("meta")))
        defer { Task { try? await domain.undefine() } }
        let namespace = "https://vmctl.dev/xmlns/test/1"
        #expect(try await domain.metadata(namespace: namespace) == nil)

        try await domain.setMetadata(
            "<vm><label key='ci'>yes</label></vm>", prefix: "vmctl", namespace: namespace, affecting: .config)
        let stored = try #require(try await domain.metadata(namespace: namespace, affecting: .config))
        #expect(stored.contains("<label key=\"ci\">yes</label>"))
        #expect(try await domain.xml(.inactive).contains("xmlns:vmctl=\"\(namespace)\""))

        try await domain.setMetadata("<vm expires='never'/>", prefix: "vmctl", namespace: namespace, affecting: .config)
        let replaced = try #require(try await domain.metadata(namespace: namespace, affecting: .config))
        #expect(replaced.contains("expires=\"never\""))
        #expect(!replaced.contains("label"))

        try await domain.setMetadata(nil, prefix: "vmctl", namespace: namespace, affecting: .config)
        #expect(try await domain.metadata(namespace: namespace, affecting: .config) == nil)
    }

    @Test("interface addresses come back typed")
    func interfaceAddresses() async throws {
        let connection = try await TestDriver.connect()
        let domain = try await connection.defineDomain(
            xml: TestDriver.domainXML(name: TestDriver.uniqueName("addr"), mac: "52:54:00:ab:cd:ef"))
        try await domain.start()
        defer { Task { try? await domain.destroy(); try? await domain.undefine() } }
        // The test driver invents one IPv4 address per interface.
        let interfaces = try await domain.interfaceAddresses(source: .lease)
        let interface = try #require(interfaces.first)
        #expect(interface.mac == "52:54:00:ab:cd:ef")
        #expect(interface.addresses.contains { $0.family == .ipv4 && !$0.address.isEmpty })
    }

    @Test("lifecycle events arrive as an async sequence, and the sequence ends on cancel")
    func events() async throws {
        let connection = try await TestDriver.connect()
        let name = TestDriver.uniqueName("events")
        let events = try await connection.domainEvents()
        let collector = Task {
            var seen: [DomainEvent] = []
            for await event in events where event.domainName == name {
                seen.append(event)
                if event.kind == .undefined { break }
            }
            return seen
        }
        let domain = try await connection.defineDomain(xml: TestDriver.domainXML(name: name))
        try await domain.start()
        try await domain.destroy()
        try await domain.undefine()
        let seen = await collector.value
        #expect(seen.map(\.kind) == [.defined, .started, .stopped, .undefined])
        #expect(seen.allSatisfy { $0.domainUUID == domain.uuid })
        #expect(seen.first { $0.kind == .stopped }?.detail == DomainEvent.StoppedDetail.destroyed.rawValue)
    }
}
