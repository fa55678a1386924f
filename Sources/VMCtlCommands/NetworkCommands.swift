public import ArgumentParser
import Addressing
import Foundation
import Provisioning

/// `vmctl network ...`: libvirt networks of every kind the seeds describe.
public struct NetworkCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "network",
        abstract: "Create and manage nat, routed, open, isolated and bridged networks.",
        subcommands: [Create.self, List.self, Show.self, Start.self, Stop.self, Destroy.self, Firewall.self, Forward.self])

    public init() {}

    /// `vmctl network create NAME --mode MODE ...`
    public struct Create: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            commandName: "create",
            abstract: "Create (define and start) a network; an identical one already there is left as it is.",
            discussion: """
                --ipv4/--ipv6 take the subnet in CIDR form; the gateway (the host's address on the bridge) \
                is the first address unless --gateway4/--gateway6 or an address such as 10.0.10.1/24 says \
                otherwise. IPv6 without --dhcp6 is SLAAC (router advertisements only) and needs a /64.
                """)

        @OptionGroup var global: GlobalOptions
        @Argument(help: "The network's name.") var name: String
        @Option(help: "nat, route, open, isolated or bridge.") var mode: NetworkMode
        @Option(help: "The bridge: for bridge mode the existing host bridge; otherwise a free vmbrN unless given.") var bridge: String?
        @Option(help: "IPv4 subnet (CIDR).") var ipv4: String?
        @Option(help: "The host's IPv4 address on the bridge.") var gateway4: String?
        @Option(help: "IPv4 DHCP range FIRST-LAST.") var dhcp4: String?
        @Option(help: "IPv6 subnet (CIDR).") var ipv6: String?
        @Option(help: "The host's IPv6 address on the bridge.") var gateway6: String?
        @Option(help: "DHCPv6 range FIRST-LAST (without it: SLAAC).") var dhcp6: String?
        @Option(name: .customLong("forward-dev"), help: "The host interface nat/route traffic leaves by.") var forwardDevice: String?
        @Option(help: "Local DNS domain served to guests.") var domain: String?
        @Flag(name: .customLong("no-dns"), help: "Turn libvirt's DNS server off.") var noDNS = false
        @Flag(help: "Start the network with libvirtd.") var autostart = false
        @Flag(help: "Replace a different existing network of that name.") var replace = false
        @Option(help: "A directory of templates to use instead of vmctl's XML (network.xml.mustache; default: $VMCTL_TEMPLATES).",
                completion: .directory)
        var templates: String?
        @OptionGroup var output: OutputOptions

        public init() {}

        public func validate() throws {
            try usage { () throws(ProvisioningError) in try validateObjectName(name, what: "network") }
            if domain != nil && noDNS { throw ValidationError("--domain and --no-dns contradict each other: give one") }
            if ipv4 == nil && (gateway4 != nil || dhcp4 != nil) { throw ValidationError("--gateway4 and --dhcp4 need --ipv4 SUBNET") }
            if ipv6 == nil && (gateway6 != nil || dhcp6 != nil) { throw ValidationError("--gateway6 and --dhcp6 need --ipv6 SUBNET") }
            if mode == .bridge && bridge == nil { throw ValidationError("a bridge network needs --bridge NAME of an existing host bridge") }
            _ = try usage { () throws(ProvisioningError) in try addressing() }
        }

        /// `--ipv4`/`--ipv6` with their gateways and ranges, as values.
        private func addressing() throws(ProvisioningError) -> (ipv4: IPConfig?, ipv6: IPConfig?) {
            (try ipv4.map { text throws(ProvisioningError) in
                try ipConfig(subnet: text, gateway: gateway4, dhcp: dhcp4, family: .ipv4, flag: "--ipv4") },
             try ipv6.map { text throws(ProvisioningError) in
                try ipConfig(subnet: text, gateway: gateway6, dhcp: dhcp6, family: .ipv6, flag: "--ipv6") })
        }

        public func run() async throws {
            let templates = try optionOrEnvironment(self.templates, "VMCTL_TEMPLATES").map(Templates.at) ?? .builtIn
            let networks = try await global.connect().networks
            let surroundings = try await networks.surroundings()
            let existing = try await networks.existing(name)
            let (ipv4, ipv6) = try addressing()
            let spec = NetworkSpec(
                name: name, mode: mode, bridge: bridge ?? existing?.1.bridge ?? freeBridgeName(in: surroundings),
                forwardDevice: forwardDevice, ipv4: ipv4, ipv6: ipv6, domain: domain, dnsDisabled: mode == .bridge ? false : noDNS)
            try spec.validate(in: surroundings)
            do {
                let network = try await networks.create(spec, existing: existing, templates: templates, autostart: autostart, replace: replace)
                try Output.print(try await networks.summary(of: network), output)
            } catch let error as ProvisioningError where error.code == .conflict && !replace && existing != nil {
                throw error.hinted("use --replace to redefine it")
            }
        }
    }

    /// `vmctl network list`
    public struct List: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(commandName: "list", abstract: "List libvirt networks.", aliases: ["ls"])
        @OptionGroup var global: GlobalOptions
        @OptionGroup var output: OutputOptions
        public init() {}

        public func run() async throws {
            let networks = try await global.connect().networks
            if output.quiet { return try Output.print(NameList(list: try await networks.names()), output) }
            try Output.print(try await networks.list(), output)
        }
    }

    /// `vmctl network show NAME`
    public struct Show: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a network.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The network's name.", completion: Complete.network) var name: String
        @OptionGroup var output: OutputOptions
        public init() {}

        public func run() async throws {
            let session = try await global.connect()
            try Output.print(try await session.networks.summary(of: try await session.connection.existingNetwork(name)), output)
        }
    }

    /// `vmctl network start NAME`
    public struct Start: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(commandName: "start", abstract: "Start a defined network.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var state: StateOptions
        @Argument(help: "The network's name.", completion: Complete.network) var name: String
        @OptionGroup var output: OutputOptions
        public init() {}

        public func run() async throws {
            let state = try await state.open()
            let networks = try await global.connect().networks
            try Output.print(Silent(model: try await networks.summary(of: try await networks.start(name, state: state)), name: name), output)
        }
    }

    /// `vmctl network stop NAME`
    public struct Stop: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(commandName: "stop", abstract: "Stop a network; it stays defined.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The network's name.", completion: Complete.network) var name: String
        @OptionGroup var output: OutputOptions
        public init() {}

        public func run() async throws {
            let networks = try await global.connect().networks
            try Output.print(Silent(model: try await networks.summary(of: try await networks.stop(name)), name: name), output)
        }
    }

    /// `vmctl network destroy NAME [--force]`
    public struct Destroy: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            commandName: "destroy",
            abstract: "Stop and undefine a network, and remove its firewall rules and port forwards. Refused while VMs use it, unless --force.", aliases: ["rm"])
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The network's name.", completion: Complete.network) var name: String
        @Flag(help: "Destroy it even though VMs use it.") var force = false
        @OptionGroup var state: StateOptions
        @OptionGroup var output: OutputOptions
        public init() {}

        public func run() async throws {
            let state = try await state.open()
            do throws(ProvisioningError) {
                _ = try await global.connect().networks.destroy(name, force: force, state: state)
            } catch where error.code == .conflict {
                throw error.hinted("destroy those VMs first, or use --force")
            }
            try Output.print(DestroyedNetwork(name: name), output)
        }
    }
}
