import AllocationStore
import Foundation
public import HostFirewall

// Value types of the modules below that Provisioning's API hands out, named here (or wrapped)
// so that the command layer imports none of those modules.

/// `tcp` or `udp`.
public typealias TransportProtocol = HostFirewall.TransportProtocol
/// The host firewall of an open network.
public typealias FirewallRules = HostFirewall.FirewallRules

/// A host port forwarded to a guest, as vmctl prints it (the store's record, same JSON).
public struct PortForwardView: Encodable, Equatable, Sendable {
    let record: PortForward

    init(_ record: PortForward) { self.record = record }

    public var network: String { record.network }
    public var proto: String { record.proto }
    public var hostPort: Int { record.hostPort }
    public var vm: String { record.vm }
    public var guestAddress: String { record.guestAddress.description }
    public var guestPort: Int { record.guestPort }

    public func encode(to encoder: any Encoder) throws { try record.encode(to: encoder) }
}
