import AllocationStore
import Foundation
import Libvirt

/// Which process a pending create belongs to, in a form that a reused PID cannot match:
/// `BOOT_ID:PID:START_TIME` (start time in clock ticks since boot, from /proc/PID/stat).
enum ProcessTag {
    static var current: String { of(getpid()) ?? "\(machine):unknown:\(getpid()):0" }

    /// This machine's identity: a shared store (PostgreSQL) holds the journals of many.
    static let machine: String = {
        let id = (try? String(contentsOfFile: "/etc/machine-id", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        return id.flatMap { $0.isEmpty ? nil : $0 } ?? ProcessInfo.processInfo.hostName
    }()

    /// `MACHINE:BOOT:PID:START`: the start time tells a reused PID from the creating process.
    static func of(_ pid: pid_t) -> String? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // After "pid (comm)" come the fields from the third on; the start time is the 22nd.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19 else { return nil }
        let boot = (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "unknown"
        return "\(machine):\(boot):\(pid):\(fields[19])"
    }

    /// Whether the process that wrote `tag` may still run: true for a process of another machine,
    /// which this one cannot ask (its create is left to that machine's vmctl).
    static func isAlive(_ tag: String) -> Bool {
        var parts = tag.split(separator: ":").map(String.init)
        // A tag of vmctl 0.2 has no machine: it was written here.
        if parts.count == 3 { parts.insert(machine, at: 0) }
        guard parts.count == 4, let pid = pid_t(parts[2]) else { return false }
        guard parts[0] == machine else { return true }
        return of(pid) == parts.joined(separator: ":")
    }

    /// Whether `tag` was written on another machine.
    static func isElsewhere(_ tag: String) -> Bool {
        let parts = tag.split(separator: ":")
        return parts.count == 4 && parts[0] != machine
    }
}

/// Undoes a create, whatever step it reached: the domain (stopped, undefined), the addresses
/// it owns (host entries removed, then freed), the volumes it made; then ends its journal.
/// Every part is done even when one fails; the journal is kept until all succeeded, so that
/// `vmctl doctor --fix` can finish the job. The same code serves a failed create, an
/// interrupted one, and doctor's repair of one whose process was killed.
func rollBack(_ pending: PendingCreate, state: State, connection: Connection, host: some HostSide) async throws(ProvisioningError) {
    var problems: [String] = []
    do {
        let domain = try await connection.domain(uuid: pending.uuid)
        if try await domain.isActive() { try await domain.destroy() }
        try await domain.undefine([.nvram, .managedSave, .snapshotsMetadata])
    } catch where error.code == .noDomain {
        // Never defined, or already gone.
    } catch {
        problems.append("the domain (\(error.message))")
    }
    let reservations = Reservations(state: state, connection: connection, host: host)
    do {
        for allocation in try await state.run({ store throws(StoreError) in try store.allocations(ownedBy: pending.uuid) }) {
            do { try await reservations.release(allocation) } catch { problems.append("address \(allocation.address) (\(error.message))") }
        }
    } catch {
        problems.append("its addresses (\(error.message))")
    }
    do {
        _ = try await deleteVolumes(pending.volumes, on: connection, directory: state.store.localDirectory)
    } catch {
        problems.append("some of its volumes \(pending.volumes.joined(separator: ", ")) (\(error.message))")
    }
    guard problems.isEmpty else {
        throw ProvisioningError(.incomplete, "could not undo all of the create of \(pending.name), left: \(problems.joined(separator: "; "))",
                                hint: "once libvirt answers, rerun the same create (it finishes this undo first) or run vmctl doctor --fix")
    }
    try await state.run { store throws(StoreError) in try store.end(pending.name) }
}
