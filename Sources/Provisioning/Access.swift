import Addressing
public import Foundation
import HostFirewall
import Libvirt
import LibvirtXML

/// vmctl's SSH files beside the state file: a key pair of its own, for users who have none, and
/// a known_hosts file where each VM's host key is filed under the VM's UUID (so a re-used
/// address never meets an old key) and removed when the VM is destroyed.
public struct SSHFiles: Sendable {
    /// The client's own directory (the state file's, or vmctl's data directory: `StateStore.localDirectory`).
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    /// vmctl's own private key (its public half beside it, `.pub`).
    public var ownKey: String { directory + "/ssh/id_ed25519" }
    public var knownHosts: String { directory + "/ssh/known_hosts" }

    /// The name a VM's host key is filed under.
    public static func alias(of uuid: String) -> String { "vmctl-\(uuid.lowercased())" }

    /// The public key a VM gets when the create names none, and the private key that goes with
    /// it: the user's `~/.ssh/id_ed25519.pub`, else `id_rsa.pub`, else vmctl's own pair, made
    /// (mode 0600) on first use.
    public func defaultKey(home: String?) async throws(ProvisioningError) -> (publicKey: String, identity: String) {
        if let home {
            for name in ["id_ed25519", "id_rsa"] {
                let identity = home + "/.ssh/" + name
                if let key = try? String(contentsOfFile: identity + ".pub", encoding: .utf8), key.hasPrefix("ssh-") {
                    return (key.trimmingCharacters(in: .whitespacesAndNewlines), identity)
                }
            }
        }
        return (try await ownPublicKey(), ownKey)
    }

    /// vmctl's own public key, made with ssh-keygen under a lock (concurrent creates make one).
    func ownPublicKey() async throws(ProvisioningError) -> String {
        if let key = try? String(contentsOfFile: ownKey + ".pub", encoding: .utf8) { return key.trimmingCharacters(in: .whitespacesAndNewlines) }
        let folder = (ownKey as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw ProvisioningError(.file, "cannot make \(folder): \(error.localizedDescription)", hint: "check the state directory's permissions")
        }
        let key = ownKey
        try await withFileLock(folder + "/.lock") { () async throws(ProvisioningError) in
            guard !FileManager.default.fileExists(atPath: key + ".pub") else { return }
            try? FileManager.default.removeItem(atPath: key)
            do {
                try await SystemTool("ssh-keygen").run(["-q", "-t", "ed25519", "-N", "", "-C", "vmctl", "-f", key])
            } catch {
                throw ProvisioningError(.tool, "cannot make vmctl's SSH key \(key): \(error)", hint: "install openssh-client, or pass --ssh-key")
            }
        }
        guard let made = try? String(contentsOfFile: key + ".pub", encoding: .utf8) else {
            throw ProvisioningError(.file, "cannot read \(key).pub", hint: "remove \(folder) and try again")
        }
        return made.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Removes the VM's host key from vmctl's known_hosts (under a lock; ssh appends unlocked,
    /// and an entry lost that way is only asked for again).
    func forgetHostKey(of uuid: String) async {
        let file = knownHosts
        guard FileManager.default.fileExists(atPath: file) else { return }
        try? await withFileLock((file as NSString).deletingLastPathComponent + "/.lock") { () async throws(ProvisioningError) in
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return }
            let kept = knownHostsLines(text, without: Self.alias(of: uuid))
            guard kept != text else { return }
            try? kept.write(toFile: file + ".new", atomically: false, encoding: .utf8)
            _ = rename(file + ".new", file)
        }
    }
}

/// The known_hosts text without the entries for `alias` (each line's first field is a
/// comma-separated list of names).
public func knownHostsLines(_ text: String, without alias: String) -> String {
    text.split(separator: "\n", omittingEmptySubsequences: false).filter { line in
        let names = line.split(separator: " ", maxSplits: 1).first.map { $0.split(separator: ",").map(String.init) } ?? []
        return !names.contains(alias)
    }.joined(separator: "\n")
}

/// One OpenSSH command line to a VM: pure, so that every option is tested without a guest.
public struct SSHInvocation: Sendable, Equatable {
    public var address: String
    public var user: String
    /// The name the host key is filed under in `knownHosts`.
    public var hostKeyAlias: String
    public var knownHosts: String
    /// Private keys offered besides ssh's own defaults.
    public var identities: [String]
    /// `user@host[:port]` to jump through: the libvirt host of a qemu+ssh connection.
    public var jumpHost: String?
    /// Never prompt (exec, run): a missing key fails instead of asking for a password.
    public var batch: Bool
    /// The remote command, each argument kept as one (quoted for the remote shell).
    public var command: [String]

    public init(address: String, user: String, hostKeyAlias: String, knownHosts: String, identities: [String] = [],
                jumpHost: String? = nil, batch: Bool = false, command: [String] = []) {
        self.address = address
        self.user = user
        self.hostKeyAlias = hostKeyAlias
        self.knownHosts = knownHosts
        self.identities = identities
        self.jumpHost = jumpHost
        self.batch = batch
        self.command = command
    }

    /// The arguments after `ssh`.
    public var arguments: [String] {
        var arguments = ["-o", "UserKnownHostsFile=\(knownHosts)", "-o", "StrictHostKeyChecking=accept-new",
                         "-o", "HostKeyAlias=\(hostKeyAlias)", "-o", "HashKnownHosts=no", "-o", "LogLevel=ERROR"]
        for identity in identities { arguments += ["-i", identity] }
        if batch { arguments += ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-T"] }
        if let jumpHost { arguments += ["-J", jumpHost] }
        arguments += ["-l", user, address]
        if !command.isEmpty { arguments += ["--", command.map(shellQuoted).joined(separator: " ")] }
        return arguments
    }

    /// The jump host of a `qemu+ssh://[user@]host[:port]/...` URI; nil for local URIs.
    public static func jumpHost(of uri: String) -> String? {
        guard let components = URLComponents(string: uri), components.scheme == "qemu+ssh", let host = components.host, !host.isEmpty else { return nil }
        var jump = components.user.map { "\($0)@" } ?? ""
        jump += host.contains(":") ? "[\(host)]" : host
        if let port = components.port { jump += ":\(port)" }
        return jump
    }
}

/// `word` as one word for a POSIX shell: unchanged when it is plainly safe, else single-quoted.
public func shellQuoted(_ word: String) -> String {
    let safe = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-")
    if !word.isEmpty && word.unicodeScalars.allSatisfy(safe.contains) { return word }
    return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

extension VMView {
    /// The address vmctl reaches the VM's SSH server on: the first IPv4 address of its NICs,
    /// else the first global IPv6 one; reserved addresses before leased ones.
    public var sshAddress: String? { Self.sshAddress(among: interfaces.flatMap(\.addresses)) }

    /// The address among `addresses` (the NICs' in order) that `sshAddress` picks.
    static func sshAddress(among addresses: [String]) -> String? {
        let all = addresses.compactMap(IPAddress.init)
        let usable = all.filter { !($0.family == .ipv6 && $0.description.lowercased().hasPrefix("fe80")) }
        return (usable.first { $0.family == .ipv4 } ?? usable.first)?.description
    }
}

extension Session {
    /// The ssh command line to the VM `name` as `user` (else the VM's recorded user, else root).
    public func ssh(to name: String, files: SSHFiles, user: String?, identities: [String], batch: Bool, command: [String]) async throws(ProvisioningError) -> SSHInvocation {
        let domain = try await connection.existingDomain(name)
        let (definition, state) = try await reader.read(domain)
        let view = VMView(definition: definition, uuid: domain.uuid, state: state, leases: await reader.leases(of: Set(definition.networks)))
        guard view.state == "running" else {
            throw ProvisioningError(.conflict, "VM \(name) is \(view.state)", hint: "start it with vmctl start \(name)")
        }
        guard let address = view.sshAddress else {
            throw ProvisioningError(.notFound, "VM \(name) has no address yet", hint: "wait for it with vmctl wait \(name) --for ip; see vmctl console \(name) --log")
        }
        var offered = identities
        if FileManager.default.fileExists(atPath: files.ownKey) { offered.append(files.ownKey) }
        return SSHInvocation(address: address, user: user ?? definition.metadata?.sshUser ?? "root", hostKeyAlias: SSHFiles.alias(of: view.uuid),
                             knownHosts: files.knownHosts, identities: offered, jumpHost: SSHInvocation.jumpHost(of: uri),
                             batch: batch, command: command)
    }

    /// Waits until the VM's SSH server answers (its banner) on the address `ssh` would use;
    /// first until it holds its addresses.
    public func waitForSSH(_ name: String, timeout: Duration) async throws(ProvisioningError) {
        let deadline = ContinuousClock.now + timeout
        try await wait(for: "ip", vm: name, timeout: timeout)
        var address: String?
        var last = "no address"
        while ContinuousClock.now < deadline {
            if Task.isCancelled { throw ProvisioningError(.interrupted, "interrupted while waiting for \(name)'s SSH server") }
            if address == nil { address = try await view(of: name).sshAddress }
            if let address {
                switch await sshBanner(at: address, port: 22) {
                case .success: return
                case .failure(let reason): last = reason.message
                }
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
        throw ProvisioningError(.timedOut, "VM \(name)'s SSH server did not answer on \(address ?? "any address") within \(timeout.components.seconds) s (\(last))",
                                hint: "see what the guest printed: vmctl console \(name) --log")
    }
}

/// Why a banner was not read.
struct BannerFailure: Error {
    var message: String
}

/// Connects to `address:port` and reads the server's first bytes: `SSH-` is an SSH server that
/// accepts connections. Runs on a dispatch thread (blocking sockets, a few seconds at most).
func sshBanner(at address: String, port: UInt16) async -> Result<Void, BannerFailure> {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(returning: readBanner(address, port)) }
    }
}

private func readBanner(_ address: String, _ port: UInt16) -> Result<Void, BannerFailure> {
    var hints = addrinfo()
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var found: UnsafeMutablePointer<addrinfo>?
    guard getaddrinfo(address, String(port), &hints, &found) == 0, let info = found else {
        return .failure(BannerFailure(message: "\(address) is not an address"))
    }
    defer { freeaddrinfo(found) }
    let socket = Glibc.socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue), 0)
    guard socket >= 0 else { return .failure(BannerFailure(message: String(cString: strerror(errno)))) }
    defer { close(socket) }
    var limit = timeval(tv_sec: 3, tv_usec: 0)
    setsockopt(socket, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    guard connect(socket, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
        return .failure(BannerFailure(message: "connect: \(String(cString: strerror(errno)))"))
    }
    var bytes = [UInt8](repeating: 0, count: 4)
    var count = 0
    while count < 4 {
        let got = bytes.withUnsafeMutableBytes { recv(socket, $0.baseAddress! + count, 4 - count, 0) }
        guard got > 0 else { return .failure(BannerFailure(message: got == 0 ? "closed before its banner" : "no banner: \(String(cString: strerror(errno)))")) }
        count += got
    }
    return bytes == Array("SSH-".utf8) ? .success(()) : .failure(BannerFailure(message: "not an SSH server"))
}

/// Runs `body` holding an exclusive `flock` on `path` (made if missing); waits for the lock on a
/// dispatch thread, never on the cooperative pool.
func withFileLock<T>(_ path: String, _ body: () async throws(ProvisioningError) -> T) async throws(ProvisioningError) -> T {
    let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
    guard descriptor >= 0 else {
        throw ProvisioningError(.file, "cannot open lock file \(path): \(String(cString: strerror(errno)))", hint: "check the directory's permissions")
    }
    defer { close(descriptor) }
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        DispatchQueue.global().async {
            while flock(descriptor, LOCK_EX) != 0 && errno == EINTR {}
            continuation.resume()
        }
    }
    defer { flock(descriptor, LOCK_UN) }
    return try await body()
}
