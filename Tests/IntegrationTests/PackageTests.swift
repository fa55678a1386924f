import Foundation
import Libvirt
import Provisioning
import Testing
import TestSupport

extension Integration {
    /// The .deb as a libvirt host without Swift would have it: scripts/package-root installs it
    /// with dpkg into an overlay of / where /opt/swift and the build tree are hidden, and runs
    /// the installed /usr/bin/vmctl there against the harness's libvirtd.
    @Suite("the Debian package")
    struct PackageTests {
        @Test("the installed package runs without the toolchain: --version, info, create, list, destroy")
        func installedPackage() async throws {
            let harness = try Harness.require()
            let package = try requiredVariable("VMCTL_TEST_PACKAGE", "the package test needs the .deb of scripts/package")
            let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            let scratch = try harness.scratch("package-\(uniqueSuffix())")
            // The guest's files must be where the root can see them: the build tree is hidden there.
            for (file, source) in [("vmlinuz", harness.kernel), ("initrd.img", harness.initrd)] {
                try FileManager.default.copyItem(atPath: source, toPath: scratch.appendingPathComponent(file).path)
            }
            let name = "pkg-\(uniqueSuffix())"
            func installed(_ script: String) throws -> ProcessResult {
                try runProcess("/usr/sbin/ip", ["netns", "exec", harness.netns, repository.appendingPathComponent("scripts/package-root").path,
                                                package, "/bin/sh", "-c", script],
                               environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "VMCTL_PACKAGE_ROOT_BIND": harness.directory.path,
                                             "VMCTL_CONNECT": harness.uri, "VMCTL_STATE": scratch.appendingPathComponent("state.db").path])
            }

            // Nothing of Swift is visible in the root (the toolchain's swift, the build tree's
            // manifest), and the binary needs nothing of it.
            let root = try installed("""
                for path in /opt/swift/usr/bin/swift \(repository.path)/Package.swift; do test -e $path && echo visible: $path; done
                ldd /usr/bin/vmctl; vmctl --version
                """)
            #expect(root.status == 0, "\(root.standardError)")
            #expect(!root.standardOutput.contains("visible:"), "\(root.standardOutput)")
            #expect(!root.standardOutput.lowercased().contains("swift"), "a Swift library is linked: \(root.standardOutput)")
            let commit = try runProcess("/usr/bin/git", ["-C", repository.path, "rev-parse", "--short=12", "HEAD"]).standardOutput
                .trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(root.standardOutput.contains("0.2.0 (commit \(commit)"), "\(root.standardOutput)")
            for file in ["/usr/share/man/man1/vmctl.1.gz", "/usr/share/bash-completion/completions/vmctl",
                         "/usr/share/vmctl/templates/domain.xml.mustache"] {
                #expect(try installed("test -s \(file)").status == 0, "\(file) is not installed")
            }

            let info = try installed("vmctl info --format json")
            #expect(info.status == 0, "\(info.standardError)")
            #expect(info.standardOutput.contains("\"uri\" : \"\(harness.uri)\""), "\(info.standardOutput)")

            let cycle = try installed("""
                vmctl create \(name) --kernel \(scratch.path)/vmlinuz --initrd \(scratch.path)/initrd.img --no-cloud-init -q &&
                vmctl list -q && vmctl destroy \(name) --force && vmctl list -q
                """)
            #expect(cycle.status == 0, "\(cycle.standardError)")
            #expect(cycle.standardOutput.split(separator: "\n").map(String.init) == [name, name, name], "\(cycle.standardOutput)")
            let connection = try await harness.connect()
            #expect(try await connection.domainIfExists(name) == nil)
        }
    }
}
