public import ArgumentParser
import Foundation
import Libvirt

/// Options every command that talks to libvirt takes.
public struct GlobalOptions: ParsableArguments {
    @Option(name: .customLong("connect"), help: ArgumentHelp(
        "The libvirt URI to connect to (default: $VMCTL_CONNECT, else qemu:///system).",
        valueName: "uri"))
    var connectOption: String?

    public init() {}

    /// The URI in force: `--connect`, else `VMCTL_CONNECT`, else `qemu:///system`.
    public var uri: String { optionOrEnvironment(connectOption, "VMCTL_CONNECT") ?? "qemu:///system" }

    /// Opens the connection, turning a failure into an error that says what to do.
    func connect() async throws(VMCtlError) -> Connection {
        do {
            return try await Connection.open(uri)
        } catch {
            throw VMCtlError(
                "cannot connect to \(uri): \(error.message)",
                hint: "check that libvirtd is running there, or pass --connect URI (or set VMCTL_CONNECT)")
        }
    }
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
