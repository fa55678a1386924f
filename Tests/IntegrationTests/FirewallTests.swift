import Addressing
import Foundation
import Libvirt
import Testing
import TestSupport

extension Integration {
    /// `vmctl network firewall --apply` on open networks, with real traffic between a guest and a
    /// second test host (a network namespace of the test's own, joined to the harness's by a veth
    /// pair made inside the harness's namespace): outbound and inbound, IPv4 and IPv6, public and
    /// private subnets, in both rule languages.
    @Suite("open network firewall")
    struct FirewallTests {
        @Test("applied rules, iptables or nft: a public subnet is reached both ways and not masqueraded; a private one (172.16/12) only outbound, masqueraded; IPv6 both ways",
              .timeLimit(.minutes(4)), arguments: ["public", "private"], ["iptables", "nft"])
        func traffic(subnets: String, language: String) async throws {
            let harness = try Harness.require()
            let connection = try await harness.connect()
            let id = uniqueSuffix()
            // The four cases run at once: each its own octet (two that drew the same one shared a
            // peer address, and one case's traffic reached the other's peer).
            let caseIndex = (subnets == "public" ? 0 : 2) + (language == "iptables" ? 0 : 1)
            let octet = 10 + 4 * Int.random(in: 0...59) + caseIndex
            let peer = "vmctl-peer-\(id)"
            let uplink = "10.240.\(octet)", uplink6 = "fd42:\(octet)"
            defer { harness.removePeer(peer) }
            try harness.makePeer(peer, uplink: uplink, uplink6: uplink6, suffix: id)
            let inPeer = ["-n", peer]
            let v4 = subnets == "public" ? "198.51.100" : "172.\(16 + octet % 16).\(octet)"
            let v6 = subnets == "public" ? "2001:db8:\(octet)" : "fd43:\(octet)"
            // The peer routes both subnets to the host, as an upstream router would: so a refused
            // inbound connection to the private subnet is refused by the host's rules, not by the
            // peer's routing table, and an unmasqueraded ping would be answered too.
            #expect(try runProcess("/usr/sbin/ip", inPeer + ["route", "add", "\(v4).0/24", "via", "\(uplink).1"]).status == 0)
            #expect(try runProcess("/usr/sbin/ip", inPeer + ["-6", "route", "add", "\(v6)::/64", "via", "\(uplink6)::1"]).status == 0)

            let name = "itf-\(id)", bridge = "vf\(id)"
            let environment = ["VMCTL_CONNECT": harness.uri]
            let created = try runVMCtl(["network", "create", name, "--mode", "open", "--bridge", bridge, "--ipv4", "\(v4).0/24",
                                        "--dhcp4", "\(v4).100-\(v4).200", "--ipv6", "\(v6)::/64"], environment: environment)
            #expect(created.status == 0, "\(created.standardError)")
            let applied = try harness.vmctlInNamespace(["network", "firewall", name, "--apply", "--format", language], environment: environment)
            #expect(applied.status == 0, "\(applied.standardError)")
            // The rules are where the language puts them, and only there.
            let nftTable = try harness.inNamespace("nft", "list", "table", "inet", "vmctl_\(bridge)")
            let iptablesChain = try harness.inNamespace("iptables", "-S", "VMCTL-FWD-\(bridge)")
            #expect((nftTable.status == 0) == (language == "nft") && (iptablesChain.status == 0) == (language == "iptables"),
                    "nft: \(nftTable.standardOutput) iptables: \(iptablesChain.standardOutput)")

            let sources = try harness.scratch(id).appendingPathComponent("ping-sources")
            let recorder = try harness.recordPingSources(in: peer, to: sources)
            defer { recorder.terminate() }
            let mac = String(format: "52:54:00:f1:%02x:01", octet)
            let console = try harness.scratch(id).appendingPathComponent("console.log")
            let domain = try await connection.defineDomain(xml: harness.guestXML(
                name: "\(name)-vm", network: name, mac: mac, console: console,
                cmdline: "vmctl.ping=\(uplink).2 vmctl.ping=\(uplink6)::2 vmctl.listen=8080"))
            try await domain.start()
            func consoleText() -> String { (try? String(contentsOf: console, encoding: .utf8)) ?? "" }
            let network = try await connection.network(named: name)
            let address = try #require(try await eventually(timeout: .seconds(90)) { try await network.dhcpLeases(mac: mac).first?.address },
                                       "no lease; console: \(consoleText())")
            // The guest reports its SLAAC address: `vmctl-guest: ipv6 eth0 ADDRESS/64`.
            let marker = "vmctl-guest: ipv6 eth0 \(v6):"
            let address6 = try #require(await eventually(timeout: .seconds(60)) { () -> String? in
                for line in consoleText().split(whereSeparator: \.isNewline) {
                    if let range = line.range(of: marker) {
                        return "\(v6):" + line[range.upperBound...].prefix { $0 != "/" }
                    }
                }
                return nil
            }, "no SLAAC address; console: \(consoleText())")

            // Outbound, both families: the guest's pings are answered.
            let pinged = try await eventually(timeout: .seconds(60)) { () -> String? in
                let text = consoleText()
                return text.contains("vmctl-guest: ping \(uplink).2 ok") && text.contains("vmctl-guest: ping \(uplink6)::2 ok") ? text : nil
            }
            #expect(pinged != nil, "console: \(consoleText())")
            // Masqueraded only from the private subnet: what source the peer saw.
            // (The recorder may write a moment after the peer's reply reached the guest.)
            let seen = try await eventually(timeout: .seconds(5)) { () -> Set<String>? in
                let lines = ((try? String(contentsOf: sources, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
                return lines.isEmpty ? nil : Set(lines)
            } ?? []
            #expect(seen == [subnets == "public" ? address : "\(uplink).1"], "the peer saw pings from \(seen)")

            // Inbound: the guest's listener answers the host itself (so it is up) on IPv4 ...
            let fromHost = try await eventually(timeout: .seconds(30), every: .seconds(1)) { () -> ProcessResult? in
                let result = try harness.connect(from: harness.netns, to: address, port: 8080)
                return result.standardOutput.contains("vmctl-guest-hello") ? result : nil
            }
            #expect(fromHost != nil, "the guest's listener does not answer on \(address)")
            // ... and the peer on a public subnet, never on a private one.
            let inbound = try harness.connect(from: peer, to: address, port: 8080)
            if subnets == "public" {
                #expect(inbound.standardOutput.contains("vmctl-guest-hello"), "\(inbound.standardError)")
            } else {
                #expect(inbound.status != 0 && !inbound.standardOutput.contains("hello"), "reached a private guest from outside: \(inbound.standardOutput)")
                #expect(inbound.standardError.contains("Connection refused"), "refused by the host's reject, not lost: \(inbound.standardError)")
            }
            // IPv6 is routed both ways on either.
            let inbound6 = try harness.connect(from: peer, to: address6, port: 8080)
            #expect(inbound6.standardOutput.contains("vmctl-guest-hello"), "\(address6): \(inbound6.standardError)")

            try await domain.destroy()
            try await domain.undefine()
            // Destroyed where its bridge is, the network takes its rules with it.
            let destroyed = try harness.vmctlInNamespace(["network", "destroy", name], environment: environment)
            #expect(destroyed.status == 0, "\(destroyed.standardError)")
            for (tool, table) in [("iptables", "filter"), ("iptables", "nat"), ("iptables", "mangle"), ("ip6tables", "filter")] {
                let left = try harness.inNamespace(tool, "-t", table, "-S")
                #expect(left.status == 0 && !left.standardOutput.contains("-\(bridge)"), "\(tool) \(table): \(left.standardOutput)")
            }
            let tables = try harness.inNamespace("nft", "list", "tables")
            #expect(tables.status == 0 && !tables.standardOutput.contains("vmctl_\(bridge)"), "\(tables.standardOutput)")
        }

        @Test("the rules printed are what iptables-restore and nft accept; non-open networks are refused")
        func printedRules() async throws {
            let harness = try Harness.require()
            let id = uniqueSuffix()
            let octet = Int.random(in: 10...250)
            let environment = ["VMCTL_CONNECT": harness.uri]
            let name = "itr-\(id)", nat = "itn-\(id)"
            #expect(try runVMCtl(["network", "create", name, "--mode", "open", "--bridge", "vr\(id)", "--ipv4", "172.31.\(octet).0/24",
                                  "--dhcp4", "172.31.\(octet).10-172.31.\(octet).20", "--ipv6", "fd44:\(octet)::/64",
                                  "--dhcp6", "fd44:\(octet)::10-fd44:\(octet)::20"], environment: environment).status == 0)
            #expect(try runVMCtl(["network", "create", nat, "--mode", "nat", "--ipv4", "10.246.\(octet).0/24"], environment: environment).status == 0)
            defer {
                _ = try? runVMCtl(["network", "destroy", name], environment: environment)
                _ = try? runVMCtl(["network", "destroy", nat], environment: environment)
            }
            let nft = try runVMCtl(["network", "firewall", name, "--format", "nft"], environment: environment)
            #expect(nft.status == 0 && nft.standardOutput.contains("table inet vmctl_vr\(id)"), "\(nft.standardError)")
            // nft -c parses and checks the whole file against the kernel without loading it.
            let checked = try harness.inNamespace(stdin: nft.standardOutput, "nft", "-c", "-f", "-")
            #expect(checked.status == 0, "nft -c: \(checked.standardError)")
            let iptables = try runVMCtl(["network", "firewall", name, "--format", "iptables"], environment: environment)
            #expect(iptables.status == 0, "\(iptables.standardError)")
            // Two restore inputs: IPv4, then IPv6 from its header on; each tested without applying.
            let split = try #require(iptables.standardOutput.range(of: "# vmctl: host IPv6 firewall"))
            for (tool, input) in [("iptables-restore", String(iptables.standardOutput[..<split.lowerBound])),
                                  ("ip6tables-restore", String(iptables.standardOutput[split.lowerBound...]))] {
                let result = try harness.inNamespace(stdin: input, tool, "--test", "--noflush")
                #expect(result.status == 0, "\(tool) --test: \(result.standardError)")
            }
            let refused = try runVMCtl(["network", "firewall", nat], environment: environment)
            #expect(refused.status == 1 && refused.standardError.contains(nat) && refused.standardError.contains("open"), "\(refused.standardError)")
        }

        @Test("without the rules, the NAT case does not get through although the guest tries (the tests above are not vacuous)", .timeLimit(.minutes(3)))
        func withoutRulesNoNAT() async throws {
            let harness = try Harness.require()
            let connection = try await harness.connect()
            let id = uniqueSuffix()
            let octet = Int.random(in: 10...250)
            let peer = "vmctl-peer-\(id)"
            let uplink = "10.242.\(octet)"
            defer { harness.removePeer(peer) }
            try harness.makePeer(peer, uplink: uplink, suffix: id)
            // Forwarding on, as --apply would leave it, but no masquerading: replies cannot come back.
            #expect(try runProcess("/usr/sbin/ip", ["netns", "exec", harness.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"]).status == 0)
            let name = "itg-\(id)"
            let environment = ["VMCTL_CONNECT": harness.uri]
            #expect(try runVMCtl(["network", "create", name, "--mode", "open", "--ipv4", "10.243.\(octet).0/24",
                                  "--dhcp4", "10.243.\(octet).100-10.243.\(octet).200"], environment: environment).status == 0)
            defer { _ = try? runVMCtl(["network", "destroy", name, "--force"], environment: environment) }
            let mac = String(format: "52:54:00:f2:%02x:01", octet)
            let console = try harness.scratch(id).appendingPathComponent("console.log")
            let domain = try await connection.defineDomain(xml: harness.guestXML(
                name: "\(name)-vm", network: name, mac: mac, console: console, cmdline: "vmctl.ping=\(uplink).2"))
            try await domain.start()
            let address = try #require(try await eventually(timeout: .seconds(90)) { try await connection.network(named: name).dhcpLeases(mac: mac).first?.address })
            #expect(try await harness.waitForConsoleLease(console, mac: mac, address: address, router: "10.243.\(octet).1") != nil)
            // The guest pings with its address: five attempts after its lease, none answered.
            let tried = try await eventually(timeout: .seconds(60)) { () -> String? in
                let text = (try? String(contentsOf: console, encoding: .utf8)) ?? ""
                guard let lease = text.range(of: "vmctl-guest: lease eth0") else { return nil }
                let after = text[lease.upperBound...]
                return after.components(separatedBy: "vmctl-guest: ping \(uplink).2 failed").count > 5 ? text : nil
            }
            #expect(tried != nil, "the guest did not try five times after its lease: \((try? String(contentsOf: console, encoding: .utf8)) ?? "")")
            #expect(tried?.contains("vmctl-guest: ping \(uplink).2 ok") == false, "reached the peer without NAT: \(tried ?? "")")
            try await domain.destroy()
            try await domain.undefine()
        }
    }
}
