import AllocationStore
import Foundation
public import Libvirt
public import Logging
import Synchronization

/// One connection to a libvirt host, with what every operation on it needs: the URI (a local
/// one lets vmctl change this host's firewall) and the logger. The services hang off it.
public struct Session: Sendable {
    public let connection: Connection
    public let uri: String
    public let logger: Logger
    /// The fleet host (`vmctl host add`) this connection is to, when it was reached as one: its
    /// name goes into the journal, the allocations and the VMs' metadata.
    public let hostName: String?

    public init(connection: Connection, uri: String, logger: Logger, hostName: String? = nil) {
        self.connection = connection
        self.uri = uri
        self.logger = logger
        self.hostName = hostName
    }

    /// Opens `uri`. With `logger` at debug level every libvirt call is logged with its duration.
    /// Without `events` the connection has no events and no keepalive (``Connection/open(_:readOnly:events:)``):
    /// for a command that only reads, quickly.
    public static func open(_ uri: String, logger: Logger, hostName: String? = nil, events: Bool = true) async throws(ProvisioningError) -> Session {
        if logger.logLevel <= .debug { Diagnostics.logLibvirtCalls(to: logger) }
        do {
            return Session(connection: try await Connection.open(uri, events: events), uri: uri, logger: logger, hostName: hostName)
        } catch {
            throw ProvisioningError(.libvirt, "cannot connect to \(uri): \(error.message)",
                                    hint: "check that libvirtd is running there", cause: error)
        }
    }

    public var networks: Networks { Networks(session: self) }
    public var reader: VMReader { VMReader(connection: connection, uri: uri) }

    public func doctor(_ state: State) -> Doctor { Doctor(state: state, session: self) }
    public func portForwards(_ state: State) -> PortForwards { PortForwards(state: state, session: self) }
    public func destroyer(_ state: State, force: Bool, grace: Duration) -> Destroyer {
        Destroyer(state: state, session: self, force: force, grace: grace)
    }

    /// What `vmctl info` reports.
    public func info() async throws(ProvisioningError) -> InfoReport { try await InfoReport.gather(from: connection) }

    /// The VM called `name`, as `show` prints it.
    public func view(of name: String) async throws(ProvisioningError) -> VMView {
        try await reader.view(of: try await connection.existingDomain(name))
    }

    /// The names of every domain, in order (`list -q`): one listing, no definitions read.
    public func domainNames() async throws(ProvisioningError) -> [String] {
        try await libvirtCall("list the VMs") { () async throws(LibvirtError) in try await connection.domains() }.map(\.name).sorted()
    }

    /// Waits until the VM holds its addresses (`ip`), runs or is shut off.
    public func wait(for condition: String, vm name: String, timeout: Duration) async throws(ProvisioningError) {
        let domain = try await connection.existingDomain(name)
        if condition == "ip" {
            try await waitForAddresses(of: domain, on: connection, host: LocalHost(uri: uri, logger: logger), timeout: timeout)
        } else if condition == "ssh" {
            try await waitForSSH(name, timeout: timeout)
        } else {
            try await waitForState(condition, of: domain, on: connection, timeout: timeout)
        }
    }
}

extension State {
    /// The default state file: `/var/lib/vmctl/state.sqlite` for root, else under `$XDG_DATA_HOME`.
    public static func defaultPath(environment: [String: String], isRoot: Bool) -> String {
        SQLiteStore.defaultPath(environment: environment, isRoot: isRoot)
    }
}

/// `--debug`: each libvirt call on stderr with its duration.
enum Diagnostics {
    private static let observing = Mutex(false)

    static func logLibvirtCalls(to logger: Logger) {
        let start = observing.withLock { observing -> Bool in
            defer { observing = true }
            return !observing
        }
        guard start else { return }
        CallProfile.observe { record in
            logger.debug("libvirt \(record.function) took \(String(format: "%.2f", milliseconds(record.end - record.start))) ms")
        }
    }
}
