import Foundation
import Libvirt
import LibvirtXML
import Testing
import TestSupport

/// Every integration suite nests in this one, so that they run one at a time: they share one
/// libvirtd (counts must not move under a test) and a 2-core machine (one TCG guest at a time).
@Suite("Integration", .serialized)
enum Integration {}

/// The private libvirtd that scripts/test starts (scripts/harness) and the test guest
/// (scripts/build-test-guest). The integration tests never skip: without them they fail and say
/// how to run them.
struct Harness {
    /// `qemu:///system?socket=...` of the harness's libvirtd.
    let uri: String
    /// The harness's network namespace, where bridges and guests live.
    let netns: String
    /// A scratch directory of the harness (removed by `scripts/harness stop`).
    let directory: URL
    let kernel: String
    let initrd: String

    static func require() throws -> Harness {
        func value(_ name: String) throws -> String { try requiredVariable(name, "the integration tests need the private libvirtd") }
        let guest = try value("VMCTL_TEST_GUEST")
        return Harness(
            uri: try value("VMCTL_CONNECT"),
            netns: try value("VMCTL_HARNESS_NETNS"),
            directory: URL(fileURLWithPath: try value("VMCTL_HARNESS_DIR")),
            kernel: guest + "/vmlinuz",
            initrd: guest + "/initrd.img")
    }

    /// The Debian test guest (scripts/build-debian-guest): `debian.qcow2`, `vmlinuz`, `initrd.img`.
    static func debianGuest() throws -> URL {
        URL(fileURLWithPath: try requiredVariable("VMCTL_TEST_DEBIAN", "the Debian guest tests need scripts/build-debian-guest"))
    }

    func connect() async throws -> Connection {
        try await Connection.open(uri)
    }

    /// scripts/harness's world: the provider's router namespace and the internet host's, and the
    /// addresses it gives them (documentation ranges only).
    struct World {
        let provider: String
        let internet: String
        /// The server's (the harness namespace's) main address on the uplink, and the internet host's.
        static let serverAddress = "198.51.100.242"
        static let internetAddress = "198.51.100.250"
        static let internetAddress6 = "2001:db8:0:2::2"
        /// Routed by the provider to the server's main address.
        static let routedIPv4 = "203.0.113.0/24"
        static let routedIPv6 = "2001:db8:f000::/36"
    }

    func world() throws -> World {
        let environment = ProcessInfo.processInfo.environment
        guard let provider = environment["VMCTL_HARNESS_PROVIDER"], let internet = environment["VMCTL_HARNESS_INTERNET"] else {
            throw TestSupportError("VMCTL_HARNESS_PROVIDER and VMCTL_HARNESS_INTERNET are not set: run the tests with scripts/test")
        }
        return World(provider: provider, internet: internet)
    }

    /// Starts a TCP listener on `port` (IPv4 and IPv6) in `namespace` that answers each
    /// connection with `seen ADDRESS`, the address the connection came from; returns its PID
    /// (stop it with `stopBackground`).
    func listenForSources(in namespace: String, port: Int) throws -> Int32 {
        try startBackground("/usr/sbin/ip", ["netns", "exec", namespace, "python3", "-c", """
            import socket
            s = socket.socket(socket.AF_INET6)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", \(port)))
            s.listen(16)
            while True:
                c, a = s.accept()
                c.sendall(("seen " + a[0].removeprefix("::ffff:") + "\\n").encode())
                c.close()
            """])
    }

    /// Runs `command` over SSH in a guest, from `namespace`, as `user` with `key`: plain `ssh`.
    func ssh(from namespace: String, _ user: String, _ address: String, port: Int = 22, key: URL, _ command: String) throws -> ProcessResult {
        try runProcess("/usr/sbin/ip", ["netns", "exec", namespace, "ssh", "-i", key.path, "-p", "\(port)",
                                        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                                        "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "\(user)@\(address)", command])
    }

    /// Polls until SSH to the guest answers `command` (exit 0), and returns its output.
    func waitForSSH(from namespace: String, _ user: String, _ address: String, port: Int = 22, key: URL, _ command: String,
                    timeout: Duration = .seconds(300)) async throws -> String? {
        try await eventually(timeout: timeout, every: .seconds(3)) { () -> String? in
            let result = try ssh(from: namespace, user, address, port: port, key: key, command)
            return result.status == 0 ? result.standardOutput : nil
        }
    }

    /// A directory of the harness's for one test.
    func scratch(_ name: String) throws -> URL {
        let url = directory.appendingPathComponent("tests").appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// A started dir storage pool in the test's scratch directory.
    func makeDirPool(_ name: String, in scratch: URL, on connection: Connection) async throws -> StoragePool {
        let pool = try await connection.defineStoragePool(xml: """
            <pool type='dir'><name>\(name)</name>
              <target><path>\(scratch.appendingPathComponent("pool").path)</path></target></pool>
            """)
        try await pool.build()
        try await pool.start()
        return pool
    }

    /// Stops, deletes (its now empty directory) and undefines a pool made by `makeDirPool`.
    func removeDirPool(_ pool: StoragePool) async throws {
        try await pool.destroy()
        try await pool.delete()
        try await pool.undefine()
    }

    /// The test guest's domain XML: TCG, direct kernel boot, one virtio NIC with a fixed MAC, an
    /// optional virtio disk, the serial console written to `console`.
    func guestXML(name: String, network: String, mac: String, disk: String? = nil, console: URL, cmdline: String = "") -> String {
        let diskXML = disk.map {
            """
            <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
              <source file='\($0)'/><target dev='vda' bus='virtio'/></disk>
            """
        } ?? ""
        return """
            <domain type='qemu'><name>\(name)</name>
              <memory unit='MiB'>192</memory><vcpu>1</vcpu>
              <os><type arch='x86_64' machine='pc'>hvm</type>
                <kernel>\(kernel)</kernel><initrd>\(initrd)</initrd>
                <cmdline>console=ttyS0 quiet \(cmdline)</cmdline></os>
              <devices>
                \(diskXML)
                <interface type='network'><source network='\(network)'/>
                  <mac address='\(mac)'/><model type='virtio'/></interface>
                <serial type='pty'><log file='\(console.path)' append='off'/><target port='0'/></serial>
                <console type='pty'><target type='serial' port='0'/></console>
              </devices></domain>
            """
    }

    /// Waits until the guest's console shows the lease line for `mac`, and returns the console.
    func waitForConsoleLease(_ console: URL, mac: String, address: String, prefix: Int = 24, router: String) async throws -> String? {
        let line = "vmctl-guest: lease eth0 mac=\(mac) ip=\(address)/\(prefix) router=\(router)"
        return try await eventually(timeout: .seconds(90)) { () -> String? in
            let text = (try? String(contentsOf: console, encoding: .utf8)) ?? ""
            return text.contains(line) ? text : nil
        }
    }

    /// A started, persistent network with DHCP on `SUBNET.0/24` (gateway `.1`, dynamic range
    /// `.100-.200`) and, with `ipv6`, on `IPV6::/64` with a DHCPv6 range. Its bridge is named
    /// after the last characters of `name`.
    func makeNetwork(on connection: Connection, name: String, mode: String, subnet: String, ipv6: String? = nil) async throws -> Network {
        let forward = mode == "isolated" ? "" : "<forward mode='\(mode)'/>"
        let v6 = ipv6.map {
            "<ip family='ipv6' address='\($0)::1' prefix='64'><dhcp><range start='\($0)::1000' end='\($0)::1fff'/></dhcp></ip>"
        } ?? ""
        let network = try await connection.defineNetwork(xml: """
            <network><name>\(name)</name>\(forward)<bridge name='vb\(name.suffix(10))'/>
              <ip address='\(subnet).1' prefix='24'>
                <dhcp><range start='\(subnet).100' end='\(subnet).200'/></dhcp></ip>
              \(v6)
            </network>
            """)
        try await network.start()
        return network
    }

    func removeNetwork(_ network: Network) async throws {
        try await network.destroy()
        try await network.undefine()
    }

    /// "CLIENT ADDRESS" (client: MAC or DUID) of every DHCP host entry, live or persistent.
    func hostEntries(_ network: Network, inactive: Bool) async throws -> Set<String> {
        let definition = try NetworkDefinition(xml: try await network.xml(inactive: inactive))
        return Set(definition.ips.flatMap { ip in
            ip.hosts.map { "\($0.mac?.description ?? $0.id ?? "-") \($0.address?.description ?? "-")" }
        })
    }

    /// A second test host: a network namespace of the test's own, joined to the harness's by a
    /// veth pair made inside the harness's namespace (the machine's own is never touched), with
    /// `UPLINK.1` on the harness's side and `UPLINK.2` on the peer's, and with `uplink6`
    /// `UPLINK6::1/64` and `UPLINK6::2/64` too. Delete it with `removePeer`.
    func makePeer(_ name: String, uplink: String, uplink6: String? = nil, suffix: String) throws {
        func check(_ result: ProcessResult, _ what: String) throws {
            guard result.status == 0 else { throw TestSupportError("\(what): \(result.standardError)") }
        }
        try check(try runProcess("/usr/sbin/ip", ["netns", "add", name]), "netns add")
        try check(try ip("link", "add", "vh\(suffix)", "type", "veth", "peer", "name", "vp\(suffix)", "netns", name), "veth")
        try check(try ip("addr", "add", "\(uplink).1/24", "dev", "vh\(suffix)"), "address")
        var peer = [["addr", "add", "\(uplink).2/24", "dev", "vp\(suffix)"]]
        if let uplink6 {
            // nodad: usable at once, not after duplicate address detection's second or two.
            try check(try ip("-6", "addr", "add", "\(uplink6)::1/64", "dev", "vh\(suffix)", "nodad"), "IPv6 address")
            peer.append(["-6", "addr", "add", "\(uplink6)::2/64", "dev", "vp\(suffix)", "nodad"])
        }
        try check(try ip("link", "set", "vh\(suffix)", "up"), "link up")
        for arguments in peer + [["link", "set", "vp\(suffix)", "up"], ["link", "set", "lo", "up"]] {
            try check(try runProcess("/usr/sbin/ip", ["-n", name] + arguments), "peer \(arguments)")
        }
    }

    /// Records the source address of every ICMP echo request (IPv4) that reaches the peer, one a
    /// line in `file`, until the returned process is terminated: who the peer saw pinging it.
    func recordPingSources(in peer: String, to file: URL) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = ["netns", "exec", peer, "python3", "-c", """
            import socket, sys
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            with open(sys.argv[1], "a") as out:
                while True:
                    data, (source, _) = s.recvfrom(4096)
                    if data[(data[0] & 15) * 4] == 8:
                        out.write(source + "\\n"); out.flush()
            """, file.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Connects over TCP from `namespace` to `address` port `port` and returns the first line the
    /// other side sends (standard output), or the error (standard error, exit status 1).
    func connect(from namespace: String, to address: String, port: Int, timeout: Int = 5) throws -> ProcessResult {
        try runProcess("/usr/sbin/ip", ["netns", "exec", namespace, "python3", "-c", """
            import socket
            s = socket.create_connection(("\(address)", \(port)), timeout=\(timeout))
            s.settimeout(\(timeout))
            print(s.recv(100).decode().strip())
            """])
    }

    func removePeer(_ name: String) {
        _ = try? runProcess("/usr/sbin/ip", ["netns", "delete", name])
    }

    /// Runs the built vmctl inside the harness's network namespace, where libvirtd's bridges are.
    func vmctlInNamespace(_ arguments: [String], environment: [String: String]) throws -> ProcessResult {
        try runProcess("/usr/sbin/ip", ["netns", "exec", netns, try vmctlExecutable()] + arguments,
                       environment: ProcessInfo.processInfo.environment.merging(environment) { $1 })
    }

    /// Runs a program (found on PATH) inside the harness's network namespace.
    func inNamespace(stdin input: String? = nil, _ arguments: String...) throws -> ProcessResult {
        try runProcess("/usr/sbin/ip", ["netns", "exec", netns] + arguments, input: input)
    }

    /// Runs `ip` inside the harness's network namespace.
    func ip(_ arguments: String...) throws -> ProcessResult {
        try runProcess("/usr/sbin/ip", ["-n", netns] + arguments)
    }
}


/// A short random suffix, so that reruns and leftovers never collide.
func uniqueSuffix() -> String {
    String(UUID().uuidString.prefix(6).lowercased())
}

/// Polls `condition` until it yields a value or `timeout` passes.
func eventually<T>(
    timeout: Duration, every interval: Duration = .milliseconds(250),
    _ condition: () async throws -> T?
) async throws -> T? {
    let deadline = ContinuousClock.now + timeout
    while true {
        if let value = try await condition() { return value }
        if ContinuousClock.now >= deadline { return nil }
        try await Task.sleep(for: interval)
    }
}

/// Records every event of a stream, so that a test can wait for the one it expects.
actor EventRecorder {
    private(set) var events: [DomainEvent] = []
    private var reader: Task<Void, Never>?

    init(_ stream: AsyncStream<DomainEvent>) {
        reader = nil
        Task { await self.read(stream) }
    }

    private func read(_ stream: AsyncStream<DomainEvent>) {
        reader = Task {
            for await event in stream { self.append(event) }
        }
    }

    private func append(_ event: DomainEvent) { events.append(event) }

    /// Waits up to `timeout` for an event about `domain` of `kind`.
    nonisolated func wait(for kind: DomainEvent.Kind, of domain: UUID, timeout: Duration = .seconds(30)) async throws -> DomainEvent? {
        try await eventually(timeout: timeout) {
            await self.events.first { $0.domainUUID == domain && $0.kind == kind }
        }
    }

    /// Ends the registration with libvirt.
    func stop() { reader?.cancel() }
}
