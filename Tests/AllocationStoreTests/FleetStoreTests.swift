import Addressing
@testable import AllocationStore
import Foundation
import GRDB
@testable import PostgresStore
import TestSupport
import Testing

@Suite("Hosts and placement")
struct FleetStoreTests {
    @Test("hosts are added once, listed by name with their labels, found and removed", arguments: Backend.allCases)
    func hosts(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let added = Date(timeIntervalSince1970: 1_800_000_000)
        try store.add(HostRecord(name: "host2", uri: "qemu+ssh://root@h2/system", labels: ["rack": "b", "ssd": "yes"], addedAt: added))
        try store.add(HostRecord(name: "host1", uri: "qemu:///system", addedAt: added))
        #expect(throws: StoreError.hostExists("host1")) { try store.add(HostRecord(name: "host1", uri: "qemu:///session")) }
        #expect(try store.hosts().map(\.name) == ["host1", "host2"])
        #expect(try store.host(named: "host2") == HostRecord(name: "host2", uri: "qemu+ssh://root@h2/system", labels: ["rack": "b", "ssd": "yes"], addedAt: added))
        try store.removeHost(named: "host1")
        #expect(throws: StoreError.noSuchHost("host1")) { try store.removeHost(named: "host1") }
        #expect(throws: StoreError.noSuchHost("host1")) { try store.host(named: "host1") }
        #expect(StoreError.noSuchHost("h").description == "no host named h; see vmctl host list")
    }

    @Test("the host of an allocation and of a create is kept", arguments: Backend.allCases)
    func hostRecorded(_ backend: Backend) throws {
        let store = try makeStore(backend)
        try store.create(try smallPool())
        let allocation = try store.allocate(from: "public", family: .ipv4, ownerName: "web", mac: mac(1), host: "host2")
        #expect(allocation.host == "host2")
        #expect(try store.allocations().map(\.host) == ["host2"])
        try store.begin(PendingCreate(name: "web", uuid: UUID(), process: "b:1:2", host: "host2", memory: 64 << 20))
        #expect(try store.pendingCreates().map { "\($0.host ?? "-") \($0.memory)" } == ["host2 \(64 << 20)"])
    }

    @Test("placement: most free memory once creates under way are counted; near-equal memory goes to fewer VMs, then by name")
    func placementRule() {
        let gib: UInt64 = 1 << 30
        let a = PlacementCandidate(host: "a", freeMemory: 8 * gib, vms: 3)
        let b = PlacementCandidate(host: "b", freeMemory: 4 * gib, vms: 0)
        #expect(Placement.choose(among: [b, a], underWay: []) == "a")
        // 5 GiB promised on a: b has more left.
        let onA = (0..<5).map { PendingCreate(name: "p\($0)", uuid: UUID(), process: "x", host: "a", memory: gib) }
        #expect(Placement.choose(among: [a, b], underWay: onA) == "b")
        // Within 256 MiB counts as equal: fewer VMs decides, creates under way included.
        let c = PlacementCandidate(host: "c", freeMemory: 8 * gib + (100 << 20), vms: 2)
        #expect(Placement.choose(among: [a, c], underWay: []) == "c")
        #expect(Placement.choose(among: [a, c], underWay: [PendingCreate(name: "q", uuid: UUID(), process: "x", host: "c", memory: 0),
                                                           PendingCreate(name: "r", uuid: UUID(), process: "x", host: "c", memory: 0)]) == "a")
        let twin = PlacementCandidate(host: "b2", freeMemory: 4 * gib, vms: 0)
        #expect(Placement.choose(among: [twin, b], underWay: []) == "b")
        #expect(Placement.choose(among: [], underWay: []) == nil)
    }

    @Test("20 creates placed at once on two equal hosts, by separate clients: 10 each", arguments: Backend.allCases)
    func placementUnderContention(_ backend: Backend) throws {
        let location = try backend.freshLocation()
        _ = try backend.open(location)
        let candidates = [PlacementCandidate(host: "host1", freeMemory: 16 << 30, vms: 0),
                          PlacementCandidate(host: "host2", freeMemory: 16 << 30, vms: 0)]
        let placed = Placed()
        DispatchQueue.concurrentPerform(iterations: 20) { index in
            let store = try? backend.open(location)
            let entry = try? store?.begin(PendingCreate(name: "vm\(index)", uuid: UUID(), process: "b:\(index):1", memory: 64 << 20),
                                          placingOn: candidates)
            placed.add(entry?.host)
        }
        #expect(placed.hosts.sorted { ($0 ?? "") < ($1 ?? "") } == Array(repeating: "host1", count: 10) + Array(repeating: "host2", count: 10))
        #expect(Set(try backend.open(location).pendingCreates().compactMap(\.host)) == ["host1", "host2"])
    }

    @Test("a state migrated by a newer vmctl is refused, naming the migration", arguments: Backend.allCases)
    func newerSchema(_ backend: Backend) throws {
        let location = try backend.freshLocation()
        _ = try backend.open(location)
        switch backend {
        case .postgres:
            let added = try runProcess("/usr/bin/psql", ["-X", "-q", location, "-c", "INSERT INTO vmctl_migration VALUES ('v99: the future', now())"])
            #expect(added.status == 0, "\(added.standardError)")
        case .sqlite:
            try DatabaseQueue(path: location).write { try $0.execute(sql: "INSERT INTO grdb_migrations VALUES ('v99: the future')") }
        }
        let error = #expect(throws: StoreError.self) { try backend.open(location) }
        #expect(error?.description.contains("it was migrated by a newer vmctl (v99: the future); upgrade this vmctl") == true)
        let prefix = backend == .postgres ? "cannot use the state database postgres://postgres@/" : "cannot use the state file \(location)"
        #expect(error?.description.hasPrefix(prefix) == true, "\(error?.description ?? "")")
    }

    @Test("a SQLite file of the previous schema (v4) gains the hosts, keeping its allocations")
    func sqliteUpgrade() throws {
        let path = try Backend.sqlite.freshLocation()
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        // The schema as vmctl 0.2 left it, with one allocation.
        let old = try DatabaseQueue(path: path)
        try SQLiteStore.migrator.migrate(old, upTo: "v4: images")
        try old.write { db in
            try db.execute(sql: "INSERT INTO pool VALUES ('public', 'net1', ?, 0, '2026-01-01 00:00:00')",
                           arguments: [String(decoding: try JSONEncoder().encode(try smallPool().layout), as: UTF8.self)])
            try db.execute(sql: """
                INSERT INTO allocation (pool, network, address, family, ownerUUID, ownerName, mac, createdAt)
                VALUES ('public', 'net1', '192.0.2.10', 'ipv4', NULL, 'web', '52:54:00:00:00:01', '2026-01-01 00:00:00')
                """)
        }
        try old.close()
        let store = try SQLiteStore(path: path)
        #expect(try store.allocations().map { "\($0.address) \($0.ownerName) \($0.host ?? "-")" } == ["192.0.2.10 web -"])
        #expect(try store.hosts().isEmpty)
        try store.add(HostRecord(name: "h", uri: "qemu:///system"))
    }

    @Test("postgres:// URLs: TCP or a socket directory, the password never printed, bad parts named")
    func urls() throws {
        let tcp = try PostgresURL("postgres://vmctl:s%40cret@db.example:5433/fleet?sslmode=require")
        #expect(tcp.endpoint == .tcp(host: "db.example", port: 5433) && tcp.user == "vmctl" && tcp.password == "s@cret")
        #expect(tcp.database == "fleet" && tcp.tls == .require)
        #expect(tcp.description == "postgres://vmctl:***@db.example:5433/fleet?sslmode=require")
        let socket = try PostgresURL("postgresql://postgres@/postgres?host=/tmp/pg")
        #expect(socket.endpoint == .socket(path: "/tmp/pg/.s.PGSQL.5432") && socket.description == "postgres://postgres@/postgres?host=/tmp/pg")
        #expect(try PostgresURL("postgres://vmctl@db/").database == "vmctl")
        #expect(PostgresURL.redacted("postgres://u:pw@h/d?bogus=1") == "postgres://u:***@h/d?bogus=1")
        for (bad, why) in [("postgres://db/fleet", "no user"), ("postgres://u@/fleet", "no host"), ("postgres://u@h/d?sslmode=verify", "sslmode verify"),
                           ("postgres://u@h/d?bogus=1", "unknown parameter bogus"), ("postgres://u@h:0/d", "bad port 0")] {
            let error = #expect(throws: PostgresURL.Invalid.self) { try PostgresURL(bad) }
            #expect(error?.description.contains(why) == true, "\(bad): \(error.map { "\($0)" } ?? "accepted")")
        }
    }
}

/// Hosts chosen from several threads.
final class Placed: @unchecked Sendable {
    private let lock = NSLock()
    private var chosen: [String?] = []
    func add(_ host: String?) { lock.withLock { chosen.append(host) } }
    var hosts: [String?] { lock.withLock { chosen } }
}
