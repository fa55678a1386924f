import Libvirt

/// What `vmctl start|stop|reboot` asks of a VM.
public enum PowerAction: String, Sendable, CaseIterable {
    case start, stop, reboot
}

/// Starts, stops or reboots VMs, each on its own; the failures are reported per VM.
public struct Power: Sendable {
    public let session: Session
    /// stop: power off at once; reboot: reset at once instead of asking the guest.
    public let force: Bool
    /// stop: how long the guest may take to shut down before it is powered off.
    public let grace: Duration

    public init(session: Session, force: Bool, grace: Duration) {
        self.session = session
        self.force = force
        self.grace = grace
    }

    /// What happened to one VM: done (or already so), or why not.
    public struct Outcome: Sendable {
        public var name: String
        /// "started", "stopped", "rebooted", or "already running" and the like.
        public var result: String?
        public var error: ProvisioningError?
    }

    /// Applies `action` to every VM named, several at once, in the order named.
    public func apply(_ action: PowerAction, to names: [String]) async -> [Outcome] {
        await withTaskGroup(of: (Int, Outcome).self) { group in
            for (index, name) in names.enumerated() {
                group.addTask {
                    do throws(ProvisioningError) {
                        return (index, Outcome(name: name, result: try await apply(action, to: name), error: nil))
                    } catch {
                        return (index, Outcome(name: name, result: nil, error: error))
                    }
                }
            }
            var outcomes: [(Int, Outcome)] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }

    private func apply(_ action: PowerAction, to name: String) async throws(ProvisioningError) -> String {
        let domain = try await session.connection.existingDomain(name)
        let active = try await libvirtCall("read its state") { () async throws(LibvirtError) in try await domain.isActive() }
        switch action {
        case .start:
            if active { return "already running" }
            try await libvirtCall("start it") { () async throws(LibvirtError) in try await domain.start() }
            return "started"
        case .stop:
            if !active { return "already shut off" }
            try await powerOff(domain, force: force, grace: grace)
            return "stopped"
        case .reboot:
            guard active else {
                throw ProvisioningError(.conflict, "it is shut off", hint: "start it with vmctl start \(name)")
            }
            if force {
                try await libvirtCall("reset it") { () async throws(LibvirtError) in try await domain.reset() }
            } else {
                try await libvirtCall("ask it to reboot") { () async throws(LibvirtError) in try await domain.reboot() }
            }
            return "rebooted"
        }
    }
}

/// Asks the guest to shut down and powers it off after `grace` (at once with `force`); returns
/// once it is shut off. A domain gone meanwhile counts as off.
func powerOff(_ domain: Domain, force: Bool, grace: Duration) async throws(ProvisioningError) {
    do throws(LibvirtError) {
        guard try await domain.isActive() else { return }
        if !force {
            try? await domain.shutdown()
            let deadline = ContinuousClock.now + grace
            while ContinuousClock.now < deadline {
                if try await !domain.isActive() { return }
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
        do throws(LibvirtError) {
            try await domain.destroy()
        } catch {
            if try await domain.isActive() { throw error }  // else it stopped by itself meanwhile
        }
    } catch where error.code == .noDomain {
        return
    } catch {
        throw ProvisioningError(while: "stop it", error)
    }
}
