import Foundation
import Libvirt
import Testing
import TestSupport

extension Integration {
    /// The real guest: Debian 12 with systemd, cloud-init and sshd (scripts/build-debian-guest),
    /// created by `vmctl create` and reached over SSH as a user would, in every topology of the
    /// seeds, with traffic from the harness's provider and internet namespaces.
    ///
    /// vmctl runs inside the harness's namespace (beside libvirtd's bridges), as an operator runs
    /// it on the server: that is where it adds host routes, applies firewall rules and reads the
    /// neighbour table.
    @Suite("Debian guest")
    struct DebianGuestTests {
        /// One test's networks, pools and key, made through vmctl and removed at the end.
        struct Site {
            let harness: Harness
            let world: Harness.World
            let id: String
            let scratch: URL
            let key: URL
            let environment: [String: String]
            let debian: URL
            /// Per-test address blocks: 10.219.K/24 and 10.220.K/24, 2001:db8:fHHH:N::/64 (inside
            /// what the provider routes to the server), 203.0.113.B/28.
            let octet: Int
            let v6: String
            let block: Int

            static func make() throws -> Site {
                let harness = try Harness.require()
                let id = uniqueSuffix()
                let scratch = try harness.scratch(id)
                let key = scratch.appendingPathComponent("id_ed25519")
                let made = try runProcess("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "vmctl-test", "-f", key.path])
                guard made.status == 0 else { throw TestSupportError("ssh-keygen: \(made.standardError)") }
                return Site(harness: harness, world: try harness.world(), id: id, scratch: scratch, key: key,
                            environment: ["VMCTL_CONNECT": harness.uri, "VMCTL_STATE": scratch.appendingPathComponent("state.sqlite").path],
                            debian: try Harness.debianGuest(), octet: Int.random(in: 10...250),
                            v6: "2001:db8:f" + String(Int.random(in: 1...0xfff), radix: 16), block: 16 * Int.random(in: 1...15))
            }

            /// vmctl, run in the harness's namespace.
            @discardableResult
            func vmctl(_ arguments: String..., sourceLocation: SourceLocation = #_sourceLocation) throws -> ProcessResult {
                try vmctl(arguments, sourceLocation: sourceLocation)
            }

            @discardableResult
            func vmctl(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> ProcessResult {
                let result = try harness.vmctlInNamespace(arguments, environment: environment)
                #expect(result.status == 0, "vmctl \(arguments.joined(separator: " ")): \(result.standardError)", sourceLocation: sourceLocation)
                return result
            }

            /// `vmctl create NAME` from the Debian image with the site's key and `extra` options,
            /// as arguments to `ip netns exec`, waiting for the addresses.
            func create(_ name: String, _ extra: [String]) throws -> [String] {
                ["netns", "exec", harness.netns, try vmctlExecutable(), "create", name,
                 "--image", debian.appendingPathComponent("debian.qcow2").path,
                 "--kernel", debian.appendingPathComponent("vmlinuz").path, "--initrd", debian.appendingPathComponent("initrd.img").path,
                 "--cmdline", "root=/dev/vda rw console=ttyS0 quiet", "--ssh-key", key.path + ".pub", "--memory", "512M",
                 "--console-log", console(name).path, "--wait", "ip", "--timeout", "420", "-q"] + extra
            }

            func console(_ name: String) -> URL { scratch.appendingPathComponent("\(name)-console.log") }

            /// The last lines of a guest's console, for failure messages.
            func consoleTail(_ name: String) -> String {
                // `answer` names a VM by its role ("slaac"); its console is that of "slaac-ID".
                let file = FileManager.default.fileExists(atPath: console(name).path) ? console(name)
                    : ((try? FileManager.default.contentsOfDirectory(atPath: scratch.path)) ?? [])
                        .first { $0.hasPrefix(name + "-") && $0.hasSuffix("-console.log") }.map { scratch.appendingPathComponent($0) } ?? console(name)
                return String(((try? String(contentsOf: file, encoding: .utf8)) ?? "").suffix(2500))
            }

            /// Waits for SSH as `debian` from the internet namespace and returns what `command` printed.
            func answer(_ name: String, at address: String, port: Int = 22, from namespace: String? = nil,
                        _ command: String = "hostname; ip -o addr show scope global; ip -4 route; ip -6 route show default") async throws -> String {
                let text = try await harness.waitForSSH(from: namespace ?? world.internet, "debian", address, port: port, key: key, command)
                return try #require(text, "no SSH to \(name) at \(address):\(port); console: \(consoleTail(name))")
            }

            /// What `command` prints in the guest at `address` (one SSH, already known to answer).
            func run(in address: String, port: Int = 22, _ command: String) throws -> String {
                try harness.ssh(from: world.internet, "debian", address, port: port, key: key, command).standardOutput
            }

            /// The VM's NIC MACs, in order, as vmctl shows them.
            func macs(of name: String) throws -> [String] {
                struct Shown: Decodable { struct NIC: Decodable { var mac: String? }; var interfaces: [NIC] }
                return try JSONDecoder().decode(Shown.self, from: Data(vmctl("show", name, "--format", "json").standardOutput.utf8)).interfaces.compactMap(\.mac)
            }

            /// vmctl's host routes in the harness's namespace.
            func hostRoutes() throws -> String {
                let v4 = try harness.ip("route", "show", "proto", "118").standardOutput
                let v6 = try harness.ip("-6", "route", "show", "proto", "118").standardOutput
                return v4 + v6
            }
        }

        /// SLAAC's address of a MAC in a /64 (modified EUI-64) written as `ip` prints it; `prefix`
        /// is the /64's four groups.
        static func slaac(_ prefix: String, _ mac: String) -> String {
            let b: [UInt16] = mac.split(separator: ":").map { UInt16($0, radix: 16)! }
            let first: UInt16 = (b[0] ^ 2) << 8 | b[1]
            let second: UInt16 = b[2] << 8 | 0xff
            let third: UInt16 = 0xfe00 | b[3]
            let fourth: UInt16 = b[4] << 8 | b[5]
            let groups = [first, second, third, fourth]
            return prefix + ":" + groups.map { String($0, radix: 16) }.joined(separator: ":")
        }

        @Test("every seed topology with real traffic: 000/004 routed /32s of an additional subnet (its network and broadcast addresses) on an open network behind vmctl's firewall; 001 SLAAC and DHCPv6 by DUID-LL; 002/003 NAT with a port forward, two NICs, a guest bridged onto the LAN; a pool address again after a destroy; the key is the default user's",
              .timeLimit(.minutes(12)))
        func seedTopologies() async throws {
            let site = try Site.make()
            let (harness, world, id, v6) = (site.harness, site.world, site.id, site.v6)
            let first = "203.0.113.\(site.block)", last = "203.0.113.\(site.block + 15)"
            let nat = "10.220.\(site.octet)"
            // The LAN a guest is bridged onto: a bridge in the server's namespace, a veth into the
            // provider's, and the provider's DHCP server there (198.51.100.232/29), as a provider
            // hands out single addresses to registered MACs (seed 002).
            let lanBridge = "bl\(id)", lanLease = site.scratch.appendingPathComponent("lan.leases")
            #expect(try harness.ip("link", "add", lanBridge, "type", "bridge").status == 0)
            #expect(try harness.ip("link", "set", lanBridge, "up").status == 0)
            #expect(try harness.ip("link", "add", "ls\(id)", "type", "veth", "peer", "name", "lp\(id)", "netns", world.provider).status == 0)
            #expect(try harness.ip("link", "set", "ls\(id)", "master", lanBridge, "up").status == 0)
            let inProvider = ["-n", world.provider]
            #expect(try runProcess("/usr/sbin/ip", inProvider + ["addr", "add", "198.51.100.233/29", "dev", "lp\(id)"]).status == 0)
            #expect(try runProcess("/usr/sbin/ip", inProvider + ["link", "set", "lp\(id)", "up"]).status == 0)
            let lanDHCP = try startBackground("/usr/sbin/ip", [
                "netns", "exec", world.provider, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--port=0", "--interface=lp\(id)",
                "--bind-interfaces", "--dhcp-range=198.51.100.234,198.51.100.238,255.255.255.248,1h",
                "--dhcp-option=option:router,198.51.100.233", "--dhcp-leasefile=\(lanLease.path)", "--pid-file="])
            let listener = try harness.listenForSources(in: world.internet, port: 7000)
            let forwardPort = 20000 + site.octet
            defer {
                stopBackground(listener)
                stopBackground(lanDHCP)
                for name in ["first", "edge-a", "edge-b", "slaac", "dhcp6", "twonic", "lan"] { _ = try? harness.vmctlInNamespace(["destroy", "\(name)-\(id)", "--force"], environment: site.environment) }
                for network in ["pub", "v6", "d6", "nat", "lan"] { _ = try? harness.vmctlInNamespace(["network", "destroy", "\(network)-\(id)", "--force"], environment: site.environment) }
                _ = try? runProcess("/usr/sbin/ip", inProvider + ["link", "del", "lp\(id)"])
                _ = try? harness.ip("link", "del", lanBridge)
            }

            // Seed 000/004: an open network (the host's firewall is vmctl's), a private /24 for the
            // bridge's own address and no DHCP, SLAAC for IPv6; the additional /28 routed to the
            // server, every address usable.
            try site.vmctl("network", "create", "pub-\(id)", "--mode", "open", "--ipv4", "10.219.\(site.octet).1/24", "--ipv6", "\(v6):1::1/64", "-q")
            try site.vmctl("pool", "create", "edge-\(id)", "--network", "pub-\(id)", "--range", "\(first)/28", "--all-usable", "-q")
            try site.vmctl("network", "firewall", "pub-\(id)", "--apply")
            // Seed 001: IPv6 only, SLAAC; and DHCPv6 with reservations.
            try site.vmctl("network", "create", "v6-\(id)", "--mode", "route", "--ipv6", "\(v6):2::1/64", "-q")
            try site.vmctl("pool", "create", "v6p-\(id)", "--network", "v6-\(id)", "--range", "\(v6):2::10-\(v6):2::20", "-q")
            try site.vmctl("network", "create", "d6-\(id)", "--mode", "route", "--ipv6", "\(v6):3::1/64", "--dhcp6", "\(v6):3::100-\(v6):3::1ff", "-q")
            try site.vmctl("pool", "create", "d6p-\(id)", "--network", "d6-\(id)", "--range", "\(v6):3::10-\(v6):3::20", "-q")
            // Seeds 002/003: NAT with DHCP reservations, and the host bridge onto the LAN.
            try site.vmctl("network", "create", "nat-\(id)", "--mode", "nat", "--ipv4", "\(nat).1/24", "--dhcp4", "\(nat).100-\(nat).200", "-q")
            try site.vmctl("pool", "create", "natp-\(id)", "--network", "nat-\(id)", "--range", "\(nat).10-\(nat).20", "-q")
            try site.vmctl("network", "create", "lan-\(id)", "--mode", "bridge", "--bridge", lanBridge, "-q")
            // The same pool address again: a first guest (the busybox one, quick) takes the NAT
            // pool's first address and its lease and is destroyed; the Debian guest `twonic` below
            // holds that address at once, because destroy ended the old lease.
            let firstNIC = try harness.vmctlInNamespace(["create", "first-\(id)", "--kernel", harness.kernel, "--initrd", harness.initrd,
                                                         "--cmdline", "console=ttyS0 quiet", "--memory", "160", "--network", "nat-\(id),pool=natp-\(id)",
                                                         "--wait", "ip", "--timeout", "120", "-q"], environment: site.environment)
            try #require(firstNIC.status == 0, "\(firstNIC.standardError)")
            let connection = try await harness.connect()
            let natNetwork = try await connection.network(named: "nat-\(id)")
            let firstMAC = try site.macs(of: "first-\(id)")[0]
            #expect(try await natNetwork.dhcpLeases().contains { $0.address == "\(nat).10" && $0.mac == firstMAC })
            try site.vmctl("destroy", "first-\(id)", "--force", "-q")
            // dnsmasq tells libvirt's lease helper a moment after the release.
            let released = try await eventually(timeout: .seconds(10)) { () -> Bool? in
                try await natNetwork.dhcpLeases().contains { $0.address == "\(nat).10" } ? nil : true
            }
            #expect(released == true, "destroy ended the lease of \(nat).10")
            // This guest's DHCPv6 client is told to send a DUID-LL, the DUID vmctl reserves for.
            let userData = site.scratch.appendingPathComponent("duid-ll.yaml")
            // bootcmd: early in cloud-init's network stage, not at the end of boot as runcmd would be.
            try Data("#cloud-config\nbootcmd:\n  - [dhclient, -6, -D, LL, -nw, ens2]\n".utf8).write(to: userData)

            // All six boot at once (TCG on two cores: about two and a half minutes).
            let started = ContinuousClock.now
            let creates = try runTogether("/usr/sbin/ip", [
                try site.create("edge-a-\(id)", ["--network", "pub-\(id),ip=\(first)"]),
                try site.create("edge-b-\(id)", ["--network", "pub-\(id),ip=\(last)"]),
                try site.create("slaac-\(id)", ["--network", "v6-\(id)"]),
                try site.create("dhcp6-\(id)", ["--network", "d6-\(id),pool=d6p-\(id)", "--user-data", userData.path]),
                try site.create("twonic-\(id)", ["--network", "nat-\(id),pool=natp-\(id)", "--network", "v6-\(id),pool=v6p-\(id)"]),
                try site.create("lan-\(id)", ["--network", "lan-\(id)"]),
            ], environment: ProcessInfo.processInfo.environment.merging(site.environment) { $1 })
            for (index, result) in creates.results.enumerated() {
                try #require(result.status == 0, "create #\(index): \(result.standardError)")
            }
            print("debian guests: 6 created with --wait ip in \(ContinuousClock.now - started)")

            // 000/004: reached from the internet through the provider and vmctl's host routes
            // and firewall; each /32 with its on-link default route.
            let routes = try site.hostRoutes()
            #expect(routes.contains("\(first) dev ") && routes.contains("\(last) dev "), "\(routes)")
            for (name, address) in [("edge-a", first), ("edge-b", last)] {
                let text = try await site.answer(name, at: address)
                #expect(text.hasPrefix("\(name)-\(id)\n"), "\(text)")
                #expect(text.contains("inet \(address)/32"), "\(text)")
                #expect(text.contains("default via 10.219.\(site.octet).1 dev ens2 onlink"), "\(text)")
                #expect(!text.contains("inet 10.219."), "no private address beside the /32: \(text)")
                let mac = try site.macs(of: "\(name)-\(id)")[0]
                #expect(text.contains("inet6 \(Self.slaac("\(v6):1", mac))/64"), "SLAAC's address: \(text)")
                #expect(text.contains("proto ra"), "the IPv6 default route from router advertisements: \(text)")
            }
            // From the provider (upstream) too, and the guests reach each other and the internet
            // from their public address, not masqueraded.
            let upstream = try await site.answer("edge-b", at: last, from: world.provider, "hostname")
            #expect(upstream == "edge-b-\(id)\n")
            let out = try site.run(in: first, "ping -c 1 -W 5 \(last) >/dev/null && echo reached; python3 -c 'import socket; s = socket.create_connection((\"\(Harness.World.internetAddress)\", 7000), timeout=5); print(s.recv(100).decode().strip())'")
            #expect(out == "reached\nseen \(first)\n", "\(out)")
            #expect(try site.run(in: last, "hostname -f; getent hosts $(hostname)").contains("edge-b-\(id)"), "the hostname resolves (/etc/hosts)")

            // 001: SLAAC only, reached over IPv6 from the internet.
            let slaacMAC = try site.macs(of: "slaac-\(id)")[0]
            let slaacAddress = Self.slaac("\(v6):2", slaacMAC)
            let slaacText = try await site.answer("slaac", at: slaacAddress)
            #expect(slaacText.contains("inet6 \(slaacAddress)/64") && slaacText.contains("proto ra"), "\(slaacText)")
            #expect(!slaacText.contains("inet "), "no IPv4 at all: \(slaacText)")
            // 001: the DHCPv6 reservation, static in the seed and served to the guest's DUID-LL.
            let dhcp6MAC = try site.macs(of: "dhcp6-\(id)")[0]
            let dhcp6Text = try await site.answer("dhcp6", at: "\(v6):3::10")
            #expect(dhcp6Text.contains("inet6 \(v6):3::10/") && dhcp6Text.contains("default via \(v6):3::1"), "\(dhcp6Text)")
            let d6 = try await connection.network(named: "d6-\(id)")
            let lease = try await eventually(timeout: .seconds(120), every: .seconds(2)) { () -> DHCPLease? in
                try await d6.dhcpLeases().first { $0.family == .ipv6 && $0.clientID == "00:03:00:01:\(dhcp6MAC)" }
            }
            #expect(lease?.address == "\(v6):3::10", "dnsmasq served the reservation to the DUID-LL: \(String(describing: lease)); console: \(site.consoleTail("dhcp6-\(id)"))")

            // 002/003: NAT with a port forward from the server's main address, reached from the
            // internet; the pool's first address, which the destroyed guest held a moment ago;
            // the second NIC's routed IPv6 reached directly; outbound masqueraded.
            try site.vmctl("network", "forward", "add", "nat-\(id)", "--host-port", "\(forwardPort)", "--to", "twonic-\(id):22", "-q")
            let twoText = try await site.answer("twonic", at: Harness.World.serverAddress, port: forwardPort)
            #expect(twoText.hasPrefix("twonic-\(id)\n"), "\(twoText)")
            #expect(twoText.contains("ens2    inet \(nat).10/24") && twoText.contains("ens3    inet6 \(v6):2::10/64"), "\(twoText)")
            #expect(twoText.contains("default via \(nat).1 dev ens2") && twoText.contains("default via \(v6):2::1 dev ens3"), "\(twoText)")
            let masqueraded = try site.run(in: Harness.World.serverAddress, port: forwardPort,
                                           "python3 -c 'import socket; s = socket.create_connection((\"\(Harness.World.internetAddress)\", 7000), timeout=5); print(s.recv(100).decode().strip())'")
            #expect(masqueraded == "seen \(Harness.World.serverAddress)\n", "\(masqueraded)")
            #expect(try site.run(in: "\(v6):2::10", "hostname") == "twonic-\(id)\n")
            // The key is the default user's: as root it runs nothing (cloud-init's disable_root
            // answers "Please login as the user debian" and exits non-zero).
            let root = try harness.ssh(from: world.internet, "root", Harness.World.serverAddress, port: forwardPort, key: site.key, "echo vmctl-ran-as-root")
            #expect(root.status != 0 && !root.standardOutput.contains("vmctl-ran-as-root"), "\(root.standardOutput)\(root.standardError)")
            // 002: bridged onto the LAN, its address from the LAN's DHCP server, reached from
            // the internet through the provider and not through the server.
            let lanMAC = try site.macs(of: "lan-\(id)")[0]
            let lanAddress = try await eventually(timeout: .seconds(120), every: .seconds(2)) { () -> String? in
                let leases = (try? String(contentsOf: lanLease, encoding: .utf8)) ?? ""
                // dnsmasq's lease file: EXPIRY MAC ADDRESS HOSTNAME CLIENT-ID
                for line in leases.split(separator: "\n") {
                    let fields = line.split(separator: " ").map(String.init)
                    if fields.count > 2 && fields[1] == lanMAC { return fields[2] }
                }
                return nil
            }
            let lanAt = try #require(lanAddress, "no LAN lease for \(lanMAC); console: \(site.consoleTail("lan-\(id)"))")
            let lanText = try await site.answer("lan", at: lanAt)
            #expect(lanText.contains("inet \(lanAt)/29") && lanText.contains("default via 198.51.100.233"), "\(lanText)")

            // Destroyed: their routes, forward and entries go; doctor finds nothing; the
            // networks go with their firewall chains.
            print("debian guests: checked after \(ContinuousClock.now - started)")
            try site.vmctl(["destroy", "--force", "-q"] + ["edge-a", "edge-b", "slaac", "dhcp6", "twonic", "lan"].map { "\($0)-\(id)" })
            let routesAfter = try site.hostRoutes()
            #expect(!routesAfter.contains("203.0.113."), "\(routesAfter)")
            #expect(try site.vmctl("network", "forward", "list", "-q").standardOutput.isEmpty)
            let doctor = try harness.vmctlInNamespace(["doctor"], environment: site.environment)
            #expect(doctor.status == 0 && doctor.standardOutput == "no problems found\n", "\(doctor.standardOutput)\(doctor.standardError)")
            for network in ["pub", "v6", "d6", "nat", "lan"] { try site.vmctl("network", "destroy", "\(network)-\(id)", "-q") }
            let chains = try harness.inNamespace("iptables", "-S").standardOutput + harness.inNamespace("ip6tables", "-S").standardOutput
            #expect(!chains.contains("VMCTL-") , "\(chains)")
        }

        @Test("the image by name, pulled from the catalogue over HTTP; create --wait ssh with no key given (vmctl's own); vmctl ssh prints the VM's name; exec returns the command's status; run -- false exits 1 and leaves nothing; stop (ACPI) and start; the console log shows the boot; the host key forgotten on destroy",
              .timeLimit(.minutes(8)))
        func imageAndAccess() async throws {
            let site = try Site.make()
            let (harness, id) = (site.harness, site.id)
            let home = site.scratch.appendingPathComponent("home")
            try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
            let environment = site.environment.merging(["HOME": home.path]) { $1 }
            func vmctl(_ arguments: String...) throws -> ProcessResult { try harness.vmctlInNamespace(arguments, environment: environment) }
            let server = try await ImageTests.ImageServer.start(serving: site.debian, harness: harness)
            let (image, vm, thrown) = ("debian-test-\(id)", "acc-\(id)", "run-\(id)")
            let nat = "10.222.\(site.octet)"
            defer {
                server.stop()
                for name in [vm, thrown] { _ = try? vmctl("destroy", name, "--force") }
                _ = try? vmctl("image", "rm", image)
                _ = try? vmctl("network", "destroy", "acc-\(id)", "--force")
            }
            try site.vmctl("network", "create", "acc-\(id)", "--mode", "nat", "--ipv4", "\(nat).1/24", "--dhcp4", "\(nat).100-\(nat).200", "-q")
            try site.vmctl("pool", "create", "accp-\(id)", "--network", "acc-\(id)", "--range", "\(nat).10-\(nat).20", "-q")

            // A user catalogue names the image, its checksum and its user, as the built-in one does
            // for the distributions' images.
            let sha = String(try runProcess("/usr/bin/sha256sum", [site.debian.appendingPathComponent("debian.qcow2").path]).standardOutput.prefix(64))
            let catalogue = site.scratch.appendingPathComponent("images.yaml")
            try Data("\(image):\n  url: \(server.url("debian.qcow2"))\n  sha256: \(sha)\n  user: debian\n".utf8).write(to: catalogue)
            let pulled = try vmctl("image", "pull", image, "--catalogue", catalogue.path, "--format", "json")
            try #require(pulled.status == 0, "\(pulled.standardError)")
            #expect(pulled.standardOutput.contains("\"format\" : \"qcow2\"") && pulled.standardOutput.contains("\"user\" : \"debian\""), "\(pulled.standardOutput)")

            // The two at once: a VM to log in to, and a throwaway one whose command fails.
            let boot = ["--image", image, "--kernel", site.debian.appendingPathComponent("vmlinuz").path,
                        "--initrd", site.debian.appendingPathComponent("initrd.img").path, "--cmdline", "root=/dev/vda rw console=ttyS0 quiet",
                        "--memory", "512M", "--network", "acc-\(id),pool=accp-\(id)"]
            let vmctlPath = try vmctlExecutable()
            let started = ContinuousClock.now
            let both = try runTogether("/usr/sbin/ip", [
                ["netns", "exec", harness.netns, vmctlPath, "create", vm] + boot + ["--wait", "ssh", "--timeout", "400", "-q"],
                // Its key is the test's (the private half offered with --identity), not vmctl's own.
                ["netns", "exec", harness.netns, vmctlPath, "run", "--name", thrown, "--timeout", "400", "--ssh-key", site.key.path + ".pub",
                 "--identity", site.key.path] + boot + ["--", "false"],
            ], environment: ProcessInfo.processInfo.environment.merging(environment) { $1 })
            print("debian access: create --wait ssh and run -- false in \(ContinuousClock.now - started)")
            let console = try vmctl("console", vm, "--log").standardOutput.suffix(2000)
            try #require(both.results[0].status == 0, "create --wait ssh: \(both.results[0].standardError); console: \(console)")
            #expect(both.results[1].status == 1, "run -- false: \(both.results[1].standardError)")
            let connection = try await harness.connect()
            #expect(try await !connection.domains().contains { $0.name == thrown }, "run destroyed its VM")
            #expect(try await connection.storagePool(named: "vmctl").volumes().filter { $0.name.hasPrefix(thrown + "-") }.isEmpty)
            #expect(try vmctl("pool", "show", "accp-\(id)", "--format", "json").standardOutput.contains("\"used\" : 1"), "only the VM's address is held")

            // In over SSH as the image's user, with the key vmctl made (none was given, none in $HOME).
            let hostname = try vmctl("ssh", vm, "--", "cat", "/etc/hostname")
            #expect(hostname.status == 0 && hostname.standardOutput == "\(vm)\n", "\(hostname.standardError)")
            #expect(try vmctl("exec", vm, "--", "id", "-un").standardOutput == "debian\n", "the image's user, recorded with the VM")
            #expect(try vmctl("exec", vm, "--user", "debian", "--", "id", "-un").standardOutput == "debian\n")
            let status = try vmctl("exec", vm, "--", "sh", "-c", "echo 'one word'; exit 7")
            #expect(status.status == 7 && status.standardOutput == "one word\n", "\(status.standardError)")
            let uuid = try await connection.domain(named: vm).uuid.uuidString.lowercased()
            let knownHosts = site.scratch.appendingPathComponent("ssh/known_hosts")
            #expect(((try? String(contentsOf: knownHosts, encoding: .utf8)) ?? "").hasPrefix("vmctl-\(uuid) ssh-"), "its host key, under its UUID")

            // stop asks the guest (ACPI) and it shuts down well within the grace; start boots it.
            let stopping = ContinuousClock.now
            #expect(try vmctl("stop", vm, "--grace", "60").standardOutput == "\(vm): stopped\n")
            #expect(ContinuousClock.now - stopping < .seconds(60), "the guest shut down by itself")
            let log = try vmctl("console", vm, "--log").standardOutput
            #expect(log.contains("\(vm) login:") && log.contains("reboot: Power down"), "the console log shows the boot and the shutdown: \(log.suffix(1500))")
            #expect(try vmctl("start", vm).standardOutput == "\(vm): started\n")
            #expect(try vmctl("list", "--format", "json").standardOutput.contains("\"state\" : \"running\""))

            #expect(try vmctl("destroy", vm, "--force").status == 0)
            #expect(!((try? String(contentsOf: knownHosts, encoding: .utf8)) ?? "").contains("vmctl-\(uuid)"), "destroy forgot the host key")
            #expect(try vmctl("image", "rm", image).status == 0)
        }
    }
}
