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

    @Option(name: .customLong("host"), help: ArgumentHelp(
        "The fleet host to act on (vmctl host list) instead of --connect; create also takes auto. Without either, with hosts added, list, show, destroy, doctor and the commands on one VM act across every host.",
        valueName: "name"), completion: Complete.host)
    var hostOption: String?

    @Flag(help: "Print each step and each libvirt call with its duration on stderr (also: VMCTL_DEBUG=1).")
    var debug = false

    public init() {}

    /// Whether the command was pointed at one connection: `--host`, `--connect`,
    /// `VMCTL_CONNECT` or `LIBVIRT_DEFAULT_URI`.
    var namesConnection: Bool {
        hostOption != nil || optionOrEnvironment(connectOption, "VMCTL_CONNECT") != nil || optionOrEnvironment(nil, "LIBVIRT_DEFAULT_URI") != nil
    }

    /// Whether `--host auto` was given (create and run only).
    var placesAutomatically: Bool { hostOption == "auto" }

    /// The URI in force: `--connect`, else `VMCTL_CONNECT`, else `LIBVIRT_DEFAULT_URI`, else `qemu:///system`.
    public var uri: String {
        optionOrEnvironment(connectOption, "VMCTL_CONNECT") ?? optionOrEnvironment(nil, "LIBVIRT_DEFAULT_URI") ?? "qemu:///system"
    }

    /// The logger commands hand to Provisioning; the executable decides where it writes.
    var logger: Logger { Logger(label: "vmctl") }

    /// Opens the connection (`--host NAME`: that fleet host's URI, from the store `state`
    /// names), turning a failure into an error that says what to do. `events: false` for a
    /// command that only reads (``Session/open(_:logger:hostName:events:)``; a fleet host's
    /// connection keeps its events).
    func connect(_ state: StateOptions? = nil, events: Bool = true) async throws(ProvisioningError) -> Session {
        if let name = hostOption {
            guard name != "auto" else { throw ProvisioningError(.invalidValue, "--host auto places a new VM: it is for create and run only", hint: "name a host (vmctl host list)") }
            let opened = if let state { try await state.open() } else { try await State.open(StateOptions.environmentPath) }
            return try await Fleet.session(toHost: name, in: opened, logger: logger)
        }
        do {
            return try await Session.open(uri, logger: logger, events: events)
        } catch {
            throw error.hinted("check that libvirtd is running there, or pass --connect URI (or set VMCTL_CONNECT)")
        }
    }

    /// The fleet, when the command names no connection and the store has hosts; else nil (the
    /// command acts on the one connection `connect` opens).
    func fleet(_ state: StateOptions) async throws(ProvisioningError) -> Fleet? {
        guard !namesConnection else { return nil }
        let fleet = try await state.fleetIfAny(logger: logger)
        return fleet.hosts.isEmpty ? nil : fleet
    }

    /// Every host of the fleet, connected; each one that did not answer is a warning on stderr.
    func reachFleet(_ fleet: Fleet) async -> [Fleet.Member] {
        let members = await fleet.connect()
        for member in members { if let warning = member.unreachableWarning { Output.say("warning: \(warning); left out") } }
        return members
    }

    /// The session of the host that has VM `name`: the one connection, or in a fleet the host
    /// the VM is on.
    func session(forVM name: String, _ state: StateOptions) async throws(ProvisioningError) -> Session {
        guard let fleet = try await fleet(state) else { return try await connect(state) }
        return try await Fleet.locate(name, among: await reachFleet(fleet))
    }

    /// The VMs `names` grouped by the session of their host (one group without a fleet), and
    /// for each name no host has, the error saying so.
    func sessions(forVMs names: [String], _ state: StateOptions) async throws(ProvisioningError) -> (groups: [(Session, [String])], missing: [(String, ProvisioningError)]) {
        guard let fleet = try await fleet(state) else { return ([(try await connect(state), names)], []) }
        let members = await reachFleet(fleet)
        var groups: [(Session, [String])] = []
        var missing: [(String, ProvisioningError)] = []
        for name in names {
            do throws(ProvisioningError) {
                let session = try await Fleet.locate(name, among: members)
                if let index = groups.firstIndex(where: { $0.0.hostName == session.hostName }) {
                    groups[index].1.append(name)
                } else {
                    groups.append((session, [name]))
                }
            } catch {
                missing.append((name, error))
            }
        }
        return (groups, missing)
    }
}

/// Where vmctl keeps its allocations: `--state`, else `VMCTL_STATE`, else the default path.
public struct StateOptions: ParsableArguments {
    @Option(name: .customLong("state"), help: ArgumentHelp(
        "The state file, or a postgres:// URL of a PostgreSQL database a fleet shares (default: $VMCTL_STATE, else /var/lib/vmctl/state.sqlite for root, else $XDG_DATA_HOME/vmctl/state.sqlite).",
        valueName: "path|url"))
    var stateOption: String?

    public init() {}

    var path: String {
        optionOrEnvironment(stateOption, "VMCTL_STATE") ?? Self.environmentPath
    }

    /// The store's location without the option: `VMCTL_STATE`, else the default path (for
    /// commands that take no `--state`).
    static var environmentPath: String {
        optionOrEnvironment(nil, "VMCTL_STATE") ?? State.defaultPath(environment: ProcessInfo.processInfo.environment, isRoot: geteuid() == 0)
    }

    /// The fleet's hosts; none when the state is a file that does not exist yet (it is not made
    /// for that question).
    func fleetIfAny(logger: Logger) async throws(ProvisioningError) -> Fleet {
        if !State.isServer(path), !FileManager.default.fileExists(atPath: path) { return Fleet(hosts: [], logger: logger) }
        return try await Fleet.load(try await open(), logger: logger)
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
    static let host = CompletionKind.shellCommand("vmctl host list -q 2>/dev/null")
}

/// A check made in `validate()`: ArgumentParser reports only its own `ValidationError` as a
/// usage error (exit 64), so a bad value Provisioning found becomes one.
func usage<T>(_ body: () throws(ProvisioningError) -> T) throws(ValidationError) -> T {
    do { return try body() } catch { throw ValidationError(error.description) }
}
