import Foundation
import Libvirt
import Provisioning

/// `vmctl-bench ssh`: create the Debian guest (scripts/build-debian-guest) until its SSH server
/// answers on port 22, by vmctl, by a script of genisoimage + qemu-img + virsh net-update +
/// virt-install (scripts/bench-virt-install create-seeded), and by the libvirt floor with a seed
/// made once (libvirt-floor create-seeded). vmctl waits by itself (`--wait ssh`: its own poll of
/// port 22 for the banner, after the address); for the other two the bench polls port 22 every
/// 250 ms, and checks that vmctl's guest answers when vmctl returns. Run inside the harness's
/// network namespace, where the guests' addresses are reached.
enum UntilSSH {
    static func run() async throws {
        var setup = try Lifecycle.Setup()
        let environment = setup.environment
        guard let debian = environment["VMCTL_TEST_DEBIAN"], let key = environment["VMCTL_BENCH_KEY"] else {
            throw ProvisioningError(.invalidValue, "VMCTL_TEST_DEBIAN and VMCTL_BENCH_KEY are not set", hint: "run scripts/bench")
        }
        let (image, kernel, initrd) = (debian + "/debian.qcow2", debian + "/vmlinuz", debian + "/initrd.img")
        let cmdline = "root=/dev/vda rw console=ttyS0"
        let connection = try await Connection.open(environment["VMCTL_CONNECT"] ?? "")
        let network = try await connection.defineNetwork(xml: """
            <network><name>\(setup.network)</name><forward mode='open'/><bridge name='vbbench'/>
              <ip address='10.232.250.1' prefix='16'><dhcp><range start='10.232.251.1' end='10.232.251.250'/></dhcp></ip></network>
            """)
        try await network.start()
        defer { Task { try? await network.destroy(); try? await network.undefine() } }
        _ = try Lifecycle.measure([setup.vmctl, "pool", "create", "bench", "--network", setup.network, "--range", "10.232.0.10-10.232.9.199", "-q"], environment)
        // The floor's seed, made once: what cloud-init needs for the key, nothing else.
        let seedDirectory = URL(fileURLWithPath: environment["VMCTL_HARNESS_DIR"]! + "/bench-seed")
        try FileManager.default.createDirectory(at: seedDirectory, withIntermediateDirectories: true)
        let publicKey = try String(contentsOfFile: key + ".pub", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        try Data("instance-id: bench-floor\nlocal-hostname: bench-floor\npublic-keys:\n  - \"\(publicKey)\"\n".utf8)
            .write(to: seedDirectory.appendingPathComponent("meta-data"))
        try Data("#cloud-config\n{}\n".utf8).write(to: seedDirectory.appendingPathComponent("user-data"))
        let seed = environment["BENCH_IMAGES"]! + "/floor-seed.iso"
        _ = try Lifecycle.measure(["/usr/bin/genisoimage", "-quiet", "-output", seed, "-volid", "cidata", "-joliet", "-rock", seedDirectory.path], environment)

        let tools = ["vmctl", "virt-install script", "libvirt floor"]
        var samples: [String: [Lifecycle.Measurement]] = [:]
        let runs = Int(environment["VMCTL_BENCH_SSH_RUNS"] ?? "") ?? 3
        print("create until SSH answers on port 22 (the Debian guest, 512 MiB, TCG, direct kernel boot; vmctl create --wait ssh, the others polled): \(runs) runs after one warm-up, interleaved; medians")
        for iteration in 0...runs {
            for tool in tools {
                let nic = setup.next()
                let name = "bench-s\(iteration)-\(tools.firstIndex(of: tool)!)"
                let (create, destroy): ([String], [String]) = switch tool {
                case "vmctl":
                    ([setup.vmctl, "create", name, "--image", image, "--kernel", kernel, "--initrd", initrd, "--cmdline", cmdline,
                      "--memory", "512M", "--virt-type", "qemu", "--ssh-key", key + ".pub", "--network", "\(setup.network),ip=\(nic.ip),mac=\(nic.mac)",
                      "--wait", "ssh", "--timeout", "600", "-q"],
                     [setup.vmctl, "destroy", name, "--force", "-q"])
                case "virt-install script":
                    ([setup.script, "create-seeded", name, image, setup.network, nic.mac, nic.ip, kernel, initrd, cmdline, key + ".pub"],
                     setup.scriptDestroy(name, nic))
                default:
                    ([setup.floor, "create-seeded", name, image, setup.network, nic.mac, nic.ip, kernel, initrd, cmdline, seed],
                     setup.floorDestroy(name, nic))
                }
                let start = ContinuousClock.now
                let created = try Lifecycle.measure(create, environment)
                // vmctl returned once it saw the banner: it must answer at once.
                guard try await waitForBanner(nic.ip, timeout: .seconds(tool == "vmctl" ? 2 : 600)) else {
                    throw ProvisioningError(.timedOut, "\(tool): no SSH banner from \(nic.ip) \(tool == "vmctl" ? "when vmctl create --wait ssh returned" : "within 600 s")")
                }
                let answered = milliseconds(ContinuousClock.now - start)
                _ = try Lifecycle.measure(destroy, environment)
                if iteration > 0 {
                    samples[tool, default: []].append(Lifecycle.Measurement(milliseconds: answered, maxRSSKiB: created.maxRSSKiB, standardError: ""))
                }
            }
        }
        Lifecycle.report("create until SSH answers (Debian 12, cloud-init, TCG boot included)", tools, samples, floor: "libvirt floor")
        Lifecycle.goal("vmctl within 1.05x of the floor", Lifecycle.median(samples["vmctl"]!) / Lifecycle.median(samples["libvirt floor"]!), atMost: 1.05)
        _ = try Lifecycle.measure([setup.vmctl, "pool", "destroy", "bench", "--force", "-q"], environment)
    }

    /// Polls `address` port 22 every 250 ms until it sends an SSH banner (`SSH-`).
    static func waitForBanner(_ address: String, timeout: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if banner(address) { return true }
            try await Task.sleep(for: .milliseconds(250))
        }
        return false
    }

    /// One attempt: connect (at most 250 ms) and read the first bytes (at most 2 s).
    static func banner(_ address: String) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var sendTimeout = timeval(tv_sec: 0, tv_usec: 250_000), receiveTimeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &sendTimeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &receiveTimeout, socklen_t(MemoryLayout<timeval>.size))
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        target.sin_port = in_port_t(22).bigEndian
        guard inet_pton(AF_INET, address, &target.sin_addr) == 1 else { return false }
        let connected = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return false }
        var buffer = [UInt8](repeating: 0, count: 4)
        return recv(descriptor, &buffer, 4, Int32(MSG_WAITALL)) == 4 && buffer == Array("SSH-".utf8)
    }
}
