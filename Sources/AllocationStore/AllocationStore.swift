public import Addressing
public import Foundation
import GRDB

/// vmctl's record of pools and of who holds which address: one SQLite file, shared safely by
/// any number of concurrent vmctl processes.
///
/// Every allocation is one `BEGIN IMMEDIATE` transaction (SQLite's write lock, waited for up to
/// 30 s), and the schema's uniqueness constraints make a second owner of an address impossible
/// even if that logic were wrong.
public final class AllocationStore: Sendable {
    private let database: DatabaseQueue
    /// The file the store lives in.
    public let path: String

    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    /// The state names every VM's owner and address: its directory is 0700 and its files 0600
    /// when vmctl makes them, whatever the umask.
    public init(path: String) throws(StoreError) {
        self.path = path
        do {
            try FileManager.default.createDirectory(
                at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
            // Created empty with the right mode before SQLite opens it (SQLite would honour the umask).
            if !FileManager.default.fileExists(atPath: path) {
                let descriptor = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
                if descriptor >= 0 { close(descriptor) }
            }
            var configuration = Configuration()
            configuration.busyMode = .timeout(30)
            configuration.foreignKeysEnabled = true
            // Write-ahead logging: one fsync per commit instead of the rollback journal's
            // several (measured: the allocation transaction from 3.6 to ~1 ms), with full
            // durability kept (synchronous stays FULL).
            configuration.prepareDatabase { db in
                try db.execute(sql: "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL")
            }
            database = try DatabaseQueue(path: path, configuration: configuration)
            try Self.migrator.migrate(database)
            // SQLite gives its -wal and -shm files the main file's mode; make sure of all three.
            for file in [path, path + "-wal", path + "-shm"] where FileManager.default.fileExists(atPath: file) {
                _ = chmod(file, 0o600)
            }
        } catch {
            throw .unavailable(path: path, reason: "\(error)")
        }
    }

    /// The default location: `/var/lib/vmctl/state.sqlite` for root, else
    /// `$XDG_DATA_HOME/vmctl/state.sqlite` (`~/.local/share/vmctl/state.sqlite`).
    public static func defaultPath(environment: [String: String], isRoot: Bool) -> String {
        if isRoot { return "/var/lib/vmctl/state.sqlite" }
        let dataHome = environment["XDG_DATA_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (environment["HOME"] ?? NSHomeDirectory()) + "/.local/share"
        return dataHome + "/vmctl/state.sqlite"
    }

    /// Versioned schema migrations; a released migration is never edited, only followed.
    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: pools and allocations") { db in
            try db.create(table: "pool") { table in
                table.primaryKey("name", .text)
                table.column("network", .text).notNull()
                table.column("layout", .jsonText).notNull()
                table.column("allUsable", .boolean).notNull()
                table.column("createdAt", .datetime).notNull()
            }
            try db.create(table: "allocation") { table in
                table.autoIncrementedPrimaryKey("id")
                table.column("pool", .text).notNull().references("pool", onDelete: .restrict)
                table.column("network", .text).notNull()
                table.column("address", .text).notNull()
                table.column("family", .text).notNull()
                table.column("ownerUUID", .text)
                table.column("ownerName", .text).notNull()
                table.column("mac", .text).notNull()
                table.column("createdAt", .datetime).notNull()
                // One owner per address on a network, whatever pool it came from.
                table.uniqueKey(["network", "address"])
                // One address per NIC and family on a network (libvirt keys DHCP hosts by MAC).
                table.uniqueKey(["network", "mac", "family"])
            }
        }
        migrator.registerMigration("v2: port forwards") { db in
            try db.create(table: "portForward") { table in
                table.autoIncrementedPrimaryKey("id")
                table.column("network", .text).notNull()
                table.column("proto", .text).notNull()
                table.column("hostPort", .integer).notNull()
                table.column("vm", .text).notNull()
                table.column("guestAddress", .text).notNull()
                table.column("guestPort", .integer).notNull()
                table.column("createdAt", .datetime).notNull()
                // A host port leads to one place.
                table.uniqueKey(["proto", "hostPort"])
            }
        }
        migrator.registerMigration("v3: pending creates") { db in
            try db.create(table: "pendingCreate") { table in
                table.primaryKey("name", .text)
                table.column("uuid", .text).notNull()
                table.column("process", .text).notNull()
                table.column("volumes", .jsonText).notNull()
                table.column("startedAt", .datetime).notNull()
            }
        }
        migrator.registerMigration("v4: images") { db in
            try db.create(table: "image") { table in
                table.primaryKey("name", .text)
                table.column("pool", .text).notNull()
                table.column("volume", .text).notNull()
                table.column("path", .text).notNull()
                table.column("format", .text).notNull()
                table.column("size", .integer).notNull()
                table.column("virtualSize", .integer).notNull()
                table.column("sha256", .text).notNull()
                table.column("source", .text).notNull()
                table.column("user", .text)
                table.column("addedAt", .datetime).notNull()
            }
        }
        return migrator
    }

    // MARK: Images

    /// Records an image; fails if one of that name exists.
    public func add(_ image: ImageRecord) throws(StoreError) {
        try write { db in
            if try ImageRecord.exists(db, key: image.name) { throw StoreError.imageExists(image.name) }
            try image.insert(db)
        }
    }

    /// Every image, by name.
    public func images() throws(StoreError) -> [ImageRecord] {
        try read { db in try ImageRecord.order(Column("name")).fetchAll(db) }
    }

    /// The image called `name`, or nil.
    public func image(named name: String) throws(StoreError) -> ImageRecord? {
        try read { db in try ImageRecord.fetchOne(db, key: name) }
    }

    /// Forgets an image (its volume is deleted by the caller).
    public func removeImage(named name: String) throws(StoreError) {
        try write { db in
            guard try ImageRecord.deleteOne(db, key: name) else { throw StoreError.noSuchImage(name) }
        }
    }

    // MARK: Pending creates

    /// Claims `pending.name` for a create; fails if another create of that name is under way.
    public func begin(_ pending: PendingCreate) throws(StoreError) {
        try write { db in
            if let other = try PendingCreate.fetchOne(db, key: pending.name) {
                throw StoreError.createInProgress(pending.name, process: other.process)
            }
            try pending.insert(db)
        }
    }

    /// Records the create's volumes so far.
    public func update(_ pending: PendingCreate) throws(StoreError) {
        try write { db in try pending.update(db) }
    }

    /// Ends a create (done, or undone): deletes its journal.
    public func end(_ name: String) throws(StoreError) {
        try write { db in _ = try PendingCreate.deleteOne(db, key: name) }
    }

    /// Every create under way or abandoned.
    public func pendingCreates() throws(StoreError) -> [PendingCreate] {
        try read { db in try PendingCreate.order(Column("name")).fetchAll(db) }
    }

    /// The allocations owned by the domain with `uuid`.
    public func allocations(ownedBy uuid: UUID) throws(StoreError) -> [Allocation] {
        try read { db in
            try Allocation.filter(Column("ownerUUID") == uuid).fetchAll(db)
                .sorted { ($0.pool, $0.address) < ($1.pool, $1.address) }
        }
    }

    // MARK: Port forwards

    /// Records a port forward; fails if the host port is taken.
    public func add(_ forward: PortForward) throws(StoreError) -> PortForward {
        try write { db in
            if let holder = try PortForward.filter(Column("proto") == forward.proto && Column("hostPort") == forward.hostPort).fetchOne(db) {
                throw StoreError.portTaken(forward.proto, forward.hostPort, network: holder.network, vm: holder.vm)
            }
            var record = forward
            try record.insert(db)
            return record
        }
    }

    /// Port forwards, of one network or all, by protocol and host port.
    public func portForwards(on network: String? = nil) throws(StoreError) -> [PortForward] {
        try read { db in
            var request = PortForward.order(Column("proto"), Column("hostPort"))
            if let network { request = request.filter(Column("network") == network) }
            return try request.fetchAll(db)
        }
    }

    /// Deletes the forward of a host port on a network; returns it.
    public func removePortForward(network: String, proto: String, hostPort: Int) throws(StoreError) -> PortForward {
        try write { db in
            let request = PortForward.filter(Column("network") == network && Column("proto") == proto && Column("hostPort") == hostPort)
            guard let forward = try request.fetchOne(db) else { throw StoreError.noPortForward(proto, hostPort, network: network) }
            try request.deleteAll(db)
            return forward
        }
    }

    /// Deletes every forward of a network (it is gone); returns them.
    @discardableResult
    public func removePortForwards(on network: String) throws(StoreError) -> [PortForward] {
        try write { db in
            let request = PortForward.filter(Column("network") == network)
            let forwards = try request.fetchAll(db)
            try request.deleteAll(db)
            return forwards
        }
    }

    // MARK: Pools

    /// Records a new pool; fails if the name is taken.
    public func create(_ pool: Pool) throws(StoreError) {
        try write { db in
            if try Pool.exists(db, key: pool.name) { throw StoreError.poolExists(pool.name) }
            try pool.insert(db)
        }
    }

    /// All pools, by name.
    public func pools() throws(StoreError) -> [Pool] {
        try read { db in try Pool.order(Column("name")).fetchAll(db) }
    }

    /// The pool called `name`; throws ``StoreError/noSuchPool(_:)`` when there is none.
    public func pool(named name: String) throws(StoreError) -> Pool {
        try read { db in
            guard let pool = try Pool.fetchOne(db, key: name) else { throw StoreError.noSuchPool(name) }
            return pool
        }
    }

    /// Deletes a pool. Refused while it has allocations, unless `force`, which deletes them too
    /// (the caller removes their DHCP host entries first).
    public func deletePool(named name: String, force: Bool) throws(StoreError) {
        try write { db in
            guard try Pool.exists(db, key: name) else { throw StoreError.noSuchPool(name) }
            let held = try Allocation.filter(Column("pool") == name).fetchCount(db)
            if held > 0 && !force { throw StoreError.poolInUse(name, allocations: held) }
            try Allocation.filter(Column("pool") == name).deleteAll(db)
            _ = try Pool.deleteOne(db, key: name)
        }
    }

    // MARK: Allocations

    /// Hands one address of `family` from `poolName` to an owner, atomically: the lowest free
    /// address not in `avoiding` (addresses the caller found in use elsewhere), or exactly `requested`.
    ///
    /// - Throws: ``StoreError/exhausted(pool:family:size:)`` when every address is taken,
    ///   ``StoreError/addressTaken(_:owner:)``, ``StoreError/addressOutsidePool(_:pool:)``,
    ///   ``StoreError/macHoldsAddress(_:address:)``.
    public func allocate(
        from poolName: String, family: IPAddress.Family, requested: IPAddress? = nil, avoiding: Set<IPAddress> = [],
        ownerUUID: UUID? = nil, ownerName: String, mac: MACAddress
    ) throws(StoreError) -> Allocation {
        try write { db in
            guard let pool = try Pool.fetchOne(db, key: poolName) else { throw StoreError.noSuchPool(poolName) }
            let onNetwork = try Allocation.filter(Column("network") == pool.network).fetchAll(db)
            if let held = onNetwork.first(where: { $0.mac == mac && $0.family == family }) {
                throw StoreError.macHoldsAddress(mac, address: held)
            }
            let address: IPAddress
            if let requested {
                guard requested.family == family, pool.layout.allows(requested) else {
                    throw StoreError.addressOutsidePool(requested, pool: poolName)
                }
                if let holder = onNetwork.first(where: { $0.address == requested }) {
                    throw StoreError.addressTaken(requested, owner: holder.ownerName)
                }
                address = requested
            } else {
                guard let free = pool.layout.firstFree(family, allocated: Set(onNetwork.map(\.address)).union(avoiding)) else {
                    throw StoreError.exhausted(pool: poolName, family: family, size: pool.layout.size(of: family))
                }
                address = free
            }
            var allocation = Allocation(
                pool: poolName, network: pool.network, address: address,
                ownerUUID: ownerUUID, ownerName: ownerName, mac: mac)
            try allocation.insert(db)
            return allocation
        }
    }

    /// Gives an address back to its pool; returns what was released.
    public func release(_ address: IPAddress, from poolName: String) throws(StoreError) -> Allocation {
        try write { db in
            guard try Pool.exists(db, key: poolName) else { throw StoreError.noSuchPool(poolName) }
            let request = Allocation.filter(Column("pool") == poolName && Column("address") == address.description)
            guard let allocation = try request.fetchOne(db) else {
                throw StoreError.notAllocated(address, pool: poolName)
            }
            try request.deleteAll(db)
            return allocation
        }
    }

    /// Allocations, of one pool or of all, ordered by pool and address.
    public func allocations(in poolName: String? = nil) throws(StoreError) -> [Allocation] {
        try read { db in
            var request = Allocation.all()
            if let poolName { request = request.filter(Column("pool") == poolName) }
            return try request.fetchAll(db).sorted { ($0.pool, $0.address) < ($1.pool, $1.address) }
        }
    }

    // MARK: Plumbing

    /// One `BEGIN IMMEDIATE` transaction: concurrent vmctl processes queue on SQLite's write lock
    /// instead of racing between their read and their write.
    private func write<T>(_ body: (Database) throws -> T) throws(StoreError) -> T {
        do {
            return try database.writeWithoutTransaction { db in
                var result: T?
                try db.inTransaction(.immediate) {
                    result = try body(db)
                    return .commit
                }
                return result!
            }
        } catch let error as StoreError {
            throw error
        } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
            throw .conflict(error.message ?? "\(error)")
        } catch {
            throw .unavailable(path: path, reason: "\(error)")
        }
    }

    private func read<T>(_ body: (Database) throws -> T) throws(StoreError) -> T {
        do {
            return try database.read { db in try body(db) }
        } catch let error as StoreError {
            throw error
        } catch {
            throw .unavailable(path: path, reason: "\(error)")
        }
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

    public var description: String {
        switch self {
        case .unavailable(let path, let reason):
            "cannot use the state file \(path): \(reason)"
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
            "VM \(name) is being created by another vmctl (process \(process.split(separator: ":").dropFirst().first ?? "?")); wait for it, or run vmctl doctor --fix if that process is gone"
        case .imageExists(let name):
            "image \(name) already exists; pick another name, or vmctl image rm \(name) first"
        case .noSuchImage(let name):
            "no image named \(name); see vmctl image list"
        case .conflict(let message):
            "the allocation conflicts with another one (\(message)); retry"
        }
    }
}
