public import ArgumentParser
import Addressing
import Foundation
import Libvirt
import LibvirtXML

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
        @Option(help: "A directory of templates to use instead of vmctl's (network.xml.mustache).") var templates: String?
        @Option(help: "Output format: text or json.") var format: OutputFormat = .text

        public init() {}

        public func run() async throws {
            do { try validateObjectName(name, what: "network") } catch { throw VMCtlError("\(error)") }
            if domain != nil && noDNS { throw VMCtlError("--domain and --no-dns contradict each other", hint: "give one") }
            let templates = try Templates.locate(self.templates)
            let connection = try await global.connect()
            let surroundings = try await NetworkSurroundings.read(from: connection, uri: global.uri)
            let existing = try await existingDefinition(name, on: connection)

            var spec = NetworkSpec(
                name: name, mode: mode,
                bridge: bridge ?? existing?.1.bridge ?? freeBridgeName(in: surroundings),
                forwardDevice: forwardDevice,
                ipv4: try ipv4.map { text throws(VMCtlError) in
                    try ipConfig(subnet: text, gateway: gateway4, dhcp: dhcp4, family: .ipv4, flag: "--ipv4") },
                ipv6: try ipv6.map { text throws(VMCtlError) in
                    try ipConfig(subnet: text, gateway: gateway6, dhcp: dhcp6, family: .ipv6, flag: "--ipv6") },
                domain: domain, dnsDisabled: noDNS)
            if ipv4 == nil && (gateway4 != nil || dhcp4 != nil) { throw VMCtlError("--gateway4 and --dhcp4 need --ipv4 SUBNET") }
            if ipv6 == nil && (gateway6 != nil || dhcp6 != nil) { throw VMCtlError("--gateway6 and --dhcp6 need --ipv6 SUBNET") }
            if mode == .bridge && bridge == nil { throw VMCtlError("a bridge network needs --bridge NAME of an existing host bridge") }
            if mode == .bridge { spec.dnsDisabled = false }
            try spec.validate(in: surroundings)

            if let (network, definition) = existing {
                let differences = NetworkSummary(definition).differences(to: NetworkSummary(spec))
                if differences.isEmpty {
                    if try await !network.isActive() { try await network.start() }
                    Output.write(try Output.render(try await summary(of: network), as: format))
                    return
                }
                guard replace else {
                    throw VMCtlError("network \(name) exists with another definition (\(differences.joined(separator: "; ")))",
                                     hint: "use --replace to redefine it")
                }
                if try await network.isActive() { try await network.destroy() }
                try await network.undefine()
            }

            let network = try await defineAndStart(
                xml: try templates.render("network.xml", spec.templateValues), on: connection, autostart: autostart)
            Output.write(try Output.render(try await summary(of: network), as: format))
        }
    }

    /// `vmctl network list`
    public struct List: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(abstract: "List libvirt networks.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Output format: text or json.") var format: OutputFormat = .text
        public init() {}

        public func run() async throws {
            let connection = try await global.connect()
            var summaries: [NetworkSummary] = []
            for network in try await connection.networks().sorted(by: { $0.name < $1.name }) {
                summaries.append(try await summary(of: network))
            }
            Output.write(try Output.render(NetworkTable(networks: summaries), as: format))
        }
    }

    /// `vmctl network show NAME`
    public struct Show: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(abstract: "Show a network.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The network's name.") var name: String
        @Option(help: "Output format: text or json.") var format: OutputFormat = .text
        public init() {}

        public func run() async throws {
            let network = try await lookUpNetwork(name, on: try await global.connect())
            Output.write(try Output.render(try await summary(of: network), as: format))
        }
    }

    /// `vmctl network start NAME`
    public struct Start: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(abstract: "Start a defined network.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The network's name.") var name: String
        public init() {}

        public func run() async throws {
            let network = try await lookUpNetwork(name, on: try await global.connect())
            if try await !network.isActive() { try await network.start() }
        }
    }

    /// `vmctl network stop NAME`
    public struct Stop: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(abstract: "Stop a network; it stays defined.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The network's name.") var name: String
        public init() {}

        public func run() async throws {
            let network = try await lookUpNetwork(name, on: try await global.connect())
            if try await network.isActive() { try await network.destroy() }
        }
    }

    /// `vmctl network destroy NAME [--force]`
    public struct Destroy: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Stop and undefine a network. Refused while VMs use it, unless --force.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The network's name.") var name: String
        @Flag(help: "Destroy it even though VMs use it.") var force = false
        public init() {}

        public func run() async throws {
            let connection = try await global.connect()
            let network = try await lookUpNetwork(name, on: connection)
            if !force {
                var users: [String] = []
                for domain in try await connection.domains() {
                    if try DomainDefinition(xml: try await domain.xml(.inactive)).networks.contains(name) { users.append(domain.name) }
                }
                if !users.isEmpty {
                    throw VMCtlError("network \(name) is used by \(users.sorted().joined(separator: ", "))",
                                     hint: "destroy those VMs first, or use --force")
                }
            }
            if try await network.isActive() { try await network.destroy() }
            if try await network.isPersistent() { try await network.undefine() }
        }
    }
}

/// Defines and starts a network; one that cannot start is undefined again, so nothing is left
/// half-made.
private func defineAndStart(xml: String, on connection: Connection, autostart: Bool) async throws(VMCtlError) -> Network {
    let network = try await define(xml: xml, on: connection)
    do {
        try await network.start()
        if autostart { try await network.setAutostart(true) }
        return network
    } catch {
        try? await network.undefine()
        throw VMCtlError("network \(network.name) could not be started: \(error.message)", hint: "nothing was defined")
    }
}

private func define(xml: String, on connection: Connection) async throws(VMCtlError) -> Network {
    do {
        return try await connection.defineNetwork(xml: xml)
    } catch {
        throw VMCtlError("libvirt refused the network definition: \(error.message)")
    }
}

/// The network called `name` with its persistent (else live) definition, or `nil`.
private func existingDefinition(_ name: String, on connection: Connection) async throws -> (Network, NetworkDefinition)? {
    guard let network = try await connection.networkIfExists(name) else { return nil }
    let persistent = try await network.isPersistent()
    return (network, try NetworkDefinition(xml: try await network.xml(inactive: persistent)))
}

private func summary(of network: Network) async throws -> NetworkSummary {
    let persistent = try await network.isPersistent()
    let definition = try NetworkDefinition(xml: try await network.xml(inactive: persistent))
    return NetworkSummary(definition, active: try await network.isActive(), autostart: try await network.autostart())
}

extension NetworkSurroundings {
    /// The other networks (bridge, subnets) and the host's interfaces: names as libvirtd's host
    /// sees them, addresses from this machine when the connection is local.
    static func read(from connection: Connection, uri: String) async throws -> NetworkSurroundings {
        var surroundings = NetworkSurroundings()
        for network in try await connection.networks() {
            let definition = try NetworkDefinition(xml: try await network.xml())
            surroundings.networks.append((network.name, definition.bridge, definition.ips.map(\.subnet)))
        }
        for name in (try? await connection.interfaceNames()) ?? [] { surroundings.interfaces[name] = [] }
        if isLocal(uri) {
            for (interface, addresses) in localInterfaceAddresses() {
                surroundings.interfaces[interface, default: []] += addresses
            }
        }
        return surroundings
    }
}

/// A URI without a host (`qemu:///system`) talks to this machine.
func isLocal(_ uri: String) -> Bool {
    guard let range = uri.range(of: "://") else { return false }
    return uri[range.upperBound...].hasPrefix("/")
}

/// This machine's interface addresses (getifaddrs).
func localInterfaceAddresses() -> [String: [(address: IPAddress, prefix: Int)]] {
    var result: [String: [(address: IPAddress, prefix: Int)]] = [:]
    var list: UnsafeMutablePointer<ifaddrs>?
    guard getifaddrs(&list) == 0, let first = list else { return [:] }
    defer { freeifaddrs(list) }
    for entry in sequence(first: first, next: { $0.pointee.ifa_next }) {
        guard let address = entry.pointee.ifa_addr, let mask = entry.pointee.ifa_netmask else { continue }
        let name = String(cString: entry.pointee.ifa_name)
        func text(_ pointer: UnsafeMutablePointer<sockaddr>) -> String? {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            let length = socklen_t(pointer.pointee.sa_family == sa_family_t(AF_INET6) ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
            guard getnameinfo(pointer, length, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 else { return nil }
            return String(cString: buffer).split(separator: "%").first.map(String.init)
        }
        let family = Int32(address.pointee.sa_family)
        guard family == AF_INET || family == AF_INET6, let addressText = text(address), let maskText = text(mask),
              let ip = IPAddress(addressText), let maskAddress = IPAddress(maskText) else { continue }
        result[name, default: []].append((ip, maskAddress.number.nonzeroBitCount))
    }
    return result
}
