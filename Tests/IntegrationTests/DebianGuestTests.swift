import Foundation
import Libvirt
import Testing
import TestSupport

extension Integration {
    /// The real guest: Debian 12 with systemd, cloud-init and sshd (scripts/build-debian-guest),
    /// created by `vmctl create` and reached over SSH as a user would.
    @Suite("Debian guest")
    struct DebianGuestTests {
        typealias Setup = VMLifecycleTests.Setup

        /// Runs `command` in the guest over SSH from the harness's namespace, as `user` with `key`.
        func ssh(_ harness: Harness, _ user: String, _ address: String, key: URL, _ command: String) throws -> ProcessResult {
            try runProcess("/usr/sbin/ip", ["netns", "exec", harness.netns, "ssh", "-i", key.path,
                                            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                                            "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "\(user)@\(address)", command])
        }

        @Test("vmctl create from the Debian image: SSH with the key given at create, as cloud-init's default user; hostname, address and route read from inside",
              .timeLimit(.minutes(6)))
        func sshIntoCloudInitGuest() async throws {
            let debian = try Harness.debianGuest()
            try await Setup.with { setup in
                let name = "idg-\(setup.id)"
                let key = setup.scratch.appendingPathComponent("id_ed25519")
                #expect(try runProcess("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "vmctl-test", "-f", key.path]).status == 0)
                let console = setup.scratch.appendingPathComponent("debian-console.log")
                let started = ContinuousClock.now
                let created = try setup.vmctl([
                    "create", name, "--image", debian.appendingPathComponent("debian.qcow2").path,
                    "--kernel", debian.appendingPathComponent("vmlinuz").path, "--initrd", debian.appendingPathComponent("initrd.img").path,
                    "--cmdline", "root=/dev/vda rw console=ttyS0", "--ssh-key", key.path + ".pub", "--memory", "1G",
                    "--network", "ivn-\(setup.id),pool=pn-\(setup.id)", "--console-log", console.path, "--wait", "ip", "--timeout", "240", "-q"])
                try #require(created.status == 0, "\(created.standardError)")
                let leased = ContinuousClock.now - started
                let address = "\(setup.natSubnet).10"  // the pool's first address
                let answer = try await eventually(timeout: .seconds(240), every: .seconds(3)) { () -> ProcessResult? in
                    let result = try ssh(setup.harness, "debian", address, key: key, "hostname; ip -4 -o addr show scope global; ip -4 route")
                    return result.status == 0 ? result : nil
                }
                let text = try #require(answer?.standardOutput, "no SSH as debian@\(address); console: \((try? String(contentsOf: console, encoding: .utf8))?.suffix(3000) ?? "")")
                print("debian guest: --wait ip returned after \(leased), SSH answered after \(ContinuousClock.now - started)")
                let lines = text.split(separator: "\n").map(String.init)
                #expect(lines.first == name, "hostname: \(text)")
                #expect(text.contains("inet \(address)/24"), "\(text)")
                #expect(text.contains("default via \(setup.natSubnet).1"), "\(text)")
                // The key is the default user's: as root it runs nothing (cloud-init's disable_root
                // answers "Please login as the user debian" and exits non-zero).
                let root = try ssh(setup.harness, "root", address, key: key, "echo vmctl-ran-as-root")
                #expect(root.status != 0 && !root.standardOutput.contains("vmctl-ran-as-root"), "\(root.standardOutput)\(root.standardError)")
                #expect(try setup.vmctl("destroy", name, "--force").status == 0)
                try await setup.expectNothingLeft(of: name)
            }
        }
    }
}
