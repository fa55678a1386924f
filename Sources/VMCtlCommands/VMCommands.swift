public import ArgumentParser
import Addressing
import AllocationStore
import Foundation
import Libvirt
import LibvirtXML

/// `vmctl list [--label KEY=VALUE]...`
public struct List: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(abstract: "List the VMs on the connection.")
    @OptionGroup var global: GlobalOptions
    @Option(name: .customLong("label"), help: ArgumentHelp("Only VMs with this label (repeatable: all must match).", valueName: "KEY=VALUE"))
    var labels: [String] = []
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text
    public init() {}

    public func validate() throws {
        for label in labels { _ = try parsedLabel(label) }
    }

    public func run() async throws {
        let profiler = Profiler.current  // starts the clock
        defer { profiler?.report("list") }
        let connection = try await global.connect()
        let reader = VMReader(connection: connection)
        let wanted = try labels.map(parsedLabel)
        let rows = try await reader.readAll().filter { _, definition, _ in matches(definition, wanted) }
        let running = rows.filter { VMView.name(of: $0.2) == "running" }
        let leases = await reader.leases(of: Set(running.flatMap { $0.1.networks }))
        let views = rows.map { domain, definition, state in VMView(definition: definition, uuid: domain.uuid, state: state, leases: leases) }
        Output.write(try Output.render(VMTable(vms: views), as: format))
    }
}

/// `vmctl show NAME`
public struct Show: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(abstract: "Show a VM: state, size, labels, addresses, disks.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The VM's name.") var name: String
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text
    public init() {}

    public func run() async throws {
        let connection = try await global.connect()
        guard let domain = try await connection.domainIfExists(name) else {
            throw VMCtlError("no VM named \(name)", hint: "see vmctl list")
        }
        let reader = VMReader(connection: connection)
        let (definition, state) = try await reader.read(domain)
        let view = VMView(definition: definition, uuid: domain.uuid, state: state, leases: await reader.leases(of: Set(definition.networks)))
        Output.write(try Output.render(view, as: format))
    }
}

/// `vmctl destroy NAME... | --label KEY=VALUE | --expired`
public struct Destroy: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Destroy VMs vmctl created: stop, release addresses, delete volumes, undefine.",
        discussion: """
            Each VM is shut down (forced after --grace seconds; --force at once), its addresses \
            are released (DHCP host entries first), its port forwards removed, the volumes and seed \
            vmctl made for it deleted (never a base image another volume still uses), and it is \
            undefined (NVRAM too). Prints each VM destroyed. With several targets each is tried; \
            the failures are reported together and the exit status is 1.
            """)
    @OptionGroup var global: GlobalOptions
    @OptionGroup var state: StateOptions
    @Argument(help: "The VMs' names.") var names: [String] = []
    @Option(name: .customLong("label"), help: ArgumentHelp("Every vmctl VM with this label (repeatable: all must match).", valueName: "KEY=VALUE"))
    var labels: [String] = []
    @Flag(help: "Every vmctl VM whose --ttl has passed.") var expired = false
    @Flag(help: "Power off at once instead of asking the guest to shut down.") var force = false
    @Option(help: "Seconds to wait for a guest to shut down before powering it off.") var grace = 30
    @Flag(help: "A named VM that does not exist is not an error.") var ignoreMissing = false
    public init() {}

    public func validate() throws {
        if names.isEmpty && labels.isEmpty && !expired {
            throw ValidationError("name the VMs to destroy, or give --label KEY=VALUE or --expired")
        }
        for label in labels { _ = try parsedLabel(label) }
        if grace < 0 { throw ValidationError("invalid --grace \(grace): give a number of seconds, 0 or more") }
    }

    public func run() async throws {
        let profiler = Profiler.current  // starts the clock
        defer { profiler?.report("destroy") }
        let store = try state.open()
        let connection = try await global.connect()
        let all = try await VMReader(connection: connection).readAll()
        var failures: [String] = []
        var targets: [(Domain, DomainDefinition)] = []
        for name in names {
            guard let (domain, definition, _) = all.first(where: { $0.0.name == name }) else {
                if !ignoreMissing { failures.append("no VM named \(name); see vmctl list, or pass --ignore-missing") }
                continue
            }
            targets.append((domain, definition))
        }
        let wanted = try labels.map(parsedLabel)
        if !wanted.isEmpty || expired {
            let now = Date()
            for (domain, definition, _) in all where definition.metadata != nil && !targets.contains(where: { $0.0.uuid == domain.uuid }) {
                if !wanted.isEmpty && !matches(definition, wanted) { continue }
                if expired && !(definition.metadata?.expiresAt.map { $0 <= now } ?? false) { continue }
                targets.append((domain, definition))
            }
        }
        // Base images other VMs still stand on are never deleted.
        var images: [String: String] = [:]
        for (domain, definition, _) in all { if let image = definition.metadata?.image { images[image] = domain.name } }
        let destroyer = Destroyer(store: store, connection: connection, uri: global.uri, force: force, grace: .seconds(grace))
        let outcomes = await withTaskGroup(of: (String, VMCtlError?).self) { group in
            for (domain, definition) in targets {
                let others = images.filter { $0.value != domain.name }
                group.addTask {
                    do throws(VMCtlError) {
                        try await destroyer.destroy(domain, definition, imagesInUse: others)
                        return (domain.name, nil)
                    } catch {
                        return (domain.name, error)
                    }
                }
            }
            var outcomes: [(String, VMCtlError?)] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes.sorted { $0.0 < $1.0 }
        }
        for (name, error) in outcomes {
            if let error { failures.append("cannot destroy VM \(name): \(error.description)") } else { Output.write(name + "\n") }
        }
        guard failures.isEmpty else {
            for failure in failures.dropLast() { FileHandle.standardError.write(Data("Error: \(failure)\n".utf8)) }
            throw VMCtlError(failures.last!)
        }
    }
}

/// Destroys one VM, in the order that keeps a half-done destroy finishable: the domain stays
/// defined (with its metadata naming what is left) until everything else is gone, so running
/// `vmctl destroy` again completes it.
struct Destroyer: Sendable {
    let store: AllocationStore
    let connection: Connection
    let uri: String
    let force: Bool
    let grace: Duration

    func destroy(_ domain: Domain, _ definition: DomainDefinition, imagesInUse: [String: String]) async throws(VMCtlError) {
        guard let metadata = definition.metadata else {
            throw VMCtlError("it was not created by vmctl (no vmctl metadata)", hint: "remove it with virsh destroy and virsh undefine")
        }
        let forwards: [PortForward]
        do { forwards = try store.portForwards().filter { $0.vm == definition.name } } catch { throw VMCtlError(error.description) }
        // Checked first, so that nothing is stopped or released when the rules cannot be rebuilt here.
        var bridges: [String: String] = [:]
        for network in Set(forwards.map(\.network)) {
            let bridge = try await lookUpNetwork(network, on: connection).bridgeNameOrEmpty()
            try requireBridgeHere(bridge, network: network, uri: uri)
            bridges[network] = bridge
        }
        try await stop(domain)
        // vmctl create reserves with the domain's UUID as owner: these are all of its addresses.
        let owned: [Allocation]
        do { owned = try store.allocations(ownedBy: domain.uuid) } catch { throw VMCtlError(error.description) }
        let reservations = Reservations(store: store, connection: connection)
        for allocation in owned { try await reservations.release(allocation) }
        do {
            for forward in forwards {
                _ = try store.removePortForward(network: forward.network, proto: forward.proto, hostPort: forward.hostPort)
            }
        } catch {
            throw VMCtlError(error.description)
        }
        for (network, bridge) in bridges {
            let remaining: [PortForward]
            do { remaining = try store.portForwards(on: network) } catch { throw VMCtlError(error.description) }
            try PortForwardRules(bridge: bridge, forwards: remaining).apply()
        }
        let kept = try await deleteVolumes(metadata.volumes.map { "\($0.pool)/\($0.name)" }, on: connection, imagesInUse: imagesInUse)
        for volume in kept {
            FileHandle.standardError.write(Data("vmctl: kept \(volume)\n".utf8))
        }
        do {
            if try await domain.isPersistent() {
                try await domain.undefine([.nvram, .managedSave, .snapshotsMetadata])
            }
        } catch where error.code == .noDomain {
            return
        } catch {
            throw VMCtlError(while: "undefine it", error)
        }
    }

    /// Asks the guest to shut down and powers it off after the grace period (at once with --force).
    private func stop(_ domain: Domain) async throws(VMCtlError) {
        do throws(LibvirtError) {
            guard try await domain.isActive() else { return }
            if !force {
                try? await domain.shutdown()
                let deadline = ContinuousClock.now + grace
                while ContinuousClock.now < deadline {
                    if try await !domain.isActive() { return }
                    try? await Task.sleep(for: .milliseconds(200))
                }
            }
            do throws(LibvirtError) {
                try await domain.destroy()
            } catch {
                if try await domain.isActive() { throw error }  // else it stopped by itself meanwhile
            }
        } catch where error.code == .noDomain {
            return
        } catch {
            throw VMCtlError(while: "stop it", error)
        }
    }
}

extension Network {
    /// The bridge's name, or "" for a network without one.
    func bridgeNameOrEmpty() async throws(VMCtlError) -> String {
        do {
            return try NetworkDefinition(xml: try await xml()).bridge ?? ""
        } catch {
            throw VMCtlError("cannot read network \(name): \(error)")
        }
    }
}

/// `--label KEY=VALUE` as a pair; a usage error otherwise.
func parsedLabel(_ text: String) throws(ValidationError) -> (key: String, value: String) {
    do { return try parseLabel(text) } catch { throw ValidationError(error.description) }
}

/// Whether the VM carries every one of the labels.
func matches(_ definition: DomainDefinition, _ labels: [(key: String, value: String)]) -> Bool {
    labels.allSatisfy { definition.metadata?.labels[$0.key] == $0.value }
}
