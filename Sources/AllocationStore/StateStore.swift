public import Addressing
public import Foundation

/// vmctl's state: pools and who holds which address, port forwards, the create journal, images
/// and the hosts of a fleet. Two implementations keep it: ``SQLiteStore`` (one file, the
/// default) and `PostgresStore` (one server that many vmctl clients on many machines share).
///
/// Every call is one transaction, and blocks: callers in async code go through Provisioning's
/// `State`, which runs them off the cooperative pool. Each implementation gives the same
/// guarantee: writes are serialised (SQLite's write lock; a PostgreSQL advisory lock) so that a
/// transaction reads every allocation committed before it, and UNIQUE constraints make a second
/// owner of an address impossible even if that logic were wrong.
public protocol StateStore: AnyObject, Sendable {
    /// Where the store is, for messages: the file's path, or the URL without its password.
    var location: String { get }
    /// A directory on this machine for this client's own files (SSH keys, known_hosts,
    /// downloads, locks): beside the state file, or vmctl's default data directory.
    var localDirectory: String { get }

    // Images
    /// Records an image; fails if one of that name exists.
    func add(_ image: ImageRecord) throws(StoreError)
    /// Every image, by name.
    func images() throws(StoreError) -> [ImageRecord]
    /// The image called `name`, or nil.
    func image(named name: String) throws(StoreError) -> ImageRecord?
    /// Forgets an image (its volume is deleted by the caller).
    func removeImage(named name: String) throws(StoreError)

    // The create journal
    /// Claims `pending.name` for a create; fails if another create of that name is under way.
    /// With `candidates`, the host is chosen in the same transaction (``Placement``), so that
    /// creates placed at the same moment see each other; returns the entry as recorded.
    @discardableResult
    func begin(_ pending: PendingCreate, placingOn candidates: [PlacementCandidate]) throws(StoreError) -> PendingCreate
    /// Records the create's volumes so far.
    func update(_ pending: PendingCreate) throws(StoreError)
    /// Ends a create (done, or undone): deletes its journal.
    func end(_ name: String) throws(StoreError)
    /// Every create under way or abandoned, by name.
    func pendingCreates() throws(StoreError) -> [PendingCreate]

    // Port forwards
    /// Records a port forward; fails if the host port is taken.
    func add(_ forward: PortForward) throws(StoreError) -> PortForward
    /// Port forwards, of one network or all, by protocol and host port.
    func portForwards(on network: String?) throws(StoreError) -> [PortForward]
    /// Deletes the forward of a host port on a network; returns it.
    func removePortForward(network: String, proto: String, hostPort: Int) throws(StoreError) -> PortForward
    /// Deletes every forward of a network (it is gone); returns them.
    @discardableResult
    func removePortForwards(on network: String) throws(StoreError) -> [PortForward]

    // Pools and allocations
    /// Records a new pool; fails if the name is taken.
    func create(_ pool: Pool) throws(StoreError)
    /// All pools, by name.
    func pools() throws(StoreError) -> [Pool]
    /// The pool called `name`; throws ``StoreError/noSuchPool(_:)`` when there is none.
    func pool(named name: String) throws(StoreError) -> Pool
    /// Deletes a pool. Refused while it has allocations, unless `force`, which deletes them too
    /// (the caller removes their DHCP host entries first).
    func deletePool(named name: String, force: Bool) throws(StoreError)
    /// Hands one address to an owner, atomically, by ``AllocationRequest/choose(in:cursor:on:)``.
    func allocate(_ request: AllocationRequest) throws(StoreError) -> Allocation
    /// Gives an address back to its pool; returns what was released.
    func release(_ address: IPAddress, from poolName: String) throws(StoreError) -> Allocation
    /// Allocations, of one pool or of all, ordered by pool and address.
    func allocations(in poolName: String?) throws(StoreError) -> [Allocation]
    /// The allocations owned by the domain with `uuid`.
    func allocations(ownedBy uuid: UUID) throws(StoreError) -> [Allocation]

    // Hosts
    /// Records a libvirt host of the fleet; fails if the name is taken.
    func add(_ host: HostRecord) throws(StoreError)
    /// Every host, by name.
    func hosts() throws(StoreError) -> [HostRecord]
    /// Forgets a host (the caller checked it has no VMs).
    func removeHost(named name: String) throws(StoreError)
}

extension StateStore {
    /// Claims `pending.name` for a create on the host it names (or none).
    public func begin(_ pending: PendingCreate) throws(StoreError) {
        try begin(pending, placingOn: [])
    }

    /// Hands one address of `family` from `poolName` to an owner: the lowest free address not in
    /// `avoiding` (addresses the caller found in use elsewhere), or exactly `requested`.
    ///
    /// - Throws: ``StoreError/exhausted(pool:family:size:)`` when every address is taken,
    ///   ``StoreError/addressTaken(_:owner:)``, ``StoreError/addressOutsidePool(_:pool:)``,
    ///   ``StoreError/macHoldsAddress(_:address:)``.
    public func allocate(
        from poolName: String, family: IPAddress.Family, requested: IPAddress? = nil, avoiding: Set<IPAddress> = [],
        ownerUUID: UUID? = nil, ownerName: String, mac: MACAddress, host: String? = nil
    ) throws(StoreError) -> Allocation {
        try allocate(AllocationRequest(pool: poolName, family: family, requested: requested, avoiding: avoiding,
                                       ownerUUID: ownerUUID, ownerName: ownerName, mac: mac, host: host))
    }

    public func allocations() throws(StoreError) -> [Allocation] { try allocations(in: nil) }
    public func portForwards() throws(StoreError) -> [PortForward] { try portForwards(on: nil) }

    /// The host called `name`; throws ``StoreError/noSuchHost(_:)`` when there is none.
    public func host(named name: String) throws(StoreError) -> HostRecord {
        guard let host = try hosts().first(where: { $0.name == name }) else { throw StoreError.noSuchHost(name) }
        return host
    }
}

/// What an allocation asks for; the store decides, inside its write transaction, with `choose`
/// (PoolCursor.swift).
public struct AllocationRequest: Sendable {
    public var pool: String
    public var family: IPAddress.Family
    public var requested: IPAddress?
    public var avoiding: Set<IPAddress>
    public var ownerUUID: UUID?
    public var ownerName: String
    public var mac: MACAddress
    /// The fleet host the owner runs on, when it was placed on one.
    public var host: String?

    public init(pool: String, family: IPAddress.Family, requested: IPAddress? = nil, avoiding: Set<IPAddress> = [],
                ownerUUID: UUID? = nil, ownerName: String, mac: MACAddress, host: String? = nil) {
        self.pool = pool
        self.family = family
        self.requested = requested
        self.avoiding = avoiding
        self.ownerUUID = ownerUUID
        self.ownerName = ownerName
        self.mac = mac
        self.host = host
    }
}

/// A host `create --host auto` may place a VM on, as the caller measured it.
public struct PlacementCandidate: Sendable, Equatable {
    public var host: String
    /// Bytes free on the host now (virNodeGetFreeMemory).
    public var freeMemory: UInt64
    /// vmctl's VMs on it now.
    public var vms: Int

    public init(host: String, freeMemory: UInt64, vms: Int) {
        self.host = host
        self.freeMemory = freeMemory
        self.vms = vms
    }
}

/// Where `create --host auto` puts a VM: on the candidate with the most free memory once the
/// memory of creates under way there (journal entries not yet running) is counted as used;
/// memory within 256 MiB counts as equal (page-cache noise must not decide) and goes to the host
/// with fewer VMs (counting those creates), then by name.
/// Pure: the stores call it inside the transaction that records the journal entry.
public enum Placement {
    static let granule: Int64 = 256 << 20

    public static func choose(among candidates: [PlacementCandidate], underWay: [PendingCreate]) -> String? {
        func score(_ candidate: PlacementCandidate) -> (free: Int64, vms: Int) {
            let placed = underWay.filter { $0.host == candidate.host }
            let promised = placed.reduce(UInt64(0)) { $0 + $1.memory }
            let free = Int64(clamping: candidate.freeMemory) - Int64(clamping: promised)
            return (free >= 0 ? free / granule : free / granule - 1, candidate.vms + placed.count)
        }
        return candidates.min { a, b in
            let (sa, sb) = (score(a), score(b))
            if sa.free != sb.free { return sa.free > sb.free }
            if sa.vms != sb.vms { return sa.vms < sb.vms }
            return a.host < b.host
        }?.host
    }
}

/// A libvirt host of the fleet: a name for `create --host`, its URI, labels for the operator.
public struct HostRecord: Codable, Sendable, Equatable {
    public var name: String
    public var uri: String
    public var labels: [String: String]
    public var addedAt: Date

    public init(name: String, uri: String, labels: [String: String] = [:], addedAt: Date = Date()) {
        self.name = name
        self.uri = uri
        self.labels = labels
        self.addedAt = addedAt
    }
}

/// What can go wrong in the store, each naming the value involved.
public enum StoreError: Error, Equatable, Sendable, CustomStringConvertible {
    case unavailable(path: String, reason: String)
    case poolExists(String)
    case noSuchPool(String)
    case poolInUse(String, allocations: Int)
    case exhausted(pool: String, family: IPAddress.Family, size: UInt128)
    case addressTaken(IPAddress, owner: String)
    case addressOutsidePool(IPAddress, pool: String)
    case macHoldsAddress(MACAddress, address: Allocation)
    case notAllocated(IPAddress, pool: String)
    case conflict(String)
    case portTaken(String, Int, network: String, vm: String)
    case noPortForward(String, Int, network: String)
    case createInProgress(String, process: String)
    case imageExists(String)
    case noSuchImage(String)
    case hostExists(String)
    case noSuchHost(String)

    public var description: String {
        switch self {
        case .unavailable(let path, let reason):
            "cannot use the state \(path.hasPrefix("postgres") ? "database" : "file") \(path): \(reason)"
        case .poolExists(let name):
            "pool \(name) already exists; pick another name or destroy it first"
        case .noSuchPool(let name):
            "no pool named \(name); see vmctl pool list"
        case .poolInUse(let name, let count):
            "pool \(name) still has \(count) allocated address\(count == 1 ? "" : "es"); release them first, or force it"
        case .exhausted(let pool, let family, let size):
            "pool \(pool) exhausted: all \(size) \(family) address\(size == 1 ? " is" : "es are") allocated; release some or add a range"
        case .addressTaken(let address, let owner):
            "address \(address) is already allocated to \(owner); choose another or let the pool pick"
        case .addressOutsidePool(let address, let pool):
            "address \(address) is not one pool \(pool) hands out; see vmctl pool show \(pool)"
        case .macHoldsAddress(let mac, let allocation):
            "MAC \(mac) already holds \(allocation.address) on network \(allocation.network) (pool \(allocation.pool), owner \(allocation.ownerName)); release it first"
        case .notAllocated(let address, let pool):
            "address \(address) is not allocated in pool \(pool)"
        case .portTaken(let proto, let port, let network, let vm):
            "host port \(proto)/\(port) is already forwarded to \(vm) on network \(network); choose another host port"
        case .noPortForward(let proto, let port, let network):
            "no forward of host port \(proto)/\(port) on network \(network); see vmctl network forward list"
        case .createInProgress(let name, let process):
            "VM \(name) is being created by another vmctl (process \(process.split(separator: ":").dropLast().last ?? "?")); wait for it, or run vmctl doctor --fix if that process is gone"
        case .imageExists(let name):
            "image \(name) already exists; pick another name, or vmctl image rm \(name) first"
        case .noSuchImage(let name):
            "no image named \(name); see vmctl image list"
        case .hostExists(let name):
            "host \(name) already exists; pick another name, or vmctl host rm \(name) first"
        case .noSuchHost(let name):
            "no host named \(name); see vmctl host list"
        case .conflict(let message):
            "the allocation conflicts with another one (\(message)); retry"
        }
    }
}
