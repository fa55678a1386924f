import Foundation
import HostFirewall
import Libvirt
import Synchronization

/// `VMCTL_PROFILE=1`: where a command's time goes, on stderr when it ends: the time in `run()`,
/// split into libvirt calls (the wrapper times each), external tools (xorriso, iptables) and
/// the rest, vmctl's own (argument parsing, XML, templates, SQLite). Time before `run()` (process
/// start-up and argument parsing) is the difference to the wall time measured from outside (vmctl-bench does).
public final class Profiler: Sendable {
    public static let current: Profiler? = ProcessInfo.processInfo.environment["VMCTL_PROFILE"].map { $0.isEmpty || $0 == "0" } == false
        ? Profiler() : nil

    private let start = ContinuousClock.now
    private let tools = Mutex<[(name: String, start: ContinuousClock.Instant, end: ContinuousClock.Instant)]>([])

    private init() {
        CallProfile.enable()
        SystemTool.observe { [weak self] name, start, end in
            self?.tools.withLock { $0.append((name, start, end)) }
        }
    }

    /// Writes the profile of `what` to stderr.
    public func report(_ what: String) {
        let end = ContinuousClock.now
        let calls = CallProfile.records
        let toolRuns = tools.withLock { $0 }
        let libvirt = covered(calls.map { ($0.start, $0.end) })
        let external = covered(toolRuns.map { ($0.start, $0.end) })
        let both = covered(calls.map { ($0.start, $0.end) } + toolRuns.map { ($0.start, $0.end) })
        let total = milliseconds(end - start)
        var byFunction: [String: (count: Int, total: Double)] = [:]
        for call in calls {
            let entry = byFunction[call.function] ?? (0, 0)
            byFunction[call.function] = (entry.count + 1, entry.total + milliseconds(call.end - call.start))
        }
        var lines = [String(format: "vmctl profile: %@ run=%.1f libvirt=%.1f tools=%.1f own=%.1f calls=%d",
                            what, total, libvirt, external, total - both, calls.count)]
        for (function, entry) in byFunction.sorted(by: { $0.value.total > $1.value.total }) {
            lines.append("  " + function.padding(toLength: 48, withPad: " ", startingAt: 0) + String(format: "%3d x %8.1f ms", entry.count, entry.total))
        }
        for run in toolRuns {
            lines.append("  " + run.name.padding(toLength: 48, withPad: " ", startingAt: 0) + String(format: "  1 x %8.1f ms", milliseconds(run.end - run.start)))
        }
        FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8))
    }

    /// The time covered by at least one of the intervals, in milliseconds.
    private func covered(_ intervals: [(ContinuousClock.Instant, ContinuousClock.Instant)]) -> Double {
        var total = Duration.zero
        var current: (ContinuousClock.Instant, ContinuousClock.Instant)?
        for interval in intervals.sorted(by: { $0.0 < $1.0 }) {
            if let open = current, interval.0 <= open.1 {
                current = (open.0, max(open.1, interval.1))
            } else {
                if let open = current { total += open.1 - open.0 }
                current = interval
            }
        }
        if let open = current { total += open.1 - open.0 }
        return milliseconds(total)
    }
}

/// A duration in (fractional) milliseconds.
public func milliseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
}
