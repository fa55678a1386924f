public import Addressing

/// A host firewall as typed values: rule sets of tables of chains of rules. Everything vmctl
/// writes into a firewall is built from these and rendered in one place (`Rendering.swift`), as
/// iptables-restore input or as an nft script.
public struct RuleSet: Equatable, Sendable {
    /// Which tool family the set is for: `iptables` (IPv4) or `ip6tables` (IPv6).
    public var family: IPAddress.Family
    /// The tables, in the order they are written.
    public var tables: [Table]

    public init(family: IPAddress.Family, tables: [Table]) {
        self.family = family
        self.tables = tables.filter { !$0.chains.isEmpty }
    }

    /// The chain called `name` in the table called `table`, if any.
    public func chain(_ name: String, in table: TableName) -> Chain? {
        tables.first { $0.name == table }?.chains.first { $0.name == name }
    }
}

/// One of the netfilter tables vmctl uses.
public enum TableName: String, Equatable, Sendable {
    case filter, nat, mangle
}

public struct Table: Equatable, Sendable {
    public var name: TableName
    public var chains: [Chain]

    public init(_ name: TableName, _ chains: [Chain]) {
        self.name = name
        self.chains = chains
    }
}

/// One of vmctl's own chains: declared (and so emptied) and refilled whole on every change.
public struct Chain: Equatable, Sendable {
    public var name: String
    /// What the chain is hooked to in nft (`input`, `forward`, `postrouting`): the built-in
    /// chain its jump comes from in iptables.
    public var hook: Hook
    public var rules: [Rule]

    public enum Hook: String, Equatable, Sendable {
        case input = "INPUT", forward = "FORWARD", prerouting = "PREROUTING", postrouting = "POSTROUTING"
    }

    public init(_ name: String, hook: Hook, _ rules: [Rule]) {
        self.name = name
        self.hook = hook
        self.rules = rules
    }
}

/// One rule: conditions that all must hold, and what happens then.
public struct Rule: Equatable, Sendable {
    public var matches: [Match]
    public var verdict: Verdict
    /// Said above the rule where the format allows comments.
    public var comment: String?

    public init(_ matches: [Match], _ verdict: Verdict, comment: String? = nil) {
        self.matches = matches
        self.verdict = verdict
        self.comment = comment
    }
}

public enum TransportProtocol: String, Equatable, Sendable, CaseIterable {
    case tcp, udp
}

public enum ConnectionState: String, Equatable, Sendable {
    case related = "RELATED", established = "ESTABLISHED"
}

/// A condition on a packet, rendered in the order the rule lists them.
public enum Match: Equatable, Sendable {
    /// Arrives on (or, negated, not on) the interface.
    case inInterface(String, negated: Bool = false)
    case outInterface(String)
    case source(Subnet)
    /// Goes to (or, negated, not to) the subnet.
    case destination(Subnet, negated: Bool = false)
    case transport(TransportProtocol)
    /// A TCP or UDP destination port, or several.
    case destinationPorts(TransportProtocol, [Int])
    case connectionState([ConnectionState])
    /// The connection was destination-NATed (a port forward).
    case destinationNATed
}

public enum Verdict: Equatable, Sendable {
    case accept
    /// Refused with an ICMP port-unreachable of the rule set's family.
    case reject
    /// Leave vmctl's chain: the built-in chain goes on.
    case `return`
    /// Source NAT to the outgoing interface's address, to `ports` when given (TCP and UDP).
    case masquerade(ports: ClosedRange<Int>?)
    /// Fill in a missing UDP checksum (DHCP replies to old clients).
    case checksumFill
    /// Destination NAT to a guest.
    case dnat(address: IPAddress, port: Int)
}

/// A jump from a built-in chain into one of vmctl's, inserted once at the top.
public struct Jump: Equatable, Sendable {
    public var table: TableName
    /// The built-in chain the jump is inserted into.
    public var chain: Chain.Hook
    /// vmctl's chain it jumps to.
    public var target: String

    public init(table: TableName, chain: Chain.Hook, target: String) {
        self.table = table
        self.chain = chain
        self.target = target
    }
}

extension RuleSet {
    /// The jumps from the built-in chains into every chain of the set: filter, then mangle, then nat.
    public var jumps: [Jump] {
        let order: [TableName] = [.filter, .mangle, .nat]
        return order.flatMap { name in
            tables.filter { $0.name == name }.flatMap { table in table.chains.map { Jump(table: table.name, chain: $0.hook, target: $0.name) } }
        }
    }
}
