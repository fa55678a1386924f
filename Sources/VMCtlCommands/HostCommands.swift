public import ArgumentParser
import Foundation
import Provisioning

/// `vmctl host add|list|rm`: the libvirt hosts of a fleet.
public struct HostCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "host",
        abstract: "The libvirt hosts of a fleet, which share the store (a PostgreSQL --state): create --host NAME|auto, and list, show, destroy and doctor across all.",
        subcommands: [Add.self, List.self, Remove.self])

    public init() {}

    /// `vmctl host add NAME URI [--label KEY=VALUE]...`
    public struct Add: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            commandName: "add",
            abstract: "Add a libvirt host to the fleet, once it answers at its URI.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var state: StateOptions
        @Argument(help: "The host's name, for --host.") var name: String
        @Argument(help: "Its libvirt URI (qemu+ssh://root@HOST/system, qemu:///system, ...).") var uri: String
        @Option(name: .customLong("label"), help: ArgumentHelp("A label (repeatable).", valueName: "KEY=VALUE")) var labels: [String] = []
        @OptionGroup var output: OutputOptions
        public init() {}

        public func validate() throws {
            _ = try usage { () throws(ProvisioningError) in try FleetHosts.validate(name: name) }
            for label in labels { _ = try usage { () throws(ProvisioningError) in try parseLabel(label) } }
            if uri.isEmpty { throw ValidationError("invalid URI '': give the host's libvirt URI, as in qemu+ssh://root@HOST/system") }
        }

        public func run() async throws {
            var values: [String: String] = [:]
            for label in labels {
                let (key, value) = try parseLabel(label)
                values[key] = value
            }
            let status = try await FleetHosts(state: try await state.open(), logger: global.logger).add(name: name, uri: uri, labels: values)
            try Output.print(HostTable(hosts: [status]), output)
        }
    }

    /// `vmctl host list`
    public struct List: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            commandName: "list",
            abstract: "List the fleet's hosts: URI, reachable, libvirt version, CPUs, free memory, vmctl VMs.",
            aliases: ["ls"])
        @OptionGroup var global: GlobalOptions
        @OptionGroup var state: StateOptions
        @OptionGroup var output: OutputOptions
        public init() {}

        public func run() async throws {
            try Output.print(HostTable(hosts: try await FleetHosts(state: try await state.open(), logger: global.logger).list()), output)
        }
    }

    /// `vmctl host rm NAME [--force]`
    public struct Remove: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            commandName: "rm",
            abstract: "Forget a host: refused while it has vmctl VMs, or the store addresses or creates placed on it.",
            discussion: "A host that does not answer cannot be asked: --force forgets it anyway (its VMs, if any, stay where they are).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var state: StateOptions
        @Argument(help: "The host's name.", completion: Complete.host) var name: String
        @Flag(help: "Forget the host even if it does not answer, or the store still holds addresses placed on it.") var force = false
        @OptionGroup var output: OutputOptions
        public init() {}

        public func run() async throws {
            try await FleetHosts(state: try await state.open(), logger: global.logger).remove(name: name, force: force)
            try Output.print(RemovedHost(name: name), output)
        }
    }
}
