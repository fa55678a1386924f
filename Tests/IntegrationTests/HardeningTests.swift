import Foundation
import Libvirt
import LibvirtXML
import Testing
import TestSupport

extension Integration {
    /// Bad input, signals, races and a lost state file, against the harness's libvirtd: nothing is
    /// ever left half-made, and nothing libvirt knows is lost.
    @Suite("hardening")
    struct HardeningTests {
        typealias Setup = VMLifecycleTests.Setup

        /// What libvirt and the store hold, to compare before and after.
        func snapshot(_ setup: Setup) async throws -> [String] {
            var lines = try await setup.connection.domains().map { "domain \($0.name)" }.sorted()
            for network in try await setup.connection.networks().sorted(by: { $0.name < $1.name }) {
                lines.append("network \(network.name) \(try await network.xml())")
                if try await network.isPersistent() { lines.append("persistent \(network.name) \(try await network.xml(inactive: true))") }
            }
            if let pool = try? await setup.connection.storagePool(named: "vmctl") {
                lines += try await pool.volumes().map { "volume \($0.name)" }.sorted()
            }
            lines.append(try setup.vmctl("pool", "list", "--format", "json").standardOutput)
            for pool in ["pn-\(setup.id)", "po-\(setup.id)"] { lines.append(try setup.vmctl("pool", "show", pool, "--format", "json").standardOutput) }
            lines.append(try setup.vmctl("network", "forward", "list", "--format", "json").standardOutput)
            return lines
        }

        @Test("bad input on every verb: exit 64 or 1, one line naming the value, libvirt and the store unchanged", .timeLimit(.minutes(5)))
        func badInput() async throws {
            try await Setup.with { setup in
                let id = setup.id, net = "ivn-\(id)", pool = "pn-\(id)"
                let text = setup.scratch.appendingPathComponent("notes.txt")
                try "just some text\n".write(to: text, atomically: true, encoding: .utf8)
                // A qcow2 header claiming 2^64-1 bytes, cut short.
                let truncated = setup.scratch.appendingPathComponent("truncated.qcow2")
                try Data([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3] + [UInt8](repeating: 0, count: 12) + [0, 0, 0, 16] + [UInt8](repeating: 0xff, count: 8))
                    .write(to: truncated)
                let existingLog = setup.scratch.appendingPathComponent("console.log")
                try "keep me\n".write(to: existingLog, atomically: true, encoding: .utf8)
                let vm = ["create", "hb-\(id)", "--kernel", setup.harness.kernel, "--initrd", setup.harness.initrd]
                // (arguments, what stderr must name)
                var cases: [([String], String)] = []
                for name in ["bad!", "a b", String(repeating: "a", count: 65), "ü", "a/b", "x;rm", ".hidden"] {
                    cases.append((["create", name], name))
                    cases.append((["network", "create", name, "--mode", "nat", "--ipv4", "10.219.0.0/24"], name))
                    cases.append((["pool", "create", name, "--network", net, "--range", "10.219.0.0/28"], name))
                }
                cases.append((["create", ""], "''"))
                cases.append((["create", "--", "-x"], "-x"))
                // A value that starts with "-" goes as --option=VALUE: otherwise the parser takes it for an option.
                func option(_ name: String, _ value: String) -> [String] { value.hasPrefix("-") ? ["\(name)=\(value)"] : [name, value] }
                for memory in ["0", "8", "0x10G", "1e-9G", "-1G", "99999999G", "1T", "1.5.5G", "12Q", "G"] { cases.append((vm + option("--memory", memory), memory)) }
                for size in ["0x10G", "1e-9G", "10", "4000000T", "2049T", "-5G", "0G", " 1G", "1,5G"] { cases.append((vm + option("--disk-size", size), size)) }
                for disk in ["size=0", "4G", "size=1e3G", "size=", "size=4000000T", "size=1G,size=2G", "count=2"] { cases.append((vm + ["--disk", disk], disk)) }
                for vcpus in ["0", "-1", "4294967297", "99999", "two"] { cases.append((vm + option("--vcpus", vcpus), vcpus)) }
                for ttl in ["99999999999999999999d", "0s", "1w", "3651d", "1.5h", "h", "10"] { cases.append((vm + ["--ttl", ttl], ttl)) }
                for label in ["nolabel", "a b=1", "=v", String(repeating: "k", count: 64) + "=v"] { cases.append((vm + ["--label", label], label)) }
                cases.append((vm + ["--label", "k=a\rb"], "k=a\\rb"))
                cases.append((vm + ["--label", "k=bell\u{7}"], "k=bell\\u{07}"))
                for nic in ["\(net),ip=300.1.1.1", "\(net),mac=00:00:00:00:00:00", "\(net),mac=01:00:5e:00:00:01", "\(net),mac=zz",
                            "\(net),model=ne2k", "\(net),colour=red", "pool=\(pool)", "\(net),ip=10.0.0.1,ip=10.0.0.2", "\(net),pool"] {
                    cases.append((vm + ["--network", nic], nic))
                }
                cases.append((vm + ["--network", "nonet-\(id)"], "nonet-\(id)"))
                cases.append((vm + ["--network", "\(net),pool=nopool-\(id)"], "nopool-\(id)"))
                cases.append((vm + ["--network", "\(net),ip=10.1.2.3"], "10.1.2.3"))
                for image in ["/dev/zero", setup.scratch.path, text.path, truncated.path, "/nonexistent/base.qcow2"] { cases.append((vm + ["--image", image], image)) }
                cases.append((vm + ["--image", ""], "''"))
                cases.append((vm + ["--image", setup.image, "--image-format", "vmdk"], "vmdk"))
                cases.append((vm + ["--image", text.path, "--image-format", "qcow2"], text.path))
                cases.append((vm + ["--image", setup.image, "--disk-size", "1M"], "1M"))
                cases.append((vm + ["--console-log", "relative.log"], "relative.log"))
                cases.append((vm + ["--console-log", existingLog.path], existingLog.path))
                cases.append((vm + ["--console-log-append"], "console"))
                for timeout in ["0", "-5", "soon"] { cases.append((vm + option("--timeout", timeout), timeout)) }
                cases.append((vm + ["--wait", "ssh-forever"], "ssh-forever"))
                cases.append((vm + ["--virt-type", "xen"], "xen"))
                cases.append((["create", "hb-\(id)", "--kernel", "/nonexistent/vmlinuz"], "/nonexistent/vmlinuz"))
                cases.append((["create", "hb-\(id)", "--initrd", setup.harness.initrd], "initrd"))
                cases.append((["create", "hb-\(id)", "--no-cloud-init", "--user-data", text.path], "user-data"))
                cases.append((vm + ["--ssh-key", text.path], text.path))
                cases.append((vm + ["--storage-pool", "nopool-\(id)"], "nopool-\(id)"))
                cases.append((vm + ["--templates", "/nonexistent/templates"], "/nonexistent/templates"))
                cases.append((vm + ["--bogus-option"], "--bogus-option"))

                let bad = ["network", "create", "hbn-\(id)"]
                for mode in ["bogus", "NAT", ""] { cases.append((bad + ["--mode", mode], mode.isEmpty ? "--mode" : mode)) }
                for subnet in ["10.0.0.0/33", "300.0.0.0/24", "fd00::/64", "10.0.0.0", "10.0.0.0/-1"] { cases.append((bad + ["--mode", "nat", "--ipv4", subnet], subnet)) }
                for subnet in ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "::ffff:10.0.0.0/120", "10.0.0.0/24", "fd00::/129", "fd00:1::/56"] {
                    cases.append((bad + ["--mode", "open", "--ipv6", subnet], subnet))
                }
                cases.append((bad + ["--mode", "open", "--ipv6", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "--dhcp6", "ffff::1-ffff::2"], "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"))
                cases.append((bad + ["--mode", "nat", "--ipv4", "10.219.1.0/24", "--gateway4", "10.9.9.9"], "10.9.9.9"))
                cases.append((bad + ["--mode", "nat", "--ipv4", "10.219.1.0/24", "--gateway4", "fd00::1"], "fd00::1"))
                cases.append((bad + ["--mode", "nat", "--ipv4", "10.219.1.0/24", "--dhcp4", "10.219.1.1-10.219.1.300"], "10.219.1.1-10.219.1.300"))
                cases.append((bad + ["--mode", "nat", "--ipv4", "10.219.1.0/24", "--dhcp4", "10.219.2.1-10.219.2.9"], "10.219.2.1-10.219.2.9"))
                cases.append((bad + ["--mode", "nat", "--ipv4", "10.219.1.0/24", "--gateway4", "10.219.1.0"], "10.219.1.0"))
                cases.append((bad + ["--mode", "nat", "--ipv4", "10.219.1.0/24", "--gateway4", "10.219.1.255"], "10.219.1.255"))
                for domain in ["x'/><mtu size='1400'/><x a='", "a b", "a..b", "-lab"] {
                    cases.append((bad + ["--mode", "nat", "--ipv4", "10.219.1.0/24"] + option("--domain", domain), domain))
                }
                cases.append((bad + ["--mode", "nat", "--ipv4", "10.219.1.0/24", "--domain", "lab", "--no-dns"], "--no-dns"))
                cases.append((bad + ["--mode", "bridge"], "--bridge"))
                cases.append((bad + ["--mode", "bridge", "--bridge", "nobr-\(id.prefix(4))"], "nobr-\(id.prefix(4))"))
                cases.append((bad + ["--mode", "open", "--ipv4", "10.219.1.0/24", "--forward-dev", "eth0"], "--forward-dev"))
                cases.append((bad + ["--mode", "nat"], "nat"))
                cases.append((bad + ["--mode", "nat", "--gateway4", "10.219.1.1"], "--gateway4"))
                cases.append((bad + ["--mode", "nat", "--ipv4", "10.219.1.0/24", "--templates", "/nonexistent/t"], "/nonexistent/t"))

                let poolBad = ["pool", "create", "hbp-\(id)", "--network", net]
                for range in ["10.0.0.0/33", "garbage", "10.0.0.9-10.0.0.1", "10.0.0.1-fd00::1", ""] { cases.append((poolBad + ["--range", range], range.isEmpty ? "''" : range)) }
                cases.append((poolBad + ["--range", "10.99.0.0/28"], "10.99.0.0-10.99.0.15"))
                cases.append((poolBad + ["--range", "\(setup.natSubnet).12"], "\(setup.natSubnet).12"))
                cases.append((poolBad + ["--range", "\(setup.natSubnet).100/30", "--exclude", "x"], "x"))
                cases.append((poolBad, "--range"))
                cases.append((["pool", "create", "hbp-\(id)", "--network", "nonet-\(id)", "--range", "10.0.0.0/28"], "nonet-\(id)"))
                cases.append((["pool", "create", pool, "--network", net, "--range", "10.219.9.0/28", "--all-usable"], pool))
                for mac in ["zz", "00:00:00:00:00:00", "01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "52:54:00:12:34", ""] {
                    cases.append((["pool", "reserve", pool, "--mac", mac, "--owner", "x"], mac.isEmpty ? "''" : mac))
                }
                cases.append((["pool", "reserve", pool, "--mac", "52:54:00:12:34:56", "--owner", ""], "--owner"))
                cases.append((["pool", "reserve", pool, "--mac", "52:54:00:12:34:56", "--owner", "x", "--ip", "300.1.1.1"], "300.1.1.1"))
                cases.append((["pool", "reserve", pool, "--mac", "52:54:00:12:34:56", "--owner", "x", "--ip", "10.9.9.9"], "10.9.9.9"))
                cases.append((["pool", "reserve", "nopool-\(id)", "--mac", "52:54:00:12:34:56", "--owner", "x"], "nopool-\(id)"))
                cases.append((["pool", "release", pool, "not-an-address"], "not-an-address"))
                cases.append((["pool", "release", pool, "\(setup.natSubnet).11"], "\(setup.natSubnet).11"))
                cases.append((["pool", "release", "nopool-\(id)", "10.0.0.1"], "nopool-\(id)"))
                cases.append((["pool", "show", "nopool-\(id)"], "nopool-\(id)"))
                cases.append((["pool", "destroy", "nopool-\(id)"], "nopool-\(id)"))

                for label in ["nolabel", "a b=1"] {
                    cases.append((["destroy", "--label", label], label))
                    cases.append((["list", "--label", label], label))
                }
                cases.append((["destroy", "--grace=-1", "x"], "-1"))
                cases.append((["destroy"], "--label"))
                cases.append((["destroy", "novm-\(id)"], "novm-\(id)"))
                cases.append((["show", "novm-\(id)"], "novm-\(id)"))
                cases.append((["wait", "novm-\(id)", "--for", "ip"], "novm-\(id)"))
                cases.append((["wait", "novm-\(id)", "--for", "soon"], "soon"))
                cases.append((["wait", "novm-\(id)", "--for", "ip", "--timeout", "0"], "0"))
                for port in ["0", "70000", "-1", "http"] {
                    cases.append((["network", "forward", "add", net] + option("--host-port", port) + ["--to", "vm:80"], port))
                }
                for target in ["vm", "vm:0", ":80", "vm:99999", "vm:http"] {
                    cases.append((["network", "forward", "add", net, "--host-port", "8080", "--to", target], target))
                }
                cases.append((["network", "forward", "add", net, "--host-port", "8080", "--to", "vm:80", "--proto", "sctp"], "sctp"))
                cases.append((["network", "forward", "remove", net, "--host-port", "8080", "--proto", "sctp"], "sctp"))
                cases.append((["network", "firewall", "nonet-\(id)"], "nonet-\(id)"))
                cases.append((["network", "firewall", net, "--format", "yaml"], "yaml"))
                cases.append((["network", "firewall", net], net))
                for verb in ["show", "start", "stop", "destroy"] { cases.append((["network", verb, "nonet-\(id)"], "nonet-\(id)")) }
                for verb in [["info"], ["doctor"], ["list"], ["network", "list"], ["pool", "list"]] {
                    cases.append((verb + ["--format", "yaml"], "yaml"))
                }
                cases.append((["info", "--connect", "qemu:///system?socket=/nonexistent/\(id).sock"], "/nonexistent/\(id).sock"))
                cases.append((["frobnicate"], "frobnicate"))
                // The fleet's: host names and labels, a host that does not answer, --host auto
                // outside create, unknown hosts, state URLs (the password never printed).
                for name in ["bad!", "auto", "", String(repeating: "h", count: 64)] {
                    cases.append((["host", "add", name, setup.harness.uri], name.isEmpty ? "''" : name))
                }
                cases.append((["host", "add", "hb-\(id)", setup.harness.uri, "--label", "nolabel"], "nolabel"))
                cases.append((["host", "add", "hb-\(id)", "qemu:///system?socket=/nonexistent/\(id)-host.sock"], "/nonexistent/\(id)-host.sock"))
                cases.append((["host", "rm", "nohost-\(id)"], "nohost-\(id)"))
                cases.append((["list", "--host", "nohost-\(id)"], "nohost-\(id)"))
                cases.append((["show", "x", "--host", "auto"], "--host auto"))
                for (url, named) in [("postgres://db/fleet", "no user"), ("postgres://u@/fleet", "no host"), ("postgres://u@h/d?sslmode=verify", "verify"),
                                     ("postgres://u:secret@h/d?bogus=1", "postgres://u:***@h/d?bogus=1"), ("postgres://u@h:0/d", "bad port 0")] {
                    cases.append((["pool", "list", "--state", url], named))
                }

                #expect(cases.count >= 150, "\(cases.count) inputs")
                print("hardening: \(cases.count) bad inputs")
                let before = try await snapshot(setup)
                for (arguments, value) in cases {
                    let result = try setup.vmctl(arguments)
                    let lines = result.standardError.split(separator: "\n", omittingEmptySubsequences: true)
                    #expect(result.status == 64 || result.status == 1, "\(arguments): exit \(result.status)")
                    #expect(lines.count == 1, "\(arguments): \(result.standardError)")
                    #expect(result.standardError.contains(value), "\(arguments): \(result.standardError) does not name \(value)")
                    #expect(result.standardOutput.isEmpty || arguments.first == "destroy", "\(arguments): \(result.standardOutput)")
                    #expect(!result.standardError.contains("secret"), "\(arguments): a password in \(result.standardError)")
                }
                #expect(try setup.vmctl("host", "list", "-q").standardOutput.isEmpty, "a refused host add recorded a host")
                #expect(try String(contentsOf: existingLog, encoding: .utf8) == "keep me\n")
                let after = try await snapshot(setup)
                #expect(before == after, "\(zip(before, after).first { $0 != $1 }.map { "\($0.0)\n--\n\($0.1)" } ?? "counts differ")")
            }
        }

        /// Starts vmctl without waiting for it.
        func start(_ setup: Setup, _ arguments: [String], environment extra: [String: String] = [:]) throws -> (Process, URL) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try vmctlExecutable())
            process.arguments = arguments
            process.environment = ProcessInfo.processInfo.environment.merging(setup.environment) { $1 }.merging(extra) { $1 }
            let errors = setup.scratch.appendingPathComponent("stderr-\(UUID().uuidString)")
            _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
            process.standardError = try FileHandle(forWritingTo: errors)
            process.standardOutput = FileHandle.nullDevice
            process.standardInput = FileHandle.nullDevice
            try process.run()
            return (process, errors)
        }

        /// Waits until `file` (a process's stderr) contains `text`; fails the test after 60 s.
        func waitForLine(_ text: String, in file: URL, sourceLocation: SourceLocation = #_sourceLocation) async throws {
            let seen = try await eventually(timeout: .seconds(60), every: .milliseconds(50)) {
                ((try? String(contentsOf: file, encoding: .utf8)) ?? "").contains(text) ? true : nil
            }
            #expect(seen == true, "no '\(text)' in \((try? String(contentsOf: file, encoding: .utf8)) ?? "")", sourceLocation: sourceLocation)
        }

        /// Waits for `process` without holding a cooperative thread.
        func finish(_ process: Process) async {
            while process.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        }

        @Test("a signal at 20 moments across a create: it is undone completely, or the VM is complete", .timeLimit(.minutes(6)))
        func signals() async throws {
            try await Setup.with { setup in
                func arguments(_ name: String) -> [String] {
                    setup.createArguments(name, ["--image", setup.image, "--disk", "size=8M", "--network", "ivn-\(setup.id),pool=pn-\(setup.id)"])
                }
                // How long a whole create takes here, to spread the signals over it.
                let clock = ContinuousClock()
                let started = clock.now
                #expect(try setup.vmctl(arguments("hs-\(setup.id)-t")).status == 0)
                let length = clock.now - started
                #expect(try setup.vmctl("destroy", "hs-\(setup.id)-t", "--force").status == 0)
                let signals: [(Int32, String)] = [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT"), (SIGHUP, "SIGHUP")]
                var undone = 0, completed = 0
                for moment in 0..<20 {
                    let name = "hs-\(setup.id)-\(moment)"
                    let (signal, signalName) = signals[moment % 3]
                    let (process, errors) = try start(setup, arguments(name))
                    try await Task.sleep(for: length * (Double(moment) / 20))
                    let signalled = process.isRunning
                    kill(process.processIdentifier, signal)
                    await finish(process)
                    let stderr = (try? String(contentsOf: errors, encoding: .utf8)) ?? ""
                    let domain = try await setup.connection.domains().first { $0.name == name }
                    let exited = process.terminationReason == .exit
                    if let domain {
                        // Finished before the signal counted (vmctl exits 0, or the signal ended it
                        // after the create was complete): the whole VM, running.
                        completed += 1
                        #expect(try await domain.isActive(), "moment \(moment): exit \(process.terminationStatus), \(stderr)")
                        // vmctl may exit 0 only if it had exited before the signal was sent: a
                        // signal it received must undo the create, or end it after the VM is done.
                        #expect(!exited || (process.terminationStatus == 0 && !signalled), "moment \(moment): exit \(process.terminationStatus) after \(signalName): \(stderr)")
                        #expect(try setup.vmctl("destroy", name, "--force").status == 0)
                    } else {
                        // Undone, or killed before it had made anything.
                        undone += 1
                        if exited {
                            #expect(process.terminationStatus == 1 && stderr.contains("interrupted by \(signalName)"), "moment \(moment): \(stderr)")
                        }
                    }
                    try await setup.expectNothingLeft(of: name)
                }
                print("hardening: signals over a \(length) create: \(undone) creates undone, \(completed) complete")
                #expect(undone >= 10, "\(undone) of 20 signals undid the create")
                let doctor = try setup.vmctl("doctor")
                #expect(doctor.status == 0 && doctor.standardOutput.contains("no problems found"), "\(doctor.standardOutput)")
            }
        }

        @Test("a second create of a name being created fails at once; two destroys of one VM at once both succeed; a destroy racing a create leaves no journal")
        func races() async throws {
            try await Setup.with { setup in
                let name = "hr-\(setup.id)"
                let arguments = setup.createArguments(name, ["--image", setup.image, "--network", "ivn-\(setup.id),pool=pn-\(setup.id)"])
                // The first holds its claim on the name (stopped after its journal); the second is
                // refused without touching anything; SIGTERM then undoes the first.
                let (holder, holderErrors) = try start(setup, arguments, environment: ["VMCTL_TEST_STOP_AFTER": "journal"])
                try await waitForLine("stopped after journal", in: holderErrors)
                let refused = try setup.vmctl(arguments)
                #expect(refused.status == 1 && refused.standardError.contains("VM \(name) is being created by another vmctl (process \(holder.processIdentifier))"),
                        "\(refused.standardError)")
                #expect(refused.standardError.split(separator: "\n").count == 1)
                kill(holder.processIdentifier, SIGTERM)
                await finish(holder)
                #expect(holder.terminationStatus == 1 && ((try? String(contentsOf: holderErrors, encoding: .utf8)) ?? "").contains("interrupted by SIGTERM"))
                try await setup.expectNothingLeft(of: name)

                #expect(try setup.vmctl(arguments).status == 0)
                let first = try start(setup, ["destroy", name, "--force"])
                let second = try start(setup, ["destroy", name, "--force"])
                await finish(first.0)
                await finish(second.0)
                for (process, errors) in [first, second] {
                    #expect(process.terminationStatus == 0, "\((try? String(contentsOf: errors, encoding: .utf8)) ?? "")")
                }
                try await setup.expectNothingLeft(of: name)

                // Destroyed as soon as the domain exists; then the create is interrupted and undoes the rest.
                let (create, errors) = try start(setup, arguments, environment: ["VMCTL_TEST_STOP_AFTER": "define"])
                try await waitForLine("stopped after define", in: errors)
                let destroyed = try setup.vmctl("destroy", name, "--force")
                #expect(destroyed.status == 0, "\(destroyed.standardError)")
                kill(create.processIdentifier, SIGINT)
                await finish(create)
                #expect(create.terminationStatus == 1)
                let doctor = try setup.vmctl("doctor")
                #expect(doctor.status == 0 && doctor.standardOutput.contains("no problems found"), "\(doctor.standardOutput)")
                try await setup.expectNothingLeft(of: name)
            }
        }

        @Test("a lost state file: doctor finds the VMs' addresses, --fix adopts them once the pool is back, destroy still cleans up")
        func lostState() async throws {
            try await Setup.with { setup in
                let kept = "hl-\(setup.id)", dropped = "hm-\(setup.id)"
                for name in [kept, dropped] {
                    #expect(try setup.vmctl(setup.createArguments(name, ["--no-cloud-init", "--network", "ivn-\(setup.id),pool=pn-\(setup.id)"])).status == 0)
                }
                let address = try JSONDecoder().decode(VMLifecycleTests.VMJSON.self, from: Data(setup.vmctl("show", kept, "--format", "json").standardOutput.utf8))
                    .interfaces[0].addresses[0]
                let state = setup.environment["VMCTL_STATE"]!
                for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: state + suffix) }

                let lost = try setup.vmctl("doctor")
                #expect(lost.status == 1 && lost.standardOutput.contains("adoptable: \(address) on ivn-\(setup.id)"), "\(lost.standardOutput)")
                // Destroy works from the metadata alone: the host entries go.
                #expect(try setup.vmctl("destroy", dropped, "--force").status == 0)
                let entries = try await setup.harness.hostEntries(setup.nat, inactive: false)
                #expect(entries.count == 1 && entries.first?.contains(address) == true, "\(entries)")

                #expect(try setup.vmctl("pool", "create", "pn-\(setup.id)", "--network", "ivn-\(setup.id)", "--range", "\(setup.natSubnet).10-\(setup.natSubnet).40").status == 0)
                #expect(try setup.vmctl("pool", "create", "po-\(setup.id)", "--network", "ivo-\(setup.id)", "--range", "\(setup.openSubnet).64/28").status == 0)
                let fixed = try setup.vmctl("doctor", "--fix")
                #expect(fixed.status == 0 && fixed.standardOutput.contains("repaired adoptable: \(address)"), "\(fixed.standardOutput)")
                let shown = try setup.vmctl("pool", "show", "pn-\(setup.id)")
                #expect(shown.standardOutput.contains(address) && shown.standardOutput.contains(kept), "\(shown.standardOutput)")
                #expect(try setup.vmctl("doctor").status == 0)
                #expect(try setup.vmctl("destroy", kept, "--force").status == 0)
                try await setup.expectNothingLeft(of: kept)
            }
        }

        @Test("the state file is 0600 in a 0700 directory whatever the umask; a symlink is followed only when named")
        func stateFile() throws {
            let harness = try Harness.require()
            let directory = try harness.scratch(uniqueSuffix()).appendingPathComponent("state")
            let path = directory.appendingPathComponent("state.sqlite").path
            let made = try runProcess("/bin/sh", ["-c", "umask 000; exec \"$0\" pool list", try vmctlExecutable()], environment: ["VMCTL_STATE": path])
            #expect(made.status == 0, "\(made.standardError)")
            let mode = { (file: String) in ((try? FileManager.default.attributesOfItem(atPath: file))?[.posixPermissions] as? Int) ?? -1 }
            #expect(mode(directory.path) == 0o700)
            for file in [path, path + "-wal", path + "-shm"] where FileManager.default.fileExists(atPath: file) {
                #expect(mode(file) == 0o600, "\(file): \(String(mode(file), radix: 8))")
            }
            let link = directory.deletingLastPathComponent().appendingPathComponent("link.sqlite").path
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: path)
            let refused = try runVMCtl(["pool", "list"], environment: ["VMCTL_STATE": link])
            #expect(refused.status == 1 && refused.standardError.contains("\(link) is a symbolic link"), "\(refused.standardError)")
            #expect(try runVMCtl(["pool", "list", "--state", link]).status == 0)
        }

        @Test("--console-log refuses an existing file, and --console-log-append appends to it")
        func consoleLog() async throws {
            try await Setup.with { setup in
                let log = setup.scratch.appendingPathComponent("console-\(setup.id).log")
                try "from before\n".write(to: log, atomically: true, encoding: .utf8)
                let name = "hc-\(setup.id)"
                let refused = try setup.vmctl(setup.createArguments(name, ["--no-cloud-init", "--console-log", log.path]))
                #expect(refused.status == 1 && refused.standardError.contains("\(log.path) exists"), "\(refused.standardError)")
                #expect(try String(contentsOf: log, encoding: .utf8) == "from before\n")
                let appended = try setup.vmctl(setup.createArguments(name, ["--no-cloud-init", "--console-log", log.path, "--console-log-append"]))
                #expect(appended.status == 0, "\(appended.standardError)")
                var text = ""
                let deadline = ContinuousClock.now + .seconds(60)
                while !text.contains("vmctl-guest: booted"), ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(250))
                    text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
                }
                #expect(text.hasPrefix("from before\n") && text.contains("vmctl-guest: booted"), "\(text.prefix(200))")
                #expect(try setup.vmctl("destroy", name, "--force").status == 0)
            }
        }
    }
}
