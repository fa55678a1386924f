import Foundation
import Libvirt
import Provisioning

/// `vmctl-bench remote`: create to running on the harness's libvirtd and on scripts/remote-host's
/// over qemu+ssh, by vmctl and by the libvirt floor, interleaved. Every process runs in the
/// harness's network namespace (where the remote host is reached), the local ones too, so that
/// `ip netns exec` costs all four the same. Over SSH vmctl uploads the kernel and initrd each
/// time (the VM's own volumes) and the base once (shared); the floor's paths are ones the
/// remote libvirtd can read, so it only makes the calls.
enum RemoteCreate {
    static func run() async throws {
        var setup = try Lifecycle.Setup()
        let environment = ProcessInfo.processInfo.environment
        guard let remote = environment["VMCTL_REMOTE_URI"], let path = environment["VMCTL_REMOTE_PATH"],
              let namespace = environment["VMCTL_HARNESS_NETNS"], let local = environment["VMCTL_CONNECT"] else {
            throw ProvisioningError(.invalidValue, "VMCTL_REMOTE_URI, VMCTL_REMOTE_PATH, VMCTL_HARNESS_NETNS or VMCTL_CONNECT is not set", hint: "run scripts/bench")
        }
        setup.environment["PATH"] = path + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        if !FileManager.default.fileExists(atPath: setup.base) {
            _ = try Lifecycle.measure(["/usr/bin/qemu-img", "create", "-q", "-f", "qcow2", setup.base, "64M"], setup.environment)
        }
        // The same open network on both hosts (the remote one through its socket: this is set-up,
        // not measured); vmctl's own pool (`vmctl`) is made by its first create.
        for uri in [local, environment["VMCTL_REMOTE_SOCKET_URI"] ?? remote] {
            let connection = try await Connection.open(uri)
            if (try? await connection.network(named: setup.network)) == nil {
                let network = try await connection.defineNetwork(xml: """
                    <network><name>\(setup.network)</name><forward mode='open'/><bridge name='vbbench'/>
                      <ip address='10.232.250.1' prefix='16'><dhcp><range start='10.232.251.1' end='10.232.251.250'/></dhcp></ip></network>
                    """)
                try await network.start()
            }
        }
        _ = try? Lifecycle.measure([setup.vmctl, "pool", "create", "bench", "--network", setup.network, "--range", "10.232.0.10-10.232.9.199"],
                                   setup.environment)
        func inNamespace(_ argv: [String], connect uri: String) -> [String] {
            ["/usr/sbin/ip", "netns", "exec", namespace, "/usr/bin/env", "VMCTL_CONNECT=\(uri)"] + argv
        }
        let tools = ["vmctl, local", "vmctl over qemu+ssh", "libvirt floor, local", "libvirt floor over qemu+ssh"]
        var creates: [String: [Lifecycle.Measurement]] = [:]
        for iteration in 0...setup.runs {
            for (index, tool) in tools.enumerated() {
                let nic = setup.next()
                let name = "bench-r\(iteration)-\(index)"
                let uri = tool.hasSuffix("qemu+ssh") ? remote : local
                let (create, destroy) = tool.hasPrefix("vmctl")
                    ? (setup.vmctlCreate(name, nic), [setup.vmctl, "destroy", name, "--force"])
                    : (setup.floorCreate(name, nic), setup.floorDestroy(name, nic))
                let created = try Lifecycle.measure(inNamespace(create, connect: uri), setup.environment)
                _ = try Lifecycle.measure(inNamespace(destroy, connect: uri), setup.environment)
                if iteration > 0 { creates[tool, default: []].append(created) }
            }
        }
        Lifecycle.report("create to running, on this host and on another over qemu+ssh (each process under ip netns exec)", tools, creates,
                         floor: "libvirt floor, local")
        print(String(format: "  over qemu+ssh: vmctl %.2fx the floor over qemu+ssh; the connection's cost, floor over ssh / floor local: %.2fx",
                     Lifecycle.median(creates[tools[1]]!) / Lifecycle.median(creates[tools[3]]!),
                     Lifecycle.median(creates[tools[3]]!) / Lifecycle.median(creates[tools[2]]!)))
    }
}

/// `vmctl-bench startup`: the shipped binary (static Swift runtime) against a build that loads
/// the toolchain's shared libraries, and virsh: `--version` (process start-up, no connection)
/// and `info` on the in-process test driver; sizes of the files.
enum Startup {
    static func run() throws {
        let environment = ProcessInfo.processInfo.environment
        guard let shipped = environment["VMCTL_BENCH_VMCTL"], let dynamic = environment["VMCTL_BENCH_DYNAMIC"] else {
            throw ProvisioningError(.invalidValue, "VMCTL_BENCH_VMCTL or VMCTL_BENCH_DYNAMIC is not set", hint: "run scripts/bench")
        }
        // Four times VMCTL_BENCH_RUNS: each run takes milliseconds.
        let runs = 4 * (Int(environment["VMCTL_BENCH_RUNS"] ?? "") ?? 5)
        let test = environment.merging(["VMCTL_CONNECT": "test:///default"]) { $1 }
        let cases: [(String, [String])] = [
            ("vmctl --version, static runtime", [shipped, "--version"]),
            ("vmctl --version, dynamic", [dynamic, "--version"]),
            ("virsh --version", ["/usr/bin/virsh", "--version"]),
            ("vmctl info (test:///default), static", [shipped, "info"]),
            ("vmctl info (test:///default), dynamic", [dynamic, "info"]),
            ("virsh -c test:///default version", ["/usr/bin/virsh", "-c", "test:///default", "version"]),
            ("/bin/true (the measuring's own share)", ["/bin/true"]),
        ]
        var samples: [String: [Lifecycle.Measurement]] = [:]
        for iteration in 0...runs {
            for (name, argv) in cases {
                let measured = try Lifecycle.measure(argv, test)
                if iteration > 0 { samples[name, default: []].append(measured) }
            }
        }
        let names = cases.map(\.0)
        Lifecycle.report("process start-up: \(runs) runs each after a warm-up, interleaved", Array(names[0...2]) + [names[6]], samples, floor: "virsh --version")
        Lifecycle.report("info on the test driver", Array(names[3...5]), samples, floor: "virsh -c test:///default version")
        // Every process is started through GNU time (its peak memory): that share, /bin/true's
        // figure, is taken off both before the ratio, which only makes it larger.
        let wrapper = Lifecycle.median(samples[names[6]]!)
        Lifecycle.goal(String(format: "vmctl --version (static) within 1.2x of virsh --version (%.1f ms of starting through time taken off both)", wrapper),
                       (Lifecycle.median(samples[names[0]]!) - wrapper) / (Lifecycle.median(samples[names[2]]!) - wrapper), atMost: 1.2)
        func size(_ path: String) -> Double {
            Double(((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.uint64Value ?? 0) / 1_048_576
        }
        print(String(format: "\nsizes: static binary %.1f MiB (stripped in the package: %@); dynamic binary %.1f MiB plus the toolchain's libraries it loads",
                     size(shipped), environment["VMCTL_BENCH_STRIPPED"].map { String(format: "%.1f MiB", size($0)) } ?? "not built", size(dynamic)))
    }
}
