public import ArgumentParser
import Addressing
import AllocationStore
import Foundation
import Libvirt
import LibvirtXML

/// `vmctl doctor [--fix]`: compares the store, the networks' DHCP host entries (live and
/// persistent), the leases and the domains, and repairs what can be repaired.
public struct Doctor: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Find (and with --fix, repair) disagreements between vmctl's allocations and libvirt.",
        discussion: """
            Finds creates that were killed before they finished (their domain, addresses and \
            volumes are undone by --fix), allocations whose VM or network is gone, allocations whose DHCP host entry is \
            missing or only in one of the live and persistent configs, host entries inside a pool's \
            ranges that no allocation owns, and leases on reserved addresses held by another MAC. \
            Exit status 0 when nothing (is left) to report, 1 otherwise.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var state: StateOptions
    @Flag(help: "Repair what can be repaired.") var fix = false
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text

    public init() {}

    public func run() async throws {
        let store = try state.open()
        let connection = try await global.connect()
        let reservations = Reservations(store: store, connection: connection)
        var abandoned = try abandonedCreates(store)
        var undone: [AbandonedCreate] = []
        if fix {
            // First: they own allocations that must not be taken for another finding.
            for create in abandoned {
                try await rollBack(create.pending, store: store, connection: connection)
                undone.append(create)
            }
            abandoned = try abandonedCreates(store)
        }
        var findings = try await examine(store: store, reservations: reservations)
        var repaired: [Finding] = []
        if fix {
            for finding in findings where finding.fixable {
                try await repair(finding, store: store, reservations: reservations)
                repaired.append(finding)
            }
            findings = try await examine(store: store, reservations: reservations)
        }
        let report = DoctorReport(findings: findings, repaired: repaired, abandonedCreates: abandoned, undoneCreates: undone)
        Output.write(try Output.render(report, as: format))
        if !findings.isEmpty || !abandoned.isEmpty { throw ExitCode.failure }
    }

    /// Creates whose process is gone: killed before they finished.
    private func abandonedCreates(_ store: AllocationStore) throws -> [AbandonedCreate] {
        try store.pendingCreates().filter { !ProcessTag.isAlive($0.process) }.map(AbandonedCreate.init)
    }

    /// Gathers libvirt's view of every network the store mentions and diagnoses it.
    private func examine(store: AllocationStore, reservations: Reservations) async throws -> [Finding] {
        let allocations = try store.allocations()
        let pools = try store.pools()
        var networks: [String: NetworkView] = [:]
        for name in Set(pools.map(\.network) + allocations.map(\.network)) {
            guard let network = try await reservations.connection.networkIfExists(name) else { continue }
            var view = try await reservations.views(of: network)
            if view.live != nil { view.leases = (try? await network.dhcpLeases()) ?? [] }
            networks[name] = view
        }
        let domains: [Domain]
        do { domains = try await reservations.connection.domains() } catch {
            throw VMCtlError(while: "list the domains", error)
        }
        // A create under way owns its addresses before its domain exists.
        let creating = try store.pendingCreates().map(\.uuid)
        return diagnose(allocations: allocations, pools: pools, networks: networks, domains: Set(domains.map(\.uuid) + creating))
    }

    private func repair(_ finding: Finding, store: AllocationStore, reservations: Reservations) async throws {
        let allocation = try store.allocations().first { $0.network == finding.network && $0.address == finding.address }
        switch finding.kind {
        case .ownerGone:
            if let allocation { try await reservations.release(allocation) }
        case .networkGone:
            if let allocation { _ = try store.release(allocation.address, from: allocation.pool) }
        case .entryMissing, .entryDrift:
            guard let allocation, let network = try await reservations.connection.networkIfExists(finding.network) else { return }
            let view = try await reservations.views(of: network)
            guard let (index, host) = expectedEntry(for: allocation, in: view.definition) else { return }
            try await reservations.change(.add, host, index: index, on: network, in: view.copies(missing: host, at: index))
        case .entryWithoutOwner:
            guard let network = try await reservations.connection.networkIfExists(finding.network) else { return }
            let view = try await reservations.views(of: network)
            for definition in [view.live, view.persistent].compactMap({ $0 }) {
                for ip in definition.ips {
                    for host in ip.hosts where host.address == finding.address && host.mac == finding.mac {
                        try await reservations.change(.delete, host, index: ip.index, on: network,
                                                      in: view.copies(holding: host, at: ip.index))
                        return
                    }
                }
            }
        case .leaseByOtherMAC:
            return
        }
    }
}

/// A create killed before it finished, as doctor reports it.
struct AbandonedCreate: Encodable {
    var name: String
    var uuid: UUID
    var startedAt: Date
    var volumes: [String]
    let pending: PendingCreate

    init(_ pending: PendingCreate) {
        name = pending.name
        uuid = pending.uuid
        startedAt = pending.startedAt
        volumes = pending.volumes
        self.pending = pending
    }

    enum CodingKeys: String, CodingKey { case name, uuid, startedAt, volumes }

    var message: String {
        "VM \(name): its create was killed before it finished; --fix removes its domain, addresses and volumes (\(volumes.isEmpty ? "none" : volumes.joined(separator: ", ")))"
    }
}

/// What `vmctl doctor` prints: the findings left, and with --fix those repaired.
struct DoctorReport: Encodable, TextRenderable {
    var findings: [Finding]
    var repaired: [Finding]
    var abandonedCreates: [AbandonedCreate]
    var undoneCreates: [AbandonedCreate]

    var text: String {
        var lines = undoneCreates.map { "undone abandonedCreate: \($0.message)" }
        lines += repaired.map { "repaired \($0.kind.rawValue): \($0.message)" }
        lines += abandonedCreates.map { "abandonedCreate: \($0.message)" }
        lines += findings.map { "\($0.kind.rawValue): \($0.message)" }
        if findings.isEmpty && abandonedCreates.isEmpty { lines.append("no problems found") }
        return lines.joined(separator: "\n") + "\n"
    }
}
