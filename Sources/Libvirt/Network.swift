import CLibvirt
public import Foundation

/// A libvirt virtual network: a bridge with, optionally, addresses, dnsmasq and forwarding.
///
/// Owns one reference to its `virNetworkPtr`, released in `deinit` (`virNetworkFree`).
public final class Network: @unchecked Sendable {
    let handle: OpaquePointer
    /// The network's name. The corresponding C function is `virNetworkGetName`.
    public let name: String
    /// The network's UUID. The corresponding C function is `virNetworkGetUUID`.
    public let uuid: UUID

    init(owning handle: OpaquePointer) {
        self.handle = handle
        self.name = virNetworkGetName(handle).map { String(cString: $0) } ?? ""
        self.uuid = readUUID(of: handle, virNetworkGetUUID)
    }

    deinit { virNetworkFree(handle) }

    /// Starts the defined network: creates its bridge, firewall rules and dnsmasq.
    ///
    /// The corresponding C function is `virNetworkCreate`.
    public func start() async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in _ = try check(virNetworkCreate(self.handle)) }
    }

    /// Stops the network; a persistent network stays defined.
    ///
    /// The corresponding C function is `virNetworkDestroy`.
    public func destroy() async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in _ = try check(virNetworkDestroy(self.handle)) }
    }

    /// Removes the network's persistent definition.
    ///
    /// The corresponding C function is `virNetworkUndefine`.
    public func undefine() async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in _ = try check(virNetworkUndefine(self.handle)) }
    }

    /// The network's XML description; `inactive` gives the persistent definition.
    ///
    /// The corresponding C function is `virNetworkGetXMLDesc`.
    public func xml(inactive: Bool = false) async throws(LibvirtError) -> String {
        try await blocking { () throws(LibvirtError) in
            let flags = inactive ? VIR_NETWORK_XML_INACTIVE.rawValue : 0
            return try takeString(virNetworkGetXMLDesc(self.handle, flags))
        }
    }

    /// The name of the network's bridge device.
    ///
    /// The corresponding C function is `virNetworkGetBridgeName`.
    public func bridgeName() async throws(LibvirtError) -> String {
        try await blocking { () throws(LibvirtError) in try takeString(virNetworkGetBridgeName(self.handle)) }
    }

    /// Whether the network is running.
    ///
    /// The corresponding C function is `virNetworkIsActive`.
    public func isActive() async throws(LibvirtError) -> Bool {
        try await blocking { () throws(LibvirtError) in try check(virNetworkIsActive(self.handle)) == 1 }
    }

    /// Whether the network has a persistent definition.
    ///
    /// The corresponding C function is `virNetworkIsPersistent`.
    public func isPersistent() async throws(LibvirtError) -> Bool {
        try await blocking { () throws(LibvirtError) in try check(virNetworkIsPersistent(self.handle)) == 1 }
    }

    /// Whether the network starts when libvirtd starts.
    ///
    /// The corresponding C function is `virNetworkGetAutostart`.
    public func autostart() async throws(LibvirtError) -> Bool {
        try await blocking { () throws(LibvirtError) in
            var value: Int32 = 0
            try check(virNetworkGetAutostart(self.handle, &value))
            return value != 0
        }
    }

    /// Sets whether the network starts when libvirtd starts.
    ///
    /// The corresponding C function is `virNetworkSetAutostart`.
    public func setAutostart(_ enabled: Bool) async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in
            _ = try check(virNetworkSetAutostart(self.handle, enabled ? 1 : 0))
        }
    }

    /// Changes one section of the network's definition, live and/or persistently, without
    /// restarting it.
    ///
    /// ```swift
    /// try await network.update(.add, .dhcpHost, parentIndex: 0,
    ///                          xml: "<host mac='52:54:00:00:00:01' ip='192.0.2.10'/>",
    ///                          affecting: [.live, .config])
    /// ```
    ///
    /// - Parameters:
    ///   - parentIndex: which `<ip>` element (counting every `<ip>` in document order) a DHCP
    ///     host or range belongs to. `nil` lets libvirt pick "the one with DHCP", which is the
    ///     IPv4 one when both families have DHCP: pass the index for IPv6 entries.
    ///   - affecting: pass `[.live, .config]` for a change that must survive a network restart.
    ///
    /// ``LibvirtError/Code/operationInvalid`` on `.add` means an entry with the same MAC, name or
    /// address already exists under that `<ip>`.
    ///
    /// The corresponding C function is `virNetworkUpdate`.
    public func update(
        _ command: UpdateCommand, _ section: UpdateSection, parentIndex: Int? = nil,
        xml: String, affecting: Affect
    ) async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in
            _ = try check(virNetworkUpdate(
                self.handle, command.rawValue, section.rawValue, Int32(parentIndex ?? -1), xml, affecting.rawValue))
        }
    }

    /// The DHCP leases dnsmasq holds on this network, optionally only those of one MAC address.
    ///
    /// The corresponding C function is `virNetworkGetDHCPLeases`.
    public func dhcpLeases(mac: String? = nil) async throws(LibvirtError) -> [DHCPLease] {
        try await blocking { () throws(LibvirtError) in
            var list: UnsafeMutablePointer<virNetworkDHCPLeasePtr?>?
            let count = try check(virNetworkGetDHCPLeases(self.handle, mac, &list, 0))
            guard let list else { return [] }
            defer { free(list) }
            return (0..<Int(count)).compactMap { index -> DHCPLease? in
                guard let lease = list[index] else { return nil }
                defer { virNetworkDHCPLeaseFree(lease) }
                let raw = lease.pointee
                func text(_ pointer: UnsafeMutablePointer<CChar>?) -> String? { pointer.map { String(cString: $0) } }
                return DHCPLease(
                    interface: text(raw.iface) ?? "",
                    expiry: Date(timeIntervalSince1970: TimeInterval(raw.expirytime)),
                    family: raw.type == Int32(VIR_IP_ADDR_TYPE_IPV6.rawValue) ? .ipv6 : .ipv4,
                    mac: text(raw.mac),
                    iaid: text(raw.iaid),
                    address: text(raw.ipaddr) ?? "",
                    prefix: Int(raw.prefix),
                    hostname: text(raw.hostname),
                    clientID: text(raw.clientid))
            }
        }
    }
}

extension Network {
    /// What ``Network/update(_:_:parentIndex:xml:affecting:)`` does (`virNetworkUpdateCommand`).
    public struct UpdateCommand: Sendable, Hashable {
        let rawValue: UInt32
        /// Adds the entry after the existing ones (`VIR_NETWORK_UPDATE_COMMAND_ADD_LAST`).
        public static let add = UpdateCommand(rawValue: VIR_NETWORK_UPDATE_COMMAND_ADD_LAST.rawValue)
        /// Removes the first entry matching every attribute given (`VIR_NETWORK_UPDATE_COMMAND_DELETE`).
        public static let delete = UpdateCommand(rawValue: VIR_NETWORK_UPDATE_COMMAND_DELETE.rawValue)
        /// Replaces the first entry matching MAC, name or address (`VIR_NETWORK_UPDATE_COMMAND_MODIFY`).
        /// It can take over another entry: prefer ``delete`` then ``add``.
        public static let modify = UpdateCommand(rawValue: VIR_NETWORK_UPDATE_COMMAND_MODIFY.rawValue)
    }

    /// Which part of the definition an update changes (`virNetworkUpdateSection`).
    public struct UpdateSection: Sendable, Hashable {
        let rawValue: UInt32
        /// `<bridge>` (`VIR_NETWORK_SECTION_BRIDGE`)
        public static let bridge = UpdateSection(rawValue: VIR_NETWORK_SECTION_BRIDGE.rawValue)
        /// `<domain>` (`VIR_NETWORK_SECTION_DOMAIN`)
        public static let domain = UpdateSection(rawValue: VIR_NETWORK_SECTION_DOMAIN.rawValue)
        /// `<ip>` (`VIR_NETWORK_SECTION_IP`)
        public static let ip = UpdateSection(rawValue: VIR_NETWORK_SECTION_IP.rawValue)
        /// `<ip><dhcp><host>` (`VIR_NETWORK_SECTION_IP_DHCP_HOST`)
        public static let dhcpHost = UpdateSection(rawValue: VIR_NETWORK_SECTION_IP_DHCP_HOST.rawValue)
        /// `<ip><dhcp><range>` (`VIR_NETWORK_SECTION_IP_DHCP_RANGE`)
        public static let dhcpRange = UpdateSection(rawValue: VIR_NETWORK_SECTION_IP_DHCP_RANGE.rawValue)
        /// `<forward>` (`VIR_NETWORK_SECTION_FORWARD`)
        public static let forward = UpdateSection(rawValue: VIR_NETWORK_SECTION_FORWARD.rawValue)
        /// `<forward><interface>` (`VIR_NETWORK_SECTION_FORWARD_INTERFACE`)
        public static let forwardInterface = UpdateSection(rawValue: VIR_NETWORK_SECTION_FORWARD_INTERFACE.rawValue)
        /// `<portgroup>` (`VIR_NETWORK_SECTION_PORTGROUP`)
        public static let portGroup = UpdateSection(rawValue: VIR_NETWORK_SECTION_PORTGROUP.rawValue)
        /// `<dns><host>` (`VIR_NETWORK_SECTION_DNS_HOST`)
        public static let dnsHost = UpdateSection(rawValue: VIR_NETWORK_SECTION_DNS_HOST.rawValue)
        /// `<dns><txt>` (`VIR_NETWORK_SECTION_DNS_TXT`)
        public static let dnsTXT = UpdateSection(rawValue: VIR_NETWORK_SECTION_DNS_TXT.rawValue)
        /// `<dns><srv>` (`VIR_NETWORK_SECTION_DNS_SRV`)
        public static let dnsSRV = UpdateSection(rawValue: VIR_NETWORK_SECTION_DNS_SRV.rawValue)
    }

    /// Which networks ``Connection/networks(_:)`` returns (`virConnectListAllNetworksFlags`).
    /// Empty means all.
    public struct ListFilter: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// `VIR_CONNECT_LIST_NETWORKS_ACTIVE`
        public static let active = ListFilter(rawValue: VIR_CONNECT_LIST_NETWORKS_ACTIVE.rawValue)
        /// `VIR_CONNECT_LIST_NETWORKS_INACTIVE`
        public static let inactive = ListFilter(rawValue: VIR_CONNECT_LIST_NETWORKS_INACTIVE.rawValue)
        /// `VIR_CONNECT_LIST_NETWORKS_PERSISTENT`
        public static let persistent = ListFilter(rawValue: VIR_CONNECT_LIST_NETWORKS_PERSISTENT.rawValue)
        /// `VIR_CONNECT_LIST_NETWORKS_TRANSIENT`
        public static let transient = ListFilter(rawValue: VIR_CONNECT_LIST_NETWORKS_TRANSIENT.rawValue)
        /// `VIR_CONNECT_LIST_NETWORKS_AUTOSTART`
        public static let autostart = ListFilter(rawValue: VIR_CONNECT_LIST_NETWORKS_AUTOSTART.rawValue)
        /// `VIR_CONNECT_LIST_NETWORKS_NO_AUTOSTART`
        public static let noAutostart = ListFilter(rawValue: VIR_CONNECT_LIST_NETWORKS_NO_AUTOSTART.rawValue)
    }
}

/// A DHCP lease held on a libvirt network (`virNetworkDHCPLease`).
public struct DHCPLease: Sendable, Hashable {
    /// The network's bridge.
    public var interface: String
    /// When the lease runs out.
    public var expiry: Date
    /// IPv4 or IPv6 (`type`).
    public var family: AddressFamily
    /// The client's MAC address (IPv4 leases).
    public var mac: String?
    /// The IAID of an IPv6 lease.
    public var iaid: String?
    /// The leased address (`ipaddr`).
    public var address: String
    /// The subnet's prefix length (`prefix`).
    public var prefix: Int
    /// The host name the client sent, if any (`hostname`).
    public var hostname: String?
    /// The client ID (IPv4) or DUID (IPv6).
    public var clientID: String?

    /// A lease from its parts, as `virNetworkGetDHCPLeases` reports them (for tests and tools).
    public init(
        interface: String, expiry: Date, family: AddressFamily, mac: String?, iaid: String?,
        address: String, prefix: Int, hostname: String?, clientID: String?
    ) {
        self.interface = interface
        self.expiry = expiry
        self.family = family
        self.mac = mac
        self.iaid = iaid
        self.address = address
        self.prefix = prefix
        self.hostname = hostname
        self.clientID = clientID
    }
}

extension Connection {
    /// Defines a persistent network from its XML, without starting it.
    ///
    /// The corresponding C function is `virNetworkDefineXML`.
    public func defineNetwork(xml: String) async throws(LibvirtError) -> Network {
        try await blocking { () throws(LibvirtError) in
            Network(owning: try check(virNetworkDefineXML(self.handle, xml)))
        }
    }

    /// Creates and starts a transient network from its XML; it is gone once stopped.
    ///
    /// The corresponding C function is `virNetworkCreateXML`.
    public func createNetwork(xml: String) async throws(LibvirtError) -> Network {
        try await blocking { () throws(LibvirtError) in
            Network(owning: try check(virNetworkCreateXML(self.handle, xml)))
        }
    }

    /// The network called `name`; throws ``LibvirtError/Code/noNetwork`` when there is none.
    ///
    /// The corresponding C function is `virNetworkLookupByName`.
    public func network(named name: String) async throws(LibvirtError) -> Network {
        try await blocking { () throws(LibvirtError) in
            Network(owning: try check(virNetworkLookupByName(self.handle, name)))
        }
    }

    /// The network with `uuid`; throws ``LibvirtError/Code/noNetwork`` when there is none.
    ///
    /// The corresponding C function is `virNetworkLookupByUUIDString`.
    public func network(uuid: UUID) async throws(LibvirtError) -> Network {
        try await blocking { () throws(LibvirtError) in
            Network(owning: try check(virNetworkLookupByUUIDString(self.handle, uuid.uuidString.lowercased())))
        }
    }

    /// All networks that match `filter` (all of them when it is empty).
    ///
    /// The corresponding C function is `virConnectListAllNetworks`.
    public func networks(_ filter: Network.ListFilter = []) async throws(LibvirtError) -> [Network] {
        try await blocking { () throws(LibvirtError) in
            var list: UnsafeMutablePointer<OpaquePointer?>?
            let count = try check(virConnectListAllNetworks(self.handle, &list, filter.rawValue))
            return takeHandles(list, count: count, Network.init(owning:))
        }
    }
}
