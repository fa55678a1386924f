import Foundation
import Libvirt
import LibvirtXML
import Provisioning
import Testing
import TestSupport

/// The second libvirt host of scripts/remote-host: a libvirtd of its own in its own network and
/// mount namespaces, reached only over `qemu+ssh://` from the harness's namespace.
struct RemoteHost {
    /// `qemu+ssh://root@ADDRESS/system?socket=...&keyfile=...&no_verify=1`.
    let uri: String
    /// Its libvirtd's socket, for the test's own look at that host (never vmctl's way in).
    let socketURI: String
    let directory: URL
    /// A directory its daemons cannot see: files here exist on the client only.
    let client: URL
    /// Put first on PATH: the ssh that keeps known_hosts out of ~/.ssh.
    let path: String
    /// The network namespace of its daemons (and bridges).
    let netns: String

    static func require() throws -> RemoteHost {
        func value(_ name: String) throws -> String { try requiredVariable(name, "the remote tests need scripts/remote-host") }
        return RemoteHost(uri: try value("VMCTL_REMOTE_URI"), socketURI: try value("VMCTL_REMOTE_SOCKET_URI"),
                          directory: URL(fileURLWithPath: try value("VMCTL_REMOTE_DIR")),
                          client: URL(fileURLWithPath: try value("VMCTL_REMOTE_CLIENT")), path: try value("VMCTL_REMOTE_PATH"),
                          netns: try value("VMCTL_REMOTE_NETNS"))
    }

    /// Runs scripts/remote-host with `verb` (stop-libvirtd, start-libvirtd).
    func control(_ verb: String) throws -> ProcessResult {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/remote-host").path
        return try runProcess(script, [verb])
    }

    /// The environment vmctl runs in against this host: its state file `state`, the ssh wrapper first on PATH.
    func environment(state: String) -> [String: String] {
        ProcessInfo.processInfo.environment.merging([
            "VMCTL_STATE": state, "PATH": path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"),
        ]) { $1 }
    }

    /// `ip netns exec NETNS vmctl --connect URI`: vmctl as a client in `netns` runs it, before its arguments.
    func command(from netns: String) throws -> [String] {
        ["netns", "exec", netns, try vmctlExecutable(), "--connect", uri]
    }

    /// Runs vmctl against this host from `netns` with the state file `state`.
    func vmctl(from netns: String, state: String, _ arguments: [String]) throws -> ProcessResult {
        try runProcess("/usr/sbin/ip", try command(from: netns) + arguments, environment: environment(state: state))
    }

    /// Whether libvirt's side of the remote host sees `path` (in its daemons' mount namespace).
    func sees(_ path: String) throws -> Bool {
        let pid = try String(contentsOf: directory.appendingPathComponent("virtlogd.pid"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        return try runProcess("/usr/bin/nsenter", ["--target", pid, "--mount", "test", "-e", path]).status == 0
    }
}

extension Integration {
    @Suite("a remote host over qemu+ssh")
    struct RemoteHostTests {
        @Test("create --image PATH where PATH is on the client only: uploaded once and booted from, its reserved address; a lost connection; destroy leaves nothing there",
              .timeLimit(.minutes(4)))
        func remoteCreate() async throws {
            let harness = try Harness.require()
            let remote = try RemoteHost.require()
            let id = uniqueSuffix()
            let files = remote.client.appendingPathComponent(id)
            try FileManager.default.createDirectory(at: files, withIntermediateDirectories: true)
            let kernel = files.appendingPathComponent("vmlinuz").path
            let initrd = files.appendingPathComponent("initrd.img").path
            let image = files.appendingPathComponent("base.qcow2").path
            try FileManager.default.copyItem(atPath: harness.kernel, toPath: kernel)
            try FileManager.default.copyItem(atPath: harness.initrd, toPath: initrd)
            #expect(try runProcess("/usr/bin/qemu-img", ["create", "-q", "-f", "qcow2", image, "64M"]).status == 0)
            #expect(try !remote.sees(image) && !remote.sees(kernel), "the remote host sees the client's files")

            let state = try harness.scratch("remote-\(id)").appendingPathComponent("state.db").path
            let command = try remote.command(from: harness.netns)
            func vmctl(_ arguments: String...) throws -> ProcessResult { try remote.vmctl(from: harness.netns, state: state, arguments) }
            let network = "rnet-\(id)"
            let pool = "rpool-\(id)"
            let octet = Int.random(in: 2...250)
            #expect(try vmctl("network", "create", network, "--mode", "nat", "--ipv4", "10.233.\(octet).1/24",
                              "--dhcp4", "10.233.\(octet).100-10.233.\(octet).200", "-q").status == 0)
            #expect(try vmctl("pool", "create", pool, "--network", network, "--range", "10.233.\(octet).10-10.233.\(octet).20", "-q").status == 0)
            let here = try await Connection.open(remote.socketURI)
            defer {
                for name in ["a", "b", "c"] { _ = try? vmctl("destroy", "\(name)-\(id)", "--force", "--ignore-missing") }
                _ = try? vmctl("pool", "destroy", pool, "--force")
                _ = try? vmctl("network", "destroy", network, "--force")
            }
            func create(_ name: String, _ extra: String...) throws -> ProcessResult {
                try remote.vmctl(from: harness.netns, state: state, ["create", "\(name)-\(id)", "--image", image, "--kernel", kernel, "--initrd", initrd,
                                                                     "--cmdline", "console=ttyS0", "--no-cloud-init", "--memory", "160",
                                                                     "--network", "\(network),pool=\(pool)"] + extra)
            }
            struct Shown: Decodable {
                struct Interface: Decodable { var mac: String?; var addresses: [String] }
                var interfaces: [Interface]
            }

            // The first create uploads the base, the kernel and the initrd; the guest boots from them.
            let first = try create("a", "--wait", "ip", "--format", "json")
            #expect(first.status == 0, "\(first.standardError)")
            let shown = try JSONDecoder().decode(Shown.self, from: Data(first.standardOutput.utf8))
            let address = try #require(shown.interfaces.first?.addresses.first)
            let mac = try #require(shown.interfaces.first?.mac)
            #expect(address.hasPrefix("10.233.\(octet).") && (10...20).contains(Int(address.split(separator: ".")[3]) ?? 0), "\(address)")
            let pool0 = URL(fileURLWithPath: remote.directory.path + "/lib/vmctl")
            func bases() throws -> [String] {
                try FileManager.default.contentsOfDirectory(atPath: pool0.path).filter { $0.hasPrefix("base-") && $0.hasSuffix(".qcow2") }
            }
            #expect(try bases().count == 1)
            let base = pool0.appendingPathComponent(try #require(try bases().first)).path
            let uploaded = try FileManager.default.attributesOfItem(atPath: base)
            let console = try await eventually(timeout: .seconds(30)) { () -> String? in
                let log = try vmctl("console", "a-\(id)", "--log").standardOutput
                return log.contains("lease eth0 mac=\(mac) ip=\(address)/24") ? log : nil
            }
            #expect(console?.contains("vmctl-guest: disk vda sectors=131072") == true, "\(console ?? "no lease in the console log")")
            let xml = try await here.domain(named: "a-\(id)").xml()
            #expect(!xml.contains(files.path) && xml.contains("/var/lib/libvirt/vmctl/a-\(id)-kernel"), "\(xml)")

            // The second reuses the base: the same file, not written again.
            let second = try create("b", "-q")
            #expect(second.status == 0, "\(second.standardError)")
            #expect(try bases().count == 1)
            let reused = try FileManager.default.attributesOfItem(atPath: base)
            #expect(reused[.systemFileNumber] as? Int == uploaded[.systemFileNumber] as? Int)
            #expect(reused[.modificationDate] as? Date == uploaded[.modificationDate] as? Date)

            // The connection lost during a create (libvirtd stopped): the error says what is left
            // and how to finish; once libvirtd is back, the same create undoes that and succeeds.
            let errors = URL(fileURLWithPath: state + ".c.stderr")
            _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
            let stopped = Process()
            stopped.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            stopped.arguments = command + ["create", "c-\(id)", "--image", image, "--kernel", kernel, "--initrd", initrd, "--no-cloud-init",
                                           "--memory", "160", "--network", "\(network),pool=\(pool)"]
            stopped.environment = remote.environment(state: state).merging(["VMCTL_TEST_STOP_AFTER": "upload"]) { $1 }
            stopped.standardOutput = FileHandle.nullDevice
            stopped.standardError = try FileHandle(forWritingTo: errors)
            try stopped.run()
            let paused = try await eventually(timeout: .seconds(60)) { () -> Bool? in
                (try String(contentsOf: errors, encoding: .utf8)).contains("stopped after upload") ? true : (stopped.isRunning ? nil : false)
            }
            #expect(paused == true, "\((try? String(contentsOf: errors, encoding: .utf8)) ?? "")")
            #expect(try remote.control("stop-libvirtd").status == 0)
            kill(stopped.processIdentifier, SIGINT)
            stopped.waitUntilExit()
            let lost = try String(contentsOf: errors, encoding: .utf8)
            #expect(stopped.terminationStatus == 1)
            #expect(lost.contains("cannot create VM c-\(id): interrupted by SIGINT; could not undo all of the create of c-\(id), left: the domain")
                    && lost.contains("address ") && lost.contains("rerun the same create"), "\(lost)")
            #expect(try remote.control("start-libvirtd").status == 0)
            let rerun = try vmctl("create", "c-\(id)", "--image", image, "--kernel", kernel, "--initrd", initrd, "--no-cloud-init",
                                  "--memory", "160", "--network", "\(network),pool=\(pool)", "-q")
            #expect(rerun.status == 0, "\(rerun.standardError)")
            #expect(try vmctl("doctor").standardOutput == "no problems found\n")

            // Destroy: nothing of the three VMs is left on the remote host, the base included.
            let destroyed = try vmctl("destroy", "a-\(id)", "b-\(id)", "c-\(id)", "--force")
            #expect(destroyed.status == 0, "\(destroyed.standardError)")
            let after = try await Connection.open(remote.socketURI)
            #expect(try await after.domains().filter { $0.name.hasSuffix(id) }.isEmpty)
            #expect(try await after.storagePool(named: "vmctl").volumes().map(\.name).isEmpty)
            #expect(try FileManager.default.contentsOfDirectory(atPath: pool0.path).isEmpty)
            #expect(try await harness.hostEntries(try await after.network(named: network), inactive: false).isEmpty)
            #expect(try vmctl("pool", "show", pool, "--format", "json").standardOutput.contains("\"used\" : 0"))
        }

        @Test("a routed address outside the network's subnets gets its /32 on the VM's host, made and removed over ssh", .timeLimit(.minutes(3)))
        func routeOnTheVMsHost() async throws {
            let harness = try Harness.require()
            let remote = try RemoteHost.require()
            let id = uniqueSuffix()
            let state = try harness.scratch("remote-route-\(id)").appendingPathComponent("state.db").path
            func vmctl(_ arguments: String...) throws -> ProcessResult { try remote.vmctl(from: harness.netns, state: state, arguments) }
            let network = "rrt-\(id)", pool = "rrp-\(id)", name = "rrv-\(id)"
            let octet = Int.random(in: 2...250)
            let made = try vmctl("network", "create", network, "--mode", "route", "--ipv4", "10.235.\(octet).1/24", "-q")
            #expect(made.status == 0, "\(made.standardError)")
            let address = "203.0.113.\(8 * (octet % 30))"
            let pooled = try vmctl("pool", "create", pool, "--network", network, "--range", "\(address)/29", "--all-usable", "-q")
            #expect(pooled.status == 0, "\(pooled.standardError)")
            defer {
                _ = try? vmctl("destroy", name, "--force", "--ignore-missing")
                _ = try? vmctl("pool", "destroy", pool, "--force")
                _ = try? vmctl("network", "destroy", network, "--force")
            }
            let created = try vmctl("create", name, "--kernel", harness.kernel, "--initrd", harness.initrd, "--cmdline", "console=ttyS0",
                                    "--memory", "128", "--network", "\(network),pool=\(pool)", "--format", "json")
            #expect(created.status == 0, "\(created.standardError)")
            let bridge = try #require(try await Connection.open(remote.socketURI).network(named: network).definition().bridge)
            func routes() throws -> String {
                try runProcess("/usr/sbin/ip", ["-n", remote.netns, "-4", "route", "show", "proto", "118"]).standardOutput
            }
            let routed = try routes()
            #expect(routed.contains("\(address) dev \(bridge)"), "\(routed)")
            // Never on the client's side, where vmctl runs.
            #expect(try !harness.ip("-4", "route", "show", "proto", "118").standardOutput.contains(address))
            let destroyed = try vmctl("destroy", name, "--force")
            #expect(destroyed.status == 0, "\(destroyed.standardError)")
            let after = try routes()
            #expect(!after.contains(address), "\(after)")
        }

        @Test("refused before anything is made: the host firewall of a remote host (with the command to run there), an image pulled to another host")
        func refusals() throws {
            let harness = try Harness.require()
            let remote = try RemoteHost.require()
            let id = uniqueSuffix()
            let state = try harness.scratch("remote-fw-\(id)").appendingPathComponent("state.db").path
            let environment = remote.environment(state: state)
            func vmctl(_ arguments: String...) throws -> ProcessResult { try remote.vmctl(from: harness.netns, state: state, arguments) }
            let network = "ropen-\(id)"
            let octet = Int.random(in: 2...250)
            #expect(try vmctl("network", "create", network, "--mode", "open", "--ipv4", "10.234.\(octet).1/24", "-q").status == 0)
            defer { _ = try? vmctl("network", "destroy", network, "--force") }
            let refused = try vmctl("network", "firewall", network, "--apply")
            #expect(refused.status == 1)
            #expect(refused.standardError == "Error: the firewall rules of network \(network) are written on its host, and \(remote.uri) is another host; run the same command there (ssh root@198.51.100.226 vmctl ...), with vmctl installed from its package\n")

            // An image imported to the harness's libvirtd is a volume there, not on the remote host.
            let file = URL(fileURLWithPath: state).deletingLastPathComponent().appendingPathComponent("small.qcow2").path
            #expect(try runProcess("/usr/bin/qemu-img", ["create", "-q", "-f", "qcow2", file, "16M"]).status == 0)
            let image = "rimg-\(id)"
            let imported = try runProcess(try vmctlExecutable(), ["image", "import", file, "--name", image, "--connect", harness.uri], environment: environment)
            #expect(imported.status == 0, "\(imported.standardError)")
            defer { _ = try? runProcess(try vmctlExecutable(), ["image", "rm", image, "--connect", harness.uri], environment: environment) }
            let elsewhere = try vmctl("create", "rvm-\(id)", "--image", image, "--no-cloud-init", "--kernel", harness.kernel)
            #expect(elsewhere.status == 1)
            #expect(elsewhere.standardError.hasPrefix("Error: image \(image) is not on this libvirt host: no volume vmctl/\(image).image.qcow2;"),
                    "\(elsewhere.standardError)")
        }
    }
}
