import Addressing
import Foundation
import Libvirt
import LibvirtXML
import Testing
import TestSupport
import Provisioning

extension Integration {
    /// `vmctl create`, `show`, `list`, `wait`, `destroy` against the harness's libvirtd, with real
    /// TCG guests booted from the test guest.
    @Suite("VM lifecycle")
    struct VMLifecycleTests {
        /// Two networks (nat with DHCP, open with DHCP), a pool on each, a base image, and a state file.
        struct Setup {
            let harness: Harness
            let connection: Connection
            let id: String
            let scratch: URL
            let nat: Network
            let open: Network
            let natSubnet: String
            let openSubnet: String
            let image: String
            let environment: [String: String]

            /// Runs `body` with a fresh setup and always tears it down.
            static func with(_ body: (Setup) async throws -> Void) async throws {
                let setup = try await make()
                do {
                    try await body(setup)
                } catch {
                    try? await setup.tearDown()
                    throw error
                }
                try await setup.tearDown()
            }

            static func make() async throws -> Setup {
                let harness = try Harness.require()
                let connection = try await harness.connect()
                let id = uniqueSuffix()
                let scratch = try harness.scratch(id)
                let natSubnet = "10.217.\(Int.random(in: 10...250))"
                let openSubnet = "10.218.\(Int.random(in: 10...250))"
                let nat = try await harness.makeNetwork(on: connection, name: "ivn-\(id)", mode: "nat", subnet: natSubnet)
                let open = try await harness.makeNetwork(on: connection, name: "ivo-\(id)", mode: "open", subnet: openSubnet)
                let image = scratch.appendingPathComponent("base.qcow2").path
                let made = try runProcess("/usr/bin/qemu-img", ["create", "-q", "-f", "qcow2", image, "64M"])
                guard made.status == 0 else { throw TestSupportError("qemu-img: \(made.standardError)") }
                let setup = Setup(
                    harness: harness, connection: connection, id: id, scratch: scratch, nat: nat, open: open,
                    natSubnet: natSubnet, openSubnet: openSubnet, image: image,
                    environment: ["VMCTL_CONNECT": harness.uri, "VMCTL_STATE": scratch.appendingPathComponent("state.sqlite").path])
                #expect(try setup.vmctl("pool", "create", "pn-\(id)", "--network", "ivn-\(id)", "--range", "\(natSubnet).10-\(natSubnet).40").status == 0)
                #expect(try setup.vmctl("pool", "create", "po-\(id)", "--network", "ivo-\(id)", "--range", "\(openSubnet).64/28").status == 0)
                return setup
            }

            func vmctl(_ arguments: String...) throws -> ProcessResult { try runVMCtl(arguments, environment: environment) }
            func vmctl(_ arguments: [String]) throws -> ProcessResult { try runVMCtl(arguments, environment: environment) }

            /// `vmctl create NAME` from the test guest with `extra` options.
            func createArguments(_ name: String, _ extra: [String]) -> [String] {
                ["create", name, "--kernel", harness.kernel, "--initrd", harness.initrd, "--cmdline", "console=ttyS0 quiet",
                 "--memory", "160"] + extra
            }

            /// Asserts that nothing of the VM `name` is left: domain, volumes, host entries, allocations.
            func expectNothingLeft(of name: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
                #expect(try await connection.domains().map(\.name).filter { $0 == name }.isEmpty, sourceLocation: sourceLocation)
                let volumes = try await connection.storagePool(named: "vmctl").volumes().map(\.name)
                #expect(volumes.filter { $0.hasPrefix(name + "-") }.isEmpty, "\(volumes)", sourceLocation: sourceLocation)
                for network in [nat, open] {
                    #expect(try await harness.hostEntries(network, inactive: false).isEmpty, sourceLocation: sourceLocation)
                    #expect(try await harness.hostEntries(network, inactive: true).isEmpty, sourceLocation: sourceLocation)
                }
                for pool in ["pn-\(id)", "po-\(id)"] {
                    let shown = try vmctl("pool", "show", pool, "--format", "json")
                    #expect(shown.standardOutput.contains("\"used\" : 0"), "\(shown.standardOutput)", sourceLocation: sourceLocation)
                }
            }

            func tearDown() async throws {
                for domain in try await connection.domains() where domain.name.contains(id) {
                    if try await domain.isActive() { try await domain.destroy() }
                    try? await domain.undefine()
                }
                _ = try vmctl("pool", "destroy", "pn-\(id)", "--force")
                _ = try vmctl("pool", "destroy", "po-\(id)", "--force")
                try await harness.removeNetwork(nat)
                try await harness.removeNetwork(open)
            }
        }

        struct VMJSON: Decodable, Equatable {
            struct Interface: Decodable, Equatable { var network: String?; var mac: String?; var addresses: [String] }
            struct Disk: Decodable, Equatable { var target: String; var path: String?; var format: String?; var backingPath: String? }
            var name: String
            var uuid: String
            var state: String
            var vcpus: Int
            var memoryMiB: Int
            var labels: [String: String]
            var expiresAt: String?
            var interfaces: [Interface]
            var disks: [Disk]
        }

        @Test("create with an overlay, a data disk and two NICs (pool address, fixed ip); the guest gets both; show and list match libvirt; destroy leaves nothing",
              .timeLimit(.minutes(4)))
        func createShowListDestroy() async throws {
            try await Setup.with { setup in
                let name = "ivm-\(setup.id)"
                let fixed = "\(setup.openSubnet).70"
                let console = setup.scratch.appendingPathComponent("console.log")
                let before = Date()
                let created = try setup.vmctl(setup.createArguments(name, [
                    "--image", setup.image, "--disk-size", "128M", "--disk", "size=16M",
                    "--network", "ivn-\(setup.id),pool=pn-\(setup.id)", "--network", "ivo-\(setup.id),ip=\(fixed)",
                    "--label", "suite=\(setup.id)", "--label", "kind=lifecycle", "--ttl", "1h", "--console-log", console.path,
                    "--wait", "ip", "--timeout", "120", "--format", "json"]))
                #expect(created.status == 0, "\(created.standardError)")
                let vm = try JSONDecoder().decode(VMJSON.self, from: Data(created.standardOutput.utf8))
                #expect(vm.name == name && vm.state == "running" && vm.vcpus == 1 && vm.memoryMiB == 160)
                #expect(vm.labels == ["suite": setup.id, "kind": "lifecycle"])
                // --ttl 1h: an hour from the moment of the create, to the second.
                let expiry = try #require(vm.expiresAt.flatMap { ISO8601DateFormatter().date(from: $0) }, "expiresAt: \(vm.expiresAt ?? "null")")
                #expect(expiry >= before.addingTimeInterval(3600 - 1) && expiry <= Date().addingTimeInterval(3600 + 1),
                        "expiresAt \(expiry) is not an hour after the create (\(before))")
                #expect(vm.interfaces.map(\.network) == ["ivn-\(setup.id)", "ivo-\(setup.id)"])
                #expect(vm.interfaces.map(\.addresses) == [["\(setup.natSubnet).10"], [fixed]])
                #expect(vm.disks.map(\.target) == ["vda", "vdb", "sda"])
                #expect(vm.disks[0].path?.hasSuffix("/\(name)-root.qcow2") == true && vm.disks[0].backingPath == setup.image)
                #expect(vm.disks[1].path?.hasSuffix("/\(name)-data1.qcow2") == true && vm.disks[1].backingPath == nil)
                #expect(vm.disks[2].path?.hasSuffix("/\(name)-seed.iso") == true && vm.disks[2].format == "raw")

                // libvirt's own view agrees.
                let domain = try await setup.connection.domain(named: name)
                #expect(domain.uuid.uuidString.lowercased() == vm.uuid)
                let definition = try DomainDefinition(xml: try await domain.xml())
                // The default, worked out here from the machine rather than by vmctl's code: qemu
                // on a host that is itself a VM (the CPU's `hypervisor` flag) or without /dev/kvm.
                #expect(definition.type == expectedDefaultDomainType(), "domain type \(definition.type)")
                #expect(definition.interfaces.map { $0.mac?.description } == vm.interfaces.map(\.mac))
                #expect(definition.disks.map(\.path) == vm.disks.map(\.path))
                #expect(definition.metadata?.labels == vm.labels)
                #expect(try await domain.xml().contains("xmlns:vmctl=\"\(VMMetadata.namespace)\""))
                let leases = try await setup.nat.dhcpLeases(mac: vm.interfaces[0].mac)
                #expect(leases.map(\.address) == ["\(setup.natSubnet).10"])
                let openLeases = try await setup.open.dhcpLeases(mac: vm.interfaces[1].mac)
                #expect(openLeases.map(\.address) == [fixed])
                // The guest itself reports both addresses on its console, and the disk sizes.
                let text = try await eventually(timeout: .seconds(60)) { () -> String? in
                    let text = (try? String(contentsOf: console, encoding: .utf8)) ?? ""
                    return text.contains("ip=\(fixed)/24") && text.contains("ip=\(setup.natSubnet).10/24") ? text : nil
                }
                #expect(text?.contains("mac=\(vm.interfaces[0].mac!) ip=\(setup.natSubnet).10/24") == true)
                #expect(text?.contains("disk vda sectors=262144") == true && text?.contains("disk vdb sectors=32768") == true)

                let shown = try setup.vmctl("show", name, "--format", "json")
                #expect(try JSONDecoder().decode(VMJSON.self, from: Data(shown.standardOutput.utf8)) == vm)
                let listed = try setup.vmctl("list", "--label", "suite=\(setup.id)", "--format", "json")
                #expect(try JSONDecoder().decode([VMJSON].self, from: Data(listed.standardOutput.utf8)) == [vm])
                let none = try setup.vmctl("list", "--label", "suite=other", "--format", "json")
                #expect(try JSONDecoder().decode([VMJSON].self, from: Data(none.standardOutput.utf8)).isEmpty)
                // list read the VM from its statistics and metadata (the devices vmctl recorded),
                // not its XML, and still agrees with show, which reads the XML.
                let profiled = try runVMCtl(["list", "--label", "suite=\(setup.id)", "--format", "json"],
                                            environment: setup.environment.merging(["VMCTL_PROFILE": "1"]) { $1 })
                #expect(profiled.standardError.contains("domainStatistics") && profiled.standardError.contains("Domain.metadata"),
                        "\(profiled.standardError)")
                #expect(!profiled.standardError.contains("Domain.xml"), "\(profiled.standardError)")
                #expect(try setup.vmctl("wait", name, "--for", "running", "--timeout", "5").status == 0)
                let notYet = try setup.vmctl("wait", name, "--for", "shutoff", "--timeout", "1")
                #expect(notYet.status == 1 && notYet.standardError.contains("still running"), "\(notYet.standardError)")

                // Shut off, the listing (persistent definition) still matches show.
                #expect(try setup.vmctl("stop", name, "--force").status == 0)
                let stopped = try JSONDecoder().decode(VMJSON.self, from: Data(try setup.vmctl("show", name, "--format", "json").standardOutput.utf8))
                #expect(stopped.state == "shutoff" && stopped.interfaces.map(\.mac) == vm.interfaces.map(\.mac) && stopped.disks.map(\.path) == vm.disks.map(\.path))
                let listedStopped = try setup.vmctl("list", "--label", "suite=\(setup.id)", "--format", "json")
                #expect(try JSONDecoder().decode([VMJSON].self, from: Data(listedStopped.standardOutput.utf8)) == [stopped])
                #expect(try setup.vmctl("start", name).status == 0)

                // The guest ignores ACPI: destroy powers it off after the grace period.
                let destroyed = try setup.vmctl("destroy", name, "--grace", "1")
                #expect(destroyed.status == 0, "\(destroyed.standardError)")
                #expect(destroyed.standardOutput == "\(name)\n")
                try await setup.expectNothingLeft(of: name)
                #expect(FileManager.default.fileExists(atPath: setup.image), "the base image is never deleted")
                let again = try setup.vmctl("destroy", name)
                #expect(again.status == 1 && again.standardError.contains("no VM named \(name)"), "\(again.standardError)")
                #expect(try setup.vmctl("destroy", name, "--ignore-missing").status == 0)
                #expect(try setup.vmctl("show", name).status == 1)
            }
        }

        @Test("a failing step undoes the steps before it; bad input leaves nothing and names the value", .timeLimit(.minutes(3)))
        func failuresUndo() async throws {
            try await Setup.with { setup in
                let first = try setup.vmctl(setup.createArguments("ivf-\(setup.id)", ["--network", "ivn-\(setup.id),pool=pn-\(setup.id)"]))
                #expect(first.status == 0, "\(first.standardError)")
                // The root disk is made, then the reservation of a taken address fails: the disk goes again.
                let taken = try setup.vmctl(setup.createArguments("ivg-\(setup.id)", [
                    "--image", setup.image, "--network", "ivn-\(setup.id),ip=\(setup.natSubnet).10"]))
                #expect(taken.status == 1)
                #expect(taken.standardError.contains("reserving addresses failed") && taken.standardError.contains("\(setup.natSubnet).10 is already allocated to ivf-\(setup.id)"),
                        "\(taken.standardError)")
                #expect(taken.standardError.split(separator: "\n").count == 1, "one line: \(taken.standardError)")
                let volumes = try await setup.connection.storagePool(named: "vmctl").volumes().map(\.name)
                #expect(!volumes.contains("ivg-\(setup.id)-root.qcow2"))
                #expect(try await setup.connection.domains().map(\.name).contains("ivg-\(setup.id)") == false)

                let exists = try setup.vmctl(setup.createArguments("ivf-\(setup.id)", []))
                #expect(exists.status == 1 && exists.standardError.contains("VM ivf-\(setup.id) already exists"), "\(exists.standardError)")
                let usage = try setup.vmctl(setup.createArguments("ivh-\(setup.id)", ["--network", "ivn-\(setup.id),ip=10.1.1.300"]))
                #expect(usage.status == 64 && usage.standardError.contains("ip=10.1.1.300"), "\(usage.standardError)")
                let missing = try setup.vmctl(setup.createArguments("ivh-\(setup.id)", ["--image", "/nonexistent/base.qcow2"]))
                #expect(missing.status == 1 && missing.standardError.contains("/nonexistent/base.qcow2"), "\(missing.standardError)")
                let noNetwork = try setup.vmctl(setup.createArguments("ivh-\(setup.id)", ["--network", "nonet-\(setup.id)"]))
                #expect(noNetwork.status == 1 && noNetwork.standardError.contains("no network named nonet-\(setup.id)"), "\(noNetwork.standardError)")
                let clash = try setup.vmctl(setup.createArguments("ivh-\(setup.id)", ["--network", "ivn-\(setup.id),mac=\(try await macOf("ivf-\(setup.id)", setup))"]))
                #expect(clash.status == 1 && clash.standardError.contains("is already used by VM ivf-\(setup.id)"), "\(clash.standardError)")
                #expect(try setup.vmctl("destroy", "ivf-\(setup.id)", "--force").status == 0)
                try await setup.expectNothingLeft(of: "ivf-\(setup.id)")
                try await setup.expectNothingLeft(of: "ivh-\(setup.id)")
            }
        }

        private func macOf(_ name: String, _ setup: Setup) async throws -> String {
            try DomainDefinition(xml: try await setup.connection.domain(named: name).xml()).interfaces.first?.mac?.description ?? ""
        }

        @Test("SIGKILL after each step of create: vmctl doctor --fix removes everything; SIGINT rolls back by itself",
              .timeLimit(.minutes(6)))
        func interruptedCreates() async throws {
            try await Setup.with { setup in
                for step in ["journal", "root-disk", "data-disks", "addresses", "seed", "console-log", "define", "start"] {
                    let name = "ivk-\(setup.id)-\(step)"
                    let process = try StoppedCreate(setup: setup, name: name, step: step)
                    // While it runs, doctor leaves its addresses alone.
                    let live = try setup.vmctl("doctor")
                    #expect(live.status == 0, "step \(step): \(live.standardOutput)")
                    process.kill(SIGKILL)
                    let report = try setup.vmctl("doctor")
                    #expect(report.status == 1 && report.standardOutput.contains("abandonedCreate: VM \(name)"), "step \(step): \(report.standardOutput)")
                    let fixed = try setup.vmctl("doctor", "--fix")
                    #expect(fixed.status == 0, "step \(step): \(fixed.standardOutput) \(fixed.standardError)")
                    try await setup.expectNothingLeft(of: name)
                    #expect(try setup.vmctl("doctor").standardOutput == "no problems found\n")
                }
                for step in ["addresses", "seed", "start"] {
                    let name = "ivi-\(setup.id)-\(step)"
                    let process = try StoppedCreate(setup: setup, name: name, step: step)
                    process.kill(SIGINT)
                    let (status, standardError) = process.wait()
                    #expect(status == 1, "step \(step)")
                    #expect(standardError.contains("cannot create VM \(name): interrupted by SIGINT; nothing was left behind"), "\(standardError)")
                    try await setup.expectNothingLeft(of: name)
                }
                #expect(try setup.vmctl("doctor").standardOutput == "no problems found\n")
            }
        }

        /// A `vmctl create` with a data disk, a reservation and a seed, stopped after `step` by the
        /// test hook `VMCTL_TEST_STOP_AFTER`.
        final class StoppedCreate {
            let process = Process()
            let errors: URL

            init(setup: Setup, name: String, step: String) throws {
                errors = setup.scratch.appendingPathComponent("\(name).stderr")
                _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
                process.executableURL = URL(fileURLWithPath: try vmctlExecutable())
                process.arguments = setup.createArguments(name, [
                    "--image", setup.image, "--disk", "size=8M", "--network", "ivn-\(setup.id),pool=pn-\(setup.id)"])
                process.environment = ProcessInfo.processInfo.environment.merging(setup.environment) { $1 }
                    .merging(["VMCTL_TEST_STOP_AFTER": step]) { $1 }
                process.standardOutput = FileHandle.nullDevice
                process.standardError = try FileHandle(forWritingTo: errors)
                try process.run()
                let deadline = Date().addingTimeInterval(60)
                while Date() < deadline {
                    if ((try? String(contentsOf: errors, encoding: .utf8)) ?? "").contains("stopped after \(step)") { return }
                    if !process.isRunning { break }
                    Thread.sleep(forTimeInterval: 0.05)
                }
                throw TestSupportError("create never stopped after \(step): \((try? String(contentsOf: errors, encoding: .utf8)) ?? "")")
            }

            func kill(_ signal: Int32) {
                Foundation.kill(process.processIdentifier, signal)
                if signal == SIGKILL { process.waitUntilExit() }
            }

            func wait() -> (Int32, String) {
                process.waitUntilExit()
                return (process.terminationStatus, (try? String(contentsOf: errors, encoding: .utf8)) ?? "")
            }
        }

        @Test("in a storage pool the test can read: the seed ISO's files, a base image kept while an overlay uses it, --expired, --autostart",
              .timeLimit(.minutes(4)))
        func seedBaseImageAndExpiry() async throws {
            try await Setup.with { setup in
                let pool = try await setup.harness.makeDirPool("ivs-\(setup.id)", in: setup.scratch, on: setup.connection)
                let key = setup.scratch.appendingPathComponent("id.pub")
                try Data("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvmctltestkey test@vmctl\n".utf8).write(to: key)
                let userData = setup.scratch.appendingPathComponent("user-data")
                try Data("#cloud-config\npackages: [curl]\n".utf8).write(to: userData)
                let base = "ivb-\(setup.id)"
                let made = try setup.vmctl(setup.createArguments(base, [
                    "--storage-pool", "ivs-\(setup.id)", "--disk-size", "32M", "--network", "ivn-\(setup.id),pool=pn-\(setup.id)",
                    "--ssh-key", key.path, "--user-data", userData.path, "--autostart", "--ttl", "1s", "--format", "json"]))
                #expect(made.status == 0, "\(made.standardError)")
                let vm = try JSONDecoder().decode(VMJSON.self, from: Data(made.standardOutput.utf8))
                #expect(vm.disks[0].backingPath == nil && vm.disks[0].format == "qcow2", "a blank root disk without --image")
                #expect(try await setup.connection.domain(named: base).autostart())

                // The seed as the guest would read it.
                let iso = try #require(vm.disks.first { $0.target == "sda" }?.path)
                let extracted = setup.scratch.appendingPathComponent("cidata")
                let extract = try runProcess("/usr/bin/xorriso", ["-osirrox", "on", "-indev", iso, "-extract", "/", extracted.path])
                #expect(extract.status == 0, "\(extract.standardError)")
                let volumeID = try runProcess("/usr/bin/xorriso", ["-indev", iso, "-pvd_info"])
                #expect(volumeID.standardOutput.contains("Volume Id    : cidata"), "\(volumeID.standardOutput)")
                let metaData = try String(contentsOf: extracted.appendingPathComponent("meta-data"), encoding: .utf8)
                #expect(metaData.contains("instance-id: \"\(base)-\(vm.uuid)\""))
                #expect(metaData.contains("local-hostname: \"\(base)\""))
                #expect(metaData.contains("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvmctltestkey test@vmctl"))
                #expect(try String(contentsOf: extracted.appendingPathComponent("user-data"), encoding: .utf8) == "#cloud-config\npackages: [curl]\n")
                let networkConfig = try String(contentsOf: extracted.appendingPathComponent("network-config"), encoding: .utf8)
                #expect(networkConfig.contains("macaddress: ") && networkConfig.contains(vm.interfaces[0].mac!) && networkConfig.contains("dhcp4: true"), "\(networkConfig)")
                #expect(made.standardError.isEmpty, "\(made.standardError)")

                // A second VM on the first one's root disk (stopped: QEMU locks a running VM's disk).
                try await setup.connection.domain(named: base).destroy()
                let root = try #require(vm.disks[0].path)
                let overlay = "ivc-\(setup.id)"
                let second = try setup.vmctl(setup.createArguments(overlay, [
                    "--storage-pool", "ivs-\(setup.id)", "--image", root, "--no-cloud-init", "--ttl", "1h"]))
                #expect(second.status == 0, "\(second.standardError)")
                try await Task.sleep(for: .seconds(1.5))
                let expired = try setup.vmctl("destroy", "--expired", "--force")
                #expect(expired.status == 0, "\(expired.standardError)")
                #expect(expired.standardOutput == "\(base)\n", "only the VM whose ttl passed")
                #expect(expired.standardError.contains("vmctl: kept \(root)"), "\(expired.standardError)")
                // The base VM's root disk is kept for the overlay; the overlay's console log is its own.
                #expect(try await pool.volumes().map(\.name).sorted() == ["\(base)-root.qcow2", "\(overlay)-console.log", "\(overlay)-root.qcow2"])
                #expect(try setup.vmctl("destroy", overlay, "--force").status == 0)
                try await pool.volume(named: "\(base)-root.qcow2").delete()
                #expect(try await pool.volumes().isEmpty)
                try await setup.expectNothingLeft(of: base)
                try await setup.harness.removeDirPool(pool)
            }
        }

        @Test("10 parallel creates, then destroy --label, as a CI job runs them: all succeed, MACs and addresses unique, nothing left",
              .timeLimit(.minutes(5)))
        func parallelCreates() async throws {
            try await Setup.with { setup in
                let environment = ProcessInfo.processInfo.environment.merging(setup.environment) { $1 }
                let names = (1...10).map { "ivp-\(setup.id)-\($0)" }
                // All 10 started first and released at once; the test checks that they really ran together.
                let run = try runTogether(try vmctlExecutable(), names.map { name in
                    setup.createArguments(name, ["--image", setup.image, "--network", "ivn-\(setup.id),pool=pn-\(setup.id)", "--label", "job=\(setup.id)", "-q"])
                }, environment: environment)
                print("lifecycle: 10 concurrent creates: \(run.description)")
                #expect(run.allOverlapped, "\(run.description)")
                let results = run.results
                for result in results { #expect(result.status == 0, "\(result.standardError)") }
                #expect(Set(results.map { $0.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) }) == Set(names))
                let listed = try setup.vmctl("list", "--label", "job=\(setup.id)", "--format", "json")
                let vms = try JSONDecoder().decode([VMJSON].self, from: Data(listed.standardOutput.utf8))
                #expect(vms.map(\.name).sorted() == names.sorted())
                let macs = vms.flatMap(\.interfaces).compactMap(\.mac)
                let addresses = vms.flatMap(\.interfaces).flatMap(\.addresses).filter { $0.hasPrefix(setup.natSubnet + ".") && Int($0.split(separator: ".").last!)! <= 40 }
                #expect(macs.count == 10 && Set(macs).count == 10)
                #expect(addresses.count == 10 && Set(addresses).count == 10, "\(addresses)")
                #expect(try await setup.harness.hostEntries(setup.nat, inactive: false).count == 10)

                // libvirtd serves five calls of one connection at a time: the ten power-offs go
                // over the destroy's own connection and two more (PowerLanes).
                let destroyed = try runVMCtl(["destroy", "--label", "job=\(setup.id)", "--force"],
                                             environment: setup.environment.merging(["VMCTL_PROFILE": "1"]) { $1 })
                #expect(destroyed.status == 0, "\(destroyed.standardError)")
                #expect(destroyed.standardOutput.split(separator: "\n").map(String.init) == names.sorted())
                let opens = destroyed.standardError.split(separator: "\n").first { $0.contains("Connection.open") }
                #expect(opens?.split(separator: " ").contains("3") == true, "\(destroyed.standardError)")
                for name in names { try await setup.expectNothingLeft(of: name) }
            }
        }

        @Test("list of 80 defined domains reads their metadata over several connections to the daemon and agrees with show for every one, vmctl's and not")
        func listOverSeveralConnections() async throws {
            try await Setup.with { setup in
                var defined: [Domain] = []
                do {
                    // 78 as vmctl's writer defines them (the metadata records their devices), two without vmctl's element.
                    for index in 0..<80 {
                        defined.append(try await setup.connection.defineDomain(xml: try Self.listedDomain(index, setup: setup, vmctls: index < 78)))
                    }
                    let profiled = try runVMCtl(["list", "--format", "json"], environment: setup.environment.merging(["VMCTL_PROFILE": "1"]) { $1 })
                    #expect(profiled.status == 0, "\(profiled.standardError)")
                    // The reader's own connection and three more, each listing the domains once.
                    let opens = profiled.standardError.split(separator: "\n").first { $0.contains("Connection.open") }
                    #expect(opens?.split(separator: " ").contains("4") == true, "\(profiled.standardError)")
                    // Every one of them opened, listed and read: none left its domains to the others.
                    let reads = profiled.standardError.split(separator: "\n").first { $0.contains("Domain.metadata") }
                    #expect(reads?.split(separator: " ").contains("4") == true, "\(profiled.standardError)")
                    let listed = try JSONDecoder().decode([VMJSON].self, from: Data(profiled.standardOutput.utf8))
                        .filter { $0.name.hasPrefix("ivl-\(setup.id)-") }
                    #expect(listed.map(\.name) == defined.map(\.name).sorted())
                    for vm in listed {
                        let shown = try setup.vmctl("show", vm.name, "--format", "json")
                        #expect(try JSONDecoder().decode(VMJSON.self, from: Data(shown.standardOutput.utf8)) == vm)
                    }
                    #expect(listed.filter { $0.labels.isEmpty }.map(\.name) == ["ivl-\(setup.id)-78", "ivl-\(setup.id)-79"])
                    let seventh = try #require(listed.first { $0.name == "ivl-\(setup.id)-7" })
                    #expect(seventh.memoryMiB == 71 && seventh.vcpus == 2 && seventh.state == "shutoff")
                    #expect(seventh.interfaces.map(\.addresses) == [["\(setup.natSubnet).107"]])
                } catch {
                    for domain in defined { try? await domain.undefine() }
                    throw error
                }
                for domain in defined { try await domain.undefine() }
            }
        }

        /// Domain number `index` of ``listOverSeveralConnections()``, never started; with vmctl's
        /// metadata as its writer records it, or none.
        static func listedDomain(_ index: Int, setup: Setup, vmctls: Bool) throws -> String {
            let name = "ivl-\(setup.id)-\(index)"
            let mac = MACAddress("52:54:00:6c:\(String(format: "%02x:%02x", index / 256, index % 256))")!
            let root = "/var/lib/libvirt/vmctl/\(name)-root.qcow2"
            var metadata = VMMetadata(
                createdAt: Date(), expiresAt: nil, labels: ["suite": setup.id, "index": "\(index)"], image: setup.image,
                volumes: [.init(pool: "vmctl", name: "\(name)-root.qcow2", path: root, role: "root")],
                addresses: [.init(pool: "pn-\(setup.id)", network: "ivn-\(setup.id)", address: IPAddress("\(setup.natSubnet).\(index + 100)")!, mac: mac)])
            var configuration = DomainConfiguration(
                type: "qemu", hostCPU: false, name: name, uuid: UUID().uuidString.lowercased(), metadata: "", memoryMiB: 64 + UInt64(index),
                vcpus: 1 + index % 2, kernel: "/var/lib/libvirt/vmctl/vmlinuz", cmdline: "console=ttyS0",
                disks: [.init(path: root, format: "qcow2", target: "vda")], interfaces: [.init(network: "ivn-\(setup.id)", mac: mac.description, model: "virtio")])
            metadata.devices = configuration.devices
            configuration.metadata = metadata.xml
            let xml = try configuration.xml
            guard !vmctls, let start = xml.range(of: "<metadata>"), let end = xml.range(of: "</metadata>") else { return xml }
            return String(xml[..<start.lowerBound] + xml[end.upperBound...])
        }
    }
}

/// The domain type `vmctl create` must choose by default on this machine: `kvm` only where
/// /dev/kvm exists and the CPU does not say it runs under a hypervisor.
func expectedDefaultDomainType() -> String {
    let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    let flags = cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ").map(String.init) ?? []
    return flags.contains("hypervisor") || !FileManager.default.fileExists(atPath: "/dev/kvm") ? "qemu" : "kvm"
}
