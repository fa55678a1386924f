public import Addressing

/// One host port forwarded to a guest's port.
public struct PortForwardRule: Equatable, Sendable {
    public var proto: TransportProtocol
    public var hostPort: Int
    public var guestAddress: IPAddress
    public var guestPort: Int

    public init(proto: TransportProtocol, hostPort: Int, guestAddress: IPAddress, guestPort: Int) {
        self.proto = proto
        self.hostPort = hostPort
        self.guestAddress = guestAddress
        self.guestPort = guestPort
    }
}

/// The DNAT and forward-accept rules for a network's port forwards, in vmctl's own chains
/// (`VMCTL-DNAT-BRIDGE` in nat, `VMCTL-PFWD-BRIDGE` in filter), rebuilt whole each time:
/// libvirt's restarts of the network rebuild only libvirt's own chains, so these stay.
public struct PortForwardRules: Equatable, Sendable {
    public var bridge: String
    public var forwards: [PortForwardRule]

    public init(bridge: String, forwards: [PortForwardRule]) {
        self.bridge = bridge
        self.forwards = forwards
    }

    public var dnatChain: String { "VMCTL-DNAT-\(bridge)" }
    public var acceptChain: String { "VMCTL-PFWD-\(bridge)" }

    /// Ahead of libvirt's own FORWARD rules, which reject new inbound connections on nat networks.
    public var rules: RuleSet {
        RuleSet(family: .ipv4, tables: [
            Table(.nat, [Chain(dnatChain, hook: .prerouting, forwards.map {
                Rule([.inInterface(bridge, negated: true), .destinationPorts($0.proto, [$0.hostPort])],
                     .dnat(address: $0.guestAddress, port: $0.guestPort))
            })]),
            Table(.filter, [Chain(acceptChain, hook: .forward, forwards.map {
                Rule([.destination(Subnet(containing: $0.guestAddress, prefix: 32)!), .outInterface(bridge),
                      .destinationPorts($0.proto, [$0.guestPort]), .destinationNATed], .accept)
            })]),
        ])
    }

    /// The comment heading the restore input, printed and applied alike.
    public var header: String { "vmctl: port forwards to guests on bridge \(bridge); iptables-restore --noflush" }

    public var iptables: String { rules.iptablesRestore(header: header) }
}
