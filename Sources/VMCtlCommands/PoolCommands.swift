public import ArgumentParser
import Addressing
import AllocationStore
import Foundation
import Libvirt
import LibvirtXML

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
        @Option(help: "The libvirt network whose guests get these addresses.") var network: String
        @Option(name: .customLong("range"), help: "Addresses to hand out (repeatable).") var ranges: [String] = []
        @Option(name: .customLong("exclude"), help: "Addresses never to hand out (repeatable).") var exclusions: [String] = []
        @Flag(help: "Hand out every address in the ranges, network, broadcast and gateway included.") var allUsable = false
        @Option(help: "Output format: text or json.") var format: OutputFormat = .text

        public init() {}

        public func validate() throws {
            try validateObjectName(name, what: "pool")
            if ranges.isEmpty { throw ValidationError("give at least one --range CIDR|FIRST-LAST") }
            for text in ranges where AddressRange(text) == nil {
                throw ValidationError("invalid --range '\(text)': give a CIDR block (203.0.113.64/28), FIRST-LAST or one address")
            }
            for text in exclusions where AddressRange(text) == nil {
                throw ValidationError("invalid --exclude '\(text)': give an address, a CIDR block or FIRST-LAST")
            }
        }

        public func run() async throws {
            let store = try state.open()
            let connection = try await global.connect()
            let ranges = self.ranges.compactMap { AddressRange($0) }
            let exclusions = self.exclusions.compactMap { AddressRange($0) }

            guard let libvirtNetwork = try await connection.networkIfExists(network) else {
                throw VMCtlError("network \(network) does not exist", hint: "create it first, or check --connect")
            }
            let definition: NetworkDefinition
            do {
                definition = try NetworkDefinition(xml: try await libvirtNetwork.xml(inactive: true))
            } catch {
                throw VMCtlError("cannot read network \(network): \(error)")
            }
            var subnets: [(subnet: Subnet, gateway: IPAddress?)] = []
            for range in ranges {
                if let ip = definition.ips.first(where: { $0.subnet.contains(range.first) && $0.subnet.contains(range.last) }) {
                    if !subnets.contains(where: { $0.subnet == ip.subnet }) { subnets.append((ip.subnet, ip.address)) }
                } else if !allUsable {
                    let known = definition.ips.map(\.subnet.description).joined(separator: ", ")
                    throw VMCtlError(
                        "range \(range) is outside every subnet of network \(network) (\(known.isEmpty ? "it has none" : known))",
                        hint: "give a range inside one, or --all-usable for a routed subnet configured statically")
                }
            }
            for other in try store.pools() where other.network == network {
                for range in ranges {
                    if let clash = other.layout.ranges.first(where: { $0.overlaps(range) }) {
                        throw VMCtlError("range \(range) overlaps range \(clash) of pool \(other.name) on network \(network)",
                                         hint: "give each address to one pool")
                    }
                }
            }
            let layout: PoolLayout
            do {
                layout = try PoolLayout(ranges: ranges, exclusions: exclusions, subnets: subnets, allUsable: allUsable)
            } catch {
                throw VMCtlError("cannot create pool \(name): \(error)")
            }
            let pool = Pool(name: name, network: network, layout: layout, allUsable: allUsable)
            try store.create(pool)
            Output.write(try Output.render(PoolSummary(pool, allocations: []), as: format))
        }
    }

    /// `vmctl pool list`
    public struct List: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(abstract: "List address pools.")
        @OptionGroup var state: StateOptions
        @Option(help: "Output format: text or json.") var format: OutputFormat = .text
        public init() {}

        public func run() async throws {
            let store = try state.open()
            let allocations = try store.allocations()
            let summaries = try store.pools().map { pool in
                PoolSummary(pool, allocations: allocations.filter { $0.pool == pool.name }, detailed: false)
            }
            Output.write(try Output.render(PoolTable(pools: summaries), as: format))
        }
    }

    /// `vmctl pool show NAME`
    public struct Show: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(abstract: "Show a pool: its size, use and every allocation.")
        @OptionGroup var state: StateOptions
        @Argument(help: "The pool's name.") var name: String
        @Option(help: "Output format: text or json.") var format: OutputFormat = .text
        public init() {}

        public func run() async throws {
            let store = try state.open()
            let pool = try store.pool(named: name)
            Output.write(try Output.render(PoolSummary(pool, allocations: try store.allocations(in: name)), as: format))
        }
    }

    /// `vmctl pool destroy NAME [--force]`
    public struct Destroy: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Delete a pool. Refused while addresses are allocated, unless --force releases them.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var state: StateOptions
        @Argument(help: "The pool's name.") var name: String
        @Flag(help: "Release every allocation (and its DHCP host entry) first.") var force = false
        public init() {}

        public func run() async throws {
            let store = try state.open()
            _ = try store.pool(named: name)
            let allocations = try store.allocations(in: name)
            if !allocations.isEmpty {
                guard force else { throw StoreError.poolInUse(name, allocations: allocations.count) }
                let reservations = Reservations(store: store, connection: try await global.connect())
                for allocation in allocations { try await reservations.release(allocation) }
            }
            try store.deletePool(named: name, force: force)
        }
    }

    /// `vmctl pool reserve POOL --mac MAC --owner NAME [--ip ADDR]`
    public struct Reserve: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Reserve addresses for a NIC: the allocation and the DHCP host entry vmctl create makes.",
            discussion: """
                Without --ip, reserves one address of each family the pool holds. Prints each address \
                reserved, one a line. IPv6 host entries are keyed by the DUID-LL of the MAC: \
                00:03:00:01 followed by the MAC.
                """)
        @OptionGroup var global: GlobalOptions
        @OptionGroup var state: StateOptions
        @Argument(help: "The pool's name.") var pool: String
        @Option(help: "The NIC's MAC address.") var mac: String
        @Option(help: "Who holds the addresses: a VM's name (a libvirt domain of that name becomes the owner).") var owner: String
        @Option(name: .customLong("ip"), help: "Reserve exactly this address (repeatable, one a family).") var addresses: [String] = []
        @Option(help: "Output format: text or json.") var format: OutputFormat = .text
        public init() {}

        public func validate() throws {
            guard let parsed = MACAddress(mac) else {
                throw ValidationError("invalid --mac '\(mac)': give six hex bytes, such as 52:54:00:12:34:56")
            }
            if parsed.isMulticast { throw ValidationError("invalid --mac '\(mac)': a multicast address cannot be a NIC's") }
            if owner.isEmpty { throw ValidationError("--owner must not be empty") }
            for text in addresses where IPAddress(text) == nil {
                throw ValidationError("invalid --ip '\(text)': give one IPv4 or IPv6 address")
            }
        }

        public func run() async throws {
            let store = try state.open()
            let poolRecord = try store.pool(named: pool)
            let connection = try await global.connect()
            // A domain of that name owns the addresses: doctor then notices when it is gone.
            let ownerUUID = try await connection.domainIfExists(owner)?.uuid
            let reservations = Reservations(store: store, connection: connection)
            let made = try await reservations.reserve(
                from: poolRecord, mac: MACAddress(mac)!, owner: owner, ownerUUID: ownerUUID,
                requested: addresses.compactMap { IPAddress($0) })
            Output.write(try Output.render(ReservationList(allocations: made.map(AllocationView.init)), as: format))
        }
    }

    /// `vmctl pool release POOL ADDR`
    public struct Release: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Remove an address's DHCP host entry, then return it to its pool.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var state: StateOptions
        @Argument(help: "The pool's name.") var pool: String
        @Argument(help: "The address to release.") var address: String
        public init() {}

        public func validate() throws {
            if IPAddress(address) == nil { throw ValidationError("invalid address '\(address)': give one IPv4 or IPv6 address") }
        }

        public func run() async throws {
            let store = try state.open()
            let target = IPAddress(address)!
            _ = try store.pool(named: pool)
            guard let allocation = try store.allocations(in: pool).first(where: { $0.address == target }) else {
                throw StoreError.notAllocated(target, pool: pool)
            }
            try await Reservations(store: store, connection: try await global.connect()).release(allocation)
        }
    }
}

/// Names vmctl gives to libvirt objects and pools: nothing a shell or libvirt would mangle.
func validateObjectName(_ name: String, what: String) throws {
    let allowed = name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    guard !name.isEmpty, name.count <= 64, allowed, name.first!.isLetter || name.first!.isNumber else {
        throw ValidationError(
            "invalid \(what) name '\(name)': use up to 64 letters, digits, '-', '_' or '.', starting with a letter or digit")
    }
}
