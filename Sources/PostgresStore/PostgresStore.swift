public import Addressing
public import AllocationStore
public import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO
import Synchronization

/// vmctl's state on a PostgreSQL server: the store a fleet of vmctl clients on many machines
/// shares, with the schema, rules and guarantees of ``SQLiteStore``.
///
/// Every write is one transaction at READ COMMITTED that first takes one transaction-scoped
/// advisory lock (`pg_advisory_xact_lock`), so writers queue as they do on SQLite's write lock:
/// each statement after the lock sees every transaction committed before it, so the lowest free
/// address it computes is free, and UNIQUE (network, address) rejects a second owner even if that
/// logic were wrong. Reads are single statements and never wait. One connection per process,
/// used by one transaction at a time.
public final class PostgresStore: StateStore {
    public let url: PostgresURL
    public let localDirectory: String
    public var location: String { url.description }

    private let connection: PostgresConnection
    private let inUse = Mutex(())
    private let logger = Logger(label: "vmctl.store")

    /// The advisory lock every writing transaction takes first ("vmctl" in ASCII).
    static let writeLock: Int64 = 0x766d_6374_6c00

    /// Connects to the server at `url` and brings its schema up to date. `localDirectory` is
    /// where this client keeps its own files.
    public init(_ url: PostgresURL, localDirectory: String) throws(StoreError) {
        self.url = url
        self.localDirectory = localDirectory
        let location = url.description
        do {
            var configuration: PostgresConnection.Configuration
            switch url.endpoint {
            case .socket(let path):
                configuration = .init(unixSocketPath: path, username: url.user, password: url.password, database: url.database)
            case .tcp(let host, let port):
                let tls: PostgresConnection.Configuration.TLS = switch url.tls {
                case .disable: .disable
                case .prefer: .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
                case .require: .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
                }
                configuration = .init(host: host, port: port, username: url.user, password: url.password, database: url.database, tls: tls)
            }
            configuration.options.connectTimeout = .seconds(10)
            connection = try PostgresConnection.connect(
                on: MultiThreadedEventLoopGroup.singleton.any(), configuration: configuration, id: 1, logger: logger
            ).wait()
        } catch {
            throw .unavailable(path: location, reason: Self.reason(error))
        }
        // A writer waits for the lock as long as SQLite's busy timeout lets it.
        try execute("SET lock_timeout = '30s'")
        try migrate()
    }

    deinit {
        try? connection.close().wait()
    }

    // MARK: Schema

    /// The migrations, in order, with the names SQLiteStore's have; a released one is never
    /// edited, only followed.
    static let migrations: [(name: String, sql: [String])] = [
        ("v1: pools and allocations", [
            """
            CREATE TABLE pool (name text PRIMARY KEY, network text NOT NULL, layout text NOT NULL,
                all_usable boolean NOT NULL, created_at timestamptz NOT NULL)
            """,
            """
            CREATE TABLE allocation (id bigserial PRIMARY KEY,
                pool text NOT NULL REFERENCES pool (name) ON DELETE RESTRICT, network text NOT NULL,
                address text NOT NULL, family text NOT NULL, owner_uuid uuid, owner_name text NOT NULL,
                mac text NOT NULL, created_at timestamptz NOT NULL,
                UNIQUE (network, address), UNIQUE (network, mac, family))
            """,
        ]),
        ("v2: port forwards", [
            """
            CREATE TABLE port_forward (id bigserial PRIMARY KEY, network text NOT NULL, proto text NOT NULL,
                host_port integer NOT NULL, vm text NOT NULL, guest_address text NOT NULL,
                guest_port integer NOT NULL, created_at timestamptz NOT NULL, UNIQUE (proto, host_port))
            """,
        ]),
        ("v3: pending creates", [
            """
            CREATE TABLE pending_create (name text PRIMARY KEY, uuid uuid NOT NULL, process text NOT NULL,
                volumes text NOT NULL, started_at timestamptz NOT NULL)
            """,
        ]),
        ("v4: images", [
            """
            CREATE TABLE image (name text PRIMARY KEY, pool text NOT NULL, volume text NOT NULL, path text NOT NULL,
                format text NOT NULL, size bigint NOT NULL, virtual_size bigint NOT NULL, sha256 text NOT NULL,
                source text NOT NULL, user_name text, added_at timestamptz NOT NULL)
            """,
        ]),
        ("v5: hosts", [
            "CREATE TABLE host (name text PRIMARY KEY, uri text NOT NULL, labels text NOT NULL, added_at timestamptz NOT NULL)",
            "ALTER TABLE allocation ADD COLUMN host text",
            "ALTER TABLE pending_create ADD COLUMN host text, ADD COLUMN memory bigint NOT NULL DEFAULT 0",
        ]),
        ("v6: pool cursors", [
            """
            CREATE TABLE pool_cursor (pool text NOT NULL REFERENCES pool (name) ON DELETE CASCADE, family text NOT NULL,
                cursor text NOT NULL, PRIMARY KEY (pool, family))
            """,
        ]),
    ]

    /// Applies the migrations this server lacks, under the write lock (two clients starting at
    /// once do not both apply one). A server migrated by a newer vmctl is refused.
    private func migrate() throws(StoreError) {
        try write { db throws in
            try db.execute("CREATE TABLE IF NOT EXISTS vmctl_migration (name text PRIMARY KEY, applied_at timestamptz NOT NULL)")
            let applied = try db.rows("SELECT name FROM vmctl_migration").map { try $0.decode(String.self) }
            let known = Self.migrations.map(\.name)
            if let unknown = applied.first(where: { !known.contains($0) }) {
                throw StoreError.unavailable(path: location, reason: "it was migrated by a newer vmctl (\(unknown)); upgrade this vmctl")
            }
            for migration in Self.migrations where !applied.contains(migration.name) {
                for statement in migration.sql { try db.execute(PostgresQuery(unsafeSQL: statement)) }
                try db.execute("INSERT INTO vmctl_migration (name, applied_at) VALUES (\(migration.name), \(Date()))")
            }
        }
    }

    // MARK: Images

    private static let imageColumns = "name, pool, volume, path, format, size, virtual_size, sha256, source, user_name, added_at"

    private static func image(_ row: PostgresRow) throws -> ImageRecord {
        let (name, pool, volume, path, format, size, virtualSize, sha256, source, user, addedAt) =
            try row.decode((String, String, String, String, String, Int64, Int64, String, String, String?, Date).self)
        return ImageRecord(name: name, pool: pool, volume: volume, path: path, format: format, size: UInt64(size),
                           virtualSize: UInt64(virtualSize), sha256: sha256, source: source, user: user, addedAt: addedAt)
    }

    public func add(_ image: ImageRecord) throws(StoreError) {
        try write { db throws in
            guard try db.rows("SELECT 1 FROM image WHERE name = \(image.name)").isEmpty else { throw StoreError.imageExists(image.name) }
            try db.execute("""
                INSERT INTO image (\(unescaped: Self.imageColumns)) VALUES (\(image.name), \(image.pool), \(image.volume),
                \(image.path), \(image.format), \(Int64(image.size)), \(Int64(image.virtualSize)), \(image.sha256),
                \(image.source), \(image.user), \(image.addedAt))
                """)
        }
    }

    public func images() throws(StoreError) -> [ImageRecord] {
        try read { db throws in try db.rows("SELECT \(unescaped: Self.imageColumns) FROM image ORDER BY name").map(Self.image) }
    }

    public func image(named name: String) throws(StoreError) -> ImageRecord? {
        try read { db throws in try db.rows("SELECT \(unescaped: Self.imageColumns) FROM image WHERE name = \(name)").first.map(Self.image) }
    }

    public func removeImage(named name: String) throws(StoreError) {
        try write { db throws in
            guard try db.count("DELETE FROM image WHERE name = \(name)") > 0 else { throw StoreError.noSuchImage(name) }
        }
    }

    // MARK: The create journal

    private static let pendingColumns = "name, uuid, process, volumes, host, memory, started_at"

    private static func pending(_ row: PostgresRow) throws -> PendingCreate {
        let (name, uuid, process, volumes, host, memory, startedAt) =
            try row.decode((String, UUID, String, String, String?, Int64, Date).self)
        return PendingCreate(name: name, uuid: uuid, process: process, volumes: try JSONText.decode([String].self, volumes),
                             host: host, memory: UInt64(memory), startedAt: startedAt)
    }

    @discardableResult
    public func begin(_ pending: PendingCreate, placingOn candidates: [PlacementCandidate]) throws(StoreError) -> PendingCreate {
        try write { db throws in
            let underWay = try db.rows("SELECT \(unescaped: Self.pendingColumns) FROM pending_create").map(Self.pending)
            if let other = underWay.first(where: { $0.name == pending.name }) {
                throw StoreError.createInProgress(pending.name, process: other.process)
            }
            var placed = pending
            if !candidates.isEmpty { placed.host = Placement.choose(among: candidates, underWay: underWay) }
            try db.execute("""
                INSERT INTO pending_create (\(unescaped: Self.pendingColumns)) VALUES (\(placed.name), \(placed.uuid),
                \(placed.process), \(try JSONText.encode(placed.volumes)), \(placed.host), \(Int64(placed.memory)), \(placed.startedAt))
                """)
            return placed
        }
    }

    public func update(_ pending: PendingCreate) throws(StoreError) {
        try write { db throws in
            try db.execute("""
                UPDATE pending_create SET uuid = \(pending.uuid), process = \(pending.process),
                volumes = \(try JSONText.encode(pending.volumes)), host = \(pending.host), memory = \(Int64(pending.memory)),
                started_at = \(pending.startedAt) WHERE name = \(pending.name)
                """)
        }
    }

    public func end(_ name: String) throws(StoreError) {
        try write { db throws in try db.execute("DELETE FROM pending_create WHERE name = \(name)") }
    }

    public func pendingCreates() throws(StoreError) -> [PendingCreate] {
        try read { db throws in try db.rows("SELECT \(unescaped: Self.pendingColumns) FROM pending_create ORDER BY name").map(Self.pending) }
    }

    // MARK: Port forwards

    private static let forwardColumns = "id, network, proto, host_port, vm, guest_address, guest_port, created_at"

    private static func forward(_ row: PostgresRow) throws -> PortForward {
        let (id, network, proto, hostPort, vm, guestAddress, guestPort, createdAt) =
            try row.decode((Int64, String, String, Int, String, String, Int, Date).self)
        var forward = PortForward(network: network, proto: proto, hostPort: hostPort, vm: vm,
                                  guestAddress: try JSONText.parse(IPAddress.self, guestAddress), guestPort: guestPort, createdAt: createdAt)
        forward.id = id
        return forward
    }

    public func add(_ forward: PortForward) throws(StoreError) -> PortForward {
        try write { db throws in
            if let holder = try db.rows("SELECT \(unescaped: Self.forwardColumns) FROM port_forward WHERE proto = \(forward.proto) AND host_port = \(forward.hostPort)").first.map(Self.forward) {
                throw StoreError.portTaken(forward.proto, forward.hostPort, network: holder.network, vm: holder.vm)
            }
            var record = forward
            record.id = try db.rows("""
                INSERT INTO port_forward (network, proto, host_port, vm, guest_address, guest_port, created_at)
                VALUES (\(forward.network), \(forward.proto), \(forward.hostPort), \(forward.vm), \(forward.guestAddress.description),
                \(forward.guestPort), \(forward.createdAt)) RETURNING id
                """).first?.decode(Int64.self)
            return record
        }
    }

    public func portForwards(on network: String?) throws(StoreError) -> [PortForward] {
        try read { db throws in
            let rows = if let network {
                try db.rows("SELECT \(unescaped: Self.forwardColumns) FROM port_forward WHERE network = \(network) ORDER BY proto, host_port")
            } else {
                try db.rows("SELECT \(unescaped: Self.forwardColumns) FROM port_forward ORDER BY proto, host_port")
            }
            return try rows.map(Self.forward)
        }
    }

    public func removePortForward(network: String, proto: String, hostPort: Int) throws(StoreError) -> PortForward {
        try write { db throws in
            guard let forward = try db.rows("""
                DELETE FROM port_forward WHERE network = \(network) AND proto = \(proto) AND host_port = \(hostPort)
                RETURNING \(unescaped: Self.forwardColumns)
                """).first.map(Self.forward) else { throw StoreError.noPortForward(proto, hostPort, network: network) }
            return forward
        }
    }

    @discardableResult
    public func removePortForwards(on network: String) throws(StoreError) -> [PortForward] {
        try write { db throws in
            try db.rows("DELETE FROM port_forward WHERE network = \(network) RETURNING \(unescaped: Self.forwardColumns)")
                .map(Self.forward).sorted { ($0.proto, $0.hostPort) < ($1.proto, $1.hostPort) }
        }
    }

    // MARK: Pools and allocations

    private static func pool(_ row: PostgresRow) throws -> Pool {
        try pool(row.decode((String, String, String, Bool, Date).self))
    }

    /// The pool from its columns, `poolColumns` in order.
    private static func pool(_ columns: (String, String, String, Bool, Date)) throws -> Pool {
        let (name, network, layout, allUsable, createdAt) = columns
        return Pool(name: name, network: network, layout: try JSONText.decode(PoolLayout.self, layout), allUsable: allUsable, createdAt: createdAt)
    }

    private static let poolColumns = "name, network, layout, all_usable, created_at"

    public func create(_ pool: Pool) throws(StoreError) {
        try write { db throws in
            guard try db.rows("SELECT 1 FROM pool WHERE name = \(pool.name)").isEmpty else { throw StoreError.poolExists(pool.name) }
            try db.execute("""
                INSERT INTO pool (\(unescaped: Self.poolColumns)) VALUES (\(pool.name), \(pool.network),
                \(try JSONText.encode(pool.layout)), \(pool.allUsable), \(pool.createdAt))
                """)
        }
    }

    public func pools() throws(StoreError) -> [Pool] {
        try read { db throws in try db.rows("SELECT \(unescaped: Self.poolColumns) FROM pool ORDER BY name").map(Self.pool) }
    }

    public func pool(named name: String) throws(StoreError) -> Pool {
        try read { db throws in
            guard let pool = try db.rows("SELECT \(unescaped: Self.poolColumns) FROM pool WHERE name = \(name)").first.map(Self.pool) else {
                throw StoreError.noSuchPool(name)
            }
            return pool
        }
    }

    public func deletePool(named name: String, force: Bool) throws(StoreError) {
        try write { db throws in
            guard try !db.rows("SELECT 1 FROM pool WHERE name = \(name)").isEmpty else { throw StoreError.noSuchPool(name) }
            let held = try db.rows("SELECT count(*) FROM allocation WHERE pool = \(name)").first?.decode(Int.self) ?? 0
            if held > 0 && !force { throw StoreError.poolInUse(name, allocations: held) }
            if held > 0 {
                // Addresses below other pools' cursors on the network are free now: rebuild them.
                try db.execute("""
                    DELETE FROM pool_cursor WHERE pool IN
                    (SELECT name FROM pool WHERE network = (SELECT network FROM pool WHERE name = \(name)))
                    """)
            }
            try db.execute("DELETE FROM allocation WHERE pool = \(name)")
            try db.execute("DELETE FROM pool WHERE name = \(name)")
        }
    }

    private static let allocationColumns = "id, pool, network, address, owner_uuid, owner_name, mac, host, created_at"

    private static func allocation(_ row: PostgresRow) throws -> Allocation {
        let (id, pool, network, address, ownerUUID, ownerName, mac, host, createdAt) =
            try row.decode((Int64, String, String, String, UUID?, String, String, String?, Date).self)
        var allocation = Allocation(pool: pool, network: network, address: try JSONText.parse(IPAddress.self, address),
                                    ownerUUID: ownerUUID, ownerName: ownerName, mac: try JSONText.parse(MACAddress.self, mac),
                                    host: host, createdAt: createdAt)
        allocation.id = id
        return allocation
    }

    private static func ordered(_ allocations: [Allocation]) -> [Allocation] {
        allocations.sorted { ($0.pool, $0.address) < ($1.pool, $1.address) }
    }

    public func allocate(_ request: AllocationRequest) throws(StoreError) -> Allocation {
        try write { db throws in
            // The pool and its cursor for the family in one round trip.
            guard let row = try db.rows("""
                SELECT \(unescaped: Self.poolColumns), (SELECT c.cursor FROM pool_cursor c WHERE c.pool = pool.name AND c.family = \(request.family.rawValue))
                FROM pool WHERE name = \(request.pool)
                """).first else {
                throw StoreError.noSuchPool(request.pool)
            }
            let (name, network, layout, allUsable, createdAt, cursorText) = try row.decode((String, String, String, Bool, Date, String?).self)
            let pool = try Self.pool((name, network, layout, allUsable, createdAt))
            let cursor = try cursorText.map { try JSONText.decode(PoolCursor.self, $0) }
            var (allocation, after) = try request.choose(in: pool, cursor: cursor, on: PostgresNetwork(db: db, name: pool.network))
            if after != cursor {
                if let after {
                    try db.execute("""
                        INSERT INTO pool_cursor (pool, family, cursor) VALUES (\(pool.name), \(request.family.rawValue), \(try JSONText.encode(after)))
                        ON CONFLICT (pool, family) DO UPDATE SET cursor = excluded.cursor
                        """)
                } else {
                    try db.execute("DELETE FROM pool_cursor WHERE pool = \(pool.name) AND family = \(request.family.rawValue)")
                }
            }
            allocation.id = try db.rows("""
                INSERT INTO allocation (pool, network, address, family, owner_uuid, owner_name, mac, host, created_at)
                VALUES (\(allocation.pool), \(allocation.network), \(allocation.address.description), \(allocation.family.rawValue),
                \(allocation.ownerUUID), \(allocation.ownerName), \(allocation.mac.description), \(allocation.host), \(allocation.createdAt))
                RETURNING id
                """).first?.decode(Int64.self)
            return allocation
        }
    }

    public func release(_ address: IPAddress, from poolName: String) throws(StoreError) -> Allocation {
        try write { db throws in
            guard let network = try db.rows("SELECT network FROM pool WHERE name = \(poolName)").first?.decode(String.self) else {
                throw StoreError.noSuchPool(poolName)
            }
            // By UNIQUE (network, address): (pool, address) has no index.
            guard let allocation = try db.rows("""
                DELETE FROM allocation WHERE network = \(network) AND address = \(address.description) AND pool = \(poolName)
                RETURNING \(unescaped: Self.allocationColumns)
                """).first.map(Self.allocation) else { throw StoreError.notAllocated(address, pool: poolName) }
            // The address becomes a hole of every pool cursor on its network that has passed it.
            for row in try db.rows("""
                SELECT p.name, p.layout, c.cursor FROM pool p JOIN pool_cursor c ON c.pool = p.name
                WHERE p.network = \(allocation.network) AND c.family = \(allocation.family.rawValue)
                """) {
                let (pool, layout, text) = try row.decode((String, String, String).self)
                let cursor = try JSONText.decode(PoolCursor.self, text)
                let after = cursor.releasing(allocation.address, in: try JSONText.decode(PoolLayout.self, layout))
                if after == cursor { continue }
                if let after {
                    try db.execute("UPDATE pool_cursor SET cursor = \(try JSONText.encode(after)) WHERE pool = \(pool) AND family = \(allocation.family.rawValue)")
                } else {
                    try db.execute("DELETE FROM pool_cursor WHERE pool = \(pool) AND family = \(allocation.family.rawValue)")
                }
            }
            return allocation
        }
    }

    public func allocations(in poolName: String?) throws(StoreError) -> [Allocation] {
        try read { db throws in
            let rows = if let poolName {
                try db.rows("SELECT \(unescaped: Self.allocationColumns) FROM allocation WHERE pool = \(poolName)")
            } else {
                try db.rows("SELECT \(unescaped: Self.allocationColumns) FROM allocation")
            }
            return Self.ordered(try rows.map(Self.allocation))
        }
    }

    public func allocations(ownedBy uuid: UUID) throws(StoreError) -> [Allocation] {
        try read { db throws in
            Self.ordered(try db.rows("SELECT \(unescaped: Self.allocationColumns) FROM allocation WHERE owner_uuid = \(uuid)").map(Self.allocation))
        }
    }

    /// The allocations of one network as an allocation reads them, by the UNIQUE indexes.
    struct PostgresNetwork: NetworkAllocations {
        let db: Statements
        let name: String

        func held(by mac: MACAddress, family: IPAddress.Family) throws -> Allocation? {
            try db.rows("""
                SELECT \(unescaped: PostgresStore.allocationColumns) FROM allocation
                WHERE network = \(name) AND mac = \(mac.description) AND family = \(family.rawValue)
                """).first.map(PostgresStore.allocation)
        }

        func holder(of address: IPAddress) throws -> Allocation? {
            try db.rows("SELECT \(unescaped: PostgresStore.allocationColumns) FROM allocation WHERE network = \(name) AND address = \(address.description)")
                .first.map(PostgresStore.allocation)
        }

        func allocated(among addresses: [IPAddress]) throws -> Set<IPAddress> {
            try Self.addresses(db.rows("SELECT address FROM allocation WHERE network = \(name) AND address = ANY(\(addresses.map(\.description)))"))
        }

        func everyAddress() throws -> Set<IPAddress> {
            try Self.addresses(db.rows("SELECT address FROM allocation WHERE network = \(name)"))
        }

        private static func addresses(_ rows: [PostgresRow]) throws -> Set<IPAddress> {
            Set(try rows.map { try JSONText.parse(IPAddress.self, try $0.decode(String.self)) })
        }
    }

    // MARK: Hosts

    private static func host(_ row: PostgresRow) throws -> HostRecord {
        let (name, uri, labels, addedAt) = try row.decode((String, String, String, Date).self)
        return HostRecord(name: name, uri: uri, labels: try JSONText.decode([String: String].self, labels), addedAt: addedAt)
    }

    public func add(_ host: HostRecord) throws(StoreError) {
        try write { db throws in
            guard try db.rows("SELECT 1 FROM host WHERE name = \(host.name)").isEmpty else { throw StoreError.hostExists(host.name) }
            try db.execute("""
                INSERT INTO host (name, uri, labels, added_at) VALUES (\(host.name), \(host.uri), \(try JSONText.encode(host.labels)), \(host.addedAt))
                """)
        }
    }

    public func hosts() throws(StoreError) -> [HostRecord] {
        try read { db throws in try db.rows("SELECT name, uri, labels, added_at FROM host ORDER BY name").map(Self.host) }
    }

    public func removeHost(named name: String) throws(StoreError) {
        try write { db throws in
            guard try db.count("DELETE FROM host WHERE name = \(name)") > 0 else { throw StoreError.noSuchHost(name) }
        }
    }

    // MARK: Plumbing

    /// Runs `body` inside a writing transaction, holding the write lock (the tests' contention).
    func holdingWriteLock(_ body: () throws -> Void) throws(StoreError) {
        try write { _ throws in try body() }
    }

    /// One connection's statements, run and waited for on the calling (dispatch) thread.
    struct Statements {
        let connection: PostgresConnection
        let logger: Logger

        func rows(_ query: PostgresQuery) throws -> [PostgresRow] {
            try connection.query(query, logger: logger).wait().rows
        }

        func execute(_ query: PostgresQuery) throws {
            _ = try connection.query(query, logger: logger).wait()
        }

        /// The number of rows a DELETE or UPDATE touched.
        func count(_ query: PostgresQuery) throws -> Int {
            try connection.query(query, logger: logger).wait().metadata.rows ?? 0
        }
    }

    private func execute(_ sql: String) throws(StoreError) {
        try read { db throws in try db.execute(PostgresQuery(unsafeSQL: sql)) }
    }

    /// One writing transaction: BEGIN, the write lock, the body, COMMIT (ROLLBACK on any error).
    private func write<T>(_ body: (Statements) throws -> T) throws(StoreError) -> T {
        try read { db throws in
            try db.execute("BEGIN")
            do {
                try db.execute("SELECT pg_advisory_xact_lock(\(Self.writeLock))")
                let result = try body(db)
                try db.execute("COMMIT")
                return result
            } catch {
                try? db.execute("ROLLBACK")
                throw error
            }
        }
    }

    /// The connection, for one caller at a time; errors become `StoreError`s.
    private func read<T>(_ body: (Statements) throws -> T) throws(StoreError) -> T {
        let statements = Statements(connection: connection, logger: logger)
        do {
            return try inUse.withLock { _ in try body(statements) }
        } catch let error as StoreError {
            throw error
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23505" {
            throw .conflict(error.serverInfo?[.message] ?? "a unique constraint")
        } catch {
            throw .unavailable(path: location, reason: Self.reason(error))
        }
    }

    /// What went wrong, in words: the server's message and SQLSTATE, or the connection's failure.
    /// (PSQLError's own description is deliberately generic.)
    static func reason(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return "\(error)" }
        if let message = error.serverInfo?[.message] {
            return "\(message) (SQLSTATE \(error.serverInfo?[.sqlState] ?? "?"))"
        }
        if let underlying = error.underlying { return "\(error.code): \(underlying)" }
        return "\(error.code)"
    }
}

/// Values kept as text: JSON for structures, `description` for addresses.
enum JSONText {
    struct Corrupt: Error, CustomStringConvertible {
        var description: String
    }

    static func encode(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try JSONDecoder().decode(type, from: Data(text.utf8))
    }

    static func parse<T: LosslessStringConvertible>(_ type: T.Type, _ text: String) throws -> T {
        guard let value = T(text) else { throw Corrupt(description: "the store holds \(text), not a \(T.self)") }
        return value
    }
}
