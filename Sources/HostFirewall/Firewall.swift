public import Addressing
import Foundation
public import Logging

/// Applies vmctl's rule sets to the firewall of the network namespace this process runs in.
public struct Firewall: Sendable {
    public var logger: Logger

    public init(logger: Logger) {
        self.logger = logger
    }

    /// Loads a rule set (`iptables-restore --noflush`: vmctl's chains are replaced, nobody
    /// else's) and inserts the jumps into them that are not there yet.
    public func apply(_ rules: RuleSet, header: String) async throws(ToolError) {
        let restore = SystemTool(rules.family == .ipv4 ? "iptables-restore" : "ip6tables-restore")
        try await restore.run(["--noflush"], input: rules.iptablesRestore(header: header), logger: logger)
        for jump in rules.jumps { try await ensure(jump, with: SystemTool(rules.tool)) }
    }

    /// Loads an nft script (`nft -f -`).
    public func applyNFT(_ script: String) async throws(ToolError) {
        try await SystemTool("nft").run(["-f", "-"], input: script, logger: logger)
    }

    /// Inserts a jump from a built-in chain into vmctl's, unless it is there already.
    private func ensure(_ jump: Jump, with tool: SystemTool) async throws(ToolError) {
        do {
            try await tool.run(["-t", jump.table.rawValue, "-C", jump.chain.rawValue, "-j", jump.target], logger: logger)
            return
        } catch {
            guard case .failed = error.reason else { throw error }
        }
        try await tool.run(["-t", jump.table.rawValue, "-I", jump.chain.rawValue, "1", "-j", jump.target], logger: logger)
    }

    /// Every jump vmctl may have made for `bridge`, by the tool that holds it: the open-network
    /// chains (IPv4 with NAT and checksum, IPv6) and the port-forward chains.
    static func jumps(forBridge bridge: String) -> [(tool: String, jump: Jump)] {
        let open = FirewallRules(network: "", bridge: bridge, ipv4: [Subnet("10.0.0.0/8")!], ipv6: [Subnet("fd00::/8")!], dhcpv6: true)
        let sets = [open.ipv4Rules, PortForwardRules(bridge: bridge, forwards: []).rules] + (open.ipv6Rules.map { [$0] } ?? [])
        return sets.flatMap { set in set.jumps.map { (set.tool, $0) } }
    }

    /// Removes what vmctl made for `bridge` in this network namespace's firewall: the jumps into
    /// its chains, the chains, and its nft table. What is not there is skipped; a tool that is not
    /// installed holds nothing. Returns what was removed, e.g. `iptables filter VMCTL-FWD-vmbr3`.
    public func removeRules(ofBridge bridge: String) async throws(ToolError) -> [String] {
        var removed: [String] = []
        var listings: [String: [Substring]] = [:]
        for (name, jump) in Self.jumps(forBridge: bridge) {
            let tool = SystemTool(name)
            guard tool.isInstalled else { continue }
            let key = "\(name) \(jump.table.rawValue)"
            if listings[key] == nil {
                listings[key] = try await tool.run(["-t", jump.table.rawValue, "-S"], logger: logger).split(separator: "\n")
            }
            let lines = listings[key] ?? []
            guard lines.contains(where: { $0 == "-N \(jump.target)" }) else { continue }
            for _ in lines.filter({ $0.hasPrefix("-A \(jump.chain.rawValue) ") && $0.hasSuffix(" -j \(jump.target)") }) {
                try await tool.run(["-t", jump.table.rawValue, "-D", jump.chain.rawValue, "-j", jump.target], logger: logger)
            }
            try await tool.run(["-t", jump.table.rawValue, "-F", jump.target], logger: logger)
            try await tool.run(["-t", jump.table.rawValue, "-X", jump.target], logger: logger)
            removed.append("\(name) \(jump.table.rawValue) \(jump.target)")
        }
        let nft = SystemTool("nft")
        let table = FirewallRules(network: "", bridge: bridge, ipv4: [], ipv6: [], dhcpv6: false).nftTable
        if nft.isInstalled, try await nft.run(["list", "tables"], logger: logger).split(separator: "\n").contains(where: { $0 == "table inet \(table)" }) {
            try await nft.run(["delete", "table", "inet", table], logger: logger)
            removed.append("nft inet \(table)")
        }
        return removed
    }

    /// What vmctl's chains and nft tables in this network namespace are for, by bridge: e.g.
    /// `vmbr3: [iptables filter VMCTL-FWD-vmbr3, nft inet vmctl_vmbr3]`. An nft table's bridge
    /// is read back from its name (a `-` in a bridge's name is `_` there).
    public func rulesByBridge() async throws(ToolError) -> [String: [String]] {
        var found: [String: [String]] = [:]
        for name in ["iptables", "ip6tables"] {
            let tool = SystemTool(name)
            guard tool.isInstalled else { continue }
            for table in ["filter", "nat", "mangle"] {
                for line in try await tool.run(["-t", table, "-S"], logger: logger).split(separator: "\n") where line.hasPrefix("-N VMCTL-") {
                    let chain = line.dropFirst(3)
                    // VMCTL-KIND-BRIDGE: the bridge is everything after the kind.
                    let parts = chain.split(separator: "-", maxSplits: 2)
                    guard parts.count == 3 else { continue }
                    found[String(parts[2]), default: []].append("\(name) \(table) \(chain)")
                }
            }
        }
        let nft = SystemTool("nft")
        if nft.isInstalled {
            for line in try await nft.run(["list", "tables"], logger: logger).split(separator: "\n") where line.hasPrefix("table inet vmctl_") {
                let table = line.dropFirst("table inet ".count)
                found[String(table.dropFirst("vmctl_".count)), default: []].append("nft inet \(table)")
            }
        }
        return found
    }

    /// Turns IP forwarding on (IPv4, and IPv6 when asked) in this network namespace.
    public func enableForwarding(ipv6: Bool) throws(ForwardingError) {
        var settings = ["/proc/sys/net/ipv4/ip_forward"]
        if ipv6 { settings.append("/proc/sys/net/ipv6/conf/all/forwarding") }
        for path in settings {
            do {
                try "1\n".write(toFile: path, atomically: false, encoding: .utf8)
            } catch {
                throw ForwardingError(path: path, reason: error.localizedDescription)
            }
        }
    }

    /// Whether the interface `name` exists in this network namespace.
    public static func interfaceExists(_ name: String) -> Bool {
        !name.isEmpty && FileManager.default.fileExists(atPath: "/sys/class/net/\(name)")
    }
}

/// A forwarding sysctl that could not be set.
public struct ForwardingError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var reason: String
    public var description: String { "cannot enable forwarding (\(path)): \(reason); run as root" }
}

/// This machine's interface addresses (getifaddrs), with their prefix lengths.
public func localInterfaceAddresses() -> [String: [(address: IPAddress, prefix: Int)]] {
    var result: [String: [(address: IPAddress, prefix: Int)]] = [:]
    var list: UnsafeMutablePointer<ifaddrs>?
    guard getifaddrs(&list) == 0, let first = list else { return [:] }
    defer { freeifaddrs(list) }
    for entry in sequence(first: first, next: { $0.pointee.ifa_next }) {
        guard let address = entry.pointee.ifa_addr, let mask = entry.pointee.ifa_netmask else { continue }
        let name = String(validatingCString: entry.pointee.ifa_name) ?? ""
        func text(_ pointer: UnsafeMutablePointer<sockaddr>) -> String? {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            let length = socklen_t(pointer.pointee.sa_family == sa_family_t(AF_INET6) ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
            guard getnameinfo(pointer, length, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 else { return nil }
            return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).split(separator: "%").first.map(String.init)
        }
        let family = Int32(address.pointee.sa_family)
        guard family == AF_INET || family == AF_INET6, let addressText = text(address), let maskText = text(mask),
              let ip = IPAddress(addressText), let maskAddress = IPAddress(maskText) else { continue }
        result[name, default: []].append((ip, maskAddress.number.nonzeroBitCount))
    }
    return result
}
