public import Addressing
public import Foundation
import GRDB

/// vmctl's state in one SQLite file, shared safely by any number of concurrent vmctl processes
/// on one machine: the embedded default.
///
/// Every write is one `BEGIN IMMEDIATE` transaction (SQLite's write lock, waited for up to
/// 30 s), and the schema's uniqueness constraints make a second owner of an address impossible
/// even if that logic were wrong.
public final class SQLiteStore: StateStore {
    private let database: DatabaseQueue
    /// The file the store lives in.
    public let path: String
    public var location: String { path }
    public var localDirectory: String {
        let directory = (path as NSString).deletingLastPathComponent
        return directory.isEmpty ? "." : directory
    }

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
            // As on PostgreSQL: an older vmctl would write under rules it does not know (a
            // release that leaves the pool cursors unaware of its address).
            let migrator = Self.migrator
            if let unknown = try database.read({ db in
                try migrator.appliedIdentifiers(db).subtracting(migrator.migrations).sorted().first
            }) {
                throw Problem(description: "it was migrated by a newer vmctl (\(unknown)); upgrade this vmctl")
            }
            try migrator.migrate(database)
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
    static var migrator: DatabaseMigrator {
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
        migrator.registerMigration("v5: hosts") { db in
            try db.create(table: "host") { table in
                table.primaryKey("name", .text)
                table.column("uri", .text).notNull()
                table.column("labels", .jsonText).notNull()
                table.column("addedAt", .datetime).notNull()
            }
            try db.alter(table: "allocation") { table in table.add(column: "host", .text) }
            try db.alter(table: "pendingCreate") { table in
                table.add(column: "host", .text)
                table.add(column: "memory", .integer).notNull().defaults(to: 0)
            }
        }
        migrator.registerMigration("v6: pool cursors") { db in
            try db.create(table: "poolCursor") { table in
                table.column("pool", .text).notNull().references("pool", onDelete: .cascade)
                table.column("family", .text).notNull()
                table.column("cursor", .jsonText).notNull()
                table.primaryKey(["pool", "family"])
            }
        }
        return migrator
    }

    // MARK: Images

    public func add(_ image: ImageRecord) throws(StoreError) {
        try write { db in
            if try ImageRecord.exists(db, key: image.name) { throw StoreError.imageExists(image.name) }
            try image.insert(db)
        }
    }

    public func images() throws(StoreError) -> [ImageRecord] {
        try read { db in try ImageRecord.order(Column("name")).fetchAll(db) }
    }

    public func image(named name: String) throws(StoreError) -> ImageRecord? {
        try read { db in try ImageRecord.fetchOne(db, key: name) }
    }

    public func removeImage(named name: String) throws(StoreError) {
        try write { db in
            guard try ImageRecord.deleteOne(db, key: name) else { throw StoreError.noSuchImage(name) }
        }
    }

    // MARK: Pending creates

    @discardableResult
    public func begin(_ pending: PendingCreate, placingOn candidates: [PlacementCandidate]) throws(StoreError) -> PendingCreate {
        try write { db in
            if let other = try PendingCreate.fetchOne(db, key: pending.name) {
                throw StoreError.createInProgress(pending.name, process: other.process)
            }
            var placed = pending
            if !candidates.isEmpty {
                placed.host = Placement.choose(among: candidates, underWay: try PendingCreate.fetchAll(db))
            }
            try placed.insert(db)
            return placed
        }
    }

    public func update(_ pending: PendingCreate) throws(StoreError) {
        try write { db in try pending.update(db) }
    }

    public func end(_ name: String) throws(StoreError) {
        try write { db in _ = try PendingCreate.deleteOne(db, key: name) }
    }

    public func pendingCreates() throws(StoreError) -> [PendingCreate] {
        try read { db in try PendingCreate.order(Column("name")).fetchAll(db) }
    }

    public func allocations(ownedBy uuid: UUID) throws(StoreError) -> [Allocation] {
        try read { db in
            try Allocation.filter(Column("ownerUUID") == uuid).fetchAll(db)
                .sorted { ($0.pool, $0.address) < ($1.pool, $1.address) }
        }
    }

    // MARK: Port forwards

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

    public func portForwards(on network: String?) throws(StoreError) -> [PortForward] {
        try read { db in
            var request = PortForward.order(Column("proto"), Column("hostPort"))
            if let network { request = request.filter(Column("network") == network) }
            return try request.fetchAll(db)
        }
    }

    public func removePortForward(network: String, proto: String, hostPort: Int) throws(StoreError) -> PortForward {
        try write { db in
            let request = PortForward.filter(Column("network") == network && Column("proto") == proto && Column("hostPort") == hostPort)
            guard let forward = try request.fetchOne(db) else { throw StoreError.noPortForward(proto, hostPort, network: network) }
            try request.deleteAll(db)
            return forward
        }
    }

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

    public func create(_ pool: Pool) throws(StoreError) {
        try write { db in
            if try Pool.exists(db, key: pool.name) { throw StoreError.poolExists(pool.name) }
            try pool.insert(db)
        }
    }

    public func pools() throws(StoreError) -> [Pool] {
        try read { db in try Pool.order(Column("name")).fetchAll(db) }
    }

    public func pool(named name: String) throws(StoreError) -> Pool {
        try read { db in
            guard let pool = try Pool.fetchOne(db, key: name) else { throw StoreError.noSuchPool(name) }
            return pool
        }
    }

    public func deletePool(named name: String, force: Bool) throws(StoreError) {
        try write { db in
            guard let pool = try Pool.fetchOne(db, key: name) else { throw StoreError.noSuchPool(name) }
            let held = try Allocation.filter(Column("pool") == name).fetchCount(db)
            if held > 0 && !force { throw StoreError.poolInUse(name, allocations: held) }
            if held > 0 {
                // Addresses below other pools' cursors on the network are free now: rebuild them.
                let pools = try String.fetchAll(db, Pool.select(Column("name")).filter(Column("network") == pool.network))
                try PoolCursorRecord.filter(pools.contains(Column("pool"))).deleteAll(db)
            }
            try Allocation.filter(Column("pool") == name).deleteAll(db)
            _ = try Pool.deleteOne(db, key: name)
        }
    }

    // MARK: Allocations

    public func allocate(_ request: AllocationRequest) throws(StoreError) -> Allocation {
        try write { db in
            guard let pool = try Pool.fetchOne(db, key: request.pool) else { throw StoreError.noSuchPool(request.pool) }
            let key = ["pool": pool.name, "family": request.family.rawValue]
            let cursor = try PoolCursorRecord.fetchOne(db, key: key)?.cursor
            var (allocation, after) = try request.choose(in: pool, cursor: cursor, on: SQLiteNetwork(db: db, name: pool.network))
            try allocation.insert(db)
            if after != cursor {
                if let after {
                    try PoolCursorRecord(pool: pool.name, family: request.family, cursor: after).upsert(db)
                } else {
                    _ = try PoolCursorRecord.deleteOne(db, key: key)
                }
            }
            return allocation
        }
    }

    public func release(_ address: IPAddress, from poolName: String) throws(StoreError) -> Allocation {
        try write { db in
            guard let pool = try Pool.fetchOne(db, key: poolName) else { throw StoreError.noSuchPool(poolName) }
            // By UNIQUE(network, address): (pool, address) has no index and scanned 60,000 rows.
            let request = Allocation.filter(Column("network") == pool.network && Column("address") == address.description
                && Column("pool") == poolName)
            guard let allocation = try request.fetchOne(db) else {
                throw StoreError.notAllocated(address, pool: poolName)
            }
            try request.deleteAll(db)
            try holePoolCursors(db, releasing: allocation)
            return allocation
        }
    }

    /// The released address becomes a hole of every pool cursor on its network that has passed it.
    private func holePoolCursors(_ db: Database, releasing allocation: Allocation) throws {
        let pools = try Pool.filter(Column("network") == allocation.network).fetchAll(db)
        for pool in pools {
            let key = ["pool": pool.name, "family": allocation.family.rawValue]
            guard let cursor = try PoolCursorRecord.fetchOne(db, key: key)?.cursor else { continue }
            let after = cursor.releasing(allocation.address, in: pool.layout)
            if after == cursor { continue }
            if let after {
                try PoolCursorRecord(pool: pool.name, family: allocation.family, cursor: after).update(db)
            } else {
                _ = try PoolCursorRecord.deleteOne(db, key: key)
            }
        }
    }

    public func allocations(in poolName: String?) throws(StoreError) -> [Allocation] {
        try read { db in
            var request = Allocation.all()
            if let poolName { request = request.filter(Column("pool") == poolName) }
            return try request.fetchAll(db).sorted { ($0.pool, $0.address) < ($1.pool, $1.address) }
        }
    }

    // MARK: Hosts

    public func add(_ host: HostRecord) throws(StoreError) {
        try write { db in
            if try HostRecord.exists(db, key: host.name) { throw StoreError.hostExists(host.name) }
            try host.insert(db)
        }
    }

    public func hosts() throws(StoreError) -> [HostRecord] {
        try read { db in try HostRecord.order(Column("name")).fetchAll(db) }
    }

    public func removeHost(named name: String) throws(StoreError) {
        try write { db in
            guard try HostRecord.deleteOne(db, key: name) else { throw StoreError.noSuchHost(name) }
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

/// A pool's cursor for one family, as the SQLite store keeps it (the cursor as JSON).
struct PoolCursorRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "poolCursor"
    var pool: String
    var family: IPAddress.Family
    var cursor: PoolCursor
}

/// The allocations of one network as an allocation reads them, by the UNIQUE indexes.
struct SQLiteNetwork: NetworkAllocations {
    let db: Database
    let name: String

    func held(by mac: MACAddress, family: IPAddress.Family) throws -> Allocation? {
        try Allocation.filter(Column("network") == name && Column("mac") == mac.description && Column("family") == family.rawValue)
            .fetchOne(db)
    }

    func holder(of address: IPAddress) throws -> Allocation? {
        try Allocation.filter(Column("network") == name && Column("address") == address.description).fetchOne(db)
    }

    func allocated(among addresses: [IPAddress]) throws -> Set<IPAddress> {
        try Self.addresses(db, Allocation.select(Column("address"))
            .filter(Column("network") == name && addresses.map(\.description).contains(Column("address"))))
    }

    func everyAddress() throws -> Set<IPAddress> {
        try Self.addresses(db, Allocation.select(Column("address")).filter(Column("network") == name))
    }

    private static func addresses(_ db: Database, _ request: QueryInterfaceRequest<Allocation>) throws -> Set<IPAddress> {
        Set(try String.fetchAll(db, request).map { text in
            guard let address = IPAddress(text) else { throw Problem(description: "the allocation table holds \(text), not an IP address") }
            return address
        })
    }
}

/// A failure of the file's contents, in words (reported as `StoreError`'s reason).
struct Problem: Error, CustomStringConvertible {
    var description: String
}
