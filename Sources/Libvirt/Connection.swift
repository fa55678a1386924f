import CLibvirt
import Foundation

/// A connection to a libvirt driver, local or remote (`qemu:///system`,
/// `qemu+ssh://user@host/system?no_tty=1`, `test:///default`).
///
/// The connection owns its `virConnectPtr` and closes it when the last reference goes away.
/// libvirt allows one connection to be used by many threads at once, so a `Connection` is
/// `Sendable`. Every call that talks to libvirt is `async` and runs on a dedicated blocking-call
/// thread, never on Swift's cooperative thread pool.
public final class Connection: @unchecked Sendable {
    let handle: OpaquePointer

    private init(handle: OpaquePointer) {
        self.handle = handle
    }

    deinit {
        // Closing a remote connection is a round trip: do it off the releasing thread.
        let handle = UnsafeHandle(handle)
        BlockingCalls.shared.submit { _ = virConnectClose(handle.pointer) }
    }

    /// Opens a connection to the driver named by `uri`.
    ///
    /// Before the first connection opens, libvirt's stderr error printer is silenced; before the
    /// first one with `events` opens, its default event loop is registered and started on its
    /// own thread.
    ///
    /// - Parameters:
    ///   - uri: a libvirt URI such as `qemu:///system` or `qemu:///system?socket=/run/x/libvirt-sock`.
    ///   - readOnly: opens a read-only connection.
    ///   - events: whether the connection may deliver events (domain events, stream callbacks)
    ///     and send keepalives. `false` suits short runs of calls: with an event loop each call
    ///     through a daemon's socket (libvirt's remote driver) wakes the loop's thread (twice the context switches, measured
    ///     on 200 calls). Such a connection never has events, even once another one has started
    ///     the loop.
    ///
    /// The corresponding C functions are `virConnectOpen` and `virConnectOpenReadOnly`.
    public static func open(_ uri: String, readOnly: Bool = false, events: Bool = true) async throws(LibvirtError) -> Connection {
        try await blocking { () throws(LibvirtError) in
            try Runtime.bootstrap(events: events)
            let pointer = readOnly ? virConnectOpenReadOnly(uri) : virConnectOpen(uri)
            return Connection(handle: try check(pointer))
        }
    }

    /// The version of the libvirt library linked into this process.
    ///
    /// The corresponding C function is `virGetVersion`.
    public static var libraryVersion: Version {
        var version: UInt = 0
        _ = virGetVersion(&version, nil, nil)
        return Version(encoded: version)
    }

    /// The canonical URI of this connection, as the driver reports it.
    ///
    /// The corresponding C function is `virConnectGetURI`.
    public func uri() async throws(LibvirtError) -> String {
        try await blocking { () throws(LibvirtError) in try takeString(virConnectGetURI(self.handle)) }
    }

    /// The name of the hypervisor driver, such as `QEMU` or `Test`.
    ///
    /// The corresponding C function is `virConnectGetType`.
    public func hypervisorType() async throws(LibvirtError) -> String {
        try await blocking { () throws(LibvirtError) in
            // A static string owned by libvirt: not freed.
            String(cString: try check(virConnectGetType(self.handle)))
        }
    }

    /// The version of the hypervisor the driver talks to (for QEMU, QEMU's own version).
    ///
    /// The corresponding C function is `virConnectGetVersion`.
    public func hypervisorVersion() async throws(LibvirtError) -> Version {
        try await blocking { () throws(LibvirtError) in
            var version: UInt = 0
            try check(virConnectGetVersion(self.handle, &version))
            return Version(encoded: version)
        }
    }

    /// The version of libvirt on the daemon side of the connection.
    ///
    /// The corresponding C function is `virConnectGetLibVersion`.
    public func libvirtVersion() async throws(LibvirtError) -> Version {
        try await blocking { () throws(LibvirtError) in
            var version: UInt = 0
            try check(virConnectGetLibVersion(self.handle, &version))
            return Version(encoded: version)
        }
    }

    /// The host name of the machine the driver runs on.
    ///
    /// The corresponding C function is `virConnectGetHostname`.
    public func hostname() async throws(LibvirtError) -> String {
        try await blocking { () throws(LibvirtError) in try takeString(virConnectGetHostname(self.handle)) }
    }

    /// The driver's capabilities XML (host CPU, guest architectures and domain types).
    ///
    /// The corresponding C function is `virConnectGetCapabilities`.
    public func capabilities() async throws(LibvirtError) -> String {
        try await blocking { () throws(LibvirtError) in try takeString(virConnectGetCapabilities(self.handle)) }
    }

    /// The host's memory and CPUs, as the hypervisor sees them.
    ///
    /// The corresponding C function is `virNodeGetInfo`.
    public func nodeInfo() async throws(LibvirtError) -> NodeInfo {
        try await blocking { () throws(LibvirtError) -> NodeInfo in
            var info = virNodeInfo()
            _ = try check(virNodeGetInfo(self.handle, &info))
            return NodeInfo(memoryKiB: UInt64(info.memory), cpus: Int(info.cpus))
        }
    }

    /// The host's free memory, in bytes (what `create --host auto` places VMs by).
    ///
    /// The corresponding C function is `virNodeGetFreeMemory`.
    public func freeMemory() async throws(LibvirtError) -> UInt64 {
        try await blocking { () throws(LibvirtError) -> UInt64 in
            // 0 is its only failure value (a host with no free memory at all is not one).
            let bytes = virNodeGetFreeMemory(self.handle)
            if bytes == 0 { throw LibvirtError.copyLast() }
            return UInt64(bytes)
        }
    }

    /// The most virtual CPUs a domain of `type` (`kvm`, `qemu`) may have on this connection.
    ///
    /// The corresponding C function is `virConnectGetMaxVcpus`.
    public func maxVCPUs(type: String) async throws(LibvirtError) -> Int {
        try await blocking { () throws(LibvirtError) in Int(try check(virConnectGetMaxVcpus(self.handle, type))) }
    }

    /// Starts keepalive messages on a remote connection: after `count` unanswered messages sent
    /// `interval` seconds apart, the connection is closed. Needs the event loop, which
    /// ``open(_:readOnly:)`` starts.
    ///
    /// - Returns: `false` when the other side does not support keepalive.
    ///
    /// The corresponding C function is `virConnectSetKeepAlive`.
    @discardableResult
    public func setKeepAlive(interval: Int32, count: UInt32) async throws(LibvirtError) -> Bool {
        try await blocking { () throws(LibvirtError) in
            try check(virConnectSetKeepAlive(self.handle, interval, count)) == 0
        }
    }

    /// Whether the connection is still usable.
    ///
    /// The corresponding C function is `virConnectIsAlive`.
    public func isAlive() async throws(LibvirtError) -> Bool {
        try await blocking { () throws(LibvirtError) in try check(virConnectIsAlive(self.handle)) == 1 }
    }
}

/// A libvirt version, such as 9.0.0.
public struct Version: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    /// The major version (9 in 9.0.0).
    public var major: Int
    /// The minor version.
    public var minor: Int
    /// The release (micro) version.
    public var release: Int

    /// Creates a version from its parts.
    public init(major: Int, minor: Int, release: Int) {
        self.major = major
        self.minor = minor
        self.release = release
    }

    /// Decodes libvirt's `major * 1,000,000 + minor * 1,000 + release` form.
    public init(encoded: UInt) {
        self.init(major: Int(encoded / 1_000_000), minor: Int(encoded / 1_000 % 1_000), release: Int(encoded % 1_000))
    }

    public var description: String { "\(major).\(minor).\(release)" }

    public static func < (lhs: Version, rhs: Version) -> Bool {
        (lhs.major, lhs.minor, lhs.release) < (rhs.major, rhs.minor, rhs.release)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        let parts = text.split(separator: ".").compactMap { Int($0) }
        guard parts.count == 3 else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a version: \(text)"))
        }
        self.init(major: parts[0], minor: parts[1], release: parts[2])
    }
}

/// Which copy of an object's definition a change applies to.
///
/// Empty means libvirt's "current": the live copy of a running object, the persistent one of an
/// inactive object. A change that must survive restarts of a running object needs both.
public struct Affect: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// The running object (`VIR_DOMAIN_AFFECT_LIVE`, `VIR_NETWORK_UPDATE_AFFECT_LIVE`).
    public static let live = Affect(rawValue: VIR_DOMAIN_AFFECT_LIVE.rawValue)
    /// The persistent definition (`VIR_DOMAIN_AFFECT_CONFIG`, `VIR_NETWORK_UPDATE_AFFECT_CONFIG`).
    public static let config = Affect(rawValue: VIR_DOMAIN_AFFECT_CONFIG.rawValue)
}

/// A C pointer carried across threads. libvirt's object handles are thread-safe.
struct UnsafeHandle: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
}

/// Takes ownership of an array of handles libvirt allocated (`vir*Ptr *` of `count` entries),
/// wrapping each and freeing the array itself.
func takeHandles<T>(_ array: UnsafeMutablePointer<OpaquePointer?>?, count: Int32, _ wrap: (OpaquePointer) -> T) -> [T] {
    guard let array else { return [] }
    defer { free(array) }
    return (0..<Int(count)).compactMap { array[$0].map(wrap) }
}


extension Connection {
    /// The names of the host's network interfaces (physical, bridges, ...), as libvirtd's host
    /// sees them.
    ///
    /// The corresponding C functions are `virConnectListAllInterfaces`, `virInterfaceGetName`
    /// and `virInterfaceFree`.
    public func interfaceNames() async throws(LibvirtError) -> [String] {
        try await blocking { () throws(LibvirtError) in
            var list: UnsafeMutablePointer<OpaquePointer?>?
            let count = try check(virConnectListAllInterfaces(self.handle, &list, 0))
            return takeHandles(list, count: count) { interface in
                defer { virInterfaceFree(interface) }
                return virInterfaceGetName(interface).map { String(cString: $0) } ?? ""
            }
        }
    }
}

/// What ``Connection/nodeInfo()`` reports (`virNodeInfo`).
public struct NodeInfo: Sendable, Equatable {
    /// The host's memory, in KiB.
    public var memoryKiB: UInt64
    /// Active CPUs.
    public var cpus: Int
}
