import Foundation
import HostFirewall
import Testing
@testable import Provisioning

@Suite("Images and access, without a daemon")
struct AccessTests {
    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "" } catch { return "\(error)" }
    }

    @Test("checksum lists: GNU and BSD styles, SHA-256 and SHA-512, the right file only")
    func checksumLists() {
        let sha256 = String(repeating: "a", count: 64), sha512 = String(repeating: "B", count: 128)
        let gnu = "\(String(repeating: "1", count: 64))  other.qcow2\n\(sha256)  debian-12-generic-amd64.qcow2\n"
        #expect(Checksum.find("debian-12-generic-amd64.qcow2", inList: gnu) == Checksum(.sha256, sha256))
        #expect(Checksum.find("debian-12-generic-amd64.qcow2", inList: "\(sha512) *./debian-12-generic-amd64.qcow2\n") == Checksum(.sha512, sha512.lowercased()))
        let bsd = "# comment\nSHA256 (AlmaLinux-9.qcow2) = \(sha256)\nSHA256 (AlmaLinux-9.qcow2.sig) = \(String(repeating: "2", count: 64))\n"
        #expect(Checksum.find("AlmaLinux-9.qcow2", inList: bsd) == Checksum(.sha256, sha256))
        #expect(Checksum.find("debian-12-generic-amd64.qcow2", inList: bsd) == nil)
        #expect(Checksum.find("x.img", inList: "zz  x.img\nSHA256 (x.img) = short\n") == nil, "not a digest")
    }

    @Test("a user catalogue adds and replaces names; bad entries are refused by name")
    func catalogue() throws {
        let user = try ImageCatalogue(yaml: """
            debian-12:
              url: http://mirror.test/d12.qcow2
              sha256: \(String(repeating: "c", count: 64))
              user: admin
            mine:
              url: https://images.test/mine.img
              checksums: https://images.test/SHA256SUMS
            """, file: "images.yaml")
        let merged = ImageCatalogue.builtIn.adding(user)
        #expect(merged.entries["debian-12"]?.url == "http://mirror.test/d12.qcow2" && merged.entries["debian-12"]?.user == "admin")
        #expect(merged.entries["mine"]?.checksums == "https://images.test/SHA256SUMS")
        #expect(merged.entries["ubuntu-24.04"]?.user == "ubuntu")
        #expect(message { _ = try ImageCatalogue(yaml: "Bad Name:\n  url: http://x/y\n", file: "f.yaml") }.contains("invalid image name 'Bad Name'"))
        #expect(message { _ = try ImageCatalogue(yaml: "x:\n  url: ftp://x/y\n", file: "f.yaml") }.contains("x's url 'ftp://x/y' is not http(s)"))
        #expect(message { _ = try ImageCatalogue(yaml: "x: [1, 2]\n", file: "f.yaml") }.contains("invalid image catalogue f.yaml"))
        #expect(try ImageCatalogue(yaml: "", file: "empty.yaml").entries.isEmpty)
        // Every built-in entry is pullable: an http(s) URL and a checksum list.
        for (name, entry) in ImageCatalogue.builtIn.entries {
            #expect(entry.url.hasPrefix("https://") && entry.checksums?.hasPrefix("https://") == true && entry.user != nil, "\(name)")
        }
    }

    @Test("pull requests: a URL's image is named after its file, a catalogue name after itself; a checksum is required")
    func pullRequests() throws {
        let sha = String(repeating: "d", count: 64)
        let byURL = try Images.PullRequest(source: "https://x.test/a/Debian-12_generic.QCOW2", name: nil, sha256: sha, checksums: nil, catalogue: .builtIn)
        #expect(byURL.name == "debian-12_generic" && byURL.sha256 == sha && byURL.user == nil)
        let byName = try Images.PullRequest(source: "debian-12", name: "bookworm", sha256: nil, checksums: nil, catalogue: .builtIn)
        #expect(byName.name == "bookworm" && byName.user == "debian" && byName.checksums?.lastPathComponent == "SHA512SUMS")
        let overridden = try Images.PullRequest(source: "debian-12", name: nil, sha256: sha, checksums: nil, catalogue: .builtIn)
        #expect(overridden.sha256 == sha && overridden.checksums == nil, "a checksum given replaces the catalogue's")
        #expect(message { _ = try Images.PullRequest(source: "https://x.test/a.qcow2", name: nil, sha256: nil, checksums: nil, catalogue: .builtIn) }
            .contains("no checksum for https://x.test/a.qcow2"))
        #expect(message { _ = try Images.PullRequest(source: "debian-99", name: nil, sha256: nil, checksums: nil, catalogue: .builtIn) }
            .contains("unknown image 'debian-99'"))
        #expect(message { _ = try Images.PullRequest(source: "debian-12", name: "UPPER", sha256: nil, checksums: nil, catalogue: .builtIn) }
            .contains("invalid image name 'UPPER'"))
        #expect(message { _ = try Images.PullRequest(source: "debian-12", name: nil, sha256: "xyz", checksums: nil, catalogue: .builtIn) }
            .contains("invalid SHA-256 'xyz'"))
        #expect(message { _ = try Images.PullRequest(source: "debian-12", name: nil, sha256: nil, checksums: "file:///x", catalogue: .builtIn) }
            .contains("invalid checksums URL 'file:///x'"))
    }

    @Test("the ssh command line: vmctl's known_hosts under the VM's UUID, batch mode for exec, each argument one word, a jump through a qemu+ssh host")
    func sshCommandLine() {
        let login = SSHInvocation(address: "192.0.2.10", user: "debian", hostKeyAlias: SSHFiles.alias(of: "ABC"), knownHosts: "/var/lib/vmctl/ssh/known_hosts",
                                  identities: ["/var/lib/vmctl/ssh/id_ed25519"])
        #expect(login.arguments == ["-o", "UserKnownHostsFile=/var/lib/vmctl/ssh/known_hosts", "-o", "StrictHostKeyChecking=accept-new",
                                    "-o", "HostKeyAlias=vmctl-abc", "-o", "HashKnownHosts=no", "-o", "LogLevel=ERROR",
                                    "-i", "/var/lib/vmctl/ssh/id_ed25519", "-l", "debian", "192.0.2.10"])
        var exec = login
        exec.batch = true
        exec.jumpHost = SSHInvocation.jumpHost(of: "qemu+ssh://ops@hv1.test:2222/system")
        exec.command = ["sh", "-c", "echo 'a b'; exit 7"]
        #expect(Array(exec.arguments.suffix(12)) == ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-T", "-J", "ops@hv1.test:2222",
                                                     "-l", "debian", "192.0.2.10", "--", #"sh -c 'echo '\''a b'\''; exit 7'"#])
        #expect(SSHInvocation.jumpHost(of: "qemu:///system") == nil)
        #expect(SSHInvocation.jumpHost(of: "qemu+ssh://hv2/system") == "hv2")
        #expect(shellQuoted("plain/path-1.2") == "plain/path-1.2" && shellQuoted("") == "''" && shellQuoted("$HOME") == "'$HOME'")
    }

    @Test("known_hosts: only the destroyed VM's entries go")
    func knownHosts() {
        let text = "vmctl-a ssh-ed25519 AAAA1\nvmctl-b ssh-ed25519 AAAA2\nvmctl-a,10.0.0.5 ecdsa-sha2-nistp256 AAAA3\n"
        #expect(knownHostsLines(text, without: "vmctl-a") == "vmctl-b ssh-ed25519 AAAA2\n")
        #expect(knownHostsLines(text, without: "vmctl-c") == text)
    }

    @Test("the SSH address: IPv4 first, reserved before leased, never link-local")
    func sshAddress() {
        #expect(VMView.sshAddress(among: ["2001:db8::5", "192.0.2.7", "192.0.2.8"]) == "192.0.2.7")
        #expect(VMView.sshAddress(among: ["fe80::1", "2001:db8::5"]) == "2001:db8::5")
        #expect(VMView.sshAddress(among: []) == nil)
    }

    @Test("vmctl's SSH files sit beside the state file, or in the data directory of a client of a PostgreSQL store")
    func sshFiles() {
        let files = SSHFiles(directory: State.localDirectory(for: "/var/lib/vmctl/state.sqlite"))
        #expect(files.ownKey == "/var/lib/vmctl/ssh/id_ed25519" && files.knownHosts == "/var/lib/vmctl/ssh/known_hosts")
        #expect(State.localDirectory(for: "state.sqlite") == ".")
        #expect(State.localDirectory(for: "postgres://vmctl@db.example/fleet") == State.defaultLocalDirectory)
        #expect(State.localDirectory(for: "postgres://vmctl@db.example/fleet").hasSuffix("/vmctl"))
    }
}

@Suite("Process tags of the create journal")
struct ProcessTagTests {
    @Test("this process is alive; a dead PID is not; a process of another machine cannot be judged, so counts as alive")
    func liveness() throws {
        let tag = ProcessTag.current
        #expect(tag.split(separator: ":").count == 4 && tag.hasPrefix(ProcessTag.machine + ":"))
        #expect(ProcessTag.isAlive(tag))
        #expect(!ProcessTag.isElsewhere(tag))
        // vmctl 0.2 wrote no machine: such a tag is this machine's.
        #expect(ProcessTag.isAlive(tag.split(separator: ":").dropFirst().joined(separator: ":")))
        let parts = tag.split(separator: ":")
        let reusedPID = "\(parts[0]):\(parts[1]):\(parts[2]):1"
        #expect(!ProcessTag.isAlive(reusedPID))
        let elsewhere = "0123456789abcdef0123456789abcdef:\(parts[1]):\(parts[2]):\(parts[3])"
        #expect(ProcessTag.isAlive(elsewhere) && ProcessTag.isElsewhere(elsewhere))
    }
}

@Suite("The host side of a qemu+ssh connection")
struct SSHHostTests {
    @Test("a qemu+ssh URI's user, host, port, keyfile and no_verify become ssh's; other URIs have no ssh host")
    func destination() throws {
        let host = try #require(SSHHost(uri: "qemu+ssh://root@hv1.example:2222/system?keyfile=/k/id&no_verify=1&socket=/run/libvirt/libvirt-sock"))
        #expect(host.destination == SSHDestination(user: "root", host: "hv1.example", port: 2222, keyFile: "/k/id", noVerify: true))
        #expect(host.destination.arguments == ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-p", "2222", "-i", "/k/id",
                                               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                                               "root@hv1.example"])
        #expect(host.routesUnavailable(bridge: "virbr1") == nil)
        #expect(SSHHost(uri: "qemu+ssh://ops@hv2/system")?.routesUnavailable(bridge: "virbr1") == "changing routes on hv2 needs root, and qemu+ssh://ops@hv2/system logs in as ops")
        #expect(SSHHost(uri: "qemu+ssh://hv2/system")?.destination.arguments.last == "hv2")
        #expect(SSHHost(uri: "qemu:///system") == nil && SSHHost(uri: "qemu+tls://hv3/system") == nil)
        #expect(SSHDestination.quoted("it's") == "'it'\\''s'")
    }
}
