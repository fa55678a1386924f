import Foundation
import Libvirt
import Testing
import TestSupport

extension Integration {
    /// `vmctl image`, the power verbs and `vmctl run`, with the busybox guest and a small raw
    /// image served over HTTP from the harness's namespace.
    @Suite("Images, power and run")
    struct ImageTests {
        /// scripts/image-server in the harness's namespace, on its loopback.
        struct ImageServer {
            let pid: Int32
            let port: Int
            let log: URL

            static func start(serving directory: URL, harness: Harness, drops: [String] = []) async throws -> ImageServer {
                let port = Int.random(in: 20000...29999)
                let log = directory.appendingPathComponent("requests.log")
                let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                    .appendingPathComponent("scripts/image-server").path
                let pid = try startBackground("/usr/sbin/ip", ["netns", "exec", harness.netns, "python3", script, directory.path, "\(port)", log.path]
                                              + drops.flatMap { ["--drop", $0] })
                let up = try await eventually(timeout: .seconds(10)) { () -> Bool? in
                    try harness.connect(from: harness.netns, to: "127.0.0.1", port: port, timeout: 1).standardError.contains("refused") ? nil : true
                }
                try #require(up == true, "the image server did not listen on port \(port)")
                return ImageServer(pid: pid, port: port, log: log)
            }

            func url(_ file: String) -> String { "http://127.0.0.1:\(port)/\(file)" }

            /// The Range header of each request for `file`, in order (nil: the whole file).
            func requests(for file: String) -> [String?] {
                struct Request: Decodable { var path: String; var range: String? }
                let lines = ((try? String(contentsOf: log, encoding: .utf8)) ?? "").split(separator: "\n")
                return lines.compactMap { try? JSONDecoder().decode(Request.self, from: Data($0.utf8)) }.filter { $0.path == "/" + file }.map(\.range)
            }

            func stop() { stopBackground(pid) }
        }

        struct Shown: Decodable {
            struct Disk: Decodable { var target: String; var backingPath: String? }
            var state: String
            var disks: [Disk]
        }

        struct Image: Decodable, Equatable {
            var name: String
            var format: String
            var size: UInt64
            var sha256: String
            var source: String
            var user: String?
            var path: String
            var usedBy: [String]
        }

        /// A raw disk image: random sectors behind an MBR boot signature.
        static func makeRawImage(_ file: URL, bytes: Int) throws -> String {
            var data = Data((0..<bytes).map { _ in UInt8.random(in: 0...255) })
            data[510] = 0x55
            data[511] = 0xaa
            try data.write(to: file)
            return String(try runProcess("/usr/bin/sha256sum", [file.path]).standardOutput.prefix(64))
        }

        @Test("image pull: cut short, resumed with a Range request, checked; a wrong checksum refused and deleted; two pulls at once download once; rm refused while a VM stands on it; import; the VM's power verbs",
              .timeLimit(.minutes(4)))
        func pullImportListRemove() async throws {
            let harness = try Harness.require()
            let id = uniqueSuffix()
            let scratch = try harness.scratch("img-\(id)")
            let served = scratch.appendingPathComponent("www")
            try FileManager.default.createDirectory(at: served, withIntermediateDirectories: true)
            let home = scratch.appendingPathComponent("home")
            try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
            let environment = ["VMCTL_CONNECT": harness.uri, "VMCTL_STATE": scratch.appendingPathComponent("state.sqlite").path, "HOME": home.path]
            func vmctl(_ arguments: String...) throws -> ProcessResult { try harness.vmctlInNamespace(arguments, environment: environment) }
            func images() throws -> [Image] {
                try JSONDecoder().decode([Image].self, from: Data(try vmctl("image", "list", "--format", "json").standardOutput.utf8))
            }
            let size = 4 << 20
            let sha = try Self.makeRawImage(served.appendingPathComponent("small.img"), bytes: size)
            let otherSHA = try Self.makeRawImage(served.appendingPathComponent("other.img"), bytes: 1 << 20)
            let server = try await ImageServer.start(serving: served, harness: harness, drops: ["small.img:1500000"])
            let (small, twice, imported, vm) = ("small-\(id)", "twice-\(id)", "imp-\(id)", "onimg-\(id)")
            defer {
                server.stop()
                _ = try? vmctl("destroy", vm, "--force")
                for name in [small, twice, imported] { _ = try? vmctl("image", "rm", name) }
            }

            // Cut short halfway: exit 1, nothing usable, the part kept for the next attempt.
            let cut = try vmctl("image", "pull", server.url("small.img"), "--sha256", sha, "--name", small)
            #expect(cut.status == 1)
            #expect(cut.standardError.contains("download of \(server.url("small.img")) stopped at 1500000 of \(size) bytes")
                    && cut.standardError.contains("; run the same vmctl image pull again to resume it"), "\(cut.standardError)")
            #expect(try images().isEmpty)
            let part = scratch.appendingPathComponent("images/\(small).part").path
            #expect(((try? FileManager.default.attributesOfItem(atPath: part))?[.size] as? Int) == 1_500_000)
            // The same command resumes where it stopped.
            let resumed = try vmctl("image", "pull", server.url("small.img"), "--sha256", sha, "--name", small, "--format", "json")
            try #require(resumed.status == 0, "\(resumed.standardError)")
            #expect(resumed.standardError.contains("resumed the download at byte 1500000"))
            #expect(server.requests(for: "small.img") == [nil, "bytes=1500000-"])
            #expect(!FileManager.default.fileExists(atPath: part))
            let pulled = try #require(try images().first { $0.name == small })
            #expect(pulled.format == "raw" && pulled.size == UInt64(size) && pulled.sha256 == sha && pulled.source == server.url("small.img") && pulled.usedBy.isEmpty)
            let connection = try await harness.connect()
            let volume = try await connection.storageVolume(path: pulled.path)
            #expect(try await volume.download() == (try Data(contentsOf: served.appendingPathComponent("small.img"))), "the volume holds the image")

            // A wrong checksum: exit 1 naming both sums; nothing kept, not even the download.
            let zeros = String(repeating: "0", count: 64)
            let corrupt = try vmctl("image", "pull", server.url("small.img"), "--sha256", zeros, "--name", "bad-\(id)")
            #expect(corrupt.status == 1)
            #expect(corrupt.standardError.contains("checksum mismatch for \(server.url("small.img")): expected sha256 \(zeros), got \(sha); the download was deleted"),
                    "\(corrupt.standardError)")
            #expect(try images().map(\.name) == [small])
            #expect(!FileManager.default.fileExists(atPath: scratch.appendingPathComponent("images/bad-\(id).part").path))
            // Usage errors before anything: no checksum, a bad one, an unknown name.
            for (arguments, words) in [(["image", "pull", server.url("other.img")], "no checksum for \(server.url("other.img")): vmctl uses only images it has checked"),
                                       (["image", "pull", server.url("other.img"), "--sha256", "12ab"], "invalid SHA-256 '12ab'"),
                                       (["image", "pull", "nosuch-\(id)"], "unknown image 'nosuch-\(id)'")] {
                let refused = try harness.vmctlInNamespace(arguments, environment: environment)
                #expect(refused.status == 64 && refused.standardError.contains(words), "\(arguments): \(refused.standardError)")
            }

            // Two pulls of one image at once: one download; the other finds it done.
            let together = try runTogether("/usr/sbin/ip", [0, 1].map { _ in
                ["netns", "exec", harness.netns, try vmctlExecutable(), "image", "pull", server.url("other.img"), "--sha256", otherSHA, "--name", twice, "-q"]
            }, environment: ProcessInfo.processInfo.environment.merging(environment) { $1 })
            #expect(together.results.allSatisfy { $0.status == 0 && $0.standardOutput == "\(twice)\n" }, "\(together.results)")
            #expect(server.requests(for: "other.img").count == 1)
            #expect(together.results.contains { $0.standardError.contains("already here") })

            // A checksum list (SHA512SUMS, as Debian publishes) instead of a digest given.
            let sha512 = String(try runProcess("/usr/bin/sha512sum", [served.appendingPathComponent("other.img").path]).standardOutput.prefix(128))
            try Data("\(String(repeating: "0", count: 128))  small.img\n\(sha512)  other.img\n".utf8).write(to: served.appendingPathComponent("SHA512SUMS"))
            let listed = try vmctl("image", "pull", server.url("other.img"), "--checksums", server.url("SHA512SUMS"), "--name", "sums-\(id)", "--format", "json")
            #expect(listed.status == 0 && listed.standardOutput.contains("\"sha256\" : \"\(otherSHA)\""), "\(listed.standardError)")
            #expect(try vmctl("image", "rm", "sums-\(id)").status == 0)

            // A VM on the image (by name): rm is refused naming it; the VM's disk stands on it.
            let made = try vmctl("create", vm, "--image", small, "--kernel", harness.kernel, "--initrd", harness.initrd,
                                 "--cmdline", "console=ttyS0", "--memory", "160", "-q")
            try #require(made.status == 0, "\(made.standardError)")
            let refused = try vmctl("image", "rm", small)
            #expect(refused.status == 1 && refused.standardError.contains("image \(small) is in use by \(vm); destroy those VMs first"), "\(refused.standardError)")
            #expect(try images().first { $0.name == small }?.usedBy == [vm])
            let shown = try JSONDecoder().decode(Shown.self, from: Data(try vmctl("show", vm, "--format", "json").standardOutput.utf8))
            #expect(shown.disks.first { $0.target == "vda" }?.backingPath == pulled.path)
            // No --ssh-key and no key in $HOME: vmctl's own pair, private to root.
            let ownKey = scratch.appendingPathComponent("ssh/id_ed25519").path
            #expect((try FileManager.default.attributesOfItem(atPath: ownKey)[.posixPermissions] as? Int) == 0o600)

            // Power: the busybox guest ignores ACPI, so stop powers it off after --grace and a
            // plain reboot does nothing; --force resets it, and the console log shows two boots.
            func state() throws -> String {
                try JSONDecoder().decode(Shown.self, from: Data(try vmctl("show", vm, "--format", "json").standardOutput.utf8)).state
            }
            func boots() async throws -> Int {
                try vmctl("console", vm, "--log").standardOutput.components(separatedBy: "vmctl-guest: booted").count - 1
            }
            #expect(try await eventually(timeout: .seconds(60)) { try await boots() == 1 ? true : nil } == true, "the console log shows the boot")
            // Attached to the console, Ctrl-] leaves it.
            let attached = try runProcess("/usr/sbin/ip", ["netns", "exec", harness.netns, try vmctlExecutable(), "console", vm],
                                          environment: ProcessInfo.processInfo.environment.merging(environment) { $1 }, input: "\u{1d}")
            #expect(attached.status == 0 && attached.standardError.contains("connected to \(vm)'s console (Ctrl-] leaves)")
                    && attached.standardError.contains("left \(vm)'s console"), "\(attached.standardError)")
            #expect(try vmctl("reboot", vm, "--force").standardOutput == "\(vm): rebooted\n")
            let rebooted = try await eventually(timeout: .seconds(60)) { try await boots() == 2 ? true : nil }
            let log = try vmctl("console", vm, "--log").standardOutput
            #expect(rebooted == true, "a second boot after reboot --force: \(log.suffix(500))")
            let stopping = ContinuousClock.now
            #expect(try vmctl("stop", vm, "--grace", "1").standardOutput == "\(vm): stopped\n")
            #expect(ContinuousClock.now - stopping >= .seconds(1), "powered off after the grace period, not before")
            #expect(try state() == "shutoff")
            #expect(try vmctl("stop", vm).standardOutput == "\(vm): already shut off\n")
            let notRunning = try vmctl("reboot", vm)
            #expect(notRunning.status == 1 && notRunning.standardError.contains("cannot reboot VM \(vm): it is shut off"), "\(notRunning.standardError)")
            let both = try vmctl("start", vm, "nosuch-\(id)", "--format", "json")
            #expect(both.status == 1 && both.standardError.contains("cannot start VM nosuch-\(id): no VM named nosuch-\(id)"), "\(both.standardError)")
            #expect(try state() == "running", "the VM that exists was started")
            #expect(try vmctl("start", vm).standardOutput == "\(vm): already running\n")

            // Destroyed, the VM frees the image; rm deletes its volume.
            #expect(try vmctl("destroy", vm, "--force").status == 0)
            #expect(try vmctl("image", "rm", small).standardOutput == "\(small)\n")
            await #expect(throws: LibvirtError.self) { try await connection.storageVolume(path: pulled.path) }
            #expect(try vmctl("image", "rm", small).status == 1, "already gone")

            // Import: a local file, checked the same way; a name is one image; a non-image refused.
            let local = served.appendingPathComponent("small.img").path
            let importedImage = try vmctl("image", "import", local, "--name", imported, "--user", "tester", "--format", "json")
            try #require(importedImage.status == 0, "\(importedImage.standardError)")
            #expect(try images().first { $0.name == imported }.map { $0.sha256 == sha && $0.source == "file://\(local)" && $0.user == "tester" } == true)
            let again = try vmctl("image", "import", local, "--name", imported)
            #expect(again.status == 1 && again.standardError.contains("image \(imported) already exists"), "\(again.standardError)")
            let text = scratch.appendingPathComponent("notes.txt")
            try Data("not a disk\n".utf8).write(to: text)
            let notImage = try vmctl("image", "import", text.path, "--name", "txt-\(id)")
            #expect(notImage.status == 64 && notImage.standardError.contains("neither qcow2 nor a disk image"), "\(notImage.standardError)")
            // A user catalogue from $VMCTL_CATALOGUE: a name, its checksum and its user.
            let catalogue = scratch.appendingPathComponent("images.yaml")
            try Data("cat-\(id):\n  url: \(server.url("other.img"))\n  sha256: \(otherSHA)\n  user: catuser\n".utf8).write(to: catalogue)
            let byName = try harness.vmctlInNamespace(["image", "pull", "cat-\(id)", "--format", "json"],
                                                      environment: environment.merging(["VMCTL_CATALOGUE": catalogue.path]) { $1 })
            #expect(byName.status == 0 && byName.standardOutput.contains("\"user\" : \"catuser\""), "\(byName.standardError)")
            #expect(try vmctl("image", "rm", "cat-\(id)").status == 0)
            let unknown = try vmctl("create", "x-\(id)", "--image", "nosuch-\(id)", "--memory", "160")
            #expect(unknown.status == 1 && unknown.standardError.contains("no image or file named nosuch-\(id)"), "\(unknown.standardError)")
        }

        @Test("vmctl run: a guest without SSH times out with 125, and SIGINT while it waits exits 130; neither leaves a VM, an address or a volume",
              .timeLimit(.minutes(3)))
        func runLeavesNothing() async throws {
            let harness = try Harness.require()
            let id = uniqueSuffix()
            let scratch = try harness.scratch("run-\(id)")
            let environment = ["VMCTL_CONNECT": harness.uri, "VMCTL_STATE": scratch.appendingPathComponent("state.sqlite").path,
                               "HOME": scratch.path]
            let connection = try await harness.connect()
            let subnet = "10.221.\(Int.random(in: 10...250))"
            let network = try await harness.makeNetwork(on: connection, name: "rn-\(id)", mode: "nat", subnet: subnet)
            #expect(try harness.vmctlInNamespace(["pool", "create", "rp-\(id)", "--network", "rn-\(id)", "--range", "\(subnet).10-\(subnet).20", "-q"],
                                                 environment: environment).status == 0)
            let guest = ["--kernel", harness.kernel, "--initrd", harness.initrd, "--cmdline", "console=ttyS0 quiet", "--memory", "160",
                         "--network", "rn-\(id),pool=rp-\(id)"]
            func leftovers(_ name: String) async throws -> [String] {
                var found: [String] = []
                if try await connection.domains().contains(where: { $0.name == name }) { found.append("domain") }
                let pool = try await connection.storagePool(named: "vmctl")
                found += try await pool.volumes().map(\.name).filter { $0.hasPrefix(name + "-") }
                let used = try harness.vmctlInNamespace(["pool", "show", "rp-\(id)", "--format", "json"], environment: environment).standardOutput
                if !used.contains("\"used\" : 0") { found.append("an address: \(used)") }
                return found
            }

            // The busybox guest has no SSH server: the wait runs out, vmctl's own failure.
            let timedOut = try harness.vmctlInNamespace(["run", "--name", "rt-\(id)", "--timeout", "25"] + guest + ["--", "true"], environment: environment)
            #expect(timedOut.status == 125, "\(timedOut.standardError)")
            #expect(timedOut.standardError.contains("SSH server did not answer") && timedOut.standardError.contains("vmctl console rt-\(id) --log"),
                    "\(timedOut.standardError)")
            #expect(try await leftovers("rt-\(id)").isEmpty)

            // SIGINT while it waits: the VM is destroyed, 128 + 2.
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            process.arguments = ["netns", "exec", harness.netns, try vmctlExecutable(), "run", "--name", "ri-\(id)"] + guest + ["--", "true"]
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            let errors = scratch.appendingPathComponent("run.stderr")
            _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
            process.standardError = try FileHandle(forWritingTo: errors)
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let running = try await eventually(timeout: .seconds(60)) { () -> Bool? in
                try await connection.domains([.active]).contains { $0.name == "ri-\(id)" } ? true : nil
            }
            try #require(running == true, "the run's VM never ran: \((try? String(contentsOf: errors, encoding: .utf8)) ?? "")")
            try await Task.sleep(for: .seconds(2))  // past the create, into the wait for SSH
            kill(process.processIdentifier, SIGINT)  // ip netns exec became vmctl
            process.waitUntilExit()
            let stderr = (try? String(contentsOf: errors, encoding: .utf8)) ?? ""
            #expect(process.terminationStatus == 130, "\(stderr)")
            #expect(stderr.contains("vmctl: interrupted; VM ri-\(id) destroyed"), "\(stderr)")
            #expect(try await leftovers("ri-\(id)").isEmpty)
            _ = try harness.vmctlInNamespace(["pool", "destroy", "rp-\(id)"], environment: environment)
            try await harness.removeNetwork(network)
        }
    }
}
