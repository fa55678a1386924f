import Addressing
import Foundation
import Libvirt
import LibvirtXML
import Testing
import TestSupport

extension Integration {
    /// `vmctl pool` against the harness's libvirtd: reservations are real DHCP host entries.
    @Suite("address pools")
    struct PoolTests {
        @Test("20 concurrent `vmctl pool reserve` on 16 addresses: 16 distinct, 4 'exhausted', store and libvirt agree",
              .timeLimit(.minutes(3)))
        func concurrentReservations() async throws {
            let harness = try Harness.require()
            let connection = try await harness.connect()
            let id = uniqueSuffix()
            let octet = Int.random(in: 10...250)
            let network = try await harness.makeNetwork(on: connection, name: "itp-\(id)", mode: "nat", subnet: "10.214.\(octet)")
            let state = try harness.scratch(id).appendingPathComponent("state.sqlite").path
            let environment = ["VMCTL_CONNECT": harness.uri, "VMCTL_STATE": state]
            // A /28 away from the network address, broadcast and gateway: all 16 can be handed out.
            let pool = try runVMCtl(["pool", "create", "p-\(id)", "--network", "itp-\(id)", "--range", "10.214.\(octet).16/28"],
                                    environment: environment)
            #expect(pool.status == 0, "\(pool.standardError)")
            #expect(pool.standardOutput.contains("size:        16"), "\(pool.standardOutput)")

            // All 20 started first and released at once; the test checks that they really ran together.
            let run = try runTogether(try vmctlExecutable(), (0..<20).map { index in
                ["pool", "reserve", "p-\(id)", "--mac", String(format: "52:54:00:aa:%02x:%02x", octet, index), "--owner", "vm\(index)"]
            }, environment: ProcessInfo.processInfo.environment.merging(environment) { $1 })
            print("pools: 20 concurrent reserves: \(run.description)")
            #expect(run.allOverlapped, "\(run.description)")
            let results = run.results
            let succeeded = results.filter { $0.status == 0 }
            let failed = results.filter { $0.status != 0 }
            let addresses = succeeded.map { $0.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) }
            #expect(succeeded.count == 16, "\(failed.map(\.standardError))")
            #expect(Set(addresses).count == 16)
            #expect(addresses.allSatisfy { IPAddress($0) != nil && $0.hasPrefix("10.214.\(octet).") })
            #expect(failed.count == 4)
            for failure in failed {
                #expect(failure.status == 1)
                #expect(failure.standardError.contains("pool p-\(id) exhausted: all 16 IPv4 addresses are allocated"),
                        "\(failure.standardError)")
                #expect(failure.standardOutput.isEmpty)
            }

            // The store and libvirt's host entries, live and persistent, agree exactly.
            let shown = try runVMCtl(["pool", "show", "p-\(id)", "--format", "json"], environment: environment)
            struct Shown: Decodable { struct Allocation: Decodable { var address: String; var mac: String }; var allocations: [Allocation] }
            let store = try JSONDecoder().decode(Shown.self, from: Data(shown.standardOutput.utf8))
            let expected = Set(store.allocations.map { "\($0.mac) \($0.address)" })
            #expect(expected.count == 16)
            #expect(try await harness.hostEntries(network, inactive: false) == expected)
            #expect(try await harness.hostEntries(network, inactive: true) == expected)

            let destroyed = try runVMCtl(["pool", "destroy", "p-\(id)", "--force"], environment: environment)
            #expect(destroyed.status == 0, "\(destroyed.standardError)")
            #expect(try await harness.hostEntries(network, inactive: false).isEmpty)
            #expect(try await harness.hostEntries(network, inactive: true).isEmpty)
            try await harness.removeNetwork(network)
        }

        @Test("on a transient network a reservation is live only, and release removes it")
        func transientNetwork() async throws {
            let harness = try Harness.require()
            let connection = try await harness.connect()
            let id = uniqueSuffix()
            let octet = Int.random(in: 10...250)
            let network = try await connection.createNetwork(xml: """
                <network><name>itt-\(id)</name><forward mode='nat'/><bridge name='vt\(id)'/>
                  <ip address='10.217.\(octet).1' prefix='24'>
                    <dhcp><range start='10.217.\(octet).100' end='10.217.\(octet).200'/></dhcp></ip></network>
                """)
            let environment = ["VMCTL_CONNECT": harness.uri,
                               "VMCTL_STATE": try harness.scratch(id).appendingPathComponent("state.sqlite").path]
            #expect(try runVMCtl(["pool", "create", "t-\(id)", "--network", "itt-\(id)", "--range", "10.217.\(octet).10-10.217.\(octet).12"],
                                 environment: environment).status == 0)
            let reserved = try runVMCtl(["pool", "reserve", "t-\(id)", "--mac", "52:54:00:fa:00:01", "--owner", "vm"], environment: environment)
            #expect(reserved.status == 0, "\(reserved.standardError)")
            #expect(try await harness.hostEntries(network, inactive: false) == ["52:54:00:fa:00:01 10.217.\(octet).10"])
            #expect(try runVMCtl(["doctor"], environment: environment).standardOutput == "no problems found\n")
            #expect(try runVMCtl(["pool", "release", "t-\(id)", "10.217.\(octet).10"], environment: environment).status == 0)
            #expect(try await harness.hostEntries(network, inactive: false).isEmpty)
            try await network.destroy()
        }

        @Test("a TCG guest obtains exactly its reserved IPv4 address on a nat and an open network; release leaves nothing",
              .timeLimit(.minutes(4)), arguments: ["nat", "open"])
        func guestGetsReservation(mode: String) async throws {
            let harness = try Harness.require()
            let connection = try await harness.connect()
            let id = uniqueSuffix()
            // The cases run at once: each its own octet (a shared one would mix their traffic).
            let octet = 10 + 2 * Int.random(in: 0...119) + ["nat", "open"].firstIndex(of: mode)!
            let scratch = try harness.scratch(id)
            let network = try await harness.makeNetwork(on: connection, name: "itg-\(id)", mode: mode, subnet: "10.214.\(octet)", ipv6: "fd00:213:\(octet)")
            let environment = ["VMCTL_CONNECT": harness.uri, "VMCTL_STATE": scratch.appendingPathComponent("state.sqlite").path]
            let create = try runVMCtl(["pool", "create", "g-\(id)", "--network", "itg-\(id)",
                                       "--range", "10.214.\(octet).40-10.214.\(octet).49",
                                       "--range", "fd00:213:\(octet)::40-fd00:213:\(octet)::4f"], environment: environment)
            #expect(create.status == 0, "\(create.standardError)")
            // Another machine holds the first address, so the guest's is not merely the pool's first.
            let other = try runVMCtl(["pool", "reserve", "g-\(id)", "--mac", "52:54:00:bb:\(String(format: "%02x", octet)):01",
                                      "--owner", "other", "--ip", "10.214.\(octet).40"], environment: environment)
            #expect(other.status == 0, "\(other.standardError)")

            let mac = String(format: "52:54:00:bb:%02x:02", octet)
            let reserve = try runVMCtl(["pool", "reserve", "g-\(id)", "--mac", mac, "--owner", "vm-\(id)"], environment: environment)
            #expect(reserve.status == 0, "\(reserve.standardError)")
            #expect(reserve.standardOutput == "10.214.\(octet).41\nfd00:213:\(octet)::40\n")
            let reserved = "10.214.\(octet).41"

            // The IPv6 entry is keyed by the DUID-LL under the IPv6 <ip> (index 1), live and persistent.
            for inactive in [false, true] {
                let definition = try NetworkDefinition(xml: try await network.xml(inactive: inactive))
                #expect(definition.ips[1].hosts.contains {
                    $0.id == "00:03:00:01:\(mac)" && $0.address == IPAddress("fd00:213:\(octet)::40") && $0.mac == nil
                }, "inactive=\(inactive): \(definition.ips[1].hosts)")
                #expect(definition.ips[0].hosts.contains { $0.mac == MACAddress(mac) && $0.address == IPAddress(reserved) })
            }

            let console = scratch.appendingPathComponent("console.log")
            let domain = try await connection.defineDomain(
                xml: harness.guestXML(name: "itg-vm-\(id)", network: "itg-\(id)", mac: mac, console: console))
            try await domain.start()
            let lease = try await eventually(timeout: .seconds(90)) { try await network.dhcpLeases(mac: mac).first }
            #expect(lease?.address == reserved, "\(String(describing: lease))")
            #expect(try await harness.waitForConsoleLease(console, mac: mac, address: reserved, router: "10.214.\(octet).1") != nil,
                    "console: \((try? String(contentsOf: console, encoding: .utf8)) ?? "<none>")")

            try await domain.destroy()
            try await domain.undefine()
            for address in [reserved, "fd00:213:\(octet)::40", "10.214.\(octet).40"] {
                let release = try runVMCtl(["pool", "release", "g-\(id)", address], environment: environment)
                #expect(release.status == 0, "\(release.standardError)")
            }
            #expect(try await harness.hostEntries(network, inactive: false).isEmpty)
            #expect(try await harness.hostEntries(network, inactive: true).isEmpty)
            let shown = try runVMCtl(["pool", "show", "g-\(id)", "--format", "json"], environment: environment)
            #expect(shown.standardOutput.contains("\"used\" : 0"), "\(shown.standardOutput)")
            #expect(try runVMCtl(["pool", "destroy", "g-\(id)"], environment: environment).status == 0)
            try await harness.removeNetwork(network)
        }
    }
}
