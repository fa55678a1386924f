import Addressing
import AllocationStore
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Libvirt
import LibvirtXML
import Testing
@testable import Provisioning

/// A network kept in memory: its live and persistent XML, changed by DHCP host updates as
/// libvirt changes them. Enough for reservations; no daemon.
final class FakeNetwork: ReservableNetwork, @unchecked Sendable {
    let name: String
    private let lock = NSLock()
    private var live: String?
    private var persistent: String?
    private var failure: LibvirtError?
    private var recorded: [(Network.UpdateCommand, Int?, String, Affect)] = []

    /// A failure every update throws, to test the undo.
    var failUpdates: LibvirtError? {
        get { lock.withLock { failure } }
        set { lock.withLock { failure = newValue } }
    }
    /// The updates made, in order.
    var updates: [(Network.UpdateCommand, Int?, String, Affect)] { lock.withLock { recorded } }

    init(name: String, xml: String, running: Bool = true, persistent: Bool = true) {
        self.name = name
        live = running ? xml : nil
        self.persistent = persistent ? xml : nil
    }

    func isActive() async throws(LibvirtError) -> Bool { lock.withLock { live != nil } }
    func isPersistent() async throws(LibvirtError) -> Bool { lock.withLock { persistent != nil } }
    func xml(inactive: Bool) async throws(LibvirtError) -> String {
        lock.withLock { (inactive ? persistent : live) ?? persistent ?? "" }
    }

    func copy(live wantLive: Bool) -> String? { lock.withLock { wantLive ? live : persistent } }

    func update(_ command: Network.UpdateCommand, _ section: Network.UpdateSection, parentIndex: Int?, xml: String,
                affecting: Affect) async throws(LibvirtError) {
        if let failUpdates { throw failUpdates }
        lock.withLock {
            recorded.append((command, parentIndex, xml, affecting))
            if affecting.contains(.live), let current = live { live = Self.apply(command, xml, at: parentIndex ?? 0, to: current) }
            if affecting.contains(.config), let current = persistent { persistent = Self.apply(command, xml, at: parentIndex ?? 0, to: current) }
        }
    }

    private static func apply(_ command: Network.UpdateCommand, _ host: String, at index: Int, to xml: String) -> String {
        let document = try! XMLDocument(xmlString: xml)
        let ip = document.rootElement()!.elements(forName: "ip")[index]
        let dhcp = ip.elements(forName: "dhcp").first ?? { let made = XMLElement(name: "dhcp"); ip.addChild(made); return made }()
        let entry = try! XMLElement(xmlString: host)
        if command == .add {
            dhcp.addChild(entry)
        } else {
            for existing in dhcp.elements(forName: "host") where existing.attribute(forName: "ip")?.stringValue == entry.attribute(forName: "ip")?.stringValue {
                existing.detach()
            }
        }
        return document.rootElement()!.xmlString
    }
}

struct FakeDirectory: NetworkDirectory {
    var networks: [FakeNetwork]
    func reservableNetwork(named name: String) async throws(ProvisioningError) -> (any ReservableNetwork)? {
        networks.first { $0.name == name }
    }
}

@Suite("reservations, without a daemon")
struct ReservationsTests {
    static let networkXML = """
        <network><name>lan</name><forward mode='open'/><bridge name='vmbr9'/>
          <ip address='10.40.0.1' prefix='24'><dhcp><range start='10.40.0.200' end='10.40.0.250'/></dhcp></ip>
          <ip family='ipv6' address='fd00:40::1' prefix='64'><dhcp><range start='fd00:40::100' end='fd00:40::1ff'/></dhcp></ip>
        </network>
        """

    /// A store in a scratch directory, removed at the end, with one dual-stack pool on `lan`.
    static func withStore(_ body: (State, Pool) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-reservations-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try AllocationStore(path: directory.appendingPathComponent("state.sqlite").path)
        let layout = try PoolLayout(ranges: [AddressRange("10.40.0.10-10.40.0.11")!, AddressRange("fd00:40::10-fd00:40::11")!],
                                    subnets: [(Subnet("10.40.0.0/24")!, IPAddress("10.40.0.1")), (Subnet("fd00:40::/64")!, IPAddress("fd00:40::1"))])
        let pool = Pool(name: "p", network: "lan", layout: layout, allUsable: false)
        try store.create(pool)
        try await body(State(store: store), pool)
    }

    @Test("reserving allocates one address a family and adds each host entry to the live and persistent config, under its <ip>")
    func reserve() async throws {
        try await Self.withStore { state, pool in
            let network = FakeNetwork(name: "lan", xml: Self.networkXML)
            let reservations = Reservations(state: state, connection: FakeDirectory(networks: [network]))
            let mac = MACAddress("52:54:00:40:00:01")!
            let made = try await reservations.reserve(from: pool, mac: mac, owner: "web1")
            #expect(made.map(\.address.description) == ["10.40.0.10", "fd00:40::10"])
            for live in [true, false] {
                let definition = try NetworkDefinition(xml: try #require(network.copy(live: live)))
                #expect(definition.ips[0].hosts == [.reservation(mac: mac, address: IPAddress("10.40.0.10")!, owner: "web1")])
                #expect(definition.ips[1].hosts == [.reservation(mac: mac, address: IPAddress("fd00:40::10")!, owner: "web1")])
            }
            #expect(network.updates.map(\.1) == [0, 1])

            // Released: entries first, then the addresses; releasing again is no failure.
            for allocation in made { try await reservations.release(allocation) }
            #expect(try NetworkDefinition(xml: try #require(network.copy(live: true))).ips.allSatisfy(\.hosts.isEmpty))
            let left = try state.store.allocations()
            #expect(left.isEmpty)
            try await reservations.release(made[0])
        }
    }

    @Test("a stopped network gets only the persistent entry; a transient one only the live")
    func copies() async throws {
        try await Self.withStore { state, pool in
            let stopped = FakeNetwork(name: "lan", xml: Self.networkXML, running: false)
            _ = try await Reservations(state: state, connection: FakeDirectory(networks: [stopped]))
                .reserve(from: pool, mac: MACAddress("52:54:00:40:00:02")!, owner: "a", requested: [IPAddress("10.40.0.11")!])
            #expect(stopped.updates.map(\.3) == [.config])
        }
        try await Self.withStore { state, pool in
            let transient = FakeNetwork(name: "lan", xml: Self.networkXML, persistent: false)
            _ = try await Reservations(state: state, connection: FakeDirectory(networks: [transient]))
                .reserve(from: pool, mac: MACAddress("52:54:00:40:00:03")!, owner: "b", requested: [IPAddress("10.40.0.11")!])
            #expect(transient.updates.map(\.3) == [.live])
        }
    }

    @Test("when libvirt refuses the host entry, nothing stays allocated")
    func refusedEntry() async throws {
        try await Self.withStore { state, pool in
            let network = FakeNetwork(name: "lan", xml: Self.networkXML)
            network.failUpdates = LibvirtError(code: .operationInvalid, domain: .network, message: "there is an existing dhcp host entry")
            let reservations = Reservations(state: state, connection: FakeDirectory(networks: [network]))
            await #expect(throws: ProvisioningError.self) {
                _ = try await reservations.reserve(from: pool, mac: MACAddress("52:54:00:40:00:04")!, owner: "c")
            }
            let left = try state.store.allocations()
            #expect(left.isEmpty)
        }
    }

    @Test("a pool whose network is gone is refused before anything is allocated for good")
    func missingNetwork() async throws {
        try await Self.withStore { state, pool in
            let reservations = Reservations(state: state, connection: FakeDirectory(networks: []))
            do {
                _ = try await reservations.reserve(from: pool, mac: MACAddress("52:54:00:40:00:05")!, owner: "d")
                Issue.record("reserved on a missing network")
            } catch let error as ProvisioningError {
                #expect(error.code == .notFound && error.message.contains("network lan of pool p does not exist"))
            }
            let left = try state.store.allocations()
            #expect(left.isEmpty)
        }
    }
}
