public import ArgumentParser
import Foundation
import Libvirt
import LibvirtXML

extension NetworkCommand {
    /// `vmctl network firewall NAME [--format iptables|nft] [--apply]`
    public struct Firewall: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Print (or --apply) the host firewall an open network needs.",
            discussion: """
                Forwarding for the network's subnets, masquerading for its private IPv4 subnets, DNS \
                and DHCP from guests, and the DHCP checksum fix (seeds 002 and 004), in vmctl's own \
                chains (VMCTL-*-BRIDGE) or nft table (vmctl_BRIDGE), so that applying again replaces \
                them. --apply runs iptables-restore/ip6tables-restore (or nft) and enables IP \
                forwarding in the network namespace vmctl runs in, which must hold the bridge.
                """)

        public enum RuleFormat: String, ExpressibleByArgument, CaseIterable, Sendable { case iptables, nft }

        @OptionGroup var global: GlobalOptions
        @Argument(help: "The open network's name.") var name: String
        @Option(help: "iptables (iptables-restore input) or nft.") var format: RuleFormat = .iptables
        @Flag(help: "Apply the rules on this host instead of printing them.") var apply = false
        public init() {}

        public func run() async throws {
            let connection = try await global.connect()
            let network = try await lookUpNetwork(name, on: connection)
            let definition = try NetworkDefinition(xml: try await network.xml())
            guard definition.forwardMode == "open" else {
                throw VMCtlError("network \(name) is \(definition.forwardMode ?? "isolated"): libvirt manages its firewall",
                                 hint: "vmctl network firewall is for open networks")
            }
            let rules = FirewallRules(definition)
            guard apply else {
                switch format {
                case .iptables:
                    var text = rules.iptables
                    text += rules.jumps(ipv6: false).map { "# once: iptables -t \($0.table) -I \($0.chain) -j \($0.target)\n" }.joined()
                    if let v6 = rules.ip6tables {
                        text += v6 + rules.jumps(ipv6: true).map { "# once: ip6tables -t \($0.table) -I \($0.chain) -j \($0.target)\n" }.joined()
                    }
                    Output.write(text)
                case .nft:
                    Output.write(rules.nft)
                }
                return
            }
            try requireBridgeHere(rules.bridge, network: name, uri: global.uri)
            try enableForwarding(ipv6: rules.ipv6.isEmpty == false)
            switch format {
            case .iptables:
                try runTool("iptables-restore", ["--noflush"], input: rules.iptables)
                for jump in rules.jumps(ipv6: false) { try ensureJump("iptables", jump) }
                if let v6 = rules.ip6tables {
                    try runTool("ip6tables-restore", ["--noflush"], input: v6)
                    for jump in rules.jumps(ipv6: true) { try ensureJump("ip6tables", jump) }
                }
            case .nft:
                try runTool("nft", ["-f", "-"], input: rules.nft)
            }
        }
    }
}

/// Inserts a jump from a built-in chain into vmctl's, unless it is there already.
func ensureJump(_ tool: String, _ jump: (table: String, chain: String, target: String)) throws(VMCtlError) {
    if (try? runTool(tool, ["-t", jump.table, "-C", jump.chain, "-j", jump.target])) != nil { return }
    try runTool(tool, ["-t", jump.table, "-I", jump.chain, "1", "-j", jump.target])
}

private func enableForwarding(ipv6: Bool) throws(VMCtlError) {
    var settings = ["/proc/sys/net/ipv4/ip_forward"]
    if ipv6 { settings.append("/proc/sys/net/ipv6/conf/all/forwarding") }
    for path in settings {
        do {
            try "1\n".write(toFile: path, atomically: false, encoding: .utf8)
        } catch {
            throw VMCtlError("cannot enable forwarding (\(path)): \(error.localizedDescription)", hint: "run as root")
        }
    }
}

/// Where a system tool is installed (/usr/sbin, /sbin or /usr/bin), if it is.
func toolPath(_ tool: String) -> String? {
    ["/usr/sbin/", "/sbin/", "/usr/bin/"].map { $0 + tool }.first(where: FileManager.default.isExecutableFile)
}

/// Runs a system tool (found in /usr/sbin or /sbin), feeding `input`; throws with its stderr.
@discardableResult
func runTool(_ tool: String, _ arguments: [String], input: String? = nil) throws(VMCtlError) -> String {
    guard let path = toolPath(tool) else {
        let package = ["iptables-restore": "iptables", "ip6tables-restore": "iptables", "iptables": "iptables", "nft": "nftables"][tool] ?? tool
        throw VMCtlError("\(tool) is not installed", hint: "install it (Debian package \(package))")
    }
    let started = ContinuousClock.now
    defer { Profiler.tool(tool, from: started) }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = stderr
    do {
        try process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try stdin.fileHandleForWriting.close()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        let errors = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let message = String(decoding: errors, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw VMCtlError("\(tool) \(arguments.joined(separator: " ")) failed: \(message)")
        }
        return String(decoding: output, as: UTF8.self)
    } catch let error as VMCtlError {
        throw error
    } catch {
        throw VMCtlError("cannot run \(tool): \(error.localizedDescription)")
    }
}
