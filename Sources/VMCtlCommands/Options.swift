public import ArgumentParser
import Foundation
import Logging
public import Provisioning

/// Options every command that talks to libvirt takes.
public struct GlobalOptions: ParsableArguments {
    @Option(name: .customLong("connect"), help: ArgumentHelp(
        "The libvirt URI to connect to (default: $VMCTL_CONNECT, else $LIBVIRT_DEFAULT_URI, else qemu:///system).",
        valueName: "uri"))
    var connectOption: String?

    @Flag(help: "Print each step and each libvirt call with its duration on stderr (also: VMCTL_DEBUG=1).")
    var debug = false

    public init() {}

    /// The URI in force: `--connect`, else `VMCTL_CONNECT`, else `LIBVIRT_DEFAULT_URI`, else `qemu:///system`.
    public var uri: String {
        optionOrEnvironment(connectOption, "VMCTL_CONNECT") ?? optionOrEnvironment(nil, "LIBVIRT_DEFAULT_URI") ?? "qemu:///system"
    }

    /// The logger commands hand to Provisioning; the executable decides where it writes.
    var logger: Logger { Logger(label: "vmctl") }

    /// Opens the connection, turning a failure into an error that says what to do.
    func connect() async throws(ProvisioningError) -> Session {
        do {
            return try await Session.open(uri, logger: logger)
        } catch {
            throw error.hinted("check that libvirtd is running there, or pass --connect URI (or set VMCTL_CONNECT)")
        }
    }
}

/// Where vmctl keeps its allocations: `--state`, else `VMCTL_STATE`, else the default path.
public struct StateOptions: ParsableArguments {
    @Option(name: .customLong("state"), help: ArgumentHelp(
        "The state file (default: $VMCTL_STATE, else /var/lib/vmctl/state.sqlite for root, else $XDG_DATA_HOME/vmctl/state.sqlite).",
        valueName: "path"))
    var stateOption: String?

    public init() {}

    var path: String {
        optionOrEnvironment(stateOption, "VMCTL_STATE")
            ?? State.defaultPath(environment: ProcessInfo.processInfo.environment, isRoot: geteuid() == 0)
    }

    func open() async throws(ProvisioningError) -> State {
        do {
            return try await State.open(path, followingLink: stateOption != nil)
        } catch where error.code == .conflict {
            throw error.hinted("give it with --state to use it, or remove the link")
        } catch where error.code == .store {
            throw error.hinted("check the path (--state or VMCTL_STATE) and its permissions")
        }
    }
}

/// How a command prints its result: the same two options on every verb that prints one.
public struct OutputOptions: ParsableArguments {
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text
    @Flag(name: .shortAndLong, help: "Print only names (one a line), or nothing where there are none.") var quiet = false

    public init() {}
}

/// How a command prints its result.
public enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case text, json
}

/// An option's value, else a non-empty environment variable's.
func optionOrEnvironment(_ option: String?, _ variable: String) -> String? {
    if let option { return option }
    if let value = ProcessInfo.processInfo.environment[variable], !value.isEmpty { return value }
    return nil
}

/// Values the parser reads into Provisioning's types.
extension NetworkMode: ExpressibleByArgument {}
extension VirtType: ExpressibleByArgument {}

/// Completion of existing names, from vmctl itself (with the same defaults and environment).
enum Complete {
    static let vm = CompletionKind.shellCommand("vmctl list -q 2>/dev/null")
    static let network = CompletionKind.shellCommand("vmctl network list -q 2>/dev/null")
    static let pool = CompletionKind.shellCommand("vmctl pool list -q 2>/dev/null")
}

/// A check made in `validate()`: ArgumentParser reports only its own `ValidationError` as a
/// usage error (exit 64), so a bad value Provisioning found becomes one.
func usage<T>(_ body: () throws(ProvisioningError) -> T) throws(ValidationError) -> T {
    do { return try body() } catch { throw ValidationError(error.description) }
}
