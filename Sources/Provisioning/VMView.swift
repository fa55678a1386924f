public import Addressing
public import Foundation
public import Libvirt
public import LibvirtXML
import Synchronization

/// A VM as `vmctl show`, `list` and `create --format json` print it: the stable JSON contract
/// of docs/cli.md.
public struct VMView: Encodable, Equatable, Sendable {
    public var name: String
    public var uuid: String
    /// `running`, `paused`, `shutoff`, `crashed` or `other`.
    public var state: String
    public var vcpus: Int
    public var memoryMiB: UInt64
    public var labels: [String: String]
    public var expiresAt: Date?
    public var interfaces: [InterfaceView]
    public var disks: [DiskView]
    /// The fleet host the VM is on; null when it was not placed on one.
    public var host: String?

    public struct InterfaceView: Encodable, Equatable, Sendable {
        public var network: String?
        public var mac: String?
        /// Reserved addresses first, then those leased, IPv4 before IPv6.
        public var addresses: [String]

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(network, forKey: .network)
            try container.encode(mac, forKey: .mac)
            try container.encode(addresses, forKey: .addresses)
        }
        enum CodingKeys: String, CodingKey { case network, mac, addresses }
    }

    public struct DiskView: Encodable, Equatable, Sendable {
        public var target: String
        public var path: String?
        public var format: String?
        public var backingPath: String?

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(target, forKey: .target)
            try container.encode(path, forKey: .path)
            try container.encode(format, forKey: .format)
            try container.encode(backingPath, forKey: .backingPath)
        }
        enum CodingKeys: String, CodingKey { case target, path, format, backingPath }
    }

    /// Nulls are written, not left out: the contract names every field.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(uuid, forKey: .uuid)
        try container.encode(state, forKey: .state)
        try container.encode(vcpus, forKey: .vcpus)
        try container.encode(memoryMiB, forKey: .memoryMiB)
        try container.encode(labels, forKey: .labels)
        try container.encode(expiresAt, forKey: .expiresAt)
        try container.encode(interfaces, forKey: .interfaces)
        try container.encode(disks, forKey: .disks)
        try container.encode(host, forKey: .host)
    }
    enum CodingKeys: String, CodingKey { case name, uuid, state, vcpus, memoryMiB, labels, expiresAt, interfaces, disks, host }

    /// Builds the view from the domain's XML, its state and the leases of its networks.
    public init(definition: DomainDefinition, uuid: UUID, state: Domain.State, leases: [String: [DHCPLease]]) {
        name = definition.name
        self.uuid = uuid.uuidString.lowercased()
        self.state = Self.name(of: state)
        vcpus = definition.vcpus
        memoryMiB = definition.memoryKiB / 1024
        labels = definition.metadata?.labels ?? [:]
        expiresAt = definition.metadata?.expiresAt
        host = definition.metadata?.host
        let reserved = definition.metadata?.addresses ?? []
        interfaces = definition.interfaces.map { interface in
            var addresses = reserved.filter { $0.mac == interface.mac && $0.network == interface.network }.map(\.address)
            if let mac = interface.mac {
                for lease in leases[interface.network ?? ""] ?? [] where lease.belongs(to: mac) {
                    if let address = IPAddress(lease.address), !addresses.contains(address) { addresses.append(address) }
                }
            }
            addresses.sort(by: ipv4First)
            return InterfaceView(network: interface.network, mac: interface.mac?.description, addresses: addresses.map(\.description))
        }
        let image = definition.metadata?.image
        let rootPath = definition.metadata?.volumes.first { $0.role == "root" }?.path
        disks = definition.disks.map { disk in
            DiskView(target: disk.target, path: disk.path, format: disk.format,
                     backingPath: disk.backingPath ?? (disk.path != nil && disk.path == rootPath ? image : nil))
        }
    }

    public var labelText: String {
        labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
    }

    public static func name(of state: Domain.State) -> String {
        switch state {
        case .running, .blocked, .shuttingDown: "running"
        case .paused, .pmSuspended: "paused"
        case .shutoff: "shutoff"
        case .crashed: "crashed"
        default: "other"
        }
    }
}

/// `vmctl list`: every VM, an array in JSON.
public struct VMTable: Encodable, Sendable {
    public var vms: [VMView]
    public init(vms: [VMView]) { self.vms = vms }
    public func encode(to encoder: any Encoder) throws { try vms.encode(to: encoder) }
}

extension DHCPLease {
    /// Whether the lease is the NIC's: by MAC, or (DHCPv6) by the NIC's DUID-LL.
    public func belongs(to mac: MACAddress) -> Bool {
        if let leaseMAC = self.mac.flatMap(MACAddress.init), leaseMAC == mac { return true }
        return family == .ipv6 && clientID.flatMap(MACAddress.inDUIDLL) == mac
    }
}

/// IPv4 addresses before IPv6 ones, each family in order.
public func ipv4First(_ lhs: IPAddress, _ rhs: IPAddress) -> Bool {
    if lhs.family != rhs.family { return lhs.family == .ipv4 }
    return lhs < rhs
}

extension String {
    public func ifEmpty(_ replacement: String) -> String { isEmpty ? replacement : self }
}

/// Reads domains and what their views need, with the calls for different domains in flight
/// together (a listing of many domains over more than one connection, ``listAll()``).
public struct VMReader: Sendable {
    public let connection: Connection
    /// The connection's URI, given when ``listAll()`` may open more connections to the same
    /// daemon (``sideConnectionsAllowed(to:)``).
    public let uri: String?

    public init(connection: Connection, uri: String? = nil) {
        self.connection = connection
        self.uri = uri
    }

    /// One domain's definition and state.
    public func read(_ domain: Domain) async throws(ProvisioningError) -> (DomainDefinition, Domain.State) {
        do {
            async let xml = domain.xml()
            async let state = domain.state()
            return (try DomainDefinition(xml: try await xml), try await state.state)
        } catch let error as LibvirtError {
            throw ProvisioningError(while: "read VM \(domain.name)", error)
        } catch {
            throw ProvisioningError(.libvirt, "cannot read VM \(domain.name): \(error)")
        }
    }

    /// How many domains ``readEach(_:_:)`` reads at once.
    static let parallelReads = 8

    /// Every domain's definition, in name order: one listing and each XML; no state, which none
    /// of its callers needs (the three listings by state cost a create 3 calls more).
    /// Domains that vanish meanwhile are left out.
    public func readAll() async throws(ProvisioningError) -> [(Domain, DomainDefinition)] {
        let domains = try await libvirtCall("list the VMs") { () async throws(LibvirtError) in try await connection.domains() }
        return try await readEach(domains) { domain throws(ProvisioningError) in try await definition(of: domain) }
    }

    /// One domain's definition, from its XML.
    private func definition(of domain: Domain) async throws(ProvisioningError) -> DomainDefinition {
        let xml = try await libvirtCall("read VM \(domain.name)") { () async throws(LibvirtError) in try await domain.xml() }
        do { return try DomainDefinition(xml: xml) } catch { throw ProvisioningError(.libvirt, "cannot read VM \(domain.name): \(error)") }
    }

    /// The definitions of `domains` from their XML, and their states where `knownStates` has
    /// none, in name order. Domains that vanish meanwhile are left out.
    func read(_ domains: [Domain], knownStates known: [UUID: Domain.State]) async throws(ProvisioningError) -> [(Domain, DomainDefinition, Domain.State)] {
        try await readEach(domains) { domain throws(ProvisioningError) in
            guard let state = known[domain.uuid] else { return try await read(domain) }
            return (try await definition(of: domain), state)
        }.map { domain, read in (domain, read.0, read.1) }
    }

    /// `body` for each of `domains`, at most ``parallelReads`` in flight, in name order; a domain
    /// whose read failed because it vanished meanwhile is left out.
    private func readEach<T: Sendable>(_ domains: [Domain], _ body: @escaping @Sendable (Domain) async throws(ProvisioningError) -> T)
        async throws(ProvisioningError) -> [(Domain, T)] {
        // At most `parallelReads` calls in flight: libvirt answers them over one socket, and
        // hundreds at once only queue (measured: 200 domains, 125 ms all at once).
        let results = await withTaskGroup(of: ReadAnswer<T>.self) { group in
            var results: [Result<T, ProvisioningError>?] = Array(repeating: nil, count: domains.count)
            var next = 0
            func addNext() {
                guard next < domains.count else { return }
                let index = next
                let domain = domains[index]
                group.addTask {
                    do throws(ProvisioningError) { return ReadAnswer(index: index, result: .success(try await body(domain))) } catch {
                        return ReadAnswer(index: index, result: .failure(error))
                    }
                }
                next += 1
            }
            for _ in 0..<Self.parallelReads { addNext() }
            for await answer in group {
                results[answer.index] = answer.result
                addNext()
            }
            return results
        }
        var rows: [(Domain, T)] = []
        for (domain, result) in zip(domains, results) {
            switch result {
            case .success(let value)?:
                rows.append((domain, value))
            case .failure(let error)?:
                // Destroyed between the listing and the read: not an error of the listing.
                if (try? await connection.domain(uuid: domain.uuid)) != nil { throw error }
            case nil:
                throw ProvisioningError(.libvirt, "cannot read VM \(domain.name): no answer")
            }
        }
        return rows.sorted { $0.0.name < $1.0.name }
    }

    /// The DHCP leases of the named networks that are running (one call per network).
    public func leases(of networks: Set<String>) async -> [String: [DHCPLease]] {
        var leases: [String: [DHCPLease]] = [:]
        for name in networks {
            if let network = try? await connection.network(named: name), (try? await network.isActive()) == true {
                leases[name] = (try? await network.dhcpLeases()) ?? []
            }
        }
        return leases
    }
}

extension VMReader {
    /// One VM as `show` prints it: definition, state and the leases of its networks.
    public func view(of domain: Domain) async throws(ProvisioningError) -> VMView {
        let (definition, state) = try await read(domain)
        return VMView(definition: definition, uuid: domain.uuid, state: state, leases: await leases(of: Set(definition.networks)))
    }

    /// Every VM carrying all of `labels`, in name order; leases are read only for running ones.
    public func list(labels: [(key: String, value: String)] = []) async throws(ProvisioningError) -> VMTable {
        let rows = try await listAll().filter { _, definition, _ in definition.carries(labels) }
        let running = rows.filter { VMView.name(of: $0.2) == "running" }
        let leases = await leases(of: Set(running.flatMap { $0.1.networks }))
        return VMTable(vms: rows.map { domain, definition, state in
            VMView(definition: definition, uuid: domain.uuid, state: state, leases: leases)
        })
    }
}

extension DomainDefinition {
    /// Whether the VM carries every one of the labels (vmctl's metadata).
    public func carries(_ labels: [(key: String, value: String)]) -> Bool {
        labels.allSatisfy { metadata?.labels[$0.key] == $0.value }
    }
}

/// One read of ``VMReader``'s task groups: a plain struct, not a tuple holding a generic value
/// (those crash release builds, see Fleet.swift).
struct ReadAnswer<T: Sendable>: Sendable {
    var index: Int
    var result: Result<T, ProvisioningError>
}

/// What a task of ``VMReader/listAll()``'s group hands back: another connection opened with
/// its handles (`nil`: it could not open or list), or one connection's metadata, parsed, by
/// domain index.
enum ListingStep: Sendable {
    case opened(SideListing?)
    case read([Int: VMMetadata])
}

/// A connection opened beside the reader's for one listing, and its handles of the domains by
/// UUID; both are released when the last task holding it ends.
struct SideListing: Sendable {
    var connection: Connection
    var handles: [UUID: Domain]
}

/// What ``VMReader/listAll()`` gathers before it builds the rows.
struct ListingAnswers: Sendable {
    var records: [DomainStatistics]
    var metadata: [Int: VMMetadata]
}

/// The next domain a connection's thread reads, shared by all of them.
final class ReadQueue: Sendable {
    private let next = Mutex(0)
    let count: Int
    init(count: Int) { self.count = count }

    func take() -> Int? {
        next.withLock { next in
            guard next < count else { return nil }
            defer { next += 1 }
            return next
        }
    }
}

extension VMReader {
    /// How many connections ``listAll()`` reads metadata over, the reader's own included, each
    /// thread taking the next domain from one queue. libvirt answers one connection's calls one
    /// at a time, whatever number of threads ask (measured, 200 domains, 2 cores, the calls
    /// alone: one connection 24-38 ms; two 15-19; three 11-19; four 11-13).
    static let metadataConnections = 4

    /// Fewer domains than this are read over the reader's connection alone: another connection
    /// costs about what 30 reads do (an open ~3 ms, its listing of 200 domains 2-4 ms).
    static let sideConnectionThreshold = 64

    /// Whether `uri` may be opened again for a listing: a local daemon only (reached over its
    /// UNIX socket; another qemu+ssh connection is another SSH session), and not the test driver,
    /// whose `test:///FILE` opens a separate copy of the file.
    static func sideConnectionsAllowed(to uri: String) -> Bool {
        guard let components = URLComponents(string: uri), let scheme = components.scheme else { return false }
        let transport = scheme.split(separator: "+", maxSplits: 1).dropFirst().first
        return (transport == nil || transport == "unix") && (components.host ?? "").isEmpty && !scheme.hasPrefix("test")
    }

    /// Every domain as `vmctl list` shows it, in name order, in as few calls as the contract
    /// allows: one statistics call for every state, vCPU count and memory size, then one metadata
    /// read per domain (the labels, addresses and devices vmctl recorded); the whole XML only for
    /// domains whose metadata has no devices (not vmctl's, a user's template, vmctl 0.2).
    /// Domains that vanish meanwhile are left out.
    public func listAll() async throws(ProvisioningError) -> [(Domain, DomainDefinition, Domain.State)] {
        let answers = try await statisticsAndMetadata(sides: await sideConnectionURI())
        var rows: [(Domain, DomainDefinition, Domain.State)] = []
        var unlisted: [Domain] = []
        var states: [UUID: Domain.State] = [:]
        for (index, record) in answers.records.enumerated() {
            let domain = record.domain
            if let state = record.state { states[domain.uuid] = state }
            if let state = record.state, let vcpus = record.values["vcpu.maximum"]?.unsigned,
               let memoryKiB = record.values["balloon.maximum"]?.unsigned, let metadata = answers.metadata[index],
               let definition = DomainDefinition(listed: domain.name, uuid: domain.uuid, memoryKiB: memoryKiB, vcpus: Int(vcpus), metadata: metadata) {
                rows.append((domain, definition, state))
            } else {
                // Not vmctl's own writer's, or the call failed: the whole XML, as show reads it.
                unlisted.append(domain)
            }
        }
        rows += try await read(unlisted, knownStates: states)
        return rows.sorted { $0.0.name < $1.0.name }
    }

    /// The URI to open more connections to for a listing: a local daemon
    /// (``sideConnectionsAllowed(to:)``) holding at least ``sideConnectionThreshold`` domains.
    /// Counted (two calls, no handles) before the statistics call, so that the other
    /// connections open and list while it runs.
    func sideConnectionURI() async -> String? {
        guard let uri, Self.sideConnectionsAllowed(to: uri), let count = try? await connection.domainCount(),
              count >= Self.sideConnectionThreshold else { return nil }
        return uri
    }

    /// The statistics of every domain, and vmctl's metadata element of each, parsed, by its
    /// index in the statistics. With `sides`, ``metadataConnections`` - 1 more connections to it
    /// open and list the domains while the statistics call runs; the reader's connection starts
    /// reading when the statistics are in, and each other one joins when it has its handles,
    /// all taking the next domain from one queue. A domain another connection does not list
    /// (defined meanwhile) is skipped there, and one whose read failed or does not parse is left
    /// out: the caller reads those whole.
    func statisticsAndMetadata(sides: String?) async throws(ProvisioningError) -> ListingAnswers {
        let outcome = await withTaskGroup(of: ListingStep.self) { group -> Result<ListingAnswers, ProvisioningError> in
            for _ in 1..<(sides == nil ? 1 : Self.metadataConnections) {
                group.addTask {
                    guard let uri = sides, let side = try? await Connection.open(uri, events: false), let listed = try? await side.domains() else {
                        return .opened(nil)
                    }
                    return .opened(SideListing(connection: side, handles: Dictionary(listed.map { ($0.uuid, $0) }, uniquingKeysWith: { first, _ in first })))
                }
            }
            let records: [DomainStatistics]
            do throws(LibvirtError) {
                records = try await connection.domainStatistics([.state, .vcpu, .balloon])
            } catch {
                return .failure(ProvisioningError(while: "list the VMs", error))
            }
            let domains = records.map(\.domain)
            let queue = ReadQueue(count: domains.count)
            group.addTask { .read(await Self.readMetadata(taking: queue) { domains[$0] }) }
            var metadata: [Int: VMMetadata] = [:]
            for await step in group {
                switch step {
                case .opened(let side?):
                    group.addTask { .read(await Self.readMetadata(taking: queue) { side.handles[domains[$0].uuid] }) }
                case .opened(nil):
                    break
                case .read(let reads):
                    metadata.merge(reads) { first, _ in first }
                }
            }
            return .success(ListingAnswers(records: records, metadata: metadata))
        }
        return try outcome.get()
    }

    /// The metadata of the domains `queue` hands out, over the connection of `handle`'s
    /// domains, each parsed on the calling thread as its answer arrives.
    static func readMetadata(taking queue: ReadQueue, _ handle: @escaping @Sendable (Int) -> Domain?) async -> [Int: VMMetadata] {
        await Domain.metadata(namespace: VMMetadata.namespace, taking: queue.take, domain: handle) { answer in
            answer.xml.flatMap { try? VMMetadata(xml: $0) }
        }
    }
}
