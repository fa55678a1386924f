import Foundation

/// Timing of the wrapper's blocking libvirt calls, for profiles (`VMCTL_PROFILE=1`). Off unless
/// enabled; when on, every call made through the blocking-call threads is recorded with the
/// wrapper function that made it and when it ran.
public enum CallProfile {
    /// One libvirt call: the wrapper function (`Domain.start()`) and its start and end.
    public struct Record: Sendable {
        /// `Type.function()` of the wrapper.
        public var function: String
        /// When the call was queued.
        public var start: ContinuousClock.Instant
        /// When its result came back.
        public var end: ContinuousClock.Instant
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var enabled = false
    nonisolated(unsafe) private static var keeping = false
    nonisolated(unsafe) private static var recorded: [Record] = []
    nonisolated(unsafe) private static var observers: [@Sendable (Record) -> Void] = []

    /// Starts recording.
    public static func enable() {
        lock.withLock {
            enabled = true
            keeping = true
        }
    }

    /// Calls `observer` with every call as it ends (for `--debug`), without keeping them.
    public static func observe(_ observer: @escaping @Sendable (Record) -> Void) {
        lock.withLock {
            enabled = true
            observers.append(observer)
        }
    }

    /// The calls recorded so far, in the order they ended.
    public static var records: [Record] {
        lock.withLock { recorded }
    }

    static var isEnabled: Bool { lock.withLock { enabled } }

    static func record(_ function: String, file: String, from start: ContinuousClock.Instant) {
        let end = ContinuousClock.now
        let type = file.split(separator: "/").last.map { String($0.dropLast(6)) } ?? file
        let record = Record(function: "\(type).\(function)", start: start, end: end)
        let current = lock.withLock { () -> [@Sendable (Record) -> Void] in
            if keeping { recorded.append(record) }
            return observers
        }
        for observer in current { observer(record) }
    }
}
