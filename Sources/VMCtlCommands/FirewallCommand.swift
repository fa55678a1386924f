public import ArgumentParser
import Foundation
import Provisioning

extension NetworkCommand {
    /// `vmctl network firewall NAME [--format iptables|nft] [--apply]`
    public struct Firewall: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            commandName: "firewall",
            abstract: "Print (or --apply) the host firewall an open network needs.",
            discussion: """
                Forwarding for the network's subnets, masquerading for its private IPv4 subnets, DNS \
                and DHCP from guests, and the DHCP checksum fix (seeds 002 and 004), in vmctl's own \
                chains (VMCTL-*-BRIDGE) or nft table (vmctl_BRIDGE), so that applying again replaces \
                them. --apply runs iptables-restore/ip6tables-restore (or nft) and enables IP \
                forwarding in the network namespace vmctl runs in, which must hold the bridge.
                """)

        /// The rules' format: here `--format` names a firewall language, not text or JSON.
        public enum RuleFormat: String, ExpressibleByArgument, CaseIterable, Sendable { case iptables, nft }

        @OptionGroup var global: GlobalOptions
        @OptionGroup var state: StateOptions
        @Argument(help: "The open network's name.", completion: Complete.network) var name: String
        @Option(help: "iptables (iptables-restore input) or nft.") var format: RuleFormat = .iptables
        @Flag(help: "Apply the rules on this host instead of printing them.") var apply = false
        public init() {}

        public func run() async throws {
            let state = try await state.open()
            let networks = try await global.connect().networks
            let rules = try await networks.firewallRules(name, state: state)
            guard apply else {
                return Output.write(format == .nft ? rules.nft : rules.iptablesWithJumps)
            }
            try await networks.applyFirewall(rules, nft: format == .nft)
        }
    }
}
