import Foundation
import Libvirt
import Provisioning
#if canImport(Glibc)
import Glibc
#endif

/// The lifecycle benchmarks of scripts/bench: vmctl, a virt-install script
/// (scripts/bench-virt-install) and the libvirt floor (libvirt-floor) doing the same work, as
/// processes, interleaved run by run, medians printed with the ratios of this run.
enum Lifecycle {
    /// One process run: its wall time and peak resident memory.
    struct Measurement {
        var milliseconds: Double
        var maxRSSKiB: Int
        var standardError: String
    }

    struct Setup {
        var vmctl: String
        /// An earlier vmctl to measure side by side (`VMCTL_BENCH_BASELINE`), e.g. before a change.
        var baseline: String?
        var floor: String
        var script: String
        var kernel: String
        var initrd: String
        var base: String
        var environment: [String: String]
        var network = "bench-open"
        var bridge = "vbbench"
        var runs: Int
        private var counter = 0

        init() throws {
            let environment = ProcessInfo.processInfo.environment
            func value(_ name: String) throws -> String {
                guard let value = environment[name], !value.isEmpty else { throw ProvisioningError(.invalidValue, "\(name) is not set", hint: "run scripts/bench") }
                return value
            }
            vmctl = try value("VMCTL_BENCH_VMCTL")
            baseline = environment["VMCTL_BENCH_BASELINE"].flatMap { $0.isEmpty ? nil : $0 }
            floor = try value("VMCTL_BENCH_FLOOR")
            script = try value("VMCTL_BENCH_SCRIPT")
            let guest = try value("VMCTL_TEST_GUEST")
            kernel = guest + "/vmlinuz"
            initrd = guest + "/initrd.img"
            let directory = try value("VMCTL_HARNESS_DIR")
            base = directory + "/bench-base.qcow2"
            runs = Int(environment["VMCTL_BENCH_RUNS"] ?? "") ?? 5
            self.environment = environment.merging([
                "VMCTL_STATE": directory + "/bench-state.sqlite", "BENCH_IMAGES": directory + "/bench-images",
            ]) { $1 }
            try FileManager.default.createDirectory(atPath: directory + "/bench-images", withIntermediateDirectories: true)
        }

        /// A fresh (MAC, IPv4 address) pair.
        mutating func next() -> (mac: String, ip: String) {
            counter += 1
            return (String(format: "52:54:00:be:%02x:%02x", counter / 256, counter % 256), "10.232.\(counter / 180).\(10 + counter % 180)")
        }

        func vmctlCreate(_ name: String, _ nic: (mac: String, ip: String), seed: Bool = false, wait: Bool = false, label: String? = nil,
                         binary: String? = nil) -> [String] {
            [binary ?? vmctl, "create", name, "--image", base, "--network", "\(network),ip=\(nic.ip),mac=\(nic.mac)",
             "--kernel", kernel, "--initrd", initrd, "--cmdline", "console=ttyS0 quiet", "--memory", "160", "--virt-type", "qemu", "-q"]
                + (seed ? [] : ["--no-cloud-init"]) + (wait ? ["--wait", "ip"] : []) + (label.map { ["--label", $0] } ?? [])
        }
        func scriptCreate(_ name: String, _ nic: (mac: String, ip: String), wait: Bool = false) -> [String] {
            [script, "create", name, base, network, nic.mac, nic.ip, kernel, initrd] + (wait ? ["wait"] : [])
        }
        func floorCreate(_ name: String, _ nic: (mac: String, ip: String), wait: Bool = false) -> [String] {
            [floor, "create", name, base, network, nic.mac, nic.ip, kernel, initrd] + (wait ? ["wait"] : [])
        }
        func scriptDestroy(_ name: String, _ nic: (mac: String, ip: String)) -> [String] { [script, "destroy", name, network, nic.mac, nic.ip] }
        func floorDestroy(_ name: String, _ nic: (mac: String, ip: String)) -> [String] { [floor, "destroy", name, network, nic.mac, nic.ip] }
    }

    static func run() async throws {
        var setup = try Setup()
        let uri = setup.environment["VMCTL_CONNECT"] ?? ""
        let connection = try await Connection.open(uri)
        _ = try measure(["/usr/bin/qemu-img", "create", "-q", "-f", "qcow2", setup.base, "64M"], setup.environment)
        let network = try await connection.defineNetwork(xml: """
            <network><name>\(setup.network)</name><forward mode='open'/><bridge name='\(setup.bridge)'/>
              <ip address='10.232.250.1' prefix='16'><dhcp><range start='10.232.251.1' end='10.232.251.250'/></dhcp></ip></network>
            """)
        try await network.start()
        do {
            try await cases(&setup, uri: uri)
        } catch {
            try? await network.destroy()
            try? await network.undefine()
            throw error
        }
        try await network.destroy()
        try await network.undefine()
    }

    static func cases(_ setup: inout Setup, uri: String) async throws {
        _ = try measure([setup.vmctl, "pool", "create", "bench", "--network", setup.network, "--range", "10.232.0.10-10.232.9.199"], setup.environment)
        let slowRuns = setup.runs
        setup.runs = 2 * slowRuns  // the cheap cases (1, 3, 4 and the profile) twice as often
        print("runs: \(setup.runs) (create, destroy, profile, list) and \(slowRuns) (until the lease, 10 in parallel) after one warm-up each, interleaved; medians; wall time of each process as started by this program")

        // 1 and 3: create to running, and destroy until domain, disk and reservation are gone.
        let tools = ["vmctl"] + (setup.baseline != nil ? ["vmctl baseline"] : []) + ["vmctl with seed", "virt-install script", "libvirt floor"]
        var creates: [String: [Measurement]] = [:]
        var destroys: [String: [Measurement]] = [:]
        for iteration in 0...setup.runs {
            for tool in tools {
                let nic = setup.next()
                let name = "bench-c\(iteration)-\(tools.firstIndex(of: tool)!)"
                let (create, destroy): ([String], [String]) = switch tool {
                case "vmctl": (setup.vmctlCreate(name, nic), [setup.vmctl, "destroy", name, "--force"])
                case "vmctl baseline": (setup.vmctlCreate(name, nic, binary: setup.baseline), [setup.baseline!, "destroy", name, "--force"])
                case "vmctl with seed": (setup.vmctlCreate(name, nic, seed: true), [setup.vmctl, "destroy", name, "--force"])
                case "virt-install script": (setup.scriptCreate(name, nic), setup.scriptDestroy(name, nic))
                default: (setup.floorCreate(name, nic), setup.floorDestroy(name, nic))
                }
                let created = try measure(create, setup.environment)
                let destroyed = try measure(destroy, setup.environment)
                if iteration > 0 {
                    creates[tool, default: []].append(created)
                    destroys[tool, default: []].append(destroyed)
                }
            }
        }
        report("1. create to running: overlay disk, one NIC with a reserved address", tools, creates, floor: "libvirt floor")
        goal("vmctl create within 1.05x of the libvirt floor", median(creates["vmctl"]!) / median(creates["libvirt floor"]!), atMost: 1.05)
        goal("vmctl create at least 2x faster than the virt-install script",
             median(creates["virt-install script"]!) / median(creates["vmctl"]!), atLeast: 2)
        let peak = Double(creates["vmctl"]!.map(\.maxRSSKiB).max() ?? 0) / 1024
        print(String(format: "  goal: peak RSS of vmctl create at most 40 MiB: %.1f MiB, %@", peak, peak <= 40 ? "met" : "MISSED"))
        report("3. destroy until domain, disk and reservation are gone (forced power-off)", tools, destroys, floor: "libvirt floor")
        if setup.baseline != nil {
            print(String(format: "  against the baseline: create %.2fx, destroy %.2fx (below 1: faster now)",
                         median(creates["vmctl"]!) / median(creates["vmctl baseline"]!), median(destroys["vmctl"]!) / median(destroys["vmctl baseline"]!)))
        }

        // The profile of create: where vmctl's time goes.
        var profiles: [[String: Double]] = []
        for iteration in 0...setup.runs {
            let nic = setup.next()
            let name = "bench-p\(iteration)"
            let run = try measure(setup.vmctlCreate(name, nic), setup.environment.merging(["VMCTL_PROFILE": "1"]) { $1 })
            _ = try measure([setup.vmctl, "destroy", name, "--force"], setup.environment)
            guard iteration > 0, let line = run.standardError.split(separator: "\n").first(where: { $0.hasPrefix("vmctl profile:") }) else { continue }
            var values: [String: Double] = ["wall": run.milliseconds]
            for field in line.split(separator: " ") {
                let pair = field.split(separator: "=")
                if pair.count == 2, let value = Double(pair[1]) { values[String(pair[0])] = value }
            }
            profiles.append(values)
        }
        func profileMedian(_ key: String) -> Double { medianOf(profiles.compactMap { $0[key] }) }
        print("\nprofile of vmctl create (VMCTL_PROFILE=1, no seed), medians in ms:")
        print(String(format: "  wall %.1f = process start-up and argument parsing %.1f + run %.1f; run = libvirt calls %.1f + tools %.1f + vmctl's own %.1f (%.0f calls)",
                     profileMedian("wall"), profileMedian("wall") - profileMedian("run"), profileMedian("run"), profileMedian("libvirt"),
                     profileMedian("tools"), profileMedian("own"), profileMedian("calls")))

        setup.runs = slowRuns
        // 2. create until the guest holds its reserved lease.
        let waiting = ["vmctl", "virt-install script", "libvirt floor"]
        var leases: [String: [Measurement]] = [:]
        var leaseToReturn: [Double] = []
        for iteration in 0...setup.runs {
            for tool in waiting {
                let nic = setup.next()
                let name = "bench-w\(iteration)-\(waiting.firstIndex(of: tool)!)"
                let (create, destroy): ([String], [String]) = switch tool {
                case "vmctl": (setup.vmctlCreate(name, nic, wait: true), [setup.vmctl, "destroy", name, "--force"])
                case "virt-install script": (setup.scriptCreate(name, nic, wait: true), setup.scriptDestroy(name, nic))
                default: (setup.floorCreate(name, nic, wait: true), setup.floorDestroy(name, nic))
                }
                let created = try measure(create, setup.environment)
                let returned = Date()
                if tool == "vmctl", iteration > 0, let granted = leaseWritten(setup) {
                    leaseToReturn.append(returned.timeIntervalSince(granted) * 1000)
                }
                _ = try measure(destroy, setup.environment)
                if iteration > 0 { leases[tool, default: []].append(created) }
            }
        }
        report("2. create until the guest holds its reserved lease (TCG boot included)", waiting, leases, floor: "libvirt floor")
        if leaseToReturn.isEmpty {
            print("  lease to vmctl's return: not measured (VMCTL_HARNESS_DIR has no dnsmasq status file of the network)")
        } else {
            print(String(format: "  lease to vmctl's return (dnsmasq's status file written -> vmctl exited): median %.1f ms, min %.1f, max %.1f",
                         medianOf(leaseToReturn), leaseToReturn.min()!, leaseToReturn.max()!))
            print(String(format: "  goal: vmctl create --wait ip returns within 20 ms of the lease: %.1f ms, %@", medianOf(leaseToReturn),
                         medianOf(leaseToReturn) <= 20 ? "met" : "MISSED"))
        }

        // 4. list: `vmctl-bench list` (Listing.swift), its own case in scripts/bench.
        setup.runs = slowRuns
        // 5. 10 VMs created in parallel, then destroyed; then 50, as a busy CI host sees them.
        let batchTools = ["vmctl"] + (setup.baseline != nil ? ["vmctl baseline"] : []) + ["virt-install script", "libvirt floor"]
        try await parallelCase(&setup, count: 10, runs: setup.runs, tools: batchTools, uri: uri)
        try await parallelCase(&setup, count: 50, runs: max(2, setup.runs / 2), tools: ["vmctl", "libvirt floor"], uri: uri)
    }

    /// `count` VMs created at once, then destroyed (vmctl: `destroy --label`), total wall time;
    /// afterwards no domain of the batch may be left.
    static func parallelCase(_ setup: inout Setup, count: Int, runs: Int, tools: [String], uri: String) async throws {
        var parallel: [String: [Measurement]] = [:]
        var left = 0
        let connection = try await Connection.open(uri)
        for iteration in 0...runs {
            for tool in tools {
                let nics = (0..<count).map { _ in setup.next() }
                let prefix = "bench-b\(count)-\(iteration)-\(tools.firstIndex(of: tool)!)-"
                let names = (0..<count).map { "\(prefix)\($0)" }
                let start = ContinuousClock.now
                var peak = 0
                switch tool {
                case "vmctl", "vmctl baseline":
                    let binary = tool == "vmctl" ? setup.vmctl : setup.baseline!
                    let label = "batch=\(count)-\(iteration)-\(tool.count)"
                    peak = try measureAll(names.indices.map { setup.vmctlCreate(names[$0], nics[$0], label: label, binary: binary) }, setup.environment)
                    peak = max(peak, try measure([binary, "destroy", "--label", label, "--force"], setup.environment).maxRSSKiB)
                case "virt-install script":
                    peak = try measureAll(names.indices.map { setup.scriptCreate(names[$0], nics[$0]) }, setup.environment)
                    _ = try measureAll(names.indices.map { setup.scriptDestroy(names[$0], nics[$0]) }, setup.environment)
                default:
                    peak = try measureAll(names.indices.map { setup.floorCreate(names[$0], nics[$0]) }, setup.environment)
                    peak = max(peak, try measureAll(names.indices.map { setup.floorDestroy(names[$0], nics[$0]) }, setup.environment))
                }
                if iteration > 0 {
                    parallel[tool, default: []].append(Measurement(milliseconds: milliseconds(ContinuousClock.now - start), maxRSSKiB: peak, standardError: ""))
                }
                left += try await connection.domains().filter { $0.name.hasPrefix(prefix) }.count
            }
        }
        report("5. \(count) VMs created in parallel, then destroyed: total wall time (\(runs) runs)", tools, parallel, floor: "libvirt floor")
        print("  domains of the batches left after their destroy: \(left)")
        goal("\(count) parallel vmctl create+destroy within 1.05x of the floor", median(parallel["vmctl"]!) / median(parallel["libvirt floor"]!), atMost: 1.05)
        if tools.contains("vmctl baseline") {
            print(String(format: "  against the baseline: %.2fx", median(parallel["vmctl"]!) / median(parallel["vmctl baseline"]!)))
        }
    }

    // MARK: Reporting

    /// When the network's lease file was last written: libvirt's lease helper, run by dnsmasq
    /// for each lease, writes `DIR/lib/dnsmasq/BRIDGE.status`, and virNetworkGetDHCPLeases reads
    /// it, so this is the moment the lease appeared in libvirt (one VM on the network at a time).
    static func leaseWritten(_ setup: Setup) -> Date? {
        guard let directory = setup.environment["VMCTL_HARNESS_DIR"] else { return nil }
        var status = stat()
        guard stat("\(directory)/lib/dnsmasq/\(setup.bridge).status", &status) == 0 else { return nil }
        return Date(timeIntervalSince1970: Double(status.st_mtim.tv_sec) + Double(status.st_mtim.tv_nsec) / 1e9)
    }

    static func median(_ samples: [Measurement]) -> Double { medianOf(samples.map(\.milliseconds)) }

    static func medianOf(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return .nan }
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    static func report(_ title: String, _ tools: [String], _ samples: [String: [Measurement]], floor: String) {
        print("\n\(title)")
        print("  " + "tool".padding(toLength: 40, withPad: " ", startingAt: 0) + "median ms     min ms     max ms   ratio to \(floor)   peak RSS")
        let reference = median(samples[floor] ?? [])
        for tool in tools {
            let values = samples[tool] ?? []
            let rss = tool.hasPrefix("virt-install") ? "   (bash)" : String(format: "%6.1f MiB", Double(values.map(\.maxRSSKiB).max() ?? 0) / 1024)
            print("  " + tool.padding(toLength: 40, withPad: " ", startingAt: 0)
                  + String(format: "%9.1f  %9.1f  %9.1f  %12.2fx      ", median(values), values.map(\.milliseconds).min() ?? .nan,
                           values.map(\.milliseconds).max() ?? .nan, median(values) / reference) + rss)
        }
    }

    static func goal(_ text: String, _ ratio: Double, atMost: Double? = nil, atLeast: Double? = nil) {
        let met = (atMost.map { ratio <= $0 } ?? true) && (atLeast.map { ratio >= $0 } ?? true)
        print(String(format: "  goal: %@: %.2fx, %@", text as NSString, ratio, met ? "met" : "MISSED"))
    }

    // MARK: Processes

    /// Runs a process to completion; its wall time and peak RSS (GNU time's). Fails when it fails.
    static func measure(_ argv: [String], _ environment: [String: String]) throws -> Measurement {
        let started = try spawn(argv, environment)
        return try reap(started, argv)
    }

    /// Runs processes at once; returns the largest peak RSS among them.
    static func measureAll(_ argvs: [[String]], _ environment: [String: String]) throws -> Int {
        let started = try argvs.map { try spawn($0, environment) }
        var peak = 0
        for (process, argv) in zip(started, argvs) { peak = max(peak, try reap(process, argv).maxRSSKiB) }
        return peak
    }

    struct Started {
        var pid: pid_t
        var start: ContinuousClock.Instant
        var errors: URL
        /// Where GNU time writes the peak resident memory, in KiB.
        var memory: URL
    }

    /// Every measured process is started through GNU time, which reports its peak memory: a
    /// process posix_spawn'ed by this one inherits this one's peak in wait4's ru_maxrss (Linux
    /// carries the old address space's high-water mark across exec), so 200 defined domains here
    /// showed virsh at 46 MiB. time's own fork and exec add the same ~1 ms to every tool
    /// (`vmctl-bench startup` prints it).
    static let memoryReporter = "/usr/bin/time"

    static func spawn(_ argv: [String], _ environment: [String: String]) throws -> Started {
        let errors = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-bench-\(UUID().uuidString).stderr")
        let memory = errors.deletingPathExtension().appendingPathExtension("rss")
        let argv = [memoryReporter, "-f", "%M", "-o", memory.path] + argv
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, errors.path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let arguments = argv.map { strdup($0) } + [nil]
        let variables = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            arguments.forEach { free($0) }
            variables.forEach { free($0) }
        }
        var pid: pid_t = 0
        let start = ContinuousClock.now
        let status = posix_spawn(&pid, argv[0], &actions, nil, arguments, variables)
        guard status == 0 else { throw ProvisioningError(.tool, "cannot start \(argv[0]): \(String(cString: strerror(status)))") }
        return Started(pid: pid, start: start, errors: errors, memory: memory)
    }

    static func reap(_ started: Started, _ argv: [String]) throws -> Measurement {
        var status: Int32 = 0
        var usage = rusage()
        while wait4(started.pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let elapsed = milliseconds(ContinuousClock.now - started.start)
        let errors = (try? String(contentsOf: started.errors, encoding: .utf8)) ?? ""
        let memory = (try? String(contentsOf: started.memory, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(at: started.errors)
        try? FileManager.default.removeItem(at: started.memory)
        guard status == 0 else {
            throw ProvisioningError(.tool, "\(argv.prefix(3).joined(separator: " ")) failed (status \(status)): \(errors)\(memory)")
        }
        // time writes "Command exited with non-zero status N" before the figure when it failed.
        let peak = memory.split(whereSeparator: \.isNewline).last.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } ?? 0
        return Measurement(milliseconds: elapsed, maxRSSKiB: peak, standardError: errors)
    }
}
