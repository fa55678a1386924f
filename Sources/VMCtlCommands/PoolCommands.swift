public import ArgumentParser
import Addressing
import Foundation
import Provisioning

/// `vmctl pool ...`: address pools and reservations.
public struct PoolCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "pool",
        abstract: "Hand out IPv4 and IPv6 addresses from pools, one owner per address.",
        subcommands: [Create.self, List.self, Show.self, Destroy.self, Reserve.self, Release.self])

    public init() {}

    /// `vmctl pool create NAME --network NET --range R ... [--exclude X ...] [--all-usable]`
    public struct Create: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            commandName: "create",
            abstract: "Create an address pool on a libvirt network.",
            discussion: """
                Ranges are CIDR blocks (203.0.113.64/28), FIRST-LAST or single addresses, IPv4 and IPv6 \
                alike. The subnet's network and broadcast addresses and the network's gateway are never \
                handed out, unless --all-usable: for a routed public subnet served by per-address routes \
                and static guest configuration, where every address can be a VM's.
                """)

        @OptionGroup var global: GlobalOptions
        @OptionGroup var state: StateOptions
        @Argument(help: "The pool's name.") var name: String
        @Option(help: "The libvirt network whose guests get these addresses.", completion: Complete.network) var network: String
        @Option(name: .customLong("range"), help: "Addresses to hand out (repeatable).") var ranges: [String] = []
        @Option(name: .customLong("exclude"), help: "Addresses never to hand out (repeatable).") var exclusions: [String] = []
        @Flag(help: "Hand out every address in the ranges, network, broadcast and gateway included.") var allUsable = false
        @OptionGroup var output: OutputOptions

        public init() {}

        public func validate() throws {
            try usage { () throws(ProvisioningError) in try validateObjectName(name, what: "pool") }
            if ranges.isEmpty { throw ValidationError("give at least one --range CIDR|FIRST-LAST") }
            for text in ranges where AddressRange(text) == nil {
                throw ValidationError("invalid --range '\(text)': give a CIDR block (203.0.113.64/28), FIRST-LAST or one address")
            }
            for text in exclusions where AddressRange(text) == nil {
                throw ValidationError("invalid --exclude '\(text)': give an address, a CIDR block or FIRST-LAST")
            }
        }

        public func run() async throws {
            let state = try await state.open()
            let session = try await global.connect()
            let pool = try await Pools(state: state, logger: session.logger).create(
                name, network: network, ranges: ranges.compactMap { AddressRange($0) },
                exclusions: exclusions.compactMap { AddressRange($0) }, allUsable: allUsable, on: session.connection)
            try Output.print(pool, output)
        }
    }

    /// `vmctl pool list`
    public struct List: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(commandName: "list", abstract: "List address pools.", aliases: ["ls"])
        @OptionGroup var state: StateOptions
        @OptionGroup var output: OutputOptions
        public init() {}

        public func run() async throws {
            let pools = Pools(state: try await state.open(), logger: GlobalOptions().logger)
            // Names alone need no allocation counts.
            if output.quiet { return try Output.print(NameList(list: try await pools.names()), output) }
            try Output.print(try await pools.list(), output)
        }
    }

    /// `vmctl pool show NAME`
    public struct Show: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a pool: its size, use and every allocation.")
        @OptionGroup var state: StateOptions
        @Argument(help: "The pool's name.", completion: Complete.pool) var name: String
        @OptionGroup var output: OutputOptions
        public init() {}

        public func run() async throws {
            try Output.print(try await Pools(state: try await state.open(), logger: GlobalOptions().logger).show(name), output)
        }
    }

    /// `vmctl pool destroy NAME [--force]`
    public struct Destroy: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            commandName: "destroy",
            abstract: "Delete a pool. Refused while addresses are allocated, unless --force releases them.", aliases: ["rm"])
        @OptionGroup var global: GlobalOptions
        @OptionGroup var state: StateOptions
        @Argument(help: "The pool's name.", completion: Complete.pool) var name: String
        @Flag(help: "Release every allocation (and its DHCP host entry) first.") var force = false
        @OptionGroup var output: OutputOptions
        public init() {}

        public func run() async throws {
            // Pools connects by itself, and only when it must. (A typed-throws closure inside a
            // do/catch here sent Swift 6.3's release optimizer into a loop, ClosureLifetimeFixup.)
            let pools = Pools(state: try await state.open(), logger: global.logger)
            let pool: PoolSummary
            do throws(ProvisioningError) {
                pool = try await pools.destroy(name, force: force, uri: global.uri)
            } catch where error.code == .conflict {
                throw error.hinted("release them with vmctl pool release, or use --force")
            }
            try Output.print(Silent(model: pool, name: name), output)
        }
    }

    /// `vmctl pool reserve POOL --mac MAC --owner NAME [--ip ADDR]`
    public struct Reserve: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            commandName: "reserve",
            abstract: "Reserve addresses for a NIC: the allocation and the DHCP host entry vmctl create makes.",
            discussion: """
                Without --ip, reserves one address of each family the pool holds. Prints each address \
                reserved, one a line. IPv6 host entries are keyed by the DUID-LL of the MAC: \
                00:03:00:01 followed by the MAC.
                """)
        @OptionGroup var global: GlobalOptions
        @OptionGroup var state: StateOptions
        @Argument(help: "The pool's name.", completion: Complete.pool) var pool: String
        @Option(help: "The NIC's MAC address.") var mac: String
        @Option(help: "Who holds the addresses: a VM's name (a libvirt domain of that name becomes the owner).") var owner: String
        @Option(name: .customLong("ip"), help: "Reserve exactly this address (repeatable, one a family).") var addresses: [String] = []
        @OptionGroup var output: OutputOptions
        public init() {}

        public func validate() throws {
            guard let parsed = MACAddress(mac) else {
                throw ValidationError("invalid --mac '\(mac)': give six hex bytes, such as 52:54:00:12:34:56")
            }
            if !parsed.isUsableByNIC { throw ValidationError("invalid --mac '\(mac)': a NIC's MAC is unicast and not all zeros") }
            if owner.isEmpty { throw ValidationError("--owner must not be empty") }
            for text in addresses where IPAddress(text) == nil {
                throw ValidationError("invalid --ip '\(text)': give one IPv4 or IPv6 address")
            }
        }

        public func run() async throws {
            let state = try await state.open()
            let session = try await global.connect()
            let made = try await Pools(state: state, logger: session.logger).reserve(
                from: pool, mac: MACAddress(mac)!, owner: owner, requested: addresses.compactMap { IPAddress($0) }, on: session)
            try Output.print(made, output)
        }
    }

    /// `vmctl pool release POOL ADDR`
    public struct Release: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            commandName: "release",
            abstract: "Remove an address's DHCP host entry, then return it to its pool.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var state: StateOptions
        @Argument(help: "The pool's name.", completion: Complete.pool) var pool: String
        @Argument(help: "The address to release.") var address: String
        @OptionGroup var output: OutputOptions
        public init() {}

        public func validate() throws {
            if IPAddress(address) == nil { throw ValidationError("invalid address '\(address)': give one IPv4 or IPv6 address") }
        }

        public func run() async throws {
            let released = try await Pools(state: try await state.open(), logger: global.logger)
                .release(IPAddress(address)!, from: pool, uri: global.uri)
            try Output.print(Silent(model: released, name: released.address.description), output)
        }
    }
}
