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
        let lanes = await PowerLanes.open(session, calls: names.count)
        return await withTaskGroup(of: (Int, Outcome).self) { group in
            for (index, name) in names.enumerated() {
                let connection = lanes.connection(for: index)
                group.addTask {
                    do throws(ProvisioningError) {
                        return (index, Outcome(name: name, result: try await apply(action, to: name, on: connection), error: nil))
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

    private func apply(_ action: PowerAction, to name: String, on connection: Connection) async throws(ProvisioningError) -> String {
        let domain = try await connection.existingDomain(name)
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

/// Connections to spread many slow calls over (a TCG guest's destroy takes 1.5-2 s, a start
/// 0.3): libvirtd serves at most five calls of one client connection at a time
/// (`max_client_requests`, 5 by default), so ten destroys over one connection ran in two rounds
/// (4.0 s here) and over ten connections in one (1.7 s). Lane 0 is the session's connection;
/// more are opened only to a local daemon (``VMReader/sideConnectionsAllowed(to:)``: another
/// qemu+ssh connection is another SSH session), never more than ``maximumConnections`` (the
/// daemon has 20 workers for every client), and one that cannot be opened leaves its calls to
/// the others.
struct PowerLanes: Sendable {
    /// Slow calls one connection carries at once: one of its five stays free for the quick ones.
    static let callsPerConnection = 4
    static let maximumConnections = 4

    private let connections: [Connection]

    /// How many connections `calls` slow calls at once take.
    static func connectionCount(forCalls calls: Int) -> Int {
        min(maximumConnections, max(1, (calls + callsPerConnection - 1) / callsPerConnection))
    }

    /// The session's connection, and as many more as `calls` slow calls at once need.
    static func open(_ session: Session, calls: Int) async -> PowerLanes {
        let wanted = connectionCount(forCalls: calls)
        guard wanted > 1, VMReader.sideConnectionsAllowed(to: session.uri) else { return PowerLanes(connections: [session.connection]) }
        let uri = session.uri
        let sides = await withTaskGroup(of: Connection?.self) { group in
            for _ in 1..<wanted { group.addTask { try? await Connection.open(uri) } }
            var opened: [Connection] = []
            for await connection in group { if let connection { opened.append(connection) } }
            return opened
        }
        return PowerLanes(connections: [session.connection] + sides)
    }

    /// The connection of call `index`.
    func connection(for index: Int) -> Connection { connections[index % connections.count] }

    /// `domain` (a handle on lane 0's connection) as a handle on the connection of call `index`;
    /// the handle given when it is lane 0's, or when the other connection cannot find it (gone:
    /// the call on it then says so).
    func domain(_ domain: Domain, for index: Int) async -> Domain {
        guard index % connections.count != 0 else { return domain }
        return (try? await connection(for: index).domain(uuid: domain.uuid)) ?? domain
    }
}
