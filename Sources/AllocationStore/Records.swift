public import Addressing
public import Foundation
public import GRDB

/// An address pool as the store keeps it.
public struct Pool: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord, StoredRecord {
    public static let databaseTableName = "pool"

    /// The pool's name, unique in the store.
    public var name: String
    /// The libvirt network whose guests get the pool's addresses.
    public var network: String
    /// Which addresses the pool hands out (stored as JSON text).
    public var layout: PoolLayout
    /// Whether network, broadcast and gateway addresses may be handed out too.
    public var allUsable: Bool
    public var createdAt: Date

    public init(name: String, network: String, layout: PoolLayout, allUsable: Bool, createdAt: Date = Date()) {
        self.name = name
        self.network = network
        self.layout = layout
        self.allUsable = allUsable
        self.createdAt = createdAt
    }

}

/// One address handed to one owner: at most one row per (network, address), ever.
public struct Allocation: Codable, Sendable, Equatable, Hashable, FetchableRecord, MutablePersistableRecord, StoredRecord {
    public static let databaseTableName = "allocation"

    public var id: Int64?
    public var pool: String
    public var network: String
    public var address: IPAddress
    public var family: IPAddress.Family
    /// The owning domain's UUID, when the owner is a libvirt domain vmctl knows.
    public var ownerUUID: UUID?
    /// The owner's name (a domain name, or what `pool reserve --owner` was given).
    public var ownerName: String
    /// The NIC the address is for.
    public var mac: MACAddress
    public var createdAt: Date
    /// The fleet host (`vmctl host add`) the owner was placed on; nil when it was not.
    public var host: String?

    public init(
        pool: String, network: String, address: IPAddress, ownerUUID: UUID?, ownerName: String,
        mac: MACAddress, host: String? = nil, createdAt: Date = Date()
    ) {
        self.pool = pool
        self.network = network
        self.address = address
        self.family = address.family
        self.ownerUUID = ownerUUID
        self.ownerName = ownerName
        self.mac = mac
        self.host = host
        self.createdAt = createdAt
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        id = inserted.rowID
    }
}

/// A host port forwarded to a guest's port on a network (DNAT), at most one per protocol and port.
public struct PortForward: Codable, Sendable, Equatable, Hashable, FetchableRecord, MutablePersistableRecord, StoredRecord {
    public static let databaseTableName = "portForward"

    public var id: Int64?
    public var network: String
    /// `tcp` or `udp`.
    public var proto: String
    public var hostPort: Int
    public var vm: String
    public var guestAddress: IPAddress
    public var guestPort: Int
    public var createdAt: Date

    public init(network: String, proto: String, hostPort: Int, vm: String, guestAddress: IPAddress, guestPort: Int, createdAt: Date = Date()) {
        self.network = network
        self.proto = proto
        self.hostPort = hostPort
        self.vm = vm
        self.guestAddress = guestAddress
        self.guestPort = guestPort
        self.createdAt = createdAt
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// A `vmctl create` under way: the journal that lets an interrupted or killed create be undone.
///
/// Written before the first step that changes anything and deleted when the VM is running, so a
/// row whose process is gone is a create that never finished: `vmctl doctor --fix` undoes it. The
/// name is unique: two creates of one name never run at once.
public struct PendingCreate: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord, StoredRecord {
    public static let databaseTableName = "pendingCreate"

    /// The VM's name.
    public var name: String
    /// The UUID the domain is (or will be) defined with; its allocations' owner.
    public var uuid: UUID
    /// The creating process: `BOOT_ID:PID:START_TIME`, so that a reused PID is not taken for it.
    public var process: String
    /// Volumes the create made or is about to make (`POOL/NAME`), deleted when it is undone.
    public var volumes: [String]
    public var startedAt: Date
    /// The fleet host the VM is created on (`create --host`); nil when none was named.
    public var host: String?
    /// The VM's memory in bytes: what placement counts as promised on `host` while it is created.
    public var memory: UInt64

    public init(name: String, uuid: UUID, process: String, volumes: [String] = [], host: String? = nil, memory: UInt64 = 0,
                startedAt: Date = Date()) {
        self.name = name
        self.uuid = uuid
        self.process = process
        self.volumes = volumes
        self.host = host
        self.memory = memory
        self.startedAt = startedAt
    }
}

/// A base image vmctl keeps as a volume in a storage pool: pulled or imported, checked, and
/// read-only; VMs stand on it through qcow2 overlays.
public struct ImageRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord, StoredRecord {
    public static let databaseTableName = "image"

    public var name: String
    /// The storage pool and the volume in it, and its path on the libvirt host.
    public var pool: String
    public var volume: String
    public var path: String
    /// `qcow2` or `raw`.
    public var format: String
    /// Bytes in the file, and the disk size the guest sees.
    public var size: UInt64
    public var virtualSize: UInt64
    public var sha256: String
    /// Where it came from: the URL pulled, or `file://PATH` imported.
    public var source: String
    /// The user cloud-init makes on it (the catalogue's), `vmctl ssh`'s default.
    public var user: String?
    public var addedAt: Date

    public init(name: String, pool: String, volume: String, path: String, format: String, size: UInt64, virtualSize: UInt64,
                sha256: String, source: String, user: String?, addedAt: Date = Date()) {
        self.name = name
        self.pool = pool
        self.volume = volume
        self.path = path
        self.format = format
        self.size = size
        self.virtualSize = virtualSize
        self.sha256 = sha256
        self.source = source
        self.user = user
        self.addedAt = addedAt
    }
}

extension HostRecord: FetchableRecord, PersistableRecord, StoredRecord {
    public static let databaseTableName = "host"
}
