import CLibvirt
import Foundation

/// Process-wide libvirt set-up, done once before the first connection opens.
///
/// - silences libvirt's default error printer (`virSetErrorFunc` with a no-op handler): errors
///   reach callers as thrown ``LibvirtError`` values instead of lines on stderr;
/// - registers libvirt's default event loop (`virEventRegisterDefaultImpl`) and runs it
///   (`virEventRunDefaultImpl`) on a dedicated thread for the life of the process, as events and
///   keepalive need: before the first connection that wants them opens (a connection opened
///   without a loop never has events or keepalive).
enum Runtime {
    /// Runs the set-up exactly once, the event loop once it is first wanted; Swift initialises
    /// a static `let` once, thread-safely.
    static func bootstrap(events: Bool) throws(LibvirtError) {
        if let failure = initialized { throw failure }
        if events, let failure = eventLoop { throw failure }
    }

    private static let initialized: LibvirtError? = {
        guard virInitialize() == 0 else { return LibvirtError.copyLast("virInitialize failed") }
        virSetErrorFunc(nil, { _, _ in })
        return nil
    }()

    private static let eventLoop: LibvirtError? = {
        guard virEventRegisterDefaultImpl() == 0 else {
            return LibvirtError.copyLast("virEventRegisterDefaultImpl failed")
        }
        let loop = Thread {
            BlockingCalls.nameCurrentThread("libvirt-event-loop")
            while true {
                if virEventRunDefaultImpl() < 0 {
                    // An iteration failure is not fatal to the loop; clear the thread's error.
                    virResetLastError()
                }
            }
        }
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

    private typealias Job = @Sendable () -> Void

    /// The name every blocking-call thread carries.
    static let threadName = "libvirt-call"

    /// The calling thread's name as the kernel has it (at most 15 characters), not Foundation's
    /// cached copy, which a thread spawned from a dispatch worker was seen to report as the worker's.
    static var currentThreadName: String {
        ((try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? "").trimmingCharacters(in: .newlines)
    }

    /// Sets the calling thread's kernel name (ps, gdb). Not with `Thread.name`: on Linux its
    /// setter does nothing until the starting thread has recorded the new thread's handle, a race
    /// that left some threads with their parent's name. (glibc's pthread_setname_np is not
    /// visible to Swift; this is the file it writes.)
    static func nameCurrentThread(_ name: String) {
        if let file = FileHandle(forWritingAtPath: "/proc/thread-self/comm") {
            file.write(Data(name.utf8))
            try? file.close()
        }
    }

    private let condition = NSCondition()
    private var jobs: [Job?] = []
    private var next = 0
    private var idle = 0
    private let idleLimit = 8

    /// Queues `job` on a blocking-call thread and returns at once.
    func submit(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        let spawn = idle < jobs.count - next
        if !spawn { condition.signal() }
        condition.unlock()
        if spawn {
            let thread = Thread { [self] in
                Self.nameCurrentThread(Self.threadName)
                work()
            }
            thread.start()
        }
    }

    private func work() {
        while let job = take() {
            job()
            // `job` is released here, outside the lock: releasing what it captured can run a
            // deinit that submits work (Connection closes itself that way).
        }
    }

    /// The next job, waiting for one while fewer than `idleLimit` threads wait; `nil` tells the
    /// thread to end.
    private func take() -> Job? {
        condition.lock()
        defer { condition.unlock() }
        while next == jobs.count {
            if idle >= idleLimit { return nil }
            idle += 1
            condition.wait()
            idle -= 1
        }
        let job = jobs[next].take()
        next += 1
        if next == jobs.count {
            jobs.removeAll(keepingCapacity: true)
            next = 0
        }
        return job
    }
}

/// Runs a blocking libvirt call on a ``BlockingCalls`` thread and returns its result.
///
/// The error, if any, is captured inside `body`, on the thread of the failing call.
func blocking<T: Sendable, Failure: Error>(
    function: String = #function, file: String = #fileID,
    _ body: @escaping @Sendable () throws(Failure) -> T
) async throws(Failure) -> T {
    let start = CallProfile.isEnabled ? ContinuousClock.now : nil
    let result: Result<T, Failure> = await withCheckedContinuation { continuation in
        BlockingCalls.shared.submit {
            continuation.resume(returning: Result { () throws(Failure) -> T in try body() })
        }
    }
    if let start { CallProfile.record(function, file: file, from: start) }
    return try result.get()
}
