import AllocationStore
public import Foundation
import HostFirewall
public import Libvirt
public import LibvirtXML
import Logging

/// Which VMs a destroy takes: the named ones, and every vmctl VM matching the labels or expired.
public struct DestroySelection: Sendable {
    public var names: [String]
    public var labels: [(key: String, value: String)]
    public var expired: Bool
    /// A named VM that does not exist is no failure.
    public var ignoreMissing: Bool

    public init(names: [String], labels: [(key: String, value: String)], expired: Bool, ignoreMissing: Bool) {
        self.names = names
        self.labels = labels
        self.expired = expired
        self.ignoreMissing = ignoreMissing
    }

    /// The targets among `all` (the named ones in the order asked, then the others in the
    /// listing's order), and a failure line for each named VM that is missing. Domains without
    /// vmctl's metadata are only ever taken by name (and then refused by the destroy). Pure:
    /// `Target` is whatever the caller destroys (a libvirt domain, or a test's value).
    public func select<Target>(from all: [(target: Target, definition: DomainDefinition)], now: Date)
        -> (targets: [(target: Target, definition: DomainDefinition)], missing: [String]) {
        var targets: [(target: Target, definition: DomainDefinition)] = []
        func taken(_ definition: DomainDefinition) -> Bool { targets.contains { $0.definition.name == definition.name } }
        var missing: [String] = []
        for name in names {
            guard let found = all.first(where: { $0.definition.name == name }) else {
                if !ignoreMissing { missing.append("no VM named \(name); see vmctl list") }
                continue
            }
            if !taken(found.definition) { targets.append(found) }
        }
        guard !labels.isEmpty || expired else { return (targets, missing) }
        for candidate in all where candidate.definition.metadata != nil && !taken(candidate.definition) {
            if !labels.isEmpty && !candidate.definition.carries(labels) { continue }
            if expired && !(candidate.definition.metadata?.expiresAt.map { $0 <= now } ?? false) { continue }
            targets.append(candidate)
        }
        return (targets, missing)
    }
}

/// Destroys VMs, in the order that keeps a half-done destroy finishable: the domain stays
/// defined (with its metadata naming what is left) until everything else is gone, so running
/// the destroy again completes it.
public struct Destroyer: Sendable {
    public let state: State
    public let session: Session
    /// Power off at once instead of asking the guest to shut down.
    public let force: Bool
    /// How long a guest may take to shut down before it is powered off.
    public let grace: Duration

    public init(state: State, session: Session, force: Bool, grace: Duration) {
        self.state = state
        self.session = session
        self.force = force
        self.grace = grace
    }

    private var connection: Connection { session.connection }
    private var uri: String { session.uri }
    private var logger: Logger { session.logger }

    /// The outcome per VM, in name order.
    public struct Outcome: Sendable {
        public var name: String
        public var error: ProvisioningError?
        /// Volumes kept because something else still uses them.
        public var kept: [String]
    }

    /// Destroys every target of `selection`, several at once; each failure is reported in its outcome.
    public func destroy(_ selection: DestroySelection) async throws(ProvisioningError) -> (outcomes: [Outcome], missing: [String]) {
        let all = try await VMReader(connection: connection).readAll().map { (target: $0.0, definition: $0.1) }
        let (targets, missing) = selection.select(from: all, now: Date())
        // Base images other VMs still stand on are never deleted.
        var images: [String: String] = [:]
        for (domain, definition) in all { if let image = definition.metadata?.image { images[image] = domain.name } }
        // The power-offs, the slow calls, spread over connections; the rest stays on this one.
        let lanes = await PowerLanes.open(session, calls: targets.count)
        let outcomes = await withTaskGroup(of: Outcome.self) { group in
            for (index, (domain, definition)) in targets.enumerated() {
                let others = images.filter { $0.value != domain.name }
                group.addTask {
                    do throws(ProvisioningError) {
                        let powered = await lanes.domain(domain, for: index)
                        return Outcome(name: domain.name, error: nil, kept: try await destroy(domain, definition, imagesInUse: others, poweringOff: powered))
                    } catch {
                        return Outcome(name: domain.name, error: error, kept: [])
                    }
                }
            }
            var outcomes: [Outcome] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes.sorted { $0.name < $1.name }
        }
        return (outcomes, missing)
    }

    /// Destroys one VM; returns the volumes kept because another volume or VM uses them.
    /// `powered` is the handle it is powered off through (the same domain on another connection,
    /// see ``PowerLanes``), `domain` by default.
    public func destroy(_ domain: Domain, _ definition: DomainDefinition, imagesInUse: [String: String],
                        poweringOff powered: Domain? = nil) async throws(ProvisioningError) -> [String] {
        guard let metadata = definition.metadata else {
            throw ProvisioningError(.conflict, "it was not created by vmctl (no vmctl metadata)", hint: "remove it with virsh destroy and virsh undefine")
        }
        let forwards = try await state.run { store throws(StoreError) in try store.portForwards() }.filter { $0.vm == definition.name }
        // Checked first, so that nothing is stopped or released when the rules cannot be rebuilt here.
        var bridges: [String: String] = [:]
        for network in Set(forwards.map(\.network)) {
            let bridge = try await connection.existingNetwork(network).definition().bridge ?? ""
            try requireBridgeHere(bridge, network: network, uri: uri)
            bridges[network] = bridge
        }
        logger.debug("stopping \(domain.name)")
        try await powerOff(powered ?? domain, force: force, grace: grace)
        // vmctl create reserves with the domain's UUID as owner. The metadata records them too,
        // so that a lost state file cannot leave the host entries behind.
        var owned = try await state.run { store throws(StoreError) in try store.allocations(ownedBy: domain.uuid) }
        for recorded in metadata.addresses where !owned.contains(where: { $0.network == recorded.network && $0.address == recorded.address }) {
            owned.append(Allocation(pool: recorded.pool, network: recorded.network, address: recorded.address, ownerUUID: domain.uuid,
                                    ownerName: domain.name, mac: recorded.mac))
        }
        let reservations = Reservations(state: state, connection: connection, host: session.host)
        for allocation in owned {
            logger.debug("releasing \(allocation.address) of \(domain.name)")
            try await reservations.release(allocation)
        }
        try await state.run { store throws(StoreError) in
            for forward in forwards {
                do throws(StoreError) {
                    _ = try store.removePortForward(network: forward.network, proto: forward.proto, hostPort: forward.hostPort)
                } catch {
                    guard case .noPortForward = error else { throw error }  // else: removed by a concurrent destroy
                }
            }
        }
        let portForwards = PortForwards(state: state, session: session)
        for (network, bridge) in bridges { try await portForwards.rebuild(network, bridge: bridge) }
        await SSHFiles(directory: state.store.localDirectory).forgetHostKey(of: domain.uuid.uuidString)
        let kept = try await deleteVolumes(metadata.volumes.map { "\($0.pool)/\($0.name)" }, on: connection, imagesInUse: imagesInUse,
                                           directory: state.store.localDirectory)
        do {
            if try await domain.isPersistent() {
                try await domain.undefine([.nvram, .managedSave, .snapshotsMetadata])
            }
        } catch where error.code == .noDomain {
            return kept
        } catch {
            throw ProvisioningError(while: "undefine it", error)
        }
        return kept
    }
}
