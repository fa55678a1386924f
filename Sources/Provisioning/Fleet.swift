public import AllocationStore
public import Foundation
public import Libvirt
public import Logging
import Synchronization

/// The libvirt hosts of a fleet (`vmctl host add`), reached together: a host that does not
/// answer is reported and left out, never fatal to the others.
public struct Fleet: Sendable {
    public let hosts: [HostRecord]
    public let logger: Logger

    /// How long a host may take to answer the connection before it counts as unreachable.
    public static let connectTimeout: Duration = .seconds(15)

    public init(hosts: [HostRecord], logger: Logger) {
        self.hosts = hosts
        self.logger = logger
    }

    /// The hosts the store records.
    public static func load(_ state: State, logger: Logger) async throws(ProvisioningError) -> Fleet {
        Fleet(hosts: try await state.run { store throws(StoreError) in try store.hosts() }, logger: logger)
    }

    /// The session to the host the store calls `name`.
    public static func session(toHost name: String, in state: State, logger: Logger) async throws(ProvisioningError) -> Session {
        let record = try await state.run { store throws(StoreError) in try store.host(named: name) }
        do {
            return try await Session.open(record.uri, logger: logger, hostName: name)
        } catch {
            throw error.hinted("check that libvirtd is running on host \(name) (\(record.uri)), or see vmctl host list")
        }
    }

    /// One host and what connecting to it gave.
    public struct Member: Sendable {
        public let record: HostRecord
        public let session: Result<Session, ProvisioningError>

        public var name: String { record.name }
        public var reachable: Session? { try? session.get() }
        /// Why it is left out, as the warning says it.
        public var unreachableWarning: String? {
            guard case .failure(let error) = session else { return nil }
            return "host \(record.name) (\(record.uri)) did not answer: \(error.message)"
        }
    }

    /// Connects to every host at once, in name order.
    public func connect() async -> [Member] {
        await withTaskGroup(of: Member.self) { group in
            for record in hosts {
                group.addTask { Member(record: record, session: await Self.open(record, logger: logger)) }
            }
            var members: [Member] = []
            for await member in group { members.append(member) }
            return members.sorted { $0.name < $1.name }
        }
    }

    /// The session to `record`, or why there is none within ``connectTimeout``.
    public static func open(_ record: HostRecord, logger: Logger) async -> Result<Session, ProvisioningError> {
        await answer(within: connectTimeout, "connect to \(record.uri)") { () async throws(ProvisioningError) in
            try await Session.open(record.uri, logger: logger, hostName: record.name)
        }
    }

    /// The host that has a domain called `name`, among the reachable members.
    ///
    /// - Throws: `notFound` when no host that answered has it (naming those that did not),
    ///   `conflict` when several have one of that name.
    public static func locate(_ name: String, among members: [Member]) async throws(ProvisioningError) -> Session {
        var found: [Session] = []
        for member in members {
            guard let session = member.reachable else { continue }
            if try await session.connection.domainIfExists(name) != nil { found.append(session) }
        }
        if found.count == 1 { return found[0] }
        if found.count > 1 {
            throw ProvisioningError(.conflict, "VM \(name) is on several hosts: \(found.compactMap(\.hostName).joined(separator: ", "))",
                                    hint: "name the one to use with --host")
        }
        let silent = members.filter { $0.reachable == nil }.map(\.name)
        throw ProvisioningError(.notFound, "no VM named \(name) on the fleet's hosts"
                                + (silent.isEmpty ? "" : " that answered (not: \(silent.joined(separator: ", ")))"),
                                hint: "see vmctl list")
    }

    // MARK: Placement

    /// The hosts a VM on `networks` can go on, as `create --host auto` measures them: reachable,
    /// each network defined and running there; with the host's free memory and vmctl VMs. The
    /// rest are given with the reason, for the error when none is left.
    public static func candidates(for networks: Set<String>, among members: [Member]) async -> (usable: [(Session, PlacementCandidate)], refused: [String]) {
        let results = await withTaskGroup(of: Candidacy.self) { group in
            for member in members { group.addTask { await Candidacy.of(member, networks: networks) } }
            var results: [Candidacy] = []
            for await result in group { results.append(result) }
            return results
        }
        var usable: [(Session, PlacementCandidate)] = []
        var refused: [String] = []
        for member in members {
            guard let result = results.first(where: { $0.host == member.name }) else { continue }
            if let candidate = result.candidate, let session = member.reachable {
                usable.append((session, candidate))
            } else {
                refused.append("\(member.name): \(result.refusal ?? "unreachable")")
            }
        }
        return (usable, refused)
    }

    /// The names of the host's domains vmctl created (they carry its metadata).
    static func vmctlDomains(on connection: Connection) async throws(ProvisioningError) -> [String] {
        try await VMReader(connection: connection).readAll().filter { $0.1.metadata != nil }.map(\.0.name)
    }
}

/// What one host's `destroy` gave in `Fleet.destroy`.
struct Destroyed: Sendable {
    var host: String
    var outcomes: [Destroyer.Outcome]
    var error: String?

    static func of(_ selection: DestroySelection, on session: Session, host: String, state: State, force: Bool, grace: Duration) async -> Destroyed {
        do {
            return Destroyed(host: host, outcomes: try await session.destroyer(state, force: force, grace: grace).destroy(selection).outcomes, error: nil)
        } catch {
            return Destroyed(host: host, outcomes: [], error: error.description)
        }
    }
}

/// A host measured for placement (`Fleet.candidates`), or why it cannot take the VM.
struct Candidacy: Sendable {
    var host: String
    var candidate: PlacementCandidate?
    var refusal: String?

    static func of(_ member: Fleet.Member, networks: Set<String>) async -> Candidacy {
        do {
            let session = try member.session.get()
            for network in networks.sorted() {
                guard let found = try await session.connection.networkIfExists(network),
                      try await libvirtCall("read network \(network)", { () async throws(LibvirtError) in try await found.isActive() }) else {
                    return Candidacy(host: member.name, candidate: nil, refusal: "no running network \(network)")
                }
            }
            let free = try await libvirtCall("read the free memory") { () async throws(LibvirtError) in try await session.connection.freeMemory() }
            let vms = try await Fleet.vmctlDomains(on: session.connection).count
            return Candidacy(host: member.name, candidate: PlacementCandidate(host: member.name, freeMemory: free, vms: vms), refusal: nil)
        } catch {
            return Candidacy(host: member.name, candidate: nil, refusal: error.message)
        }
    }
}

/// One host's VMs for `Fleet.list`, or why there are none.
struct Listing: Sendable {
    var host: String
    var vms: [VMView]
    var error: String?

    static func of(_ session: Session, host: String, labels: [LabelPair]) async -> Listing {
        do {
            return Listing(host: host, vms: try await session.reader.list(labels: labels.map { ($0.key, $0.value) }).vms, error: nil)
        } catch {
            return Listing(host: host, vms: [], error: error.message)
        }
    }
}

/// A label as a Sendable value (a tuple of two strings is not one).
struct LabelPair: Sendable {
    var key: String
    var value: String
}

/// What `vmctl host list` shows of one host.
public struct HostStatus: Encodable, Sendable {
    public var name: String
    public var uri: String
    public var labels: [String: String]
    public var reachable: Bool
    /// Why it is not, when it is not.
    public var error: String?
    public var libvirtVersion: String?
    public var cpus: Int?
    public var memoryMiB: UInt64?
    public var freeMemoryMiB: UInt64?
    /// vmctl's VMs on it.
    public var vms: Int?

    /// Asks the member's host; an unreachable one is reported as such.
    public static func of(_ member: Fleet.Member) async -> HostStatus {
        var status = HostStatus(name: member.name, uri: member.record.uri, labels: member.record.labels, reachable: false)
        do throws(ProvisioningError) {
            let session = try member.session.get()
            let connection = session.connection
            let (version, node, free) = try await libvirtCall("read the host") { () async throws(LibvirtError) in
                (try await connection.libvirtVersion(), try await connection.nodeInfo(), try await connection.freeMemory())
            }
            status.vms = try await Fleet.vmctlDomains(on: connection).count
            status.reachable = true
            status.libvirtVersion = version.description
            status.cpus = node.cpus
            status.memoryMiB = node.memoryKiB / 1024
            status.freeMemoryMiB = free >> 20
        } catch {
            status.error = error.message
        }
        return status
    }

    /// Nulls are written, not left out: the contract names every field.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(uri, forKey: .uri)
        try container.encode(labels, forKey: .labels)
        try container.encode(reachable, forKey: .reachable)
        try container.encode(error, forKey: .error)
        try container.encode(libvirtVersion, forKey: .libvirtVersion)
        try container.encode(cpus, forKey: .cpus)
        try container.encode(memoryMiB, forKey: .memoryMiB)
        try container.encode(freeMemoryMiB, forKey: .freeMemoryMiB)
        try container.encode(vms, forKey: .vms)
    }
    enum CodingKeys: String, CodingKey { case name, uri, labels, reachable, error, libvirtVersion, cpus, memoryMiB, freeMemoryMiB, vms }
}

/// `body`'s outcome, or a `timedOut` failure when it takes longer than `timeout` (the call
/// itself cannot be cancelled: a blocked libvirt open is left to finish on its thread).
func answer<T: Sendable>(within timeout: Duration, _ action: String,
                         _ body: @escaping @Sendable () async throws(ProvisioningError) -> T) async -> Result<T, ProvisioningError> {
    let first = FirstAnswer<T>()
    return await withCheckedContinuation { continuation in
        first.waiting(continuation)
        Task {
            do throws(ProvisioningError) { first.give(.success(try await body())) } catch { first.give(.failure(error)) }
        }
        Task {
            try? await Task.sleep(for: timeout)
            first.give(.failure(ProvisioningError(.timedOut, "cannot \(action): no answer within \(timeout.components.seconds) s")))
        }
    }
}

/// The continuation `answer` resumes once, with whichever result comes first.
private final class FirstAnswer<T: Sendable>: Sendable {
    private let continuation = Mutex<CheckedContinuation<Result<T, ProvisioningError>, Never>?>(nil)

    func waiting(_ waiter: CheckedContinuation<Result<T, ProvisioningError>, Never>) {
        continuation.withLock { $0 = waiter }
    }

    func give(_ result: Result<T, ProvisioningError>) {
        continuation.withLock { waiter in
            waiter?.resume(returning: result)
            waiter = nil
        }
    }
}

/// `vmctl host add|list|rm`: the fleet's hosts in the store.
public struct FleetHosts: Sendable {
    public let state: State
    public let logger: Logger

    public init(state: State, logger: Logger) {
        self.state = state
        self.logger = logger
    }

    /// Checks a host's name: it names the host in `--host`, the VMs' metadata and the JSON.
    public static func validate(name: String) throws(ProvisioningError) {
        guard !name.isEmpty, name.count <= 63, name != "auto",
              name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) else {
            throw ProvisioningError.invalid("invalid host name '\(name)': use up to 63 letters, digits, '-', '_' or '.' (and not auto)")
        }
    }

    /// Records host `name` at `uri`, once it answers there.
    public func add(name: String, uri: String, labels: [String: String]) async throws(ProvisioningError) -> HostStatus {
        try Self.validate(name: name)
        let record = HostRecord(name: name, uri: uri, labels: labels)
        let member = Fleet.Member(record: record, session: await Fleet.open(record, logger: logger))
        if case .failure(let error) = member.session {
            throw ProvisioningError(.libvirt, "cannot add host \(name): \(error.message)",
                                    hint: "check the URI and that libvirtd answers there; a host is added once it does", cause: error)
        }
        try await state.run { store throws(StoreError) in try store.add(record) }
        return await HostStatus.of(member)
    }

    /// Every host, asked at once; an unreachable one is listed as such.
    public func list() async throws(ProvisioningError) -> [HostStatus] {
        let members = await (try await Fleet.load(state, logger: logger)).connect()
        return await withTaskGroup(of: HostStatus.self) { group in
            for member in members { group.addTask { await HostStatus.of(member) } }
            var statuses: [HostStatus] = []
            for await status in group { statuses.append(status) }
            return statuses.sorted { $0.name < $1.name }
        }
    }

    /// Forgets host `name`. Refused while it has vmctl VMs, while the store holds addresses or
    /// creates placed on it, and (unless `force`) while it cannot be asked.
    public func remove(name: String, force: Bool) async throws(ProvisioningError) {
        let (record, allocations, creates) = try await state.run { store throws(StoreError) in
            (try store.host(named: name), try store.allocations().filter { $0.host == name }, try store.pendingCreates().filter { $0.host == name })
        }
        switch await Fleet.open(record, logger: logger) {
        case .success(let session):
            let vms = try await Fleet.vmctlDomains(on: session.connection)
            if !vms.isEmpty {
                throw ProvisioningError(.conflict, "host \(name) still has \(vms.count) vmctl VM\(vms.count == 1 ? "" : "s"): \(vms.joined(separator: ", "))",
                                        hint: "destroy them first (vmctl destroy --host \(name) NAME...)")
            }
        case .failure(let error) where !force:
            throw ProvisioningError(.libvirt, "cannot ask host \(name) whether it has vmctl VMs: \(error.message)",
                                    hint: "rerun once it answers, or force it to forget the host (its VMs, if any, stay)", cause: error)
        case .failure:
            break
        }
        if !force, let first = allocations.first {
            throw ProvisioningError(.conflict, "the store still holds \(allocations.count) address\(allocations.count == 1 ? "" : "es") of VMs on host \(name) (\(first.address), owner \(first.ownerName))",
                                    hint: "run vmctl doctor --fix --host \(name) first")
        }
        if !force, let create = creates.first {
            throw ProvisioningError(.conflict, "a create of VM \(create.name) on host \(name) is under way or was abandoned", hint: "wait for it, or run vmctl doctor --fix --host \(name)")
        }
        try await state.run { store throws(StoreError) in try store.removeHost(named: name) }
    }
}

// MARK: Across the fleet

extension Fleet {
    /// Every VM of the reachable members carrying all of `labels`, by name then host, each with
    /// its host; a host that fails while listed is a warning, like one that did not answer.
    public static func list(_ members: [Member], labels: [(key: String, value: String)]) async -> (table: VMTable, warnings: [String]) {
        let labelPairs = labels.map { LabelPair(key: $0.key, value: $0.value) }
        // Each child returns a plain struct from a static function (as `HostStatus.of`, and
        // `Destroyed`, `Candidacy`): a tuple holding a Result, or a generic struct built by an
        // async initialiser, crashed release builds (Swift 6.3: a bad copy when the task group
        // hands the child's value over).
        let results = await withTaskGroup(of: Listing.self) { group in
            for member in members {
                guard let session = member.reachable else { continue }
                group.addTask { await Listing.of(session, host: member.name, labels: labelPairs) }
            }
            var results: [Listing] = []
            for await result in group { results.append(result) }
            return results
        }
        var vms: [VMView] = []
        var warnings: [String] = []
        for result in results {
            if let error = result.error {
                warnings.append("host \(result.host) failed while listed: \(error); its VMs are left out")
            }
            vms += result.vms.map { vm in var vm = vm; vm.host = result.host; return vm }
        }
        return (VMTable(vms: vms.sorted { ($0.name, $0.host ?? "") < ($1.name, $1.host ?? "") }), warnings)
    }

    /// `destroy` across the reachable members: each destroys what the selection takes of its own
    /// VMs. A named VM no host has is missing; a host that did not answer is a failure (its VMs
    /// may be among those asked for), reported after the others were done.
    public static func destroy(_ selection: DestroySelection, on members: [Member], state: State, force: Bool, grace: Duration)
        async -> (outcomes: [Destroyer.Outcome], failures: [String]) {
        let perHost = DestroySelection(names: selection.names, labels: selection.labels, expired: selection.expired, ignoreMissing: true)
        let results = await withTaskGroup(of: Destroyed.self) { group in
            for member in members {
                guard let session = member.reachable else { continue }
                group.addTask { await Destroyed.of(perHost, on: session, host: member.name, state: state, force: force, grace: grace) }
            }
            var results: [Destroyed] = []
            for await result in group { results.append(result) }
            return results.sorted { $0.host < $1.host }
        }
        var outcomes: [Destroyer.Outcome] = []
        var failures: [String] = []
        for result in results {
            outcomes += result.outcomes
            if let error = result.error { failures.append("cannot destroy on host \(result.host): \(error)") }
        }
        for member in members where member.reachable == nil {
            failures.append("\(member.unreachableWarning ?? "host \(member.name) did not answer"): its VMs were not destroyed; rerun once it answers")
        }
        if !selection.ignoreMissing {
            for name in selection.names where !outcomes.contains(where: { $0.name == name }) {
                failures.append("no VM named \(name) on the hosts that answered; see vmctl list, or pass --ignore-missing")
            }
        }
        return (outcomes.sorted { $0.name < $1.name }, failures)
    }

    /// `doctor` on every reachable member, each looking at what was placed on it; one report,
    /// each finding and create naming its host. A host that did not answer is named in the
    /// report (and makes it unclean): nothing of it was examined or freed.
    public static func doctor(_ members: [Member], state: State, fix: Bool) async throws(ProvisioningError) -> DoctorReport {
        var merged = DoctorReport(findings: [], repaired: [], abandonedCreates: [], undoneCreates: [], strayFirewallRules: [], removedFirewallRules: [])
        for member in members {
            guard let session = member.reachable else {
                merged.unreachableHosts.append(member.unreachableWarning ?? member.name)
                continue
            }
            let report = try await session.doctor(state).run(fix: fix)
            func placed(_ findings: [Finding]) -> [Finding] { findings.map { var finding = $0; finding.host = member.name; return finding } }
            func placed(_ creates: [AbandonedCreate]) -> [AbandonedCreate] { creates.map { var create = $0; create.host = member.name; return create } }
            merged.findings += placed(report.findings)
            merged.repaired += placed(report.repaired)
            merged.abandonedCreates += placed(report.abandonedCreates)
            merged.undoneCreates += placed(report.undoneCreates)
            // The firewall is this machine's: every local host sees the same rules.
            for stray in report.strayFirewallRules where !merged.strayFirewallRules.contains(where: { $0.bridge == stray.bridge }) {
                merged.strayFirewallRules.append(stray)
            }
            merged.removedFirewallRules += report.removedFirewallRules
        }
        return merged
    }
}

// MARK: Placement of a new VM

extension Fleet {
    /// A VM's host as placement chose it, and its name claimed there (the journal's entry).
    public struct Claim: Sendable {
        public let session: Session
        let entry: PendingCreate
    }

    /// `create --host auto`: chooses the host for `plan` among the reachable members that have
    /// its networks (``Placement``) and claims the VM's name there, in one store transaction, so
    /// that creates placed at the same moment see each other's memory. An abandoned create of
    /// the same name (its process gone) is undone first, on its own host.
    public static func place(_ plan: CreatePlan, state: State, among members: [Member]) async throws(ProvisioningError) -> Claim {
        let earlier = try await state.run { store throws(StoreError) in try store.pendingCreates() }.first { $0.name == plan.name }
        if let earlier, !ProcessTag.isAlive(earlier.process) {
            guard let session = members.first(where: { $0.name == earlier.host })?.reachable else {
                throw ProvisioningError(.incomplete, "an earlier create of \(plan.name) on host \(earlier.host ?? "(none)") was not finished, and that host did not answer",
                                        hint: "rerun once it answers, or run vmctl doctor --fix then")
            }
            try await rollBack(earlier, state: state, connection: session.connection, host: session.host)
        }
        // One name, one VM, across the fleet: `show`, `ssh` and `destroy` find a VM by its name.
        for member in members {
            if let session = member.reachable, try await session.connection.domainIfExists(plan.name) != nil {
                throw ProvisioningError(.alreadyExists, "VM \(plan.name) already exists on host \(member.name)", hint: "pick another name, or destroy it first")
            }
        }
        let (usable, refused) = await candidates(for: Set(plan.nics.map(\.network)), among: members)
        guard !usable.isEmpty else {
            throw ProvisioningError(.notFound, "no host of the fleet can take VM \(plan.name): \(refused.isEmpty ? "there are none" : refused.joined(separator: "; "))",
                                    hint: "see vmctl host list; a VM goes on a reachable host that has all its networks running")
        }
        let entry = Creation.journalEntry(plan, host: nil)
        let candidates = usable.map(\.1)
        let placed = try await state.run { store throws(StoreError) in try store.begin(entry, placingOn: candidates) }
        guard let session = usable.first(where: { $0.1.host == placed.host })?.0 else {
            try? await state.run { store throws(StoreError) in try store.end(entry.name) }
            throw ProvisioningError(.conflict, "placement chose no host for \(plan.name)")
        }
        return Claim(session: session, entry: placed)
    }
}
