public import ArgumentParser
import Foundation
import Provisioning

/// `vmctl list [--label KEY=VALUE]...`
public struct List: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the VMs on the connection, or on every host of the fleet (with their host).",
        discussion: "A fleet host that does not answer is named on stderr and left out; the others are listed.", aliases: ["ls"])
    @OptionGroup var global: GlobalOptions
    @OptionGroup var state: StateOptions
    @Option(name: .customLong("label"), help: ArgumentHelp("Only VMs with this label (repeatable: all must match).", valueName: "KEY=VALUE"))
    var labels: [String] = []
    @OptionGroup var output: OutputOptions
    public init() {}

    public func validate() throws {
        for label in labels { _ = try usage { () throws(ProvisioningError) in try parseLabel(label) } }
    }

    public func run() async throws {
        let profiler = Profiler.current  // starts the clock
        defer { profiler?.report("list") }
        if let fleet = try await global.fleet(state) {
            let (table, warnings) = await Fleet.list(await global.reachFleet(fleet), labels: try labels.map(parseLabel))
            for warning in warnings { Output.say("warning: \(warning)") }
            return try Output.print(table, output)
        }
        // A listing of a local daemon needs no events: its calls then wake no event loop. A
        // remote one keeps them for libvirt's keepalive, which ends a call to a dead host.
        let session = try await global.connect(state, events: !isLocal(global.uri))
        // Names alone need one listing, not every definition.
        if output.quiet && labels.isEmpty {
            return try Output.print(NameList(list: try await session.domainNames()), output)
        }
        try Output.print(try await session.reader.list(labels: try labels.map(parseLabel)), output)
    }
}

/// `vmctl show NAME`
public struct Show: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a VM: state, size, labels, addresses, disks.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var state: StateOptions
    @Argument(help: "The VM's name.", completion: Complete.vm) var name: String
    @OptionGroup var output: OutputOptions
    public init() {}

    public func run() async throws {
        try Output.print(try await global.session(forVM: name, state).view(of: name), output)
    }
}

/// `vmctl destroy NAME... | --label KEY=VALUE | --expired`
public struct Destroy: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "destroy",
        abstract: "Destroy VMs vmctl created: stop, release addresses, delete volumes, undefine.",
        discussion: """
            Each VM is shut down (forced after --grace seconds; --force at once), its addresses \
            are released (DHCP host entries first), its port forwards removed, the volumes and seed \
            vmctl made for it deleted (never a base image another volume still uses), and it is \
            undefined (NVRAM too). Prints each VM destroyed. With several targets each is tried; \
            the failures are reported together and the exit status is 1.
            """,
        aliases: ["rm"])
    @OptionGroup var global: GlobalOptions
    @OptionGroup var state: StateOptions
    @Argument(help: "The VMs' names.", completion: Complete.vm) var names: [String] = []
    @Option(name: .customLong("label"), help: ArgumentHelp("Every vmctl VM with this label (repeatable: all must match).", valueName: "KEY=VALUE"))
    var labels: [String] = []
    @Flag(help: "Every vmctl VM whose --ttl has passed.") var expired = false
    @Flag(help: "Power off at once instead of asking the guest to shut down.") var force = false
    @Option(help: "Seconds to wait for a guest to shut down before powering it off.") var grace = 30
    @Flag(help: "A named VM that does not exist is not an error.") var ignoreMissing = false
    @OptionGroup var output: OutputOptions
    public init() {}

    public func validate() throws {
        if names.isEmpty && labels.isEmpty && !expired {
            throw ValidationError("name the VMs to destroy, or give --label KEY=VALUE or --expired")
        }
        for label in labels { _ = try usage { () throws(ProvisioningError) in try parseLabel(label) } }
        if grace < 0 { throw ValidationError("invalid --grace \(grace): give a number of seconds, 0 or more") }
    }

    public func run() async throws {
        let profiler = Profiler.current  // starts the clock
        defer { profiler?.report("destroy") }
        let opened = try await state.open()
        let selection = DestroySelection(names: names, labels: try labels.map(parseLabel), expired: expired, ignoreMissing: ignoreMissing)
        let outcomes: [Destroyer.Outcome]
        let missing: [String]
        if let fleet = try await global.fleet(state) {
            (outcomes, missing) = await Fleet.destroy(selection, on: await global.reachFleet(fleet), state: opened, force: force, grace: .seconds(grace))
        } else {
            let found = try await global.connect(state).destroyer(opened, force: force, grace: .seconds(grace)).destroy(selection)
            (outcomes, missing) = (found.outcomes, found.missing.map { "\($0), or pass --ignore-missing" })
        }
        for outcome in outcomes {
            for volume in outcome.kept { Output.say("kept \(volume)") }
        }
        try Output.print(DestroyResults(results: outcomes.map {
            .init(name: $0.name, destroyed: $0.error == nil, error: $0.error?.description, kept: $0.kept)
        }), output)
        let failures = missing
            + outcomes.compactMap { outcome in outcome.error.map { "cannot destroy VM \(outcome.name): \($0.description)" } }
        try reportTogether(failures)
    }
}

/// `vmctl wait NAME --for ip|running|shutoff [--timeout SECONDS]`
public struct Wait: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "wait",
        abstract: "Wait until a VM holds its addresses, answers on SSH, runs, or is shut off.",
        discussion: "Exit status 1 when the timeout passes first (the VM is left as it is).")

    public enum Condition: String, ExpressibleByArgument, CaseIterable, Sendable {
        case ip, ssh, running, shutoff
    }

    @OptionGroup var global: GlobalOptions
    @OptionGroup var state: StateOptions
    @Argument(help: "The VM's name.", completion: Complete.vm) var name: String
    @Option(name: .customLong("for"), help: "ip, ssh, running or shutoff.") var condition: Condition
    @Option(help: "Seconds to wait.") var timeout = 120
    @OptionGroup var output: OutputOptions

    public init() {}

    public func validate() throws {
        if timeout < 1 { throw ValidationError("invalid --timeout \(timeout): give a number of seconds, 1 or more") }
    }

    public func run() async throws {
        try await global.session(forVM: name, state).wait(for: condition.rawValue, vm: name, timeout: .seconds(timeout))
        try Output.print(WaitResult(name: name, condition: condition.rawValue), output)
    }
}
