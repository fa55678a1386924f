import AllocationStore
import Foundation
import Libvirt
import PostgresStore
import Testing
import TestSupport

extension Integration {
    /// Two libvirt hosts (the harness's libvirtd as host1, scripts/remote-host's as host2, each in
    /// its own network namespace, reached through their sockets) sharing one PostgreSQL store.
    @Suite("a fleet of two hosts sharing a PostgreSQL store")
    struct FleetTests {
        struct VM: Decodable {
            struct Interface: Decodable { var mac: String?; var addresses: [String] }
            var name: String
            var state: String
            var host: String?
            var interfaces: [Interface]
        }

        @Test("two groups of 10 parallel create --host auto on one pool of 16 addresses: 16 up on both hosts, 4 exhausted and gone; list, an unreachable host, doctor, destroy --label",
              .timeLimit(.minutes(8)))
        func placementAcrossHosts() async throws {
            let harness = try Harness.require()
            let remote = try RemoteHost.require()
            let id = uniqueSuffix()
            let scratch = try harness.scratch("fleet-\(id)")
            let database = try makePostgresDatabase("vmctl_fleet", why: "the fleet tests need scripts/postgres")
            let host1 = try await harness.connect()
            var host2 = try await Connection.open(remote.socketURI)
            let subnet = "10.219.\(Int.random(in: 10...250))"
            let network = "fleet-\(id)"
            // One network name on both hosts, the same subnet in each host's own namespace.
            var networks = [try await harness.makeNetwork(on: host1, name: network, mode: "nat", subnet: subnet),
                            try await harness.makeNetwork(on: host2, name: network, mode: "nat", subnet: subnet)]
            // Whatever the test leaves (a failure), removed before the next suite looks: on fresh
            // connections, since host2's libvirtd is restarted below.
            func cleanUp() async {
                for uri in [harness.uri, remote.socketURI] {
                    guard let host = try? await Connection.open(uri) else { continue }
                    for domain in (try? await host.domains()) ?? [] where domain.name.contains(id) {
                        if (try? await domain.isActive()) == true { try? await domain.destroy() }
                        try? await domain.undefine()
                        for volume in (try? await host.storagePool(named: "vmctl").volumes()) ?? [] where volume.name.hasPrefix(domain.name + "-") {
                            try? await volume.delete()
                        }
                    }
                    if let net = try? await host.network(named: network) {
                        try? await net.destroy()
                        try? await net.undefine()
                    }
                }
            }
            do {
                try await scenario()
            } catch {
                await cleanUp()
                throw error
            }
            await cleanUp()

            func scenario() async throws {
                // vmctl as the fleet's clients run it: no connection named, the store on the server.
                var environment = ProcessInfo.processInfo.environment
                environment["VMCTL_CONNECT"] = nil
                environment["LIBVIRT_DEFAULT_URI"] = nil
                environment["VMCTL_STATE"] = database
                environment["HOME"] = scratch.path
                let fleetEnvironment = environment
                func vmctl(_ arguments: String...) throws -> ProcessResult {
                    try runProcess(try vmctlExecutable(), arguments, environment: fleetEnvironment)
                }

                #expect(try vmctl("host", "add", "host1", harness.uri, "--label", "rack=a").status == 0)
                #expect(try vmctl("host", "add", "host2", remote.socketURI).status == 0)
                let refused = try vmctl("host", "add", "host3", "qemu:///system?socket=\(scratch.path)/no-such-socket")
                #expect(refused.status == 1 && refused.standardError.contains("cannot add host host3"), "\(refused.standardError)")
                let hosts = try vmctl("host", "list", "--format", "json")
                struct HostJSON: Decodable { var name: String; var reachable: Bool; var vms: Int?; var libvirtVersion: String?; var labels: [String: String] }
                let listedHosts = try JSONDecoder().decode([HostJSON].self, from: Data(hosts.standardOutput.utf8))
                #expect(listedHosts.map(\.name) == ["host1", "host2"] && listedHosts.allSatisfy { $0.reachable && $0.libvirtVersion != nil })
                #expect(listedHosts.first?.labels == ["rack": "a"])
                #expect(try vmctl("pool", "create", "fp-\(id)", "--host", "host1", "--network", network, "--range", "\(subnet).10-\(subnet).25").status == 0)

                // Two CI runners, 10 creates each, all 20 at once, from separate processes.
                func group(_ runner: String) -> [[String]] {
                    (1...10).map { index in
                        ["create", "fv-\(id)-\(runner)\(index)", "--host", "auto", "--kernel", harness.kernel, "--initrd", harness.initrd,
                         "--cmdline", "console=ttyS0 quiet", "--memory", "128", "--network", "\(network),pool=fp-\(id)",
                         "--label", "job=\(id)", "--label", "runner=\(runner)", "-q"]
                    }
                }
                async let runnerA = Task.detached { try runTogether(try vmctlExecutable(), group("a"), environment: fleetEnvironment) }.value
                async let runnerB = Task.detached { try runTogether(try vmctlExecutable(), group("b"), environment: fleetEnvironment) }.value
                let runs = try await [runnerA, runnerB]
                print("fleet: two groups of 10 creates: \(runs.map(\.description).joined(separator: "; "))")
                let results = runs.flatMap(\.results)
                let created = results.filter { $0.status == 0 }.map { $0.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) }
                let failed = results.filter { $0.status != 0 }
                #expect(created.count == 16, "\(failed.map(\.standardError))")
                #expect(failed.count == 4)
                for failure in failed {
                    #expect(failure.status == 1 && failure.standardError.contains("pool fp-\(id) exhausted: all 16 IPv4 addresses are allocated"),
                            "\(failure.standardError)")
                }

                // list: all 16 with their host, on both hosts, addresses and MACs distinct.
                let listed = try vmctl("list", "--label", "job=\(id)", "--format", "json")
                #expect(listed.status == 0, "\(listed.standardError)")
                let vms = try JSONDecoder().decode([VM].self, from: Data(listed.standardOutput.utf8))
                #expect(Set(vms.map(\.name)) == Set(created) && vms.count == 16)
                #expect(vms.allSatisfy { $0.state == "running" })
                let placed = Dictionary(grouping: vms, by: { $0.host ?? "-" }).mapValues(\.count)
                print("fleet: placed \(placed)")
                #expect(Set(placed.keys) == ["host1", "host2"], "\(placed)")
                let addresses = vms.flatMap(\.interfaces).flatMap(\.addresses).filter { $0.hasPrefix(subnet + ".") && Int($0.split(separator: ".").last!)! <= 25 }
                let macs = vms.flatMap(\.interfaces).compactMap(\.mac)
                #expect(addresses.count == 16 && Set(addresses).count == 16, "\(addresses)")
                #expect(macs.count == 16 && Set(macs).count == 16)
                let text = try vmctl("list", "--label", "job=\(id)")
                #expect(text.standardOutput.hasPrefix("NAME") && text.standardOutput.split(separator: "\n").first?.contains("HOST") == true)

                // Of the 4 that failed nothing is left: no domain, no volume, no journal, no allocation.
                let failedNames = Set(group("a").map { $0[1] } + group("b").map { $0[1] }).subtracting(created)
                #expect(failedNames.count == 4)
                let store = try PostgresStore(try PostgresURL(database), localDirectory: scratch.path)
                for host in [host1, host2] {
                    let domains = Set(try await host.domains().map(\.name))
                    let volumes = Set(try await host.storagePool(named: "vmctl").volumes().map(\.name))
                    for name in failedNames {
                        #expect(!domains.contains(name))
                        #expect(volumes.filter { $0.hasPrefix(name + "-") }.isEmpty, "\(volumes)")
                    }
                }
                #expect(try store.pendingCreates().isEmpty)
                try await expectStoreMatchesHosts(store, [("host1", host1, networks[0]), ("host2", host2, networks[1])], harness: harness, vms: 16)

                // Each guest holds its address: wait --for ip finds each VM on its host.
                let waits = try runTogether(try vmctlExecutable(), created.map { ["wait", $0, "--for", "ip", "--timeout", "180"] }, environment: fleetEnvironment)
                for result in waits.results { #expect(result.status == 0, "\(result.standardError)") }
                let shown = try vmctl("show", created[0], "--format", "json")
                #expect(try JSONDecoder().decode(VM.self, from: Data(shown.standardOutput.utf8)).host == vms.first { $0.name == created[0] }?.host)

                // host2 unreachable: reported, not fatal; doctor frees none of its addresses.
                #expect(try remote.control("stop-libvirtd").status == 0)
                let partial = try vmctl("list", "--label", "job=\(id)", "--format", "json")
                #expect(partial.status == 0 && partial.standardError.contains("warning: host host2 (\(remote.socketURI)) did not answer"), "\(partial.standardError)")
                #expect(try JSONDecoder().decode([VM].self, from: Data(partial.standardOutput.utf8)).map(\.host) == Array(repeating: "host1", count: placed["host1"] ?? 0))
                let doctor = try vmctl("doctor", "--fix")
                #expect(doctor.status == 1 && doctor.standardOutput.contains("unreachableHost: host host2"), "\(doctor.standardOutput) \(doctor.standardError)")
                #expect(!doctor.standardOutput.contains("repaired"), "\(doctor.standardOutput)")
                #expect(try store.allocations(in: "fp-\(id)").count == 16)
                let hostsDown = try JSONDecoder().decode([HostJSON].self, from: Data(try vmctl("host", "list", "--format", "json").standardOutput.utf8))
                #expect(hostsDown.map(\.reachable) == [true, false])
                let busy = try vmctl("host", "rm", "host2")
                #expect(busy.status == 1 && busy.standardError.contains("cannot ask host host2 whether it has vmctl VMs"), "\(busy.standardError)")
                #expect(try remote.control("start-libvirtd").status == 0)
                host2 = try await Connection.open(remote.socketURI)
                networks[1] = try await host2.network(named: network)
                let clean = try vmctl("doctor")
                #expect(clean.status == 0 && clean.standardOutput == "no problems found\n", "\(clean.standardOutput) \(clean.standardError)")
                let inUse = try vmctl("host", "rm", "host1")
                #expect(inUse.status == 1 && inUse.standardError.contains("host host1 still has \(placed["host1"] ?? 0) vmctl VM"), "\(inUse.standardError)")

                // destroy --label: every VM on both hosts, and nothing left of them anywhere.
                let destroyed = try vmctl("destroy", "--label", "job=\(id)", "--force")
                #expect(destroyed.status == 0, "\(destroyed.standardError)")
                #expect(destroyed.standardOutput.split(separator: "\n").map(String.init) == created.sorted())
                #expect(try vmctl("list", "--label", "job=\(id)", "-q").standardOutput.isEmpty)
                try await expectStoreMatchesHosts(store, [("host1", host1, networks[0]), ("host2", host2, networks[1])], harness: harness, vms: 0)
                #expect(try store.allocations(in: "fp-\(id)").isEmpty)
                #expect(try vmctl("doctor").status == 0)
                #expect(try vmctl("pool", "destroy", "fp-\(id)", "--host", "host1").status == 0)
                #expect(try vmctl("host", "rm", "host2").status == 0 && vmctl("host", "rm", "host1").status == 0)
                #expect(try vmctl("host", "list", "-q").standardOutput.isEmpty)
            }
        }

        /// The store's allocations on each host are exactly the DHCP host entries of the host's
        /// network (live and persistent), and the host runs as many of the job's VMs as it holds.
        func expectStoreMatchesHosts(_ store: PostgresStore, _ hosts: [(String, Connection, Network)], harness: Harness, vms: Int,
                                     sourceLocation: SourceLocation = #_sourceLocation) async throws {
            var total = 0
            for (name, connection, network) in hosts {
                let allocations = try store.allocations().filter { $0.host == name }
                let expected = Set(allocations.map { "\($0.mac) \($0.address)" })
                #expect(try await harness.hostEntries(network, inactive: false) == expected, "\(name) live", sourceLocation: sourceLocation)
                #expect(try await harness.hostEntries(network, inactive: true) == expected, "\(name) persistent", sourceLocation: sourceLocation)
                let owners = Set(allocations.compactMap(\.ownerUUID))
                let domains = try await connection.domains().filter { owners.contains($0.uuid) }
                #expect(domains.count == allocations.count, "\(name): \(domains.count) domains own \(allocations.count) addresses", sourceLocation: sourceLocation)
                total += allocations.count
            }
            #expect(total == vms, sourceLocation: sourceLocation)
        }
    }
}
