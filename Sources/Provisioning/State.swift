public import AllocationStore
import Dispatch
import Foundation
import PostgresStore

/// vmctl's state, for async code: every call runs on a dispatch thread, never on the
/// cooperative pool, since a transaction may wait for the store's write lock (up to 30 s)
/// while other vmctl processes hold it.
public struct State: Sendable {
    public let store: any StateStore

    public init(store: any StateStore) {
        self.store = store
    }

    /// Opens (creating if needed) the store at `location`: a `postgres://` or `postgresql://`
    /// URL (PostgreSQL, shared by a fleet), else the path of a SQLite file. A symbolic link at a
    /// path is refused unless `followingLink` (the user named that path explicitly): a link
    /// planted at the default path must not redirect vmctl's writes.
    public static func open(_ location: String, followingLink: Bool = false) async throws(ProvisioningError) -> State {
        let server = try serverURL(location)
        var status = stat()
        if server == nil, !followingLink, lstat(location, &status) == 0, status.st_mode & S_IFMT == S_IFLNK {
            throw ProvisioningError(.conflict, "state file \(location) is a symbolic link", hint: "name it explicitly to use it, or remove the link")
        }
        let opened: Result<any StateStore, StoreError> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(returning: Result { () throws(StoreError) -> any StateStore in
                    if let server { return try PostgresStore(server, localDirectory: defaultLocalDirectory) }
                    return try SQLiteStore(path: location)
                })
            }
        }
        do { return State(store: try opened.get()) } catch { throw ProvisioningError(error) }
    }

    /// The server a `--state` value names, or nil for a file path.
    static func serverURL(_ location: String) throws(ProvisioningError) -> PostgresURL? {
        guard isServer(location) else { return nil }
        do { return try PostgresURL(location) } catch {
            throw ProvisioningError(.invalidValue, "bad state URL \(PostgresURL.redacted(location)): \(error)",
                                    hint: "write it as postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require] or postgres://USER@/DATABASE?host=/SOCKET/DIRECTORY")
        }
    }

    /// Whether `location` names a PostgreSQL server rather than a file.
    public static func isServer(_ location: String) -> Bool {
        location.hasPrefix("postgres://") || location.hasPrefix("postgresql://")
    }

    /// Where a client of a PostgreSQL store keeps its own files: vmctl's default data directory.
    static var defaultLocalDirectory: String {
        (SQLiteStore.defaultPath(environment: ProcessInfo.processInfo.environment, isRoot: geteuid() == 0) as NSString).deletingLastPathComponent
    }

    /// This client's own directory for the store at `location` (see ``StateStore/localDirectory``).
    public static func localDirectory(for location: String) -> String {
        if isServer(location) { return defaultLocalDirectory }
        let directory = (location as NSString).deletingLastPathComponent
        return directory.isEmpty ? "." : directory
    }

    /// Runs one store call off the cooperative pool; its error becomes a `ProvisioningError`.
    public func run<T: Sendable>(_ body: @escaping @Sendable (any StateStore) throws(StoreError) -> T) async throws(ProvisioningError) -> T {
        let store = self.store
        let result: Result<T, StoreError> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(returning: Result { () throws(StoreError) in try body(store) })
            }
        }
        do { return try result.get() } catch { throw ProvisioningError(error) }
    }
}

extension Result where Failure == StoreError {
    init(_ body: () throws(StoreError) -> Success) {
        do { self = .success(try body()) } catch { self = .failure(error) }
    }
}
