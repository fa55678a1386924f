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
    private var heldLeases: [DHCPLease] = []

    /// What dnsmasq is said to hold.
    var leases: [DHCPLease] {
        get { lock.withLock { heldLeases } }
        set { lock.withLock { heldLeases = newValue } }
    }

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

    func dhcpLeases(mac: String?) async throws(LibvirtError) -> [DHCPLease] { leases }

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

/// A host whose routes and lease releases are only recorded: "add ADDR BRIDGE", "remove ...",
/// "release ADDR MAC". With `unavailable` set, routes cannot be changed, for that reason.
final class RecordingHost: HostSide, @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [String] = []
    let unavailable: String?

    init(unavailable: String? = nil) { self.unavailable = unavailable }

    var changes: [String] { lock.withLock { recorded } }

    func routesUnavailable(bridge: String) -> String? { unavailable }
    func addRoute(to address: IPAddress, bridge: String) async throws(ProvisioningError) { lock.withLock { recorded.append("add \(address) \(bridge)") } }
    func removeRoute(to address: IPAddress, bridge: String) async throws(ProvisioningError) { lock.withLock { recorded.append("remove \(address) \(bridge)") } }
    func releaseLease(_ address: IPAddress, mac: MACAddress, bridge: String) async -> Bool {
        lock.withLock { recorded.append("release \(address) \(mac) \(bridge)") }
        return unavailable == nil
    }
    func forgetNeighbour(_ address: IPAddress, bridge: String) async { lock.withLock { recorded.append("forget \(address) \(bridge)") } }
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
        let store = try SQLiteStore(path: directory.appendingPathComponent("state.sqlite").path)
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
            let reservations = Reservations(state: state, connection: FakeDirectory(networks: [network]), host: RecordingHost())
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
            _ = try await Reservations(state: state, connection: FakeDirectory(networks: [stopped]), host: RecordingHost())
                .reserve(from: pool, mac: MACAddress("52:54:00:40:00:02")!, owner: "a", requested: [IPAddress("10.40.0.11")!])
            #expect(stopped.updates.map(\.3) == [.config])
        }
        try await Self.withStore { state, pool in
            let transient = FakeNetwork(name: "lan", xml: Self.networkXML, persistent: false)
            _ = try await Reservations(state: state, connection: FakeDirectory(networks: [transient]), host: RecordingHost())
                .reserve(from: pool, mac: MACAddress("52:54:00:40:00:03")!, owner: "b", requested: [IPAddress("10.40.0.11")!])
            #expect(transient.updates.map(\.3) == [.live])
        }
    }

    @Test("when libvirt refuses the host entry, nothing stays allocated")
    func refusedEntry() async throws {
        try await Self.withStore { state, pool in
            let network = FakeNetwork(name: "lan", xml: Self.networkXML)
            network.failUpdates = LibvirtError(code: .operationInvalid, domain: .network, message: "there is an existing dhcp host entry")
            let reservations = Reservations(state: state, connection: FakeDirectory(networks: [network]), host: RecordingHost())
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
            let reservations = Reservations(state: state, connection: FakeDirectory(networks: []), host: RecordingHost())
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

    @Test("an address outside the network's subnets gets a host route to its bridge while reserved, and none without a way to make one")
    func hostRoutes() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-routes-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let state = State(store: try SQLiteStore(path: directory.appendingPathComponent("state.sqlite").path))
        let layout = try PoolLayout(ranges: [AddressRange("203.0.113.16-203.0.113.17")!, AddressRange("10.40.0.20")!],
                                    subnets: [(Subnet("10.40.0.0/24")!, IPAddress("10.40.0.1"))], allUsable: true)
        let pool = Pool(name: "pub", network: "lan", layout: layout, allUsable: true)
        try state.store.create(pool)
        let network = FakeNetwork(name: "lan", xml: Self.networkXML)
        let host = RecordingHost()
        let reservations = Reservations(state: state, connection: FakeDirectory(networks: [network]), host: host)
        let mac = MACAddress("52:54:00:40:00:06")!
        let routed = try await reservations.reserve(from: pool, mac: mac, owner: "edge", requested: [IPAddress("203.0.113.16")!])
        #expect(routed.map(\.address.description) == ["203.0.113.16"])  // the subnet's network address: usable
        #expect(host.changes == ["add 203.0.113.16 vmbr9"])
        #expect(network.updates.isEmpty)  // dnsmasq does not serve it: no host entry
        let inside = try await reservations.reserve(from: pool, mac: MACAddress("52:54:00:40:00:07")!, owner: "lan1", requested: [IPAddress("10.40.0.20")!])
        #expect(host.changes == ["add 203.0.113.16 vmbr9"])
        #expect(network.updates.count == 1)
        try await reservations.release(routed[0])
        try await reservations.release(inside[0])
        #expect(host.changes == ["add 203.0.113.16 vmbr9", "remove 203.0.113.16 vmbr9", "forget 203.0.113.16 vmbr9",
                                 "release 10.40.0.20 52:54:00:40:00:07 vmbr9", "forget 10.40.0.20 vmbr9"])

        // Where the route cannot be made, the reservation is refused and nothing stays allocated.
        let elsewhere = Reservations(state: state, connection: FakeDirectory(networks: [network]), host: RecordingHost(unavailable: "bridge vmbr9 is not in this network namespace"))
        let refused = await failure { () async throws(ProvisioningError) in
            _ = try await elsewhere.reserve(from: pool, mac: mac, owner: "edge", requested: [IPAddress("203.0.113.16")!])
        }
        #expect(refused == "address 203.0.113.16 of pool pub is outside the subnets of network lan and needs a host route to bridge vmbr9, but bridge vmbr9 is not in this network namespace (run vmctl as root where libvirtd's bridges are (e.g. ip netns exec NS vmctl ...))")
        let left = try state.store.allocations()
        #expect(left.isEmpty)
        // A stopped network has no bridge: nothing to route until it starts.
        let stopped = FakeNetwork(name: "lan", xml: Self.networkXML, running: false)
        let later = RecordingHost()
        let whileStopped = Reservations(state: state, connection: FakeDirectory(networks: [stopped]), host: later)
        _ = try await whileStopped.reserve(from: pool, mac: mac, owner: "edge", requested: [IPAddress("203.0.113.17")!])
        #expect(later.changes.isEmpty)
    }

    @Test("an address dnsmasq still leases to another MAC is skipped, or refused when asked for")
    func staleLeases() async throws {
        try await Self.withStore { state, pool in
            let network = FakeNetwork(name: "lan", xml: Self.networkXML)
            network.leases = [DHCPLease(interface: "vmbr9", expiry: Date(timeIntervalSinceNow: 3600), family: .ipv4, mac: "52:54:00:99:99:99",
                                        iaid: nil, address: "10.40.0.10", prefix: 24, hostname: nil, clientID: nil)]
            let reservations = Reservations(state: state, connection: FakeDirectory(networks: [network]), host: RecordingHost())
            let made = try await reservations.reserve(from: pool, mac: MACAddress("52:54:00:40:00:08")!, owner: "next")
            #expect(made.map(\.address.description) == ["10.40.0.11", "fd00:40::10"])
            for allocation in made { try await reservations.release(allocation) }
            let refused = await failure { () async throws(ProvisioningError) in
                _ = try await reservations.reserve(from: pool, mac: MACAddress("52:54:00:40:00:08")!, owner: "next", requested: [IPAddress("10.40.0.10")!])
            }
            #expect(refused == "address 10.40.0.10 is still leased by network lan's dnsmasq to MAC 52:54:00:99:99:99 (take another address, or end that lease (dhcp_release vmbr9 10.40.0.10 52:54:00:99:99:99 where the bridge is))")
            // The lease's own MAC may have it.
            let same = try await reservations.reserve(from: pool, mac: MACAddress("52:54:00:99:99:99")!, owner: "back", requested: [IPAddress("10.40.0.10")!])
            #expect(same.map(\.address.description) == ["10.40.0.10"])
            let held = try state.store.allocations()
            #expect(held.count == 1)
        }
    }
}

/// The message (and hint, in parentheses) of the ProvisioningError `body` throws, or nil.
private func failure(_ body: () async throws(ProvisioningError) -> Void) async -> String? {
    do throws(ProvisioningError) {
        try await body()
        return nil
    } catch {
        return error.hint.map { "\(error.message) (\($0))" } ?? error.message
    }
}
