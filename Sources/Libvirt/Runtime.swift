import CLibvirt
import Foundation

/// Process-wide libvirt set-up, done once before the first connection opens.
///
/// - silences libvirt's default error printer (`virSetErrorFunc` with a no-op handler): errors
///   reach callers as thrown ``LibvirtError`` values instead of lines on stderr;
/// - registers libvirt's default event loop (`virEventRegisterDefaultImpl`) and runs it
///   (`virEventRunDefaultImpl`) on a dedicated thread for the life of the process, as events and
///   keepalive need.
enum Runtime {
    /// Runs the set-up exactly once; Swift initialises a static `let` once, thread-safely.
    static func bootstrap() throws(LibvirtError) {
        if let failure = bootstrapped { throw failure }
    }

    private static let bootstrapped: LibvirtError? = {
        guard virInitialize() == 0 else { return LibvirtError.copyLast("virInitialize failed") }
        virSetErrorFunc(nil, { _, _ in })
        guard virEventRegisterDefaultImpl() == 0 else {
            return LibvirtError.copyLast("virEventRegisterDefaultImpl failed")
        }
        let loop = Thread {
            while true {
                if virEventRunDefaultImpl() < 0 {
                    // An iteration failure is not fatal to the loop; clear the thread's error.
                    virResetLastError()
                }
            }
        }
        loop.name = "libvirt-event-loop"
        loop.start()
        return nil
    }()
}

/// Dedicated OS threads for libvirt's blocking calls, so that none of them ever runs on Swift's
/// cooperative thread pool.
///
/// A job runs on an idle thread when there is one, otherwise on a new thread; up to
/// ``idleLimit`` threads stay parked for reuse. Each job runs from start to end on one thread,
/// which is what reading libvirt's thread-local last error requires.
final class BlockingCalls: @unchecked Sendable {
    static let shared = BlockingCalls()

    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var next = 0
    private var idle = 0
    private let idleLimit = 8

    /// Queues `job` on a blocking-call thread and returns at once.
    func submit(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        if idle > jobs.count - next - 1 {
            condition.signal()
        } else {
            let thread = Thread { [self] in work() }
            thread.name = "libvirt-call"
            thread.start()
        }
        condition.unlock()
    }

    private func work() {
        condition.lock()
        while true {
            while next == jobs.count {
                if idle >= idleLimit {
                    condition.unlock()
                    return
                }
                idle += 1
                condition.wait()
                idle -= 1
            }
            let job = jobs[next]
            next += 1
            if next == jobs.count {
                jobs.removeAll(keepingCapacity: true)
                next = 0
            }
            condition.unlock()
            job()
            condition.lock()
        }
    }
}

/// Runs a blocking libvirt call on a ``BlockingCalls`` thread and returns its result.
///
/// The error, if any, is captured inside `body`, on the thread of the failing call.
func blocking<T: Sendable, Failure: Error>(
    _ body: @escaping @Sendable () throws(Failure) -> T
) async throws(Failure) -> T {
    let result: Result<T, Failure> = await withCheckedContinuation { continuation in
        BlockingCalls.shared.submit {
            continuation.resume(returning: Result { () throws(Failure) -> T in try body() })
        }
    }
    return try result.get()
}
