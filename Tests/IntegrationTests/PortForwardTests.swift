import Foundation
import Libvirt
import Testing
import TestSupport

extension Integration {
    /// `vmctl network forward`: a connection from a second test host to a host port reaches a
    /// listener in the guest.
    @Suite("port forwards")
    struct PortForwardTests {
        /// Connects from the peer namespace and returns the first line the other side sends.
        func connect(from peer: String, to address: String, port: Int) throws -> ProcessResult {
            try runProcess("/usr/sbin/ip", ["netns", "exec", peer, "python3", "-c", """
                import socket
                s = socket.create_connection(("\(address)", \(port)), timeout=5)
                s.settimeout(5)
                print(s.recv(100).decode().strip())
                """])
        }

        @Test("a connection from a second test host to the host port reaches the guest's listener; the rules outlive a network restart and go with remove",
              .timeLimit(.minutes(4)), arguments: ["nat", "open"])
        func endToEnd(mode: String) async throws {
            let harness = try Harness.require()
            let connection = try await harness.connect()
            let id = uniqueSuffix()
            let octet = Int.random(in: 10...250)
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
                let result = try connect(from: peer, to: "\(uplink).1", port: 18080)
                return result.standardOutput.contains("vmctl-guest-hello") ? result.standardOutput : nil
            }
            #expect(reply != nil, "no answer through the forward")

            // The rules are vmctl's own chains: a restart of the network (libvirt rebuilding its
            // firewall) leaves them in place.
            #expect(try runVMCtl(["network", "stop", name], environment: environment).status == 0)
            #expect(try runVMCtl(["network", "start", name], environment: environment).status == 0)
            let rules = try runProcess("/usr/sbin/ip", ["netns", "exec", harness.netns, "iptables", "-t", "nat", "-S", "VMCTL-DNAT-\(try await network.bridgeName())"])
            #expect(rules.standardOutput.contains("--to-destination \(address):8080"), "\(rules.standardOutput)")

            let removed = try harness.vmctlInNamespace(["network", "forward", "remove", name, "--host-port", "18080"], environment: environment)
            #expect(removed.status == 0, "\(removed.standardError)")
            #expect(try runVMCtl(["network", "forward", "list", name], environment: environment).standardOutput.split(separator: "\n").count == 1)
            let after = try runProcess("/usr/sbin/ip", ["netns", "exec", harness.netns, "iptables", "-t", "nat", "-S", "VMCTL-DNAT-\(try await network.bridgeName())"])
            #expect(!after.standardOutput.contains("--to-destination"))
            try await domain.destroy()
            try await domain.undefine()
        }
    }
}
