import Addressing
import Foundation
import Libvirt
import LibvirtXML
import Testing
import TestSupport

extension Integration {
    /// `vmctl network` against the harness's libvirtd.
    @Suite("networks")
    struct NetworkCommandTests {
        struct Shown: Decodable, Equatable {
            var name: String; var mode: String; var bridge: String
            var ipv4: String?; var dhcp4: String?; var ipv6: String?; var ipv6Addressing: String?; var active: Bool?
        }

        func show(_ name: String, _ harness: Harness) throws -> Shown {
            let result = try runVMCtl(["network", "show", name, "--format", "json"], environment: ["VMCTL_CONNECT": harness.uri])
            return try JSONDecoder().decode(Shown.self, from: Data(result.standardOutput.utf8))
        }

        @Test("every mode is created, started and read back as asked; its bridge holds the gateway addresses; destroy removes it")
        func everyMode() async throws {
            let harness = try Harness.require()
            let connection = try await harness.connect()
            let id = uniqueSuffix()
            let octet = Int.random(in: 10...250)
            let environment = ["VMCTL_CONNECT": harness.uri]
            // The host bridge a bridge network attaches to, made in the harness's namespace.
            let hostBridge = "brh\(id)"
            #expect(try harness.ip("link", "add", hostBridge, "type", "bridge").status == 0)
            defer { _ = try? harness.ip("link", "delete", hostBridge) }

            let cases: [(mode: String, arguments: [String], ipv4: String?, ipv6: String?)] = [
                ("nat", ["--ipv4", "10.218.\(octet).0/24", "--dhcp4", "10.218.\(octet).100-10.218.\(octet).200"], "10.218.\(octet).1/24", nil),
                ("route", ["--ipv4", "10.219.\(octet).0/24", "--ipv6", "fd00:219:\(octet)::/64"], "10.219.\(octet).1/24", "fd00:219:\(octet)::1/64"),
                ("open", ["--ipv4", "10.220.\(octet).0/24", "--ipv6", "fd00:220:\(octet)::/64", "--dhcp6", "fd00:220:\(octet)::100-fd00:220:\(octet)::1ff"],
                 "10.220.\(octet).1/24", "fd00:220:\(octet)::1/64"),
                ("isolated", ["--ipv4", "10.221.\(octet).0/24"], "10.221.\(octet).1/24", nil),
                ("bridge", ["--bridge", hostBridge], nil, nil),
            ]
            for (mode, arguments, ipv4, ipv6) in cases {
                let name = "itn-\(mode)-\(id)"
                let created = try runVMCtl(["network", "create", name, "--mode", mode] + arguments, environment: environment)
                #expect(created.status == 0, "\(mode): \(created.standardError)")
                let network = try await connection.network(named: name)
                #expect(try await network.isActive(), "\(mode)")
                let definition = try NetworkDefinition(xml: try await network.xml(inactive: true))
                #expect(definition.forwardMode == (mode == "isolated" ? nil : mode), "\(mode)")
                #expect(definition.ips.first { $0.subnet.family == .ipv4 }.map { "\($0.address)/\($0.subnet.prefix)" } == ipv4)
                #expect(definition.ips.first { $0.subnet.family == .ipv6 }.map { "\($0.address)/\($0.subnet.prefix)" } == ipv6)
                let shown = try show(name, harness)
                #expect(shown.mode == mode && shown.ipv4 == ipv4 && shown.ipv6 == ipv6 && shown.active == true)
                if mode == "bridge" {
                    #expect(shown.bridge == hostBridge)
                } else {
                    // libvirt's own view in the namespace: the bridge carries the gateway addresses.
                    let addresses = try harness.ip("-o", "addr", "show", "dev", shown.bridge).standardOutput
                    for address in [ipv4, ipv6].compactMap({ $0 }) {
                        #expect(addresses.contains(" \(address) "), "\(mode): \(addresses)")
                    }
                }
                if mode == "route" { #expect(shown.ipv6Addressing == "slaac") }
                if mode == "open" { #expect(shown.ipv6Addressing == "fd00:220:\(octet)::100-fd00:220:\(octet)::1ff") }

                let destroyed = try runVMCtl(["network", "destroy", name], environment: environment)
                #expect(destroyed.status == 0, "\(destroyed.standardError)")
                #expect(try await !connection.networks().map(\.name).contains(name))
                if mode != "bridge" { #expect(try harness.ip("link", "show", "dev", shown.bridge).status != 0, "\(mode) bridge left") }
            }
            #expect(try harness.ip("link", "show", "dev", hostBridge).status == 0, "vmctl must not touch the host bridge")
        }

        @Test("each invalid network is refused with one line naming the value, and nothing is defined")
        func validation() async throws {
            let harness = try Harness.require()
            let connection = try await harness.connect()
            let id = uniqueSuffix()
            let octet = Int.random(in: 10...250)
            let environment = ["VMCTL_CONNECT": harness.uri]
            let base = "itv-\(id)"
            #expect(try runVMCtl(["network", "create", base, "--mode", "nat", "--ipv4", "10.222.\(octet).0/24"], environment: environment).status == 0)
            let bridge = try show(base, harness).bridge
            let before = Set(try await connection.networks().map(\.name))
            // A value wrong in itself is a usage error (64); one that clashes with what exists fails (1).
            let cases: [([String], String, Int32)] = [
                (["--ipv4", "10.223.\(octet).0/33"], "invalid --ipv4 '10.223.\(octet).0/33'", 64),
                (["--ipv4", "10.223.\(octet).0/24", "--gateway4", "10.224.\(octet).1"], "gateway 10.224.\(octet).1 is outside its subnet", 64),
                (["--ipv4", "10.223.\(octet).0/24", "--dhcp4", "10.224.\(octet).10-10.224.\(octet).20"], "DHCP range 10.224.\(octet).10-10.224.\(octet).20 is outside", 64),
                (["--ipv4", "10.223.\(octet).0/24", "--dhcp4", "10.223.\(octet).1-10.223.\(octet).20"], "covers the gateway 10.223.\(octet).1", 64),
                (["--ipv4", "10.223.\(octet).0/24", "--ipv6", "fd00:223:\(octet)::/56"], "SLAAC needs a /64, not fd00:223:\(octet)::/56", 64),
                (["--ipv4", "10.222.\(octet).0/25"], "overlaps 10.222.\(octet).0/24 of network \(base)", 1),
                (["--ipv4", "10.223.\(octet).0/24", "--bridge", bridge], "bridge \(bridge) is already used by network \(base)", 1),
            ]
            for (arguments, expected, status) in cases {
                let result = try runVMCtl(["network", "create", "itv-bad-\(id)", "--mode", "nat"] + arguments, environment: environment)
                #expect(result.status == status, "\(arguments)")
                #expect(result.standardError.split(separator: "\n").count == 1, "\(result.standardError)")
                #expect(result.standardError.contains(expected), "\(arguments): \(result.standardError)")
            }
            // A subnet holding an address of one of this machine's interfaces (read, never changed).
            let hostAddresses = try runProcess("/usr/sbin/ip", ["-o", "-4", "addr", "show", "scope", "global"]).standardOutput
            let hostLine = try #require(hostAddresses.split(separator: "\n").first, "this machine has no global IPv4 address to test against")
            let fields = hostLine.split(separator: " ")
            let hostInterface = String(fields[1]), hostCIDR = String(fields[3])
            let overlap = try runVMCtl(["network", "create", "itv-host-\(id)", "--mode", "nat", "--ipv4", hostCIDR], environment: environment)
            #expect(overlap.status == 1 && overlap.standardError.contains("of host interface \(hostInterface)"), "\(overlap.standardError)")

            let badName = try runVMCtl(["network", "create", "bad name;rm", "--mode", "nat", "--ipv4", "10.223.\(octet).0/24"], environment: environment)
            #expect(badName.status == 64 && badName.standardError.contains("invalid network name 'bad name;rm'"))
            #expect(Set(try await connection.networks().map(\.name)) == before)

            // The same definition again changes nothing; another one fails with the difference.
            let uuid = try await connection.network(named: base).uuid
            #expect(try runVMCtl(["network", "create", base, "--mode", "nat", "--ipv4", "10.222.\(octet).0/24"], environment: environment).status == 0)
            #expect(try await connection.network(named: base).uuid == uuid)
            let different = try runVMCtl(["network", "create", base, "--mode", "route", "--ipv4", "10.222.\(octet).0/24"], environment: environment)
            #expect(different.status == 1 && different.standardError.contains("mode: nat -> route"), "\(different.standardError)")
            let replaced = try runVMCtl(["network", "create", base, "--mode", "route", "--ipv4", "10.222.\(octet).0/24", "--replace"], environment: environment)
            #expect(replaced.status == 0, "\(replaced.standardError)")
            #expect(try show(base, harness).mode == "route")
            #expect(try runVMCtl(["network", "destroy", base], environment: environment).status == 0)
        }

        @Test("--templates DIR renders the operator's own copy of the network template")
        func customTemplates() async throws {
            let harness = try Harness.require()
            let connection = try await harness.connect()
            let id = uniqueSuffix()
            let octet = Int.random(in: 10...250)
            let directory = try harness.scratch(id).appendingPathComponent("templates")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let shipped = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("templates/network.xml.mustache")
            let custom = try String(contentsOf: shipped, encoding: .utf8)
                .replacingOccurrences(of: "  <name>{{name}}</name>\n", with: "  <name>{{name}}</name>\n  <mtu size='1400'/>\n")
            try custom.write(to: directory.appendingPathComponent("network.xml.mustache"), atomically: true, encoding: .utf8)
            let name = "itc-\(id)"
            let environment = ["VMCTL_CONNECT": harness.uri]
            let created = try runVMCtl(["network", "create", name, "--mode", "nat", "--ipv4", "10.228.\(octet).0/24",
                                        "--templates", directory.path], environment: environment)
            #expect(created.status == 0, "\(created.standardError)")
            #expect(try await connection.network(named: name).xml().contains("<mtu size='1400'/>"))
            let missing = try runVMCtl(["network", "create", "\(name)-x", "--mode", "nat", "--ipv4", "10.229.\(octet).0/24",
                                        "--templates", "/nonexistent/templates"], environment: environment)
            #expect(missing.status == 1 && missing.standardError.contains("templates directory /nonexistent/templates does not exist"))
            #expect(try runVMCtl(["network", "destroy", name], environment: environment).status == 0)
        }

        @Test("a TCG guest on a dual-stack network gets its IPv4 lease and its EUI-64 IPv6 address by SLAAC", .timeLimit(.minutes(3)))
        func slaac() async throws {
            let harness = try Harness.require()
            let connection = try await harness.connect()
            let id = uniqueSuffix()
            let octet = Int.random(in: 10...250)
            let name = "its-\(id)"
            let environment = ["VMCTL_CONNECT": harness.uri]
            let created = try runVMCtl(["network", "create", name, "--mode", "nat", "--ipv4", "10.226.\(octet).0/24",
                                        "--dhcp4", "10.226.\(octet).100-10.226.\(octet).200", "--ipv6", "fd00:226:\(octet)::/64"],
                                       environment: environment)
            #expect(created.status == 0, "\(created.standardError)")
            #expect(try show(name, harness).ipv6Addressing == "slaac")
            let mac = String(format: "52:54:00:5a:%02x:07", octet)
            let console = try harness.scratch(id).appendingPathComponent("console.log")
            let domain = try await connection.defineDomain(xml: harness.guestXML(name: "\(name)-vm", network: name, mac: mac, console: console))
            try await domain.start()
            // EUI-64 of 52:54:00:5a:XX:07: flip the universal/local bit, insert ff:fe.
            let expected = try #require(IPAddress(String(format: "fd00:226:\(octet)::5054:ff:fe5a:%x07", octet)))
            let seen = try await eventually(timeout: .seconds(90)) { () -> IPAddress? in
                let text = (try? String(contentsOf: console, encoding: .utf8)) ?? ""
                // The serial console ends its lines with CR LF.
                return text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.compactMap { line -> IPAddress? in
                    guard line.hasPrefix("vmctl-guest: ipv6 eth0 "), line.hasSuffix("/64") else { return nil }
                    return IPAddress(line.dropFirst("vmctl-guest: ipv6 eth0 ".count).dropLast(3))
                }.first
            }
            #expect(seen == expected, "console: \((try? String(contentsOf: console, encoding: .utf8)) ?? "<none>")")
            try await domain.destroy()
            try await domain.undefine()
            #expect(try runVMCtl(["network", "destroy", name], environment: environment).status == 0)
        }

        @Test("a TCG guest gets a DHCP address on vmctl's nat, route and open networks", .timeLimit(.minutes(4)),
              arguments: ["nat", "route", "open"])
        func guestDHCP(mode: String) async throws {
            let harness = try Harness.require()
            let connection = try await harness.connect()
            let id = uniqueSuffix()
            // The cases run at once: each its own octet (a shared one would mix their traffic).
            let octet = 10 + 3 * Int.random(in: 0...79) + ["nat", "route", "open"].firstIndex(of: mode)!
            let name = "itq-\(id)"
            let environment = ["VMCTL_CONNECT": harness.uri]
            let created = try runVMCtl(["network", "create", name, "--mode", mode, "--ipv4", "10.225.\(octet).0/24",
                                        "--dhcp4", "10.225.\(octet).100-10.225.\(octet).200"], environment: environment)
            #expect(created.status == 0, "\(created.standardError)")
            let mac = String(format: "52:54:00:9a:%02x:01", octet)
            let console = try harness.scratch(id).appendingPathComponent("console.log")
            let domain = try await connection.defineDomain(xml: harness.guestXML(name: "\(name)-vm", network: name, mac: mac, console: console))
            try await domain.start()
            let network = try await connection.network(named: name)
            let lease = try await eventually(timeout: .seconds(90)) { try await network.dhcpLeases(mac: mac).first }
            let address = try #require(lease?.address)
            #expect(AddressRange("10.225.\(octet).100-10.225.\(octet).200")!.contains(IPAddress(address)!))
            #expect(try await harness.waitForConsoleLease(console, mac: mac, address: address, router: "10.225.\(octet).1") != nil)
            // Destroy refuses while the VM uses the network.
            let refused = try runVMCtl(["network", "destroy", name], environment: environment)
            #expect(refused.status == 1 && refused.standardError.contains("is used by \(name)-vm"), "\(refused.standardError)")
            try await domain.destroy()
            try await domain.undefine()
            #expect(try runVMCtl(["network", "destroy", name], environment: environment).status == 0)
        }
    }
}
