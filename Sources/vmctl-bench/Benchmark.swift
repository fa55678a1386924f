import Addressing
import AllocationStore
import Foundation
import Libvirt
import PostgresStore
import Provisioning

/// vmctl's benchmarks against the libvirtd in $VMCTL_CONNECT (scripts/bench and
/// scripts/bench-reservations start a private one):
///
///   vmctl-bench [reservations]   reservation latency per network mode, in-process
///   vmctl-bench lifecycle        create, destroy and parallel runs of vmctl, a virt-install
///                                script and the libvirt floor, as processes, side by side
///   vmctl-bench list             vmctl list (JSON and -q) against virsh list --all, 200 and 1,000 domains
///   vmctl-bench ssh              the Debian guest created until SSH answers, the same three ways
///   vmctl-bench remote           create to running here and on scripts/remote-host over qemu+ssh
///   vmctl-bench startup          the static binary's start-up against a dynamic build and virsh
@main
enum Benchmark {
    static func main() async {
        do {
            switch CommandLine.arguments.dropFirst().first {
            case "lifecycle": try await Lifecycle.run()
            case "list": try await Listing.run()
            case "ssh": try await UntilSSH.run()
            case "remote": try await RemoteCreate.run()
            case "startup": try Startup.run()
            default:
                try await Reservations.run()
            }
        } catch {
            FileHandle.standardError.write(Data("vmctl-bench: \(error)\n".utf8))
            exit(1)
        }
    }
}

/// Reservation latency per libvirt network mode, measured side by side in one run. In-process: no
/// process start-up is counted, only vmctl's reservation (store + DHCP host entry).
enum Reservations {
    static let modes = ["nat", "route", "isolated", "open"]
    static let runs = 30
    static let concurrent = 20

    /// `runs` reservations one after another after a warm-up (each timed), then `concurrent` at
    /// once (timed together); returns what was made, for the caller to release.
    static func measure(_ reservations: Provisioning.Reservations, pool: Pool, mac: @escaping @Sendable (Int) -> MACAddress)
        async throws -> (made: [Allocation], samples: [Double], together: Double) {
        var made = try await reservations.reserve(from: pool, mac: mac(0), owner: "warm-up")
        var samples: [Double] = []
        for n in 1...runs {
            let start = ContinuousClock.now
            made += try await reservations.reserve(from: pool, mac: mac(n), owner: "vm\(n)")
            samples.append(milliseconds(ContinuousClock.now - start))
        }
        let start = ContinuousClock.now
        made += try await withThrowingTaskGroup(of: [Allocation].self) { group in
            for n in 0..<concurrent { group.addTask { try await reservations.reserve(from: pool, mac: mac(100 + n), owner: "c\(n)") } }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        return (made, samples, milliseconds(ContinuousClock.now - start))
    }

    static func run() async throws {
        guard let uri = ProcessInfo.processInfo.environment["VMCTL_CONNECT"] else {
            throw ProvisioningError(.invalidValue, "VMCTL_CONNECT is not set", hint: "run scripts/bench-reservations")
        }
        let connection = try await Connection.open(uri)
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-bench-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let store = try SQLiteStore(path: scratch.appendingPathComponent("state.sqlite").path)
        let reservations = Provisioning.Reservations(state: State(store: store), connection: connection, host: LocalHost(uri: uri))

        print("reservation of one IPv4 address (store + live and persistent DHCP host entry), \(runs) runs after a warm-up")
        print("mode       median ms   min ms   max ms   \(concurrent) concurrent, total ms   goal (<5 ms, <1000 ms)")
        var medians: [String: Double] = [:]
        for (index, mode) in modes.enumerated() {
            let name = "bench-\(mode)"
            let forward = mode == "isolated" ? "" : "<forward mode='\(mode)'/>"
            let network = try await connection.defineNetwork(xml: """
                <network><name>\(name)</name>\(forward)<bridge name='vbench\(index)'/>
                  <ip address='10.230.\(index).1' prefix='24'><dhcp><range start='10.230.\(index).200' end='10.230.\(index).250'/></dhcp></ip>
                </network>
                """)
            try await network.start()
            let layout = try PoolLayout(ranges: [AddressRange("10.230.\(index).10-10.230.\(index).199")!],
                                        subnets: [(Subnet("10.230.\(index).0/24")!, IPAddress("10.230.\(index).1"))])
            let pool = Pool(name: name, network: name, layout: layout, allUsable: false)
            try store.create(pool)
            var made: [Allocation] = []
            @Sendable func mac(_ n: Int) -> MACAddress { MACAddress(bytes: [0x52, 0x54, 0x00, 0xbe, UInt8(index), UInt8(n)])! }

            let measured = try await measure(reservations, pool: pool, mac: mac)
            made += measured.made
            var samples = measured.samples
            let total = measured.together
            samples.sort()
            let median = samples[samples.count / 2]
            medians[mode] = median
            let met = median < 5 && total < 1000 ? "met" : "missed"
            print(mode.padding(toLength: 9, withPad: " ", startingAt: 0)
                  + String(format: " %9.1f %8.1f %8.1f %25.0f   ", median, samples.first!, samples.last!, total) + met)

            if mode == "open" {
                // Where the time goes: the store's transaction alone (allocate + release).
                var storeSamples: [Double] = []
                for n in 0..<runs {
                    let start = ContinuousClock.now
                    let allocation = try store.allocate(from: name, family: .ipv4, ownerName: "s\(n)", mac: mac(200 + n))
                    storeSamples.append(milliseconds(ContinuousClock.now - start))
                    _ = try store.release(allocation.address, from: name)
                }
                storeSamples.sort()
                print(String(format: "  of which the store's allocation transaction: median %.1f ms", storeSamples[runs / 2]))
                // ... and libvirt's part: reading the network's state, and the update itself.
                var readSamples: [Double] = []
                var updateSamples: [Double] = []
                for n in 0..<runs {
                    let start = ContinuousClock.now
                    let looked = try await connection.network(named: name)
                    async let active = looked.isActive()
                    async let persistent = looked.isPersistent()
                    async let live = looked.xml()
                    async let inactive = looked.xml(inactive: true)
                    _ = try await (active, persistent, live, inactive)
                    readSamples.append(milliseconds(ContinuousClock.now - start))
                    let host = "<host mac='\(mac(220 + n))' ip='10.230.\(index).\(150 + n)'/>"
                    let update = ContinuousClock.now
                    try await looked.update(.add, .dhcpHost, parentIndex: 0, xml: host, affecting: [.live, .config])
                    updateSamples.append(milliseconds(ContinuousClock.now - update))
                    try await looked.update(.delete, .dhcpHost, parentIndex: 0, xml: host, affecting: [.live, .config])
                }
                readSamples.sort()
                updateSamples.sort()
                print(String(format: "  lookup + state and XML reads: median %.1f ms; virNetworkUpdate live+config: median %.1f ms",
                             readSamples[runs / 2], updateSamples[runs / 2]))
            }
            for allocation in made { try await reservations.release(allocation) }
            try store.deletePool(named: name, force: false)
            try await network.destroy()
            try await network.undefine()
        }
        if let open = medians["open"] {
            print("ratios to open: " + modes.map { String(format: "%@ %.0fx", $0 as NSString, medians[$0]! / open) }.joined(separator: ", "))
        }
        try await StoreBackends.run(connection: connection, uri: uri, scratch: scratch)
        try await BigPool.run(connection: connection, uri: uri, scratch: scratch)
    }
}

/// The two stores side by side (issue 17): SQLite's file and a PostgreSQL server
/// ($VMCTL_BENCH_POSTGRES, scripts/bench-reservations starts one with fsync on, as durable as
/// SQLite's synchronous=FULL), on one open network (libvirt's cheapest, so the store's share shows).
enum StoreBackends {
    static func run(connection: Connection, uri: String, scratch: URL) async throws {
        guard let server = ProcessInfo.processInfo.environment["VMCTL_BENCH_POSTGRES"] else {
            throw ProvisioningError(.invalidValue, "VMCTL_BENCH_POSTGRES is not set", hint: "run scripts/bench-reservations")
        }
        let runs = Reservations.runs, concurrent = Reservations.concurrent
        let sqlitePath = scratch.appendingPathComponent("backends.sqlite").path
        let backends: [(name: String, open: @Sendable () throws -> any StateStore)] = [
            ("sqlite", { try SQLiteStore(path: sqlitePath) }),
            ("postgres", { try PostgresStore(try PostgresURL(server), localDirectory: scratch.path) }),
        ]
        let network = try await connection.defineNetwork(xml: """
            <network><name>bench-backends</name><forward mode='open'/><bridge name='vbenchbk'/>
              <ip address='10.231.0.1' prefix='24'><dhcp><range start='10.231.0.200' end='10.231.0.250'/></dhcp></ip>
            </network>
            """)
        try await network.start()
        defer { Task { try? await network.destroy(); try? await network.undefine() } }
        print("")
        print("the two stores side by side, open network (where the store's share shows), \(runs) runs after a warm-up; \(concurrent) at once")
        print("store      reserve median ms   \(concurrent) reserves at once, total ms   allocate+release median ms   \(concurrent) clients at once, total ms")
        var figures: [String: [Double]] = [:]
        for (index, backend) in backends.enumerated() {
            let store = try backend.open()
            let pool = Pool(name: "bench-\(backend.name)", network: "bench-backends",
                            layout: try PoolLayout(ranges: [AddressRange("10.231.0.10-10.231.0.199")!],
                                                   subnets: [(Subnet("10.231.0.0/24")!, IPAddress("10.231.0.1"))]),
                            allUsable: false)
            try store.create(pool)
            let reservations = Provisioning.Reservations(state: State(store: store), connection: connection, host: LocalHost(uri: uri))
            @Sendable func mac(_ n: Int) -> MACAddress { MACAddress(bytes: [0x52, 0x54, 0x00, 0xbf, UInt8(index), UInt8(n)])! }
            let measured = try await Reservations.measure(reservations, pool: pool, mac: mac)
            let made = measured.made
            var reserve = measured.samples
            let together = measured.together
            for allocation in made { try await reservations.release(allocation) }
            // The store alone: one transaction each way, then 20 clients (each its own
            // connection, as 20 vmctl processes) allocating at once.
            var transaction: [Double] = []
            for n in 0..<runs {
                let start = ContinuousClock.now
                let allocation = try store.allocate(from: pool.name, family: .ipv4, ownerName: "s\(n)", mac: mac(200 + n))
                _ = try store.release(allocation.address, from: pool.name)
                transaction.append(milliseconds(ContinuousClock.now - start))
            }
            let clients = try (0..<concurrent).map { _ in try backend.open() }
            let clientStart = ContinuousClock.now
            DispatchQueue.concurrentPerform(iterations: concurrent) { n in
                _ = try? clients[n].allocate(from: pool.name, family: .ipv4, ownerName: "p\(n)", mac: mac(230 + n))
            }
            let clientTotal = milliseconds(ContinuousClock.now - clientStart)
            let held = try store.allocations(in: pool.name)
            guard held.count == concurrent, Set(held.map(\.address)).count == concurrent else {
                throw ProvisioningError(.conflict, "\(backend.name): \(concurrent) clients got \(held.count) allocations")
            }
            try store.deletePool(named: pool.name, force: true)
            reserve.sort()
            transaction.sort()
            figures[backend.name] = [reserve[runs / 2], together, transaction[runs / 2], clientTotal]
            print(backend.name.padding(toLength: 9, withPad: " ", startingAt: 0)
                  + String(format: " %19.1f %35.0f %28.2f %31.0f", reserve[runs / 2], together, transaction[runs / 2], clientTotal))
        }
        if let sqlite = figures["sqlite"], let postgres = figures["postgres"] {
            print("ratios postgres/sqlite: " + zip(["reserve", "\(concurrent) reserves", "transaction", "\(concurrent) clients"], zip(postgres, sqlite))
                .map { String(format: "%@ %.2fx", $0.0 as NSString, $0.1.0 / $0.1.1) }.joined(separator: ", "))
        }
    }
}
