public import ArgumentParser
import Addressing
import AllocationStore
import Foundation
import Libvirt
import LibvirtXML

/// The DNAT and forward-accept rules for a network's port forwards, in vmctl's own chains
/// (`VMCTL-DNAT-BRIDGE` in nat, `VMCTL-PFWD-BRIDGE` in filter), rebuilt whole from the store each
/// time: libvirt's restarts of the network rebuild only libvirt's own chains, so these stay.
struct PortForwardRules {
    var bridge: String
    var forwards: [PortForward]

    var dnatChain: String { "VMCTL-DNAT-\(bridge)" }
    var acceptChain: String { "VMCTL-PFWD-\(bridge)" }

    var iptables: String {
        var lines = ["*nat", ":\(dnatChain) - [0:0]"]
        lines += forwards.map {
            "-A \(dnatChain) ! -i \(bridge) -p \($0.proto) -m \($0.proto) --dport \($0.hostPort) -j DNAT --to-destination \($0.guestAddress):\($0.guestPort)"
        }
        lines += ["COMMIT", "*filter", ":\(acceptChain) - [0:0]"]
        lines += forwards.map {
            "-A \(acceptChain) -d \($0.guestAddress)/32 -o \(bridge) -p \($0.proto) -m \($0.proto) --dport \($0.guestPort) -m conntrack --ctstate DNAT -j ACCEPT"
        }
        return (lines + ["COMMIT"]).joined(separator: "\n") + "\n"
    }

    /// Ahead of libvirt's own FORWARD rules, which reject new inbound connections on nat networks.
    var jumps: [(table: String, chain: String, target: String)] {
        [("nat", "PREROUTING", dnatChain), ("filter", "FORWARD", acceptChain)]
    }

    /// Loads the rules in this network namespace.
    func apply() throws(VMCtlError) {
        try runTool("iptables-restore", ["--noflush"], input: iptables)
        for jump in jumps { try ensureJump("iptables", jump) }
    }
}

/// Refuses to change a firewall other than the one libvirtd's bridge `bridge` lives behind.
func requireBridgeHere(_ bridge: String, network: String, uri: String) throws(VMCtlError) {
    guard isLocal(uri) else {
        throw VMCtlError("this changes the firewall of the host vmctl runs on, but \(uri) is another host", hint: "run vmctl there")
    }
    guard FileManager.default.fileExists(atPath: "/sys/class/net/\(bridge)") else {
        throw VMCtlError("bridge \(bridge) of network \(network) is not in this network namespace",
                         hint: "run vmctl where libvirtd's bridges are (e.g. ip netns exec NS vmctl ...)")
    }
}

extension NetworkCommand {
    /// `vmctl network forward add|list|remove`
    public struct Forward: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Forward host ports to guests on nat and open networks.",
            subcommands: [Add.self, List.self, Remove.self])
        public init() {}

        public enum Proto: String, ExpressibleByArgument, CaseIterable, Sendable { case tcp, udp }

        /// `vmctl network forward add NAME --host-port P --to VM:PORT [--proto tcp|udp]`
        public struct Add: AsyncParsableCommand {
            public static let configuration = CommandConfiguration(
                abstract: "Forward a host port to a VM's port (DNAT); the VM's IPv4 address on the network is looked up now.")
            @OptionGroup var global: GlobalOptions
            @OptionGroup var state: StateOptions
            @Argument(help: "The network.") var name: String
            @Option(help: "The host port.") var hostPort: Int
            @Option(help: "VM:PORT, the domain and its port.") var to: String
            @Option(help: "tcp or udp.") var proto: Proto = .tcp
            public init() {}

            public func validate() throws {
                guard (1...65535).contains(hostPort) else { throw ValidationError("invalid --host-port \(hostPort): give 1 to 65535") }
                let parts = to.split(separator: ":")
                guard parts.count == 2, let port = Int(parts[1]), (1...65535).contains(port), !parts[0].isEmpty else {
                    throw ValidationError("invalid --to '\(to)': give VM:PORT, such as web1:80")
                }
            }

            public func run() async throws {
                let parts = to.split(separator: ":")
                let vmName = String(parts[0]), guestPort = Int(parts[1])!
                let store = try state.open()
                let connection = try await global.connect()
                let network = try await lookUpNetwork(name, on: connection)
                let definition = try NetworkDefinition(xml: try await network.xml())
                guard definition.forwardMode == "nat" || definition.forwardMode == "open" else {
                    throw VMCtlError("network \(name) is \(definition.forwardMode ?? "isolated"): port forwards are for nat and open networks")
                }
                let bridge = definition.bridge ?? ""
                try requireBridgeHere(bridge, network: name, uri: global.uri)
                let address = try await guestAddress(of: vmName, on: network, connection: connection, store: store)
                let forward = try store.add(PortForward(network: name, proto: proto.rawValue, hostPort: hostPort, vm: vmName,
                                                        guestAddress: address, guestPort: guestPort))
                do {
                    try PortForwardRules(bridge: bridge, forwards: try store.portForwards(on: name)).apply()
                } catch {
                    _ = try? store.removePortForward(network: name, proto: forward.proto, hostPort: forward.hostPort)
                    throw error
                }
                Output.write("\(proto.rawValue)/\(hostPort) -> \(vmName) \(address):\(guestPort)\n")
            }
        }

        /// `vmctl network forward list [NAME]`
        public struct List: AsyncParsableCommand {
            public static let configuration = CommandConfiguration(abstract: "List port forwards.")
            @OptionGroup var state: StateOptions
            @Argument(help: "Only this network's.") var name: String?
            @Option(help: "Output format: text or json.") var format: OutputFormat = .text
            public init() {}

            public func run() async throws {
                let forwards = try state.open().portForwards(on: name)
                Output.write(try Output.render(PortForwardTable(forwards: forwards), as: format))
            }
        }

        /// `vmctl network forward remove NAME --host-port P [--proto tcp|udp]`
        public struct Remove: AsyncParsableCommand {
            public static let configuration = CommandConfiguration(abstract: "Remove a port forward.")
            @OptionGroup var global: GlobalOptions
            @OptionGroup var state: StateOptions
            @Argument(help: "The network.") var name: String
            @Option(help: "The host port.") var hostPort: Int
            @Option(help: "tcp or udp.") var proto: Proto = .tcp
            public init() {}

            public func run() async throws {
                let store = try state.open()
                let connection = try await global.connect()
                let network = try await lookUpNetwork(name, on: connection)
                let bridge = try NetworkDefinition(xml: try await network.xml()).bridge ?? ""
                try requireBridgeHere(bridge, network: name, uri: global.uri)
                let removed = try store.removePortForward(network: name, proto: proto.rawValue, hostPort: hostPort)
                do {
                    try PortForwardRules(bridge: bridge, forwards: try store.portForwards(on: name)).apply()
                } catch {
                    _ = try? store.add(removed)
                    throw error
                }
            }
        }
    }
}

/// The VM's IPv4 address on `network`: its allocation there, else its current DHCP lease.
private func guestAddress(of vm: String, on network: Network, connection: Connection, store: AllocationStore) async throws -> IPAddress {
    guard let domain = try await connection.domainIfExists(vm) else {
        throw VMCtlError("no VM named \(vm)", hint: "give --to VM:PORT with an existing domain")
    }
    let macs = try DomainDefinition(xml: try await domain.xml()).interfaces.filter { $0.network == network.name }.compactMap(\.mac)
    guard !macs.isEmpty else { throw VMCtlError("VM \(vm) has no interface on network \(network.name)") }
    if let allocation = try store.allocations().first(where: { $0.network == network.name && $0.family == .ipv4 && macs.contains($0.mac) }) {
        return allocation.address
    }
    for mac in macs {
        if let lease = try await network.dhcpLeases(mac: mac.description).first(where: { $0.family == .ipv4 }),
           let address = IPAddress(lease.address) {
            return address
        }
    }
    throw VMCtlError("VM \(vm) has no IPv4 address on network \(network.name) yet",
                     hint: "reserve one (vmctl pool reserve) or wait for its DHCP lease")
}

/// `network forward list`: a table in text, an array in JSON.
struct PortForwardTable: Encodable, TextRenderable {
    var forwards: [PortForward]
    func encode(to encoder: any Encoder) throws { try forwards.encode(to: encoder) }
    var text: String {
        Output.columns(["NETWORK", "PROTO", "HOST PORT", "VM", "TO"], forwards.map {
            [$0.network, $0.proto, "\($0.hostPort)", $0.vm, "\($0.guestAddress):\($0.guestPort)"]
        })
    }
}
