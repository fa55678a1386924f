import Addressing
import Foundation
import Libvirt
import Testing
import TestSupport

extension Integration {
    /// `vmctl network firewall --apply` on open networks: a guest reaches a second test host
    /// through the rules, routed and through NAT. The second host is a network namespace of the
    /// test's own, joined to the harness's by a veth pair made inside the harness's namespace.
    @Suite("open network firewall")
    struct FirewallTests {
        @Test("a guest reaches a second test host through the applied rules: routed (public subnet) and NAT (private subnet)",
              .timeLimit(.minutes(4)), arguments: ["routed", "nat"])
        func guestReachesPeer(kind: String) async throws {
            let harness = try Harness.require()
            let connection = try await harness.connect()
            let id = uniqueSuffix()
            let octet = Int.random(in: 10...250)
            let peer = "vmctl-peer-\(id)"
            let uplink = "10.240.\(octet)"
            defer { harness.removePeer(peer) }
            try harness.makePeer(peer, uplink: uplink, suffix: id)
            let inPeer = ["-n", peer]
            // Routed: a public subnet the peer routes back to the host. NAT: a private subnet the
            // peer knows nothing of, so only masqueraded traffic can be answered.
            let subnet = kind == "routed" ? "198.51.100" : "10.241.\(octet)"
            if kind == "routed" {
                #expect(try runProcess("/usr/sbin/ip", inPeer + ["route", "add", "\(subnet).0/24", "via", "\(uplink).1"]).status == 0)
            }

            let name = "itf-\(id)"
            let environment = ["VMCTL_CONNECT": harness.uri]
            let created = try runVMCtl(["network", "create", name, "--mode", "open", "--ipv4", "\(subnet).0/24",
                                        "--dhcp4", "\(subnet).100-\(subnet).200"], environment: environment)
            #expect(created.status == 0, "\(created.standardError)")
            defer { _ = try? runVMCtl(["network", "destroy", name, "--force"], environment: environment) }
            // Applied where the bridge is: inside the harness's namespace.
            let applied = try harness.vmctlInNamespace(["network", "firewall", name, "--apply"], environment: environment)
            #expect(applied.status == 0, "\(applied.standardError)")
            let rules = try runProcess("/usr/sbin/ip", ["netns", "exec", harness.netns, "iptables", "-t", "nat", "-S"]).standardOutput
            #expect(rules.contains("MASQUERADE") == (kind == "nat"), "\(rules)")

            let mac = String(format: "52:54:00:f1:%02x:01", octet)
            let console = try harness.scratch(id).appendingPathComponent("console.log")
            let domain = try await connection.defineDomain(xml: harness.guestXML(
                name: "\(name)-vm", network: name, mac: mac, console: console, cmdline: "vmctl.ping=\(uplink).2"))
            try await domain.start()
            let reached = try await eventually(timeout: .seconds(120)) { () -> String? in
                let text = (try? String(contentsOf: console, encoding: .utf8)) ?? ""
                return text.contains("vmctl-guest: ping \(uplink).2 ok") ? text : nil
            }
            #expect(reached != nil, "console: \((try? String(contentsOf: console, encoding: .utf8)) ?? "<none>")")
            try await domain.destroy()
            try await domain.undefine()
        }

        @Test("without the rules, the NAT case does not get through (the test above is not vacuous)", .timeLimit(.minutes(3)))
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
            #expect(try await harness.waitForConsoleLease(console, mac: mac, address: try #require(
                try await eventually(timeout: .seconds(90)) { try await connection.network(named: name).dhcpLeases(mac: mac).first?.address }),
                router: "10.243.\(octet).1") != nil)
            try await Task.sleep(for: .seconds(8))
            let text = (try? String(contentsOf: console, encoding: .utf8)) ?? ""
            #expect(!text.contains("vmctl-guest: ping \(uplink).2 ok"), "reached the peer without NAT: \(text)")
            try await domain.destroy()
            try await domain.undefine()
        }
    }
}
