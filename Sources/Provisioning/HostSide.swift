public import Addressing
import Foundation
public import HostFirewall
public import Logging

/// What a reservation changes on the host besides libvirt and the store: the host route an
/// address outside every subnet of its network needs (seed 000: each address of a routed
/// subnet on its own, so that all of them are usable), and dnsmasq's lease of a guest that is
/// gone. `LocalHost` is the machine vmctl runs on; tests use a recorder.
public protocol HostSide: Sendable {
    /// Why vmctl cannot change the routes of `bridge` from here, or `nil` when it can.
    func routesUnavailable(bridge: String) -> String?
    func addRoute(to address: IPAddress, bridge: String) async throws(ProvisioningError)
    func removeRoute(to address: IPAddress, bridge: String) async throws(ProvisioningError)
    /// Ends dnsmasq's lease of `address` to `mac`; false when that cannot be done from here.
    func releaseLease(_ address: IPAddress, mac: MACAddress, bridge: String) async -> Bool
    /// Forgets the neighbour entry of an address whose guest is gone, where that can be done.
    func forgetNeighbour(_ address: IPAddress, bridge: String) async
}

/// The host of a local connection, in the network namespace vmctl runs in.
public struct LocalHost: HostSide {
    public let uri: String
    public let logger: Logger

    public init(uri: String, logger: Logger = Logger(label: "vmctl")) {
        self.uri = uri
        self.logger = logger
    }

    private var network: HostNetwork { HostNetwork(logger: logger) }

    public func routesUnavailable(bridge: String) -> String? {
        if !isLocal(uri) { return "\(uri) is another host" }
        if !Firewall.interfaceExists(bridge) { return "bridge \(bridge) is not in this network namespace" }
        if geteuid() != 0 { return "only root can change routes" }
        return nil
    }

    public func addRoute(to address: IPAddress, bridge: String) async throws(ProvisioningError) {
        do { try await network.addRoute(to: address, bridge: bridge) } catch {
            throw ProvisioningError(.tool, "cannot route \(address) to bridge \(bridge): \(error.description)", cause: error)
        }
    }

    public func removeRoute(to address: IPAddress, bridge: String) async throws(ProvisioningError) {
        do { try await network.removeRoute(to: address, bridge: bridge) } catch {
            throw ProvisioningError(.tool, "cannot remove the route of \(address) to bridge \(bridge): \(error.description)", cause: error)
        }
    }

    public func releaseLease(_ address: IPAddress, mac: MACAddress, bridge: String) async -> Bool {
        guard routesUnavailable(bridge: bridge) == nil else { return false }
        do {
            return try await network.releaseLease(address, mac: mac, bridge: bridge)
        } catch {
            logger.debug("dhcp_release \(bridge) \(address) \(mac) failed: \(error.description)")
            return false
        }
    }
}

extension LocalHost {
    public func forgetNeighbour(_ address: IPAddress, bridge: String) async {
        guard routesUnavailable(bridge: bridge) == nil else { return }
        await network.forgetNeighbour(address, bridge: bridge)
    }
}

/// The host of a `qemu+ssh://` connection: routes, leases and neighbours changed with that host's
/// own `ip` and `dhcp_release`, run over ssh as libvirt reaches it (the URI's user, port, keyfile
/// and no_verify), so that a routed address's /32 lives on its VM's host.
public struct SSHHost: HostSide {
    public let uri: String
    public let destination: SSHDestination
    public let logger: Logger

    /// The ssh destination of `uri`, or nil when it is not a `+ssh` URI with a host.
    public init?(uri: String, logger: Logger = Logger(label: "vmctl")) {
        guard let url = URLComponents(string: uri), url.scheme?.hasSuffix("+ssh") == true,
              let host = url.host, !host.isEmpty else { return nil }
        let query = Dictionary((url.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { $1 })
        self.uri = uri
        destination = SSHDestination(user: url.user, host: host, port: url.port, keyFile: query["keyfile"], noVerify: query["no_verify"] == "1")
        self.logger = logger
    }

    private var network: HostNetwork { HostNetwork(logger: logger, remote: destination) }
    private var place: String { "\(destination.host) (over ssh)" }

    public func routesUnavailable(bridge: String) -> String? {
        if let user = destination.user, user != "root" { return "changing routes on \(destination.host) needs root, and \(uri) logs in as \(user)" }
        return nil
    }

    public func addRoute(to address: IPAddress, bridge: String) async throws(ProvisioningError) {
        do { try await network.addRoute(to: address, bridge: bridge) } catch {
            throw ProvisioningError(.tool, "cannot route \(address) to bridge \(bridge) on \(place): \(error.description)", cause: error)
        }
    }

    public func removeRoute(to address: IPAddress, bridge: String) async throws(ProvisioningError) {
        do { try await network.removeRoute(to: address, bridge: bridge) } catch {
            throw ProvisioningError(.tool, "cannot remove the route of \(address) to bridge \(bridge) on \(place): \(error.description)", cause: error)
        }
    }

    public func releaseLease(_ address: IPAddress, mac: MACAddress, bridge: String) async -> Bool {
        do {
            return try await network.releaseLease(address, mac: mac, bridge: bridge)
        } catch {
            logger.debug("dhcp_release \(bridge) \(address) \(mac) on \(place) failed: \(error.description)")
            return false
        }
    }

    /// Nothing: only `wait` reads a neighbour table, and only where the bridge is in vmctl's own
    /// namespace; an ssh round trip per released address would buy nothing.
    public func forgetNeighbour(_ address: IPAddress, bridge: String) async {}
}

extension Session {
    /// The host this session's connection is on, as reservations change it: this machine's
    /// namespace for a local URI, the host over ssh for `qemu+ssh://`, else one where nothing
    /// can be changed (`LocalHost` refuses another host's routes).
    public var host: any HostSide {
        if !isLocal(uri), let remote = SSHHost(uri: uri, logger: logger) { return remote }
        return LocalHost(uri: uri, logger: logger)
    }
}
