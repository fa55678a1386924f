public import AllocationStore
import Dispatch
import Foundation

/// vmctl's state file, for async code: every call runs on a dispatch thread, never on the
/// cooperative pool, since a transaction may wait up to 30 s for SQLite's write lock while other
/// vmctl processes hold it.
public struct State: Sendable {
    public let store: AllocationStore

    public init(store: AllocationStore) {
        self.store = store
    }

    /// Opens (creating if needed) the state file at `path`. A symbolic link there is refused
    /// unless `followingLink` (the user named that path explicitly): a link planted at the
    /// default path must not redirect vmctl's writes.
    public static func open(_ path: String, followingLink: Bool = false) async throws(ProvisioningError) -> State {
        var status = stat()
        if !followingLink, lstat(path, &status) == 0, status.st_mode & S_IFMT == S_IFLNK {
            throw ProvisioningError(.conflict, "state file \(path) is a symbolic link", hint: "name it explicitly to use it, or remove the link")
        }
        let opened: Result<AllocationStore, StoreError> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(returning: Result { () throws(StoreError) in try AllocationStore(path: path) })
            }
        }
        do { return State(store: try opened.get()) } catch { throw ProvisioningError(error) }
    }

    /// Runs one store call off the cooperative pool; its error becomes a `ProvisioningError`.
    public func run<T: Sendable>(_ body: @escaping @Sendable (AllocationStore) throws(StoreError) -> T) async throws(ProvisioningError) -> T {
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
