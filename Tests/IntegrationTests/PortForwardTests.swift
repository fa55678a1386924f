import Foundation
import Libvirt
import Testing
import TestSupport

extension Integration {
    /// `vmctl network forward`: a connection from a second test host to a host port reaches a
    /// listener in the guest.
    @Suite("port forwards")
    struct PortForwardTests {
        @Test("a connection from a second test host to the host port reaches the guest's listener; the rules outlive a network restart and go with remove",
              .timeLimit(.minutes(4)), arguments: ["nat", "open"])
        func endToEnd(mode: String) async throws {
            let harness = try Harness.require()
            let connection = try await harness.connect()
            let id = uniqueSuffix()
            // The cases run at once: each its own octet (a shared one would mix their traffic).
            let octet = 10 + 2 * Int.random(in: 0...119) + ["nat", "open"].firstIndex(of: mode)!
            let peer = "vmctl-peer-\(id)"
            let uplink = "10.244.\(octet)"
            defer { harness.removePeer(peer) }
            try harness.makePeer(peer, uplink: uplink, suffix: id)

            let name = "itw-\(id)"
            let environment = ["VMCTL_CONNECT": harness.uri, "VMCTL_STATE": try harness.scratch(id).appendingPathComponent("state.sqlite").path]
            #expect(try runVMCtl(["network", "create", name, "--mode", mode, "--ipv4", "10.245.\(octet).0/24",
                                  "--dhcp4", "10.245.\(octet).100-10.245.\(octet).200"], environment: environment).status == 0)
            defer { _ = try? runVMCtl(["network", "destroy", name, "--force"], environment: environment) }
            if mode == "open" {
                #expect(try harness.vmctlInNamespace(["network", "firewall", name, "--apply"], environment: environment).status == 0)
            }
            let mac = String(format: "52:54:00:f3:%02x:01", octet)
            let console = try harness.scratch(id).appendingPathComponent("console.log")
            let domain = try await connection.defineDomain(xml: harness.guestXML(
                name: "\(name)-vm", network: name, mac: mac, console: console, cmdline: "vmctl.listen=8080"))
            try await domain.start()
            let network = try await connection.network(named: name)
            let address = try #require(try await eventually(timeout: .seconds(90)) { try await network.dhcpLeases(mac: mac).first?.address })

            // Outside the bridge's namespace, vmctl refuses rather than touching this machine's firewall.
            let outside = try runVMCtl(["network", "forward", "add", name, "--host-port", "18080", "--to", "\(name)-vm:8080"], environment: environment)
            #expect(outside.status == 1 && outside.standardError.contains("is not in this network namespace"), "\(outside.standardError)")

            let added = try harness.vmctlInNamespace(["network", "forward", "add", name, "--host-port", "18080", "--to", "\(name)-vm:8080"],
                                                     environment: environment)
            #expect(added.status == 0, "\(added.standardError)")
            #expect(added.standardOutput == "tcp/18080 -> \(name)-vm \(address):8080\n")
            let listed = try runVMCtl(["network", "forward", "list", name], environment: environment)
            #expect(listed.standardOutput.contains("\(address):8080"))
            let taken = try harness.vmctlInNamespace(["network", "forward", "add", name, "--host-port", "18080", "--to", "\(name)-vm:22"],
                                                     environment: environment)
            #expect(taken.status == 1 && taken.standardError.contains("host port tcp/18080 is already forwarded"), "\(taken.standardError)")

            // The guest's listener may take a moment after its lease; retry briefly.
            let reply = try await eventually(timeout: .seconds(30), every: .seconds(1)) { () -> String? in
                let result = try harness.connect(from: peer, to: "\(uplink).1", port: 18080)
                return result.standardOutput.contains("vmctl-guest-hello") ? result.standardOutput : nil
            }
            #expect(reply != nil, "no answer through the forward")

            // UDP too: the forward is kept and its DNAT rule matches real datagrams from the peer
            // (its packet counter moves; the busybox guest has no UDP listener to answer them).
            let udp = try harness.vmctlInNamespace(["network", "forward", "add", name, "--host-port", "18081", "--to", "\(name)-vm:8081", "--proto", "udp"],
                                                   environment: environment)
            #expect(udp.status == 0 && udp.standardOutput == "udp/18081 -> \(name)-vm \(address):8081\n", "\(udp.standardError)")
            let bridge = try await network.bridgeName()
            func udpMatches() throws -> Int? {
                let listed = try harness.inNamespace("iptables", "-t", "nat", "-L", "VMCTL-DNAT-\(bridge)", "-v", "-x", "-n")
                return listed.standardOutput.split(separator: "\n").first { $0.contains("udp dpt:18081") }
                    .flatMap { Int($0.split(separator: " ", omittingEmptySubsequences: true).first ?? "") }
            }
            #expect(try udpMatches() == 0)
            _ = try runProcess("/usr/sbin/ip", ["netns", "exec", peer, "python3", "-c",
                                                "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); [s.sendto(b'x', ('\(uplink).1', 18081)) for _ in range(3)]"])
            #expect(try udpMatches() ?? 0 >= 1, "the UDP forward's rule saw no datagram")
            #expect(try runVMCtl(["network", "forward", "list", name], environment: environment).standardOutput.contains("udp"))

            // The rules are vmctl's own chains: a restart of the network (libvirt rebuilding its
            // firewall) leaves them in place, and the forward leads to the guest again once its
            // NIC is back on the bridge. libvirt does not put a running guest's tap back on a
            // restarted network's bridge (libvirtd's own restart does); the test does it by hand.
            #expect(try runVMCtl(["network", "stop", name], environment: environment).status == 0)
            #expect(try runVMCtl(["network", "start", name], environment: environment).status == 0)
            let tap = "fe" + mac.dropFirst(2)  // libvirt gives the tap the guest's MAC with fe first
            let links = try harness.ip("-o", "link", "show").standardOutput.split(separator: "\n")
            let tapName = try #require(links.first { $0.contains("link/ether \(tap)") }.map { $0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces) })
            #expect(try harness.ip("link", "set", tapName, "master", bridge).status == 0)
            let rules = try harness.inNamespace("iptables", "-t", "nat", "-S", "VMCTL-DNAT-\(bridge)")
            #expect(rules.status == 0 && rules.standardOutput.contains("--to-destination \(address):8080"), "\(rules.standardOutput)\(rules.standardError)")
            let again = try await eventually(timeout: .seconds(60), every: .seconds(1)) { () -> String? in
                let result = try harness.connect(from: peer, to: "\(uplink).1", port: 18080)
                return result.standardOutput.contains("vmctl-guest-hello") ? result.standardOutput : nil
            }
            #expect(again != nil, "no answer through the forward after the network restarted")

            for (proto, port) in [("tcp", "18080"), ("udp", "18081")] {
                let removed = try harness.vmctlInNamespace(["network", "forward", "remove", name, "--host-port", port, "--proto", proto], environment: environment)
                #expect(removed.status == 0, "\(removed.standardError)")
            }
            #expect(try runVMCtl(["network", "forward", "list", name], environment: environment).standardOutput.split(separator: "\n").count == 1)
            // The chain stays, empty: iptables must answer, and no DNAT is left in it.
            let after = try harness.inNamespace("iptables", "-t", "nat", "-S", "VMCTL-DNAT-\(bridge)")
            #expect(after.status == 0 && after.standardOutput.contains("-N VMCTL-DNAT-\(bridge)"), "\(after.standardError)")
            #expect(!after.standardOutput.contains("--to-destination"), "\(after.standardOutput)")
            let closed = try harness.connect(from: peer, to: "\(uplink).1", port: 18080)
            #expect(!closed.standardOutput.contains("vmctl-guest-hello"), "still forwarded after remove")

            // A network a domain uses is destroyed only with --force; with a forward recorded, only
            // where its rules are; and then its forwards and its rules go with it.
            #expect(try harness.vmctlInNamespace(["network", "forward", "add", name, "--host-port", "18080", "--to", "\(name)-vm:8080"],
                                                 environment: environment).status == 0)
            let inUse = try harness.vmctlInNamespace(["network", "destroy", name], environment: environment)
            #expect(inUse.status == 1 && inUse.standardError.contains("--force"), "\(inUse.standardError)")
            let elsewhere = try runVMCtl(["network", "destroy", name, "--force"], environment: environment)
            #expect(elsewhere.status == 1 && elsewhere.standardError.contains("is not in this network namespace"), "\(elsewhere.standardError)")
            #expect(try runVMCtl(["network", "show", name], environment: environment).status == 0, "refused, yet the network is gone")
            let forced = try harness.vmctlInNamespace(["network", "destroy", name, "--force", "-q"], environment: environment)
            #expect(forced.status == 0 && forced.standardOutput == "\(name)\n", "\(forced.standardError)")
            #expect(try runVMCtl(["network", "show", name], environment: environment).status == 1)
            #expect(try runVMCtl(["network", "forward", "list", "-q"], environment: environment).standardOutput.isEmpty)
            for table in ["nat", "filter"] {
                let left = try harness.inNamespace("iptables", "-t", table, "-S")
                #expect(left.status == 0 && !left.standardOutput.contains("-\(bridge)"), "\(table): \(left.standardOutput)")
            }
            try await domain.destroy()
            try await domain.undefine()
        }
    }
}
