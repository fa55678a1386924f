public import ArgumentParser
import Foundation
import Provisioning

/// `vmctl start NAME...`
public struct Start: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Start shut-off VMs.",
        discussion: "A VM that runs already is left as it is. With several VMs each is tried; the failures are reported together and the exit status is 1.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var state: StateOptions
    @Argument(help: "The VMs' names.", completion: Complete.vm) var names: [String]
    @OptionGroup var output: OutputOptions
    public init() {}

    public func run() async throws {
        try await applyPower(.start, to: names, global: global, state: state, force: false, grace: 0, output: output)
    }
}

/// `vmctl stop NAME... [--grace SECONDS] [--force]`
public struct Stop: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "stop",
        abstract: "Shut VMs down: ACPI power button, powered off after --grace seconds.",
        discussion: "Returns when each VM is shut off. A VM shut off already is left as it is. With several VMs each is tried; the failures are reported together and the exit status is 1.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var state: StateOptions
    @Argument(help: "The VMs' names.", completion: Complete.vm) var names: [String]
    @Flag(help: "Power off at once instead of asking the guest to shut down.") var force = false
    @Option(help: "Seconds to wait for a guest to shut down before powering it off.") var grace = 30
    @OptionGroup var output: OutputOptions
    public init() {}

    public func validate() throws {
        if grace < 0 { throw ValidationError("invalid --grace \(grace): give a number of seconds, 0 or more") }
    }

    public func run() async throws {
        try await applyPower(.stop, to: names, global: global, state: state, force: force, grace: grace, output: output)
    }
}

/// `vmctl reboot NAME... [--force]`
public struct Reboot: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "reboot",
        abstract: "Reboot running VMs: ask the guest (ACPI), or reset at once with --force.",
        discussion: "Returns once asked: a guest that ignores ACPI does not reboot, --force resets it. With several VMs each is tried; the failures are reported together and the exit status is 1.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var state: StateOptions
    @Argument(help: "The VMs' names.", completion: Complete.vm) var names: [String]
    @Flag(help: "Reset the VM at once instead of asking the guest to reboot.") var force = false
    @OptionGroup var output: OutputOptions
    public init() {}

    public func run() async throws {
        try await applyPower(.reboot, to: names, global: global, state: state, force: force, grace: 0, output: output)
    }
}

/// Applies the action (on each VM's own host, in a fleet), prints each VM it was applied to,
/// and fails naming every VM it was not.
private func applyPower(_ action: PowerAction, to names: [String], global: GlobalOptions, state: StateOptions,
                        force: Bool, grace: Int, output: OutputOptions) async throws {
    let (groups, missing) = try await global.sessions(forVMs: names, state)
    var outcomes: [Power.Outcome] = []
    for (session, group) in groups {
        outcomes += await Power(session: session, force: force, grace: .seconds(grace)).apply(action, to: group)
    }
    outcomes.sort { (names.firstIndex(of: $0.name) ?? 0) < (names.firstIndex(of: $1.name) ?? 0) }
    try Output.print(PowerResults(action: action.rawValue, results: outcomes.map {
        .init(name: $0.name, result: $0.result, error: $0.error?.description)
    }), output)
    let failures = missing.map { "cannot \(action.rawValue) VM \($0.0): \($0.1.description)" }
        + outcomes.compactMap { outcome in outcome.error.map { "cannot \(action.rawValue) VM \(outcome.name): \($0.description)" } }
    try reportTogether(failures)
}

/// Every failure of a multi-target command on stderr, the last one thrown (exit status 1).
func reportTogether(_ failures: [String]) throws {
    guard let last = failures.last else { return }
    for failure in failures.dropLast() { FileHandle.standardError.write(Data("Error: \(failure)\n".utf8)) }
    throw ProvisioningError(.incomplete, last)
}
