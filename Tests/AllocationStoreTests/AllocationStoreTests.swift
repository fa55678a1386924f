import Addressing
@testable import AllocationStore
import Foundation
import GRDB
@testable import PostgresStore
import Testing
import TestSupport

/// The two implementations of the store; every test of this target runs against both.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres
    var testDescription: String { rawValue }

    /// Where a fresh, empty store lives: a new file, or a new database on the test server
    /// (scripts/postgres, `VMCTL_TEST_POSTGRES`).
    func freshLocation() throws -> String {
        switch self {
        case .sqlite:
            return FileManager.default.temporaryDirectory
                .appendingPathComponent("vmctl-store-\(UUID().uuidString)/state.sqlite").path
        case .postgres:
            return try makePostgresDatabase("vmctl_test", why: "the PostgreSQL server of scripts/postgres start")
        }
    }

    /// The store at `location`, opened as a new client would.
    func open(_ location: String) throws(StoreError) -> any StateStore {
        switch self {
        case .sqlite: try SQLiteStore(path: location)
        // The URL is freshLocation's own.
        case .postgres: try PostgresStore((try? PostgresURL(location))!, localDirectory: FileManager.default.temporaryDirectory.path)
        }
    }

    /// Runs `body` while a transaction of another connection holds the store's write lock.
    func holdingWriteLock(_ location: String, _ body: () throws -> Void) throws {
        switch self {
        case .sqlite:
            try DatabaseQueue(path: location).writeWithoutTransaction { db in
                try db.execute(sql: "BEGIN IMMEDIATE")
                try body()
                try db.execute(sql: "COMMIT")
            }
        case .postgres:
            try (try open(location) as! PostgresStore).holdingWriteLock(body)
        }
    }
}

/// A fresh, empty store of `backend`.
func makeStore(_ backend: Backend) throws -> any StateStore {
    try backend.open(try backend.freshLocation())
}

func mac(_ last: Int) -> MACAddress { MACAddress(bytes: [0x52, 0x54, 0x00, 0x00, UInt8(last >> 8), UInt8(last & 0xff)])! }

let lan = (subnet: Subnet("192.0.2.0/24")!, gateway: IPAddress("192.0.2.1"))

func smallPool(_ name: String = "public", size: Int = 4, network: String = "net1") throws -> Pool {
    let layout = try PoolLayout(
        ranges: [AddressRange(first: IPAddress("192.0.2.10")!, last: IPAddress("192.0.2.\(9 + size)")!)!,
                 AddressRange("2001:db8::10-2001:db8::1f")!],
        subnets: [lan])
    return Pool(name: name, network: network, layout: layout, allUsable: false)
}

@Suite("Allocation store")
struct AllocationStoreTests {
    @Test("pools are created once, listed, found and deleted", arguments: Backend.allCases)
    func pools(_ backend: Backend) throws {
        let store = try makeStore(backend)
        try store.create(try smallPool("b"))
        try store.create(try smallPool("a", network: "net2"))
        #expect(try store.pools().map(\.name) == ["a", "b"])
        #expect(try store.pool(named: "b").layout == (try smallPool("b")).layout)
        #expect(throws: StoreError.poolExists("a")) { try store.create(try smallPool("a")) }
        #expect(throws: StoreError.noSuchPool("c")) { try store.pool(named: "c") }
        try store.deletePool(named: "a", force: false)
        #expect(try store.pools().map(\.name) == ["b"])
    }

    @Test("the lowest free address is handed out; a requested one exactly; each with its owner", arguments: Backend.allCases)
    func allocate(_ backend: Backend) throws {
        let store = try makeStore(backend)
        try store.create(try smallPool())
        let owner = UUID()
        let first = try store.allocate(from: "public", family: .ipv4, ownerUUID: owner, ownerName: "web", mac: mac(1))
        #expect(first.address == IPAddress("192.0.2.10"))
        #expect(first.ownerUUID == owner && first.ownerName == "web" && first.mac == mac(1))
        #expect(first.network == "net1" && first.family == .ipv4 && first.id != nil)
        let chosen = try store.allocate(from: "public", family: .ipv4, requested: IPAddress("192.0.2.12"), ownerName: "db", mac: mac(2))
        #expect(chosen.address == IPAddress("192.0.2.12"))
        #expect(try store.allocate(from: "public", family: .ipv4, ownerName: "c", mac: mac(3)).address == IPAddress("192.0.2.11"))
        let v6 = try store.allocate(from: "public", family: .ipv6, ownerName: "web", mac: mac(1))
        #expect(v6.address == IPAddress("2001:db8::10"))
        #expect(try store.allocations(in: "public").map(\.address.description)
                == ["192.0.2.10", "192.0.2.11", "192.0.2.12", "2001:db8::10"])
    }

    @Test("taken, outside the pool, reserved, or a MAC that already holds one: refused with the value named", arguments: Backend.allCases)
    func refusals(_ backend: Backend) throws {
        let store = try makeStore(backend)
        try store.create(try smallPool())
        _ = try store.allocate(from: "public", family: .ipv4, requested: IPAddress("192.0.2.11"), ownerName: "web", mac: mac(1))
        #expect(throws: StoreError.addressTaken(IPAddress("192.0.2.11")!, owner: "web")) {
            try store.allocate(from: "public", family: .ipv4, requested: IPAddress("192.0.2.11"), ownerName: "db", mac: mac(2))
        }
        #expect(throws: StoreError.addressOutsidePool(IPAddress("192.0.2.99")!, pool: "public")) {
            try store.allocate(from: "public", family: .ipv4, requested: IPAddress("192.0.2.99"), ownerName: "db", mac: mac(2))
        }
        let error = #expect(throws: StoreError.self) {
            try store.allocate(from: "public", family: .ipv4, ownerName: "web-again", mac: mac(1))
        }
        #expect(error?.description.contains("52:54:00:00:00:01 already holds 192.0.2.11") == true)
        #expect(throws: StoreError.noSuchPool("nope")) {
            try store.allocate(from: "nope", family: .ipv4, ownerName: "x", mac: mac(9))
        }
    }

    @Test("exhaustion names the pool and its size; a released address is handed out again", arguments: Backend.allCases)
    func exhaustionAndRelease(_ backend: Backend) throws {
        let store = try makeStore(backend)
        try store.create(try smallPool(size: 3))
        for index in 1...3 { _ = try store.allocate(from: "public", family: .ipv4, ownerName: "vm\(index)", mac: mac(index)) }
        let error = #expect(throws: StoreError.exhausted(pool: "public", family: .ipv4, size: 3)) {
            try store.allocate(from: "public", family: .ipv4, ownerName: "vm4", mac: mac(4))
        }
        #expect(error?.description == "pool public exhausted: all 3 IPv4 addresses are allocated; release some or add a range")
        let released = try store.release(IPAddress("192.0.2.11")!, from: "public")
        #expect(released.ownerName == "vm2")
        #expect(throws: StoreError.notAllocated(IPAddress("192.0.2.11")!, pool: "public")) {
            try store.release(IPAddress("192.0.2.11")!, from: "public")
        }
        #expect(try store.allocate(from: "public", family: .ipv4, ownerName: "vm4", mac: mac(4)).address == IPAddress("192.0.2.11"))
    }

    @Test("a pool with allocations is only deleted with force, and its allocations with it", arguments: Backend.allCases)
    func deleteInUse(_ backend: Backend) throws {
        let store = try makeStore(backend)
        try store.create(try smallPool())
        _ = try store.allocate(from: "public", family: .ipv4, ownerName: "web", mac: mac(1))
        #expect(throws: StoreError.poolInUse("public", allocations: 1)) { try store.deletePool(named: "public", force: false) }
        try store.deletePool(named: "public", force: true)
        #expect(try store.pools().isEmpty)
        #expect(try store.allocations().isEmpty)
    }

    @Test("two pools over one network never hand out one address twice", arguments: Backend.allCases)
    func sharedNetwork(_ backend: Backend) throws {
        let store = try makeStore(backend)
        try store.create(try smallPool("a", size: 2))
        try store.create(try smallPool("b", size: 2))
        let fromA = try store.allocate(from: "a", family: .ipv4, ownerName: "x", mac: mac(1))
        let fromB = try store.allocate(from: "b", family: .ipv4, ownerName: "y", mac: mac(2))
        #expect(fromA.address != fromB.address)
    }

    @Test("20 concurrent allocators, each with its own connection, on 16 addresses: 16 distinct, 4 exhausted", arguments: Backend.allCases)
    func concurrentAllocation(_ backend: Backend) throws {
        let path = try backend.freshLocation()
        try backend.open(path).create(try smallPool(size: 16))
        // One thread each, so that they really contend (`concurrentPerform` would run only as
        // many at once as there are cores): the test holds the store's write lock until every
        // thread has begun its allocation, so all 20 wait on it together and race when it goes.
        let results = Results()
        let started = DispatchSemaphore(value: 0), done = DispatchGroup()
        try backend.holdingWriteLock(path) {
            for index in 0..<20 {
                done.enter()
                Thread {
                    let start = DispatchTime.now().uptimeNanoseconds
                    started.signal()
                    let outcome = Result { () throws(StoreError) in
                        let store = try backend.open(path)  // like a separate vmctl process
                        return try store.allocate(from: "public", family: .ipv4, ownerName: "vm\(index)", mac: mac(index)).address
                    }
                    results.add(outcome, span: (start, DispatchTime.now().uptimeNanoseconds))
                    done.leave()
                }.start()
            }
            for _ in 0..<20 { #expect(started.wait(timeout: .now() + 30) == .success) }
            // A moment for the last ones to reach the lock.
            Thread.sleep(forTimeInterval: 0.2)
            #expect(results.all.isEmpty, "an allocation got past the write lock the test holds")
        }
        #expect(done.wait(timeout: .now() + 60) == .success)
        // They ran at once: one moment lies inside every allocation's span.
        let spans = results.spans
        print("20 allocators: all started within \((spans.map(\.start).max()! - spans.map(\.start).min()!) / 1000) µs, "
              + "the first ended \((Int64(spans.map(\.end).min()!) - Int64(spans.map(\.start).max()!)) / 1000) µs after the last started")
        #expect(spans.map(\.start).max()! < spans.map(\.end).min()!, "the allocators did not overlap: \(spans)")
        let addresses = results.all.compactMap { try? $0.get() }
        let failures = results.all.compactMap { result -> StoreError? in
            if case .failure(let error) = result { return error }
            return nil
        }
        #expect(addresses.count == 16)
        #expect(Set(addresses).count == 16)
        #expect(failures == Array(repeating: .exhausted(pool: "public", family: .ipv4, size: 16), count: 4))
        #expect(try backend.open(path).allocations().count == 16)
    }

    @Test("the default state path: /var/lib/vmctl for root, XDG_DATA_HOME otherwise")
    func defaultPath() {
        #expect(SQLiteStore.defaultPath(environment: [:], isRoot: true) == "/var/lib/vmctl/state.sqlite")
        #expect(SQLiteStore.defaultPath(environment: ["XDG_DATA_HOME": "/x"], isRoot: false) == "/x/vmctl/state.sqlite")
        #expect(SQLiteStore.defaultPath(environment: ["HOME": "/home/u"], isRoot: false) == "/home/u/.local/share/vmctl/state.sqlite")
    }
}

/// Results gathered from several threads, each with the span (monotonic nanoseconds) of its work.
final class Results: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Result<IPAddress, StoreError>] = []
    private var recordedSpans: [(start: UInt64, end: UInt64)] = []
    func add(_ result: Result<IPAddress, StoreError>, span: (UInt64, UInt64)) {
        lock.withLock { results.append(result); recordedSpans.append(span) }
    }
    var all: [Result<IPAddress, StoreError>] { lock.withLock { results } }
    var spans: [(start: UInt64, end: UInt64)] { lock.withLock { recordedSpans } }
}
