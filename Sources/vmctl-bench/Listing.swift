import Addressing
import Foundation
import Libvirt
import LibvirtXML
import Provisioning

/// `vmctl-bench list`: `vmctl list --format json` and `vmctl list -q` against `virsh list --all`
/// with 200 and then 1,000 defined domains, each defined as `vmctl create` defines one (vmctl's
/// writer, its metadata with labels, an address and the devices; one overlay disk, one NIC), so
/// that vmctl reads what it reads for its own VMs. Interleaved run by run; medians.
enum Listing {
    static func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let vmctl = environment["VMCTL_BENCH_VMCTL"], let uri = environment["VMCTL_CONNECT"] else {
            throw ProvisioningError(.invalidValue, "VMCTL_BENCH_VMCTL or VMCTL_CONNECT is not set", hint: "run scripts/bench")
        }
        let runs = 2 * (Int(environment["VMCTL_BENCH_RUNS"] ?? "") ?? 5)
        let connection = try await Connection.open(uri)
        var defined: [Domain] = []
        do {
            for (count, goals) in [(200, true), (1000, false)] {
                while defined.count < count { defined.append(try await define(defined.count, on: connection)) }
                try measure(count: count, runs: runs, vmctl: vmctl, uri: uri, environment: environment, quietGoal: goals)
            }
        } catch {
            for domain in defined { try? await domain.undefine() }
            throw error
        }
        for domain in defined { try await domain.undefine() }
    }

    /// A tool that fails ends the benchmark (its domains are undefined by the caller).
    static func measure(count: Int, runs: Int, vmctl: String, uri: String, environment: [String: String], quietGoal: Bool) throws {
        var tools: [(String, [String])] = [
            ("vmctl list --format json", [vmctl, "list", "--format", "json"]),
            ("vmctl list -q", [vmctl, "list", "-q"]),
            ("virsh list --all", ["/usr/bin/virsh", "-c", uri, "list", "--all"]),
        ]
        // VMCTL_BENCH_BASELINE: an earlier vmctl side by side (scripts/bench, VMCTL_BENCH_BASELINE_REV).
        if let baseline = environment["VMCTL_BENCH_BASELINE"], !baseline.isEmpty {
            tools.append(("baseline list --format json", [baseline, "list", "--format", "json"]))
        }
        var samples: [String: [Lifecycle.Measurement]] = [:]
        for iteration in 0...runs {
            for (tool, argv) in tools {
                let measured = try Lifecycle.measure(argv, environment)
                if iteration > 0 { samples[tool, default: []].append(measured) }
            }
        }
        Lifecycle.report("4. list with \(count) defined domains (as vmctl defines them)", tools.map(\.0), samples, floor: "virsh list --all")
        let virsh = Lifecycle.median(samples["virsh list --all"]!)
        Lifecycle.goal("vmctl list --format json of \(count) within 1.0x of virsh list --all",
                       Lifecycle.median(samples["vmctl list --format json"]!) / virsh, atMost: 1.0)
        if quietGoal {
            Lifecycle.goal("vmctl list -q of \(count) within 0.7x of virsh list --all", Lifecycle.median(samples["vmctl list -q"]!) / virsh, atMost: 0.7)
        }
    }

    /// Defines domain number `index` as vmctl's create would (never started).
    static func define(_ index: Int, on connection: Connection) async throws -> Domain {
        let name = "bench-list-\(index)"
        let mac = MACAddress("52:54:00:7e:\(String(format: "%02x:%02x", index / 256, index % 256))")!
        let root = "/var/lib/libvirt/vmctl/\(name)-root.qcow2"
        var metadata = VMMetadata(
            createdAt: Date(), expiresAt: nil, labels: ["job": "bench-list", "index": "\(index)"], image: "/var/lib/libvirt/vmctl/base.qcow2",
            volumes: [.init(pool: "vmctl", name: "\(name)-root.qcow2", path: root, role: "root")],
            addresses: [.init(pool: "bench", network: "bench-list", address: IPAddress("10.233.\(index / 250).\(index % 250 + 2)")!, mac: mac)])
        var configuration = DomainConfiguration(
            type: "qemu", hostCPU: false, name: name, uuid: UUID().uuidString.lowercased(), metadata: "", memoryMiB: 160, vcpus: 1,
            kernel: "/var/lib/libvirt/vmctl/vmlinuz", cmdline: "console=ttyS0", disks: [.init(path: root, format: "qcow2", target: "vda")],
            interfaces: [.init(network: "bench-list", mac: mac.description, model: "virtio")])
        metadata.devices = configuration.devices
        configuration.metadata = metadata.xml
        return try await connection.defineDomain(xml: try configuration.xml)
    }
}
