public import Addressing
import Foundation
public import Logging

/// What vmctl does to the routing table, neighbour table and DHCP server of the network
/// namespace it runs in, through `ip` and `dhcp_release`: the host routes that make every
/// address of a routed subnet usable (seed 000), the neighbour lookup that shows a statically
/// configured guest is up, and the release of a lease a destroyed guest held.
public struct HostNetwork: Sendable {
    public var logger: Logger
    /// Another host whose namespace this is, reached over ssh; nil: the one vmctl runs in.
    public var remote: SSHDestination?

    public init(logger: Logger, remote: SSHDestination? = nil) {
        self.logger = logger
        self.remote = remote
    }

    private func tool(_ name: String) -> SystemTool {
        remote.map { SystemTool(name, on: $0) } ?? SystemTool(name)
    }

    /// The routing protocol number vmctl's host routes carry (`ip route ... proto 118`), so that
    /// vmctl lists and removes its own routes and nobody else's.
    public static let routeProtocol = "118"

    private var ip: SystemTool { tool("ip") }

    /// Routes `address` (as a /32 or /128) to `bridge`, replacing a route of vmctl's or anyone's
    /// for exactly that address: the address is the guest's now.
    public func addRoute(to address: IPAddress, bridge: String) async throws(ToolError) {
        try await ip.run([family(address), "route", "replace", hostPrefix(address), "dev", bridge, "proto", Self.routeProtocol], logger: logger)
    }

    /// Removes vmctl's route for `address` on `bridge`; one that is not there counts as removed.
    public func removeRoute(to address: IPAddress, bridge: String) async throws(ToolError) {
        guard try await routes().contains(HostRoute(address: address, bridge: bridge)) else { return }
        try await ip.run([family(address), "route", "del", hostPrefix(address), "dev", bridge, "proto", Self.routeProtocol], logger: logger)
    }

    /// Every host route vmctl made in this namespace, IPv4 and IPv6.
    public func routes() async throws(ToolError) -> [HostRoute] {
        var found: [HostRoute] = []
        for version in ["-4", "-6"] {
            let json = try await ip.run(["-j", version, "route", "show", "proto", Self.routeProtocol], logger: logger)
            found += HostRoute.parse(json)
        }
        return found
    }

    /// Makes the kernel resolve `address`'s link-layer address on the bridge it is routed to
    /// (an ARP request or neighbour solicitation), by sending one empty UDP datagram to the
    /// discard port: a guest configured statically sends nothing until it needs to, so its entry
    /// would otherwise appear only by chance. Failures are ignored: the lookup says what it found.
    public func probe(_ address: IPAddress) {
        let descriptor = socket(address.family == .ipv4 ? AF_INET : AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        switch address {
        case .v4(let v4):
            var target = sockaddr_in()
            target.sin_family = sa_family_t(AF_INET)
            target.sin_port = in_port_t(9).bigEndian
            target.sin_addr.s_addr = v4.value.bigEndian
            _ = withUnsafePointer(to: &target) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(descriptor, nil, 0, Int32(MSG_DONTWAIT), $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case .v6(let v6):
            var target = sockaddr_in6()
            target.sin6_family = sa_family_t(AF_INET6)
            target.sin6_port = in_port_t(9).bigEndian
            withUnsafeMutableBytes(of: &target.sin6_addr) { bytes in
                for index in 0..<16 { bytes[index] = UInt8(truncatingIfNeeded: v6.value >> (8 * (15 - index))) }
            }
            _ = withUnsafePointer(to: &target) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(descriptor, nil, 0, Int32(MSG_DONTWAIT), $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
    }

    /// The neighbours on `bridge` that answered lately (REACHABLE, or PERMANENT): each address with
    /// its link-layer address. A STALE entry may be a guest that is gone (a VM created again with
    /// its name has the same MAC and address); a probe makes the kernel confirm it or drop it.
    public func neighbours(on bridge: String) async throws(ToolError) -> [Neighbour] {
        Neighbour.parse(try await ip.run(["-j", "neigh", "show", "dev", bridge], logger: logger))
    }

    /// Drops the kernel's neighbour entry for `address` on `bridge`, so that a guest that is gone
    /// is not taken for the next one to hold the address. One that is not there is no failure.
    public func forgetNeighbour(_ address: IPAddress, bridge: String) async {
        _ = try? await ip.run(["neigh", "del", address.description, "dev", bridge], logger: logger)
    }

    /// Sends dnsmasq a DHCPRELEASE on behalf of `mac` for `address` (dnsmasq-utils' `dhcp_release`),
    /// so that a lease of a guest that is gone does not keep the address from its next owner.
    /// Returns false when `dhcp_release` is not installed.
    public func releaseLease(_ address: IPAddress, mac: MACAddress, bridge: String) async throws(ToolError) -> Bool {
        let release = tool("dhcp_release")
        guard release.isInstalled, address.family == .ipv4 else { return false }
        try await release.run([bridge, address.description, mac.description], logger: logger)
        return true
    }

    private func family(_ address: IPAddress) -> String { address.family == .ipv4 ? "-4" : "-6" }
    private func hostPrefix(_ address: IPAddress) -> String { "\(address)/\(address.family.bits)" }
}

/// One of vmctl's host routes: an address routed to a bridge.
public struct HostRoute: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var bridge: String

    public init(address: IPAddress, bridge: String) {
        self.address = address
        self.bridge = bridge
    }

    public var description: String { "\(address) on \(bridge)" }

    /// Host routes in `ip -j route show` output (`dst` is the bare address for a /32 or /128).
    static func parse(_ json: String) -> [HostRoute] {
        struct Entry: Decodable { var dst: String; var dev: String? }
        let entries = (try? JSONDecoder().decode([Entry].self, from: Data(json.utf8))) ?? []
        return entries.compactMap { entry in
            guard let dev = entry.dev, let address = IPAddress(entry.dst) else { return nil }
            return HostRoute(address: address, bridge: dev)
        }
    }
}

/// A resolved neighbour: an address and the MAC that answers for it.
public struct Neighbour: Hashable, Sendable {
    public var address: IPAddress
    public var mac: MACAddress

    public init(address: IPAddress, mac: MACAddress) {
        self.address = address
        self.mac = mac
    }

    /// The confirmed neighbours (REACHABLE or PERMANENT) in `ip -j neigh show` output.
    static func parse(_ json: String) -> [Neighbour] {
        struct Entry: Decodable { var dst: String; var lladdr: String?; var state: [String]? }
        let entries = (try? JSONDecoder().decode([Entry].self, from: Data(json.utf8))) ?? []
        return entries.compactMap { entry in
            let states = Set(entry.state ?? [])
            guard !states.isDisjoint(with: ["REACHABLE", "PERMANENT"]), let lladdr = entry.lladdr,
                  let mac = MACAddress(lladdr), let address = IPAddress(entry.dst) else { return nil }
            return Neighbour(address: address, mac: mac)
        }
    }
}
