import Addressing
import AllocationStore
import Foundation
import Libvirt
import LibvirtXML
import Testing
import TestSupport

extension Integration {
    /// `vmctl doctor` on a real libvirtd: each finding made by breaking things through libvirt.
    @Suite("doctor")
    struct DoctorIntegrationTests {
        @Test("host routes and firewall rules: a network restarted behind vmctl's back loses its routes (routeMissing), a route and chains left by a network gone (routeWithoutOwner, strayFirewallRules); --fix repairs all three; network start restores routes")
        func routesAndStrayRules() async throws {
            let harness = try Harness.require()
            let connection = try await harness.connect()
            let id = uniqueSuffix()
            let octet = Int.random(in: 10...250)
            let scratch = try harness.scratch(id)
            let environment = ["VMCTL_CONNECT": harness.uri, "VMCTL_STATE": scratch.appendingPathComponent("state.sqlite").path]
            // Where the bridges are: routes and chains are that namespace's.
            func vmctl(_ arguments: String...) throws -> ProcessResult { try harness.vmctlInNamespace(arguments, environment: environment) }
            let name = "itr-\(id)", gone = "itg-\(id)"
            defer {
                _ = try? vmctl("pool", "destroy", "r-\(id)", "--force")
                _ = try? vmctl("network", "destroy", name)
            }
            #expect(try vmctl("network", "create", name, "--mode", "open", "--ipv4", "10.216.\(octet).1/24", "-q").status == 0)
            #expect(try vmctl("pool", "create", "r-\(id)", "--network", name, "--range", "203.0.113.\(16 * (octet % 15 + 1))/30", "--all-usable", "-q").status == 0)
            let reserved = try vmctl("pool", "reserve", "r-\(id)", "--mac", "52:54:00:de:00:01", "--owner", "edge", "-q")
            let address = reserved.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(reserved.status == 0 && address.hasPrefix("203.0.113."), "\(reserved.standardError)")
            let bridge = try await connection.network(named: name).definition().bridge ?? ""
            func routes() throws -> String { try harness.ip("route", "show", "proto", "118").standardOutput }
            #expect(try routes().contains("\(address) dev \(bridge) "))
            #expect(try vmctl("doctor").standardOutput == "no problems found\n")

            // libvirt's own restart: a new bridge, without the route.
            let network = try await connection.network(named: name)
            try await network.destroy()
            try await network.start()
            #expect(!(try routes().contains("\(address) dev \(bridge) ")))
            let missing = try vmctl("doctor")
            #expect(missing.status == 1 && missing.standardOutput == "routeMissing: \(address) on \(name) (owner edge, pool r-\(id)): no host route to bridge \(bridge), the guest is unreachable; --fix adds it\n",
                    "\(missing.standardOutput)")
            #expect(try vmctl("doctor", "--fix").status == 0)
            #expect(try routes().contains("\(address) dev \(bridge) "))
            // vmctl's own stop and start: the route is back with the bridge.
            #expect(try vmctl("network", "stop", name, "-q").status == 0)
            #expect(try vmctl("network", "start", name, "-q").status == 0)
            #expect(try routes().contains("\(address) dev \(bridge) "))

            // An open network with vmctl's rules and a route of vmctl's, removed through libvirt
            // alone: its chains and route stay behind.
            #expect(try vmctl("network", "create", gone, "--mode", "open", "--ipv4", "10.216.\(octet + 1).1/24", "-q").status == 0)
            #expect(try vmctl("network", "firewall", gone, "--apply").status == 0)
            let goneNetwork = try await connection.network(named: gone)
            let goneBridge = try await goneNetwork.definition().bridge ?? ""
            try await goneNetwork.destroy()
            try await goneNetwork.undefine()
            // A leftover route needs a device: one on the surviving bridge, for an address nobody holds.
            #expect(try harness.ip("route", "add", "198.51.100.77/32", "dev", bridge, "proto", "118").status == 0)
            let strays = try vmctl("doctor")
            #expect(strays.status == 1, "\(strays.standardOutput)")
            #expect(strays.standardOutput.contains("routeWithoutOwner: 198.51.100.77: vmctl's host route to bridge \(bridge) (network \(name)) that no allocation holds; --fix removes it"),
                    "\(strays.standardOutput)")
            let strayLine = strays.standardOutput.split(separator: "\n").first { $0.hasPrefix("strayFirewallRules: bridge \(goneBridge): vmctl's firewall rules, but no network has that bridge (") }
            #expect(strayLine?.contains("iptables filter VMCTL-IN-\(goneBridge)") == true && strayLine?.contains("iptables nat VMCTL-NAT-\(goneBridge)") == true,
                    "\(strays.standardOutput)")
            let fixed = try vmctl("doctor", "--fix")
            #expect(fixed.status == 0 && fixed.standardOutput.contains("removed strayFirewallRules: bridge \(goneBridge)") && fixed.standardOutput.contains("repaired routeWithoutOwner"),
                    "\(fixed.standardOutput)")
            #expect(!(try routes().contains("198.51.100.77")))
            #expect(!(try harness.inNamespace("iptables", "-S").standardOutput.contains("-\(goneBridge)")))
            #expect(try routes().contains("\(address) dev \(bridge) "), "the held address keeps its route")
        }

        @Test("VM gone, live/persistent drift, missing entry, entry without owner: reported, then repaired by --fix")
        func findAndFix() async throws {
            let harness = try Harness.require()
            let connection = try await harness.connect()
            let id = uniqueSuffix()
            let octet = Int.random(in: 10...250)
            let scratch = try harness.scratch(id)
            let network = try await harness.makeNetwork(on: connection, name: "itd-\(id)", mode: "open", subnet: "10.215.\(octet)")
            let environment = ["VMCTL_CONNECT": harness.uri, "VMCTL_STATE": scratch.appendingPathComponent("state.sqlite").path]
            func vmctl(_ arguments: String...) throws -> ProcessResult { try runVMCtl(arguments, environment: environment) }
            #expect(try vmctl("pool", "create", "d-\(id)", "--network", "itd-\(id)", "--range", "10.215.\(octet).10-10.215.\(octet).19").status == 0)
            #expect(try vmctl("doctor").standardOutput == "no problems found\n")

            // Four reservations; the first belongs to a (defined, never started) domain.
            let vm = try await connection.defineDomain(xml: harness.guestXML(
                name: "itd-vm-\(id)", network: "itd-\(id)", mac: "52:54:00:dd:00:01", console: scratch.appendingPathComponent("c.log")))
            let macs = (1...4).map { String(format: "52:54:00:dd:00:%02x", $0) }
            let owners = ["itd-vm-\(id)", "two", "three", "four"]
            var addresses: [String] = []
            for (mac, owner) in zip(macs, owners) {
                let reserved = try vmctl("pool", "reserve", "d-\(id)", "--mac", mac, "--owner", owner)
                #expect(reserved.status == 0, "\(reserved.standardError)")
                addresses.append(reserved.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines))
            }
            func host(_ index: Int) -> String { "<host mac='\(macs[index])' ip='\(addresses[index])'/>" }

            // Break things behind vmctl's back.
            try await vm.undefine()                                                               // VM gone
            try await network.update(.delete, .dhcpHost, parentIndex: 0, xml: host(1), affecting: .config)  // drift
            try await network.update(.delete, .dhcpHost, parentIndex: 0, xml: host(2), affecting: [.live, .config])  // missing
            let stray = "<host mac='52:54:00:dd:00:99' ip='10.215.\(octet).19'/>"
            try await network.update(.add, .dhcpHost, parentIndex: 0, xml: stray, affecting: [.live, .config])  // no owner

            let report = try vmctl("doctor", "--format", "json")
            #expect(report.status == 1)
            struct Report: Decodable {
                struct Finding: Decodable { var kind: String; var address: String; var presentIn: [String]? }
                var findings: [Finding]
                var repaired: [Finding]
            }
            let found = try JSONDecoder().decode(Report.self, from: Data(report.standardOutput.utf8)).findings
            #expect(found.map(\.kind).sorted() == ["entryDrift", "entryMissing", "entryWithoutOwner", "ownerGone"], "\(report.standardOutput)")
            #expect(found.first { $0.kind == "ownerGone" }?.address == addresses[0])
            #expect(found.first { $0.kind == "entryDrift" }.map { ($0.address, $0.presentIn ?? []) } ?? ("", []) == (addresses[1], ["live"]))
            #expect(found.first { $0.kind == "entryMissing" }?.address == addresses[2])
            #expect(found.first { $0.kind == "entryWithoutOwner" }?.address == "10.215.\(octet).19")
            let text = try vmctl("doctor")
            #expect(text.standardOutput.contains("ownerGone: \(addresses[0]) on itd-\(id) (owner itd-vm-\(id), pool d-\(id)): the owning VM no longer exists"))

            let fixed = try vmctl("doctor", "--fix")
            #expect(fixed.status == 0, "\(fixed.standardOutput)\(fixed.standardError)")
            #expect(fixed.standardOutput.components(separatedBy: "\n").filter { $0.hasPrefix("repaired ") }.count == 4, "\(fixed.standardOutput)")
            #expect(try vmctl("doctor").standardOutput == "no problems found\n")

            // libvirt now holds exactly the three live reservations, in both configs.
            for inactive in [false, true] {
                let hosts = try NetworkDefinition(xml: try await network.xml(inactive: inactive)).ips[0].hosts
                #expect(Set(hosts.map { "\($0.mac!) \($0.address!)" }) == Set((1...3).map { "\(macs[$0]) \(addresses[$0])" }),
                        "inactive=\(inactive): \(hosts)")
            }
            let shown = try vmctl("pool", "show", "d-\(id)")
            #expect(shown.standardOutput.contains("used:        3"))
            #expect(!shown.standardOutput.contains(addresses[0] + " "))

            #expect(try vmctl("pool", "destroy", "d-\(id)", "--force").status == 0)
            try await harness.removeNetwork(network)
        }

        @Test("a lease held by another MAC on a reserved address is reported, and not 'fixed'", .timeLimit(.minutes(3)))
        func leaseByOtherMAC() async throws {
            let harness = try Harness.require()
            let connection = try await harness.connect()
            let id = uniqueSuffix()
            let octet = Int.random(in: 10...250)
            let scratch = try harness.scratch(id)
            let network = try await harness.makeNetwork(on: connection, name: "itl-\(id)", mode: "open", subnet: "10.216.\(octet)")
            let environment = ["VMCTL_CONNECT": harness.uri, "VMCTL_STATE": scratch.appendingPathComponent("state.sqlite").path]
            func vmctl(_ arguments: String...) throws -> ProcessResult { try runVMCtl(arguments, environment: environment) }
            #expect(try vmctl("pool", "create", "l-\(id)", "--network", "itl-\(id)", "--range", "10.216.\(octet).10-10.216.\(octet).19").status == 0)
            let first = "52:54:00:ee:\(String(format: "%02x", octet)):01"
            let second = "52:54:00:ee:\(String(format: "%02x", octet)):02"
            let address = "10.216.\(octet).10"
            #expect(try vmctl("pool", "reserve", "l-\(id)", "--mac", first, "--owner", "first", "--ip", address).status == 0)

            // The first machine takes its lease; then its address is given to a second MAC.
            let console = scratch.appendingPathComponent("console.log")
            let guest = try await connection.defineDomain(xml: harness.guestXML(name: "itl-vm-\(id)", network: "itl-\(id)", mac: first, console: console))
            try await guest.start()
            let lease = try await eventually(timeout: .seconds(90)) { try await network.dhcpLeases(mac: first).first }
            #expect(lease?.address == address)
            #expect(try vmctl("pool", "release", "l-\(id)", address).status == 0)
            // vmctl itself refuses the address while dnsmasq leases it to the first MAC (and,
            // from outside the bridge's namespace, cannot end that lease) ...
            let refused = try vmctl("pool", "reserve", "l-\(id)", "--mac", second, "--owner", "second", "--ip", address)
            #expect(refused.status == 1 && refused.standardError.contains("address \(address) is still leased by network itl-\(id)'s dnsmasq to MAC \(first)"),
                    "\(refused.standardError)")
            // ... so the state another writer made (an older vmctl, say) is made directly.
            _ = try SQLiteStore(path: environment["VMCTL_STATE"]!).allocate(
                from: "l-\(id)", family: .ipv4, requested: IPAddress(address), ownerName: "second", mac: MACAddress(second)!)

            let fixed = try vmctl("doctor", "--fix")
            #expect(fixed.status == 1)
            #expect(fixed.standardOutput.contains("leaseByOtherMAC: \(address) on itl-\(id) (owner second, pool l-\(id)): leased to \(first)"),
                    "\(fixed.standardOutput)")

            try await guest.destroy()
            try await guest.undefine()
            #expect(try vmctl("pool", "destroy", "l-\(id)", "--force").status == 0)
            try await harness.removeNetwork(network)
        }
    }
}
