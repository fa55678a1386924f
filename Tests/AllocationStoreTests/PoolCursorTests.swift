import Addressing
@testable import AllocationStore
import Foundation
import GRDB
import Testing

/// A network's allocations in memory, counting what an allocation reads.
final class MemoryNetwork: NetworkAllocations {
    var rows: [IPAddress: Allocation] = [:]
    var addressesRead = 0

    func held(by mac: MACAddress, family: IPAddress.Family) throws -> Allocation? {
        rows.values.first { $0.mac == mac && $0.family == family }
    }

    func holder(of address: IPAddress) throws -> Allocation? { rows[address] }

    func allocated(among addresses: [IPAddress]) throws -> Set<IPAddress> {
        addressesRead += addresses.count
        return Set(addresses.filter { rows[$0] != nil })
    }

    func everyAddress() throws -> Set<IPAddress> {
        addressesRead += rows.count
        return Set(rows.keys)
    }
}

/// SplitMix64: the same sequence on every run, so a failure can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Pool cursors")
struct PoolCursorTests {
    /// Two ranges with a gap, an exclusion and the gateway inside: 40 addresses.
    let layout = try! PoolLayout(
        ranges: [AddressRange("192.0.2.1-192.0.2.30")!, AddressRange("192.0.2.100-192.0.2.115")!],
        exclusions: [AddressRange("192.0.2.20-192.0.2.24")!], subnets: [lan])

    @Test("5,000 random allocations, requests and releases: always the address a full read would choose, or exhausted when it would be",
          arguments: [UInt64(1), 2, 3])
    func agreesWithAFullRead(seed: UInt64) throws {
        var random = SeededGenerator(state: seed)
        let pool = Pool(name: "p", network: "n", layout: layout, allUsable: false)
        let network = MemoryNetwork()
        var cursor: PoolCursor?
        let allowed = (1...120).map { IPAddress("192.0.2.\($0)")! }.filter(layout.allows)
        #expect(allowed.count == 40)
        var macs = 0
        for _ in 0..<5000 {
            macs += 1
            let mac = MACAddress(bytes: [0x52, 0x54, 0, 0, UInt8(macs >> 8), UInt8(macs & 0xff)])!
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<5:
                let avoiding = Set((0..<Int.random(in: 0...2, using: &random)).map { _ in allowed.randomElement(using: &random)! })
                let request = AllocationRequest(pool: "p", family: .ipv4, avoiding: avoiding, ownerName: "o", mac: mac)
                let expected = layout.firstFree(.ipv4, allocated: Set(network.rows.keys).union(avoiding))
                do {
                    let (allocation, after) = try request.choose(in: pool, cursor: cursor, on: network)
                    #expect(allocation.address == expected)
                    network.rows[allocation.address] = allocation
                    cursor = after
                } catch let error as StoreError {
                    #expect(expected == nil, "\(error)")
                    guard expected == nil else { return }
                }
            case 5:
                // Asked for by name (or another pool of the network taking it): no cursor change.
                let address = allowed.randomElement(using: &random)!
                let request = AllocationRequest(pool: "p", family: .ipv4, requested: address, ownerName: "o", mac: mac)
                if network.rows[address] == nil {
                    let (allocation, after) = try request.choose(in: pool, cursor: cursor, on: network)
                    network.rows[allocation.address] = allocation
                    cursor = after
                } else {
                    #expect(throws: StoreError.self) { try request.choose(in: pool, cursor: cursor, on: network) }
                }
            default:
                guard let address = network.rows.keys.randomElement(using: &random) else { continue }
                network.rows[address] = nil
                cursor = cursor?.releasing(address, in: layout)
            }
        }
    }

    @Test("a pool of 60,000 allocations: the next address is found reading a few addresses, not 60,000")
    func bigPool() throws {
        let layout = try PoolLayout(ranges: [AddressRange("10.240.0.10-10.240.253.250")!],
                                    subnets: [(Subnet("10.240.0.0/16")!, IPAddress("10.240.0.1"))])
        let pool = Pool(name: "big", network: "n", layout: layout, allUsable: false)
        let network = MemoryNetwork()
        let first = IPAddress("10.240.0.10")!.number
        for n in 0..<60_000 {
            let address = IPAddress(family: .ipv4, number: first + UInt128(n))
            network.rows[address] = Allocation(pool: "big", network: "n", address: address, ownerUUID: nil, ownerName: "h\(n)",
                                               mac: MACAddress(bytes: [0x52, 0x54, 0x01, UInt8(n >> 16), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)])!)
        }
        func request(_ n: UInt8) -> AllocationRequest {
            AllocationRequest(pool: "big", family: .ipv4, ownerName: "new\(n)", mac: MACAddress(bytes: [0x52, 0x54, 0x02, 0, 0, n])!)
        }
        // No cursor yet: one full read builds it.
        let (built, cursor) = try request(1).choose(in: pool, cursor: nil, on: network)
        #expect(built.address == IPAddress(family: .ipv4, number: first + 60_000) && network.addressesRead == 60_000)
        #expect(cursor == PoolCursor(family: .ipv4, through: built.address))
        network.rows[built.address] = built
        network.addressesRead = 0
        var after = try #require(cursor)
        let (next, advanced) = try request(2).choose(in: pool, cursor: after, on: network)
        #expect(next.address == IPAddress(family: .ipv4, number: first + 60_001) && network.addressesRead <= PoolCursor.batch)
        after = try #require(advanced)
        // A release far below becomes a hole, handed out next, before anything above.
        let released = IPAddress("10.240.100.7")!
        network.rows[released] = nil
        after = try #require(after.releasing(released, in: layout))
        #expect(after.holes == [released])
        network.addressesRead = 0
        let (refilled, last) = try request(3).choose(in: pool, cursor: after, on: network)
        #expect(refilled.address == released && last?.holes == [] && network.addressesRead == 1)
    }

    @Test("too many holes drop the cursor; addresses outside the pool or above its cursor are no holes")
    func holes() throws {
        var cursor: PoolCursor? = PoolCursor(family: .ipv4, through: IPAddress("192.0.2.115")!)
        #expect(cursor?.releasing(IPAddress("192.0.2.21")!, in: layout) == cursor, "excluded")
        #expect(cursor?.releasing(IPAddress("192.0.2.116")!, in: layout) == cursor, "above")
        #expect(cursor?.releasing(IPAddress("2001:db8::10")!, in: layout) == cursor, "another family")
        cursor = PoolCursor(family: .ipv6, through: IPAddress("2001:db8::ffff")!)
        let wide = try PoolLayout(ranges: [AddressRange("2001:db8::1-2001:db8::ffff")!])
        for n in 1...PoolCursor.maximumHoles {
            cursor = cursor?.releasing(IPAddress(family: .ipv6, number: IPAddress("2001:db8::")!.number + UInt128(n)), in: wide)
        }
        #expect(cursor?.holes.count == PoolCursor.maximumHoles && cursor?.holes == cursor?.holes.sorted())
        #expect(cursor?.releasing(IPAddress("2001:db8::ff00")!, in: wide) == nil)
    }
}

@Suite("Pool cursors in the stores")
struct StoredPoolCursorTests {
    @Test("releases, requests, a second pool on the network and its forced deletion: always the lowest free address",
          arguments: Backend.allCases)
    func lowestFree(_ backend: Backend) throws {
        let store = try makeStore(backend)
        try store.create(try smallPool("a", size: 8))
        // A second pool over the same addresses of the same network.
        try store.create(try smallPool("b", size: 8))
        func take(_ pool: String, _ n: Int, avoiding: Set<IPAddress> = []) throws -> String {
            try store.allocate(from: pool, family: .ipv4, avoiding: avoiding, ownerName: "o\(n)", mac: mac(n)).address.description
        }
        #expect(try (1...3).map { try take("a", $0) } == ["192.0.2.10", "192.0.2.11", "192.0.2.12"])
        #expect(try take("b", 4) == "192.0.2.13")
        _ = try store.release(IPAddress("192.0.2.11")!, from: "a")
        #expect(try take("b", 5) == "192.0.2.11", "a's release is b's too")
        _ = try store.release(IPAddress("192.0.2.10")!, from: "a")
        _ = try store.allocate(from: "b", family: .ipv4, requested: IPAddress("192.0.2.10"), ownerName: "r", mac: mac(6))
        #expect(try take("a", 7) == "192.0.2.14", "the hole was taken by name")
        #expect(try take("a", 8, avoiding: [IPAddress("192.0.2.15")!]) == "192.0.2.16")
        #expect(try take("a", 9) == "192.0.2.15", "an avoided address is free the next time")
        try store.deletePool(named: "b", force: true)
        #expect(try take("a", 10) == "192.0.2.10", "b's addresses are free for a")
        #expect(try (11...13).map { try take("a", $0) } == ["192.0.2.11", "192.0.2.13", "192.0.2.17"])
        #expect(throws: StoreError.exhausted(pool: "a", family: .ipv4, size: 8)) { try take("a", 14) }
    }

    @Test("an address freed behind the cursor's back (a vmctl without cursors) is found before the pool is called exhausted")
    func freedBehindItsBack() throws {
        let path = try Backend.sqlite.freshLocation()
        let store = try SQLiteStore(path: path)
        try store.create(try smallPool("a", size: 4))
        for n in 1...3 { _ = try store.allocate(from: "a", family: .ipv4, ownerName: "o\(n)", mac: mac(n)) }
        try DatabaseQueue(path: path).write { db in
            try db.execute(sql: "DELETE FROM allocation WHERE address = '192.0.2.10'")
        }
        #expect(try store.allocate(from: "a", family: .ipv4, ownerName: "o4", mac: mac(4)).address.description == "192.0.2.13")
        #expect(try store.allocate(from: "a", family: .ipv4, ownerName: "o5", mac: mac(5)).address.description == "192.0.2.10")
        #expect(throws: StoreError.exhausted(pool: "a", family: .ipv4, size: 4)) {
            try store.allocate(from: "a", family: .ipv4, ownerName: "o6", mac: mac(6))
        }
    }
}
