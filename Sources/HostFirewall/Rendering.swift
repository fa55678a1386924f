import Addressing

/// The one place where firewall values become text: iptables-restore input and nft scripts.
extension RuleSet {
    /// iptables-restore (or ip6tables-restore) input, for `--noflush`: each chain is declared,
    /// which empties it, then filled; the built-in chains are left alone (see ``jumps``).
    public func iptablesRestore(header: String) -> String {
        var lines = ["# " + header]
        for table in tables {
            lines.append("*" + table.name.rawValue)
            lines += table.chains.map { ":\($0.name) - [0:0]" }
            for chain in table.chains {
                for rule in chain.rules {
                    if let comment = rule.comment { lines.append("# " + comment) }
                    lines.append((["-A", chain.name] + rule.matches.map(Self.iptables) + [iptables(rule.verdict)]).joined(separator: " "))
                }
            }
            lines.append("COMMIT")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The command that inserts `jump` once: `iptables -t TABLE -I CHAIN -j TARGET`.
    public func command(for jump: Jump) -> [String] {
        [tool, "-t", jump.table.rawValue, "-I", jump.chain.rawValue, "-j", jump.target]
    }

    /// `iptables` or `ip6tables`.
    public var tool: String { family == .ipv4 ? "iptables" : "ip6tables" }

    private static func iptables(_ match: Match) -> String {
        switch match {
        case .inInterface(let name, let negated): (negated ? "! " : "") + "-i \(name)"
        case .outInterface(let name): "-o \(name)"
        case .source(let subnet): "-s \(subnet)"
        case .destination(let subnet, let negated): (negated ? "! " : "") + "-d \(subnet)"
        case .transport(let proto): "-p \(proto.rawValue)"
        case .destinationPorts(let proto, let ports) where ports.count == 1:
            "-p \(proto.rawValue) -m \(proto.rawValue) --dport \(ports[0])"
        case .destinationPorts(let proto, let ports):
            "-p \(proto.rawValue) -m \(proto.rawValue) -m multiport --dports \(ports.map(String.init).joined(separator: ","))"
        case .connectionState(let states): "-m conntrack --ctstate \(states.map(\.rawValue).joined(separator: ","))"
        case .destinationNATed: "-m conntrack --ctstate DNAT"
        }
    }

    private func iptables(_ verdict: Verdict) -> String {
        switch verdict {
        case .accept: "-j ACCEPT"
        case .reject: "-j REJECT --reject-with \(family == .ipv4 ? "icmp-port-unreachable" : "icmp6-port-unreachable")"
        case .return: "-j RETURN"
        case .masquerade(let ports): "-j MASQUERADE" + (ports.map { " --to-ports \($0.lowerBound)-\($0.upperBound)" } ?? "")
        case .checksumFill: "-j CHECKSUM --checksum-fill"
        case .dnat(let address, let port): "-j DNAT --to-destination \(address.family == .ipv6 ? "[\(address)]" : "\(address)"):\(port)"
        }
    }
}

/// The rule sets of both families as one nft table of family `inet`, replacing any earlier
/// version of it (`nft -f`). nft has no checksum filling: rules that only do that are left out.
/// Rules that name no address are limited to their set's family (`meta nfproto`), since an
/// inet chain sees both.
public func nftScript(_ sets: [RuleSet], table: String, header: String) -> String {
    var lines = ["# " + header, "table inet \(table)", "delete table inet \(table)", "table inet \(table) {"]
    let hooks: [(TableName, Chain.Hook, String)] = [
        (.filter, .input, "type filter hook input priority 0; policy accept;"),
        (.filter, .forward, "type filter hook forward priority 0; policy accept;"),
        (.nat, .prerouting, "type nat hook prerouting priority -100; policy accept;"),
        (.nat, .postrouting, "type nat hook postrouting priority 100; policy accept;"),
    ]
    for (tableName, hook, declaration) in hooks {
        var rules: [String] = []
        for set in sets {
            for table in set.tables where table.name == tableName {
                for chain in table.chains where chain.hook == hook {
                    rules += chain.rules.compactMap { nft($0, family: set.family) }
                }
            }
        }
        guard !rules.isEmpty else { continue }
        lines += ["  chain \(hook.rawValue.lowercased()) {", "    " + declaration] + rules.map { "    " + $0 } + ["  }"]
    }
    return (lines + ["}"]).joined(separator: "\n") + "\n"
}

private func nft(_ rule: Rule, family: IPAddress.Family) -> String? {
    let address = family == .ipv4 ? "ip" : "ip6"
    var parts: [String] = []
    let namesAddress = rule.matches.contains {
        switch $0 { case .source, .destination: true; default: false }
    }
    if !namesAddress { parts.append("meta nfproto \(family == .ipv4 ? "ipv4" : "ipv6")") }
    for match in rule.matches {
        switch match {
        case .inInterface(let name, let negated): parts.append("iifname \(negated ? "!= " : "")\"\(name)\"")
        case .outInterface(let name): parts.append("oifname \"\(name)\"")
        case .source(let subnet): parts.append("\(address) saddr \(subnet)")
        case .destination(let subnet, let negated): parts.append("\(address) daddr \(negated ? "!= " : "")\(subnet)")
        case .transport(let proto): parts.append("meta l4proto \(proto.rawValue)")
        case .destinationPorts(let proto, let ports) where ports.count == 1: parts.append("\(proto.rawValue) dport \(ports[0])")
        case .destinationPorts(let proto, let ports):
            parts.append("\(proto.rawValue) dport { \(ports.map(String.init).joined(separator: ", ")) }")
        case .connectionState(let states): parts.append("ct state \(states.map { $0.rawValue.lowercased() }.joined(separator: ","))")
        case .destinationNATed: parts.append("ct status dnat")
        }
    }
    switch rule.verdict {
    case .accept: parts.append("accept")
    case .reject: parts.append("reject")
    case .return: parts.append("return")
    case .masquerade(let ports): parts.append("masquerade" + (ports.map { " to :\($0.lowerBound)-\($0.upperBound)" } ?? ""))
    case .checksumFill: return nil
    case .dnat(let target, let port): parts.append("dnat \(address) to \(target.family == .ipv6 ? "[\(target)]" : "\(target)"):\(port)")
    }
    return parts.joined(separator: " ")
}
