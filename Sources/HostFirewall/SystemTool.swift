import Foundation
public import Logging
import Subprocess
import Synchronization
#if canImport(System)
import System
#else
import SystemPackage
#endif

/// A system program (iptables, nft, genisoimage, ...) run to completion through
/// swift-subprocess: the child's output is read while it runs, so a full stderr pipe cannot
/// block it, and waiting for it never holds a cooperative thread.
public struct SystemTool: Sendable {
    public var name: String
    /// Where it is installed, if it is.
    public var path: String?
    /// Arguments before the tool's own: ssh's, for a tool run on another host.
    var prefix: [String] = []

    /// Finds `name` in /usr/sbin, /sbin or /usr/bin.
    public init(_ name: String) {
        self.name = name
        path = ["/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"].map { $0 + name }.first(where: FileManager.default.isExecutableFile)
    }

    /// `name` run on `host` through ssh (the ssh first on PATH, as libvirt's own qemu+ssh runs
    /// it), each argument quoted for the remote shell.
    public init(_ name: String, on host: SSHDestination) {
        self.name = name
        let searched = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map { "\($0)/ssh" }
        path = searched.first(where: FileManager.default.isExecutableFile) ?? "/usr/bin/ssh"
        prefix = host.arguments + ["--", name]
    }

    public var isInstalled: Bool { path != nil }

    /// The Debian package that brings the tool, for error messages.
    public var package: String {
        ["iptables-restore": "iptables", "ip6tables-restore": "iptables", "ip6tables": "iptables", "nft": "nftables",
         "xorriso": "xorriso", "genisoimage": "genisoimage", "ip": "iproute2"][name] ?? name
    }

    /// Observes every run (name, start, end): `VMCTL_PROFILE` counts tools apart from vmctl's own time.
    public static func observe(_ observer: @escaping @Sendable (String, ContinuousClock.Instant, ContinuousClock.Instant) -> Void) {
        observers.withLock { $0.append(observer) }
    }

    private static let observers = Mutex<[@Sendable (String, ContinuousClock.Instant, ContinuousClock.Instant) -> Void]>([])

    /// Runs the tool with `arguments`, feeding it `input`; returns its standard output. A
    /// non-zero exit throws with what it wrote to stderr.
    @discardableResult
    public func run(_ arguments: [String], input: String? = nil, logger: Logger? = nil) async throws(ToolError) -> String {
        guard let path else { throw ToolError(tool: name, arguments: arguments, reason: .notInstalled(package: package)) }
        let started = ContinuousClock.now
        defer {
            let ended = ContinuousClock.now
            logger?.debug("ran \(name) \(arguments.joined(separator: " ")) in \(ended - started)")
            for observer in Self.observers.withLock({ $0 }) { observer(name, started, ended) }
        }
        let limit = 64 << 20
        // ssh joins its arguments into one line for the remote shell: each is quoted there.
        let all = prefix.isEmpty ? arguments : prefix + arguments.map(SSHDestination.quoted)
        do {
            let result = if let input {
                try await Subprocess.run(.path(FilePath(path)), arguments: Arguments(all), input: .string(input),
                                         output: .string(limit: limit), error: .string(limit: limit))
            } else {
                try await Subprocess.run(.path(FilePath(path)), arguments: Arguments(all), input: .none,
                                         output: .string(limit: limit), error: .string(limit: limit))
            }
            guard result.terminationStatus.isSuccess else {
                let message = result.standardError.trimmingCharacters(in: .whitespacesAndNewlines)
                throw ToolError(tool: name, arguments: arguments, reason: .failed(status: "\(result.terminationStatus)", message: message))
            }
            return result.standardOutput
        } catch let error as ToolError {
            throw error
        } catch {
            throw ToolError(tool: name, arguments: arguments, reason: .cannotRun("\(error)"))
        }
    }
}

/// A system program that could not run, or failed.
public struct ToolError: Error, CustomStringConvertible, Sendable {
    public var tool: String
    public var arguments: [String]
    public var reason: Reason

    public enum Reason: Sendable, Equatable {
        case notInstalled(package: String)
        case cannotRun(String)
        case failed(status: String, message: String)
    }

    public var description: String {
        switch reason {
        case .notInstalled(let package): "\(tool) is not installed; install it (Debian package \(package))"
        case .cannotRun(let why): "cannot run \(tool): \(why)"
        case .failed(_, let message): "\(tool) \(arguments.joined(separator: " ")) failed: \(message)"
        }
    }
}

/// Where ssh runs a tool on another host: what a `qemu+ssh://` URI names.
public struct SSHDestination: Sendable, Equatable {
    public var user: String?
    public var host: String
    public var port: Int?
    public var keyFile: String?
    /// libvirt's `no_verify=1`: the host key is not checked (nor recorded).
    public var noVerify: Bool

    public init(user: String?, host: String, port: Int?, keyFile: String?, noVerify: Bool) {
        self.user = user
        self.host = host
        self.port = port
        self.keyFile = keyFile
        self.noVerify = noVerify
    }

    /// ssh's options and destination: never a prompt, a connection timeout, the URI's port and key.
    public var arguments: [String] {
        var options = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
        if let port { options += ["-p", String(port)] }
        if let keyFile { options += ["-i", keyFile] }
        if noVerify { options += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"] }
        return options + [user.map { "\($0)@\(host)" } ?? host]
    }

    /// `text` as one word for a POSIX shell.
    public static func quoted(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
