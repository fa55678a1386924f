public import ArgumentParser
import Foundation
import Provisioning

extension NetworkCommand {
    /// `vmctl network forward add|list|remove`
    public struct Forward: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            commandName: "forward",
            abstract: "Forward host ports to guests on nat and open networks.",
            subcommands: [Add.self, List.self, Remove.self])
        public init() {}

        /// `vmctl network forward add NAME --host-port P --to VM:PORT [--proto tcp|udp]`
        public struct Add: AsyncParsableCommand {
            public static let configuration = CommandConfiguration(
                commandName: "add",
                abstract: "Forward a host port to a VM's port (DNAT); the VM's IPv4 address on the network is looked up now.")
            @OptionGroup var global: GlobalOptions
            @OptionGroup var state: StateOptions
            @Argument(help: "The network.", completion: Complete.network) var name: String
            @Option(help: "The host port.") var hostPort: Int
            @Option(help: "VM:PORT, the domain and its port.") var to: String
            @Option(help: "tcp or udp.") var proto: TransportProtocol = .tcp
            @OptionGroup var output: OutputOptions
            public init() {}

            public func validate() throws {
                guard (1...65535).contains(hostPort) else { throw ValidationError("invalid --host-port \(hostPort): give 1 to 65535") }
                _ = try target()
            }

            private func target() throws -> (vm: String, port: Int) {
                let parts = to.split(separator: ":")
                guard parts.count == 2, let port = Int(parts[1]), (1...65535).contains(port), !parts[0].isEmpty else {
                    throw ValidationError("invalid --to '\(to)': give VM:PORT, such as web1:80")
                }
                return (String(parts[0]), port)
            }

            public func run() async throws {
                let (vm, port) = try target()
                let state = try await state.open()
                let forward = try await global.connect().portForwards(state).add(on: name, proto: proto, hostPort: hostPort, vm: vm, guestPort: port)
                try Output.print(forward, output)
            }
        }

        /// `vmctl network forward list [NAME]`
        public struct List: AsyncParsableCommand {
            public static let configuration = CommandConfiguration(commandName: "list", abstract: "List port forwards.", aliases: ["ls"])
            @OptionGroup var state: StateOptions
            @Argument(help: "Only this network's.", completion: Complete.network) var name: String?
            @OptionGroup var output: OutputOptions
            public init() {}

            public func run() async throws {
                try Output.print(try await state.open().portForwards(on: name), output)
            }
        }

        /// `vmctl network forward remove NAME --host-port P [--proto tcp|udp]`
        public struct Remove: AsyncParsableCommand {
            public static let configuration = CommandConfiguration(commandName: "remove", abstract: "Remove a port forward.", aliases: ["rm"])
            @OptionGroup var global: GlobalOptions
            @OptionGroup var state: StateOptions
            @Argument(help: "The network.", completion: Complete.network) var name: String
            @Option(help: "The host port.") var hostPort: Int
            @Option(help: "tcp or udp.") var proto: TransportProtocol = .tcp
            @OptionGroup var output: OutputOptions
            public init() {}

            public func run() async throws {
                let state = try await state.open()
                let removed = try await global.connect().portForwards(state).remove(on: name, proto: proto, hostPort: hostPort)
                try Output.print(RemovedPortForward(forward: removed), output)
            }
        }
    }
}

extension TransportProtocol: ExpressibleByArgument {}
