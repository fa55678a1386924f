import CLibvirt
public import Foundation

/// A libvirt domain (a virtual machine), defined or running.
///
/// Owns one reference to its `virDomainPtr`, released in `deinit` (`virDomainFree`). The name and
/// UUID are read once, without a round trip, when the object is made.
public final class Domain: @unchecked Sendable {
    let handle: OpaquePointer
    /// The domain's name. The corresponding C function is `virDomainGetName`.
    public let name: String
    /// The domain's UUID. The corresponding C function is `virDomainGetUUID`.
    public let uuid: UUID

    /// Wraps a handle this object now owns.
    init(owning handle: OpaquePointer) {
        self.handle = handle
        self.name = virDomainGetName(handle).map { String(cString: $0) } ?? ""
        self.uuid = readUUID(of: handle, virDomainGetUUID)
    }

    deinit { virDomainFree(handle) }

    /// Starts (boots) the defined domain.
    ///
    /// The corresponding C function is `virDomainCreate`.
    public func start() async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in _ = try check(virDomainCreate(self.handle)) }
    }

    /// Asks the guest to shut down (ACPI power button or agent); returns before it has.
    ///
    /// The corresponding C function is `virDomainShutdown`.
    public func shutdown() async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in _ = try check(virDomainShutdown(self.handle)) }
    }

    /// Asks the guest to reboot (ACPI or agent); returns before it has. A guest that ignores
    /// ACPI does not reboot: ``reset()`` does, without asking.
    ///
    /// The corresponding C function is `virDomainReboot`.
    public func reboot() async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in _ = try check(virDomainReboot(self.handle, 0)) }
    }

    /// Resets the virtual machine at once, like pressing its reset button.
    ///
    /// The corresponding C function is `virDomainReset`.
    public func reset() async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in _ = try check(virDomainReset(self.handle, 0)) }
    }

    /// Connects to the guest's first console (its serial port), taking it over from any other
    /// client (`VIR_DOMAIN_CONSOLE_FORCE`).
    ///
    /// The corresponding C functions are `virStreamNew` and `virDomainOpenConsole`.
    public func openConsole() async throws(LibvirtError) -> Stream {
        try await blocking { () throws(LibvirtError) in
            let stream = try check(virStreamNew(virDomainGetConnect(self.handle), 0))
            guard virDomainOpenConsole(self.handle, nil, stream, UInt32(VIR_DOMAIN_CONSOLE_FORCE.rawValue)) == 0 else {
                let error = LibvirtError.copyLast()
                virStreamFree(stream)
                throw error
            }
            return Stream(owning: stream)
        }
    }

    /// Stops the domain at once, like pulling the power cord. A persistent domain stays defined.
    ///
    /// - Parameter graceful: only sends SIGTERM to the hypervisor process, never SIGKILL.
    ///
    /// The corresponding C function is `virDomainDestroyFlags`.
    public func destroy(graceful: Bool = false) async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in
            let flags = graceful ? VIR_DOMAIN_DESTROY_GRACEFUL.rawValue : 0
            _ = try check(virDomainDestroyFlags(self.handle, flags))
        }
    }

    /// Removes the domain's persistent definition. A running domain becomes transient and goes
    /// away when it stops. Disks are never deleted.
    ///
    /// The corresponding C function is `virDomainUndefineFlags`.
    public func undefine(_ options: UndefineOptions = []) async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in
            _ = try check(virDomainUndefineFlags(self.handle, options.rawValue))
        }
    }

    /// The domain's XML description.
    ///
    /// The corresponding C function is `virDomainGetXMLDesc`.
    public func xml(_ options: XMLOptions = []) async throws(LibvirtError) -> String {
        try await blocking { () throws(LibvirtError) in
            try takeString(virDomainGetXMLDesc(self.handle, options.rawValue))
        }
    }

    /// The domain's state and the reason it is in it.
    ///
    /// The corresponding C function is `virDomainGetState`.
    public func state() async throws(LibvirtError) -> (state: State, reason: Int32) {
        try await blocking { () throws(LibvirtError) in
            var state: Int32 = 0
            var reason: Int32 = 0
            try check(virDomainGetState(self.handle, &state, &reason, 0))
            return (State(rawValue: state), reason)
        }
    }

    /// State, memory, vCPU count and CPU time.
    ///
    /// The corresponding C function is `virDomainGetInfo`.
    public func info() async throws(LibvirtError) -> Info {
        try await blocking { () throws(LibvirtError) in
            var raw = virDomainInfo()
            try check(virDomainGetInfo(self.handle, &raw))
            return Info(
                state: State(rawValue: Int32(raw.state)),
                maxMemoryKiB: UInt64(raw.maxMem),
                memoryKiB: UInt64(raw.memory),
                vcpus: Int(raw.nrVirtCpu),
                cpuTimeNanoseconds: raw.cpuTime
            )
        }
    }

    /// The hypervisor's ID of a running domain, `nil` when it is not running.
    ///
    /// The corresponding C function is `virDomainGetID`.
    public func id() async -> UInt32? {
        await blocking { () -> UInt32? in
            let id = virDomainGetID(self.handle)
            return id == UInt32.max ? nil : id
        }
    }

    /// Whether the domain is running (or paused).
    ///
    /// The corresponding C function is `virDomainIsActive`.
    public func isActive() async throws(LibvirtError) -> Bool {
        try await blocking { () throws(LibvirtError) in try check(virDomainIsActive(self.handle)) == 1 }
    }

    /// Whether the domain has a persistent definition.
    ///
    /// The corresponding C function is `virDomainIsPersistent`.
    public func isPersistent() async throws(LibvirtError) -> Bool {
        try await blocking { () throws(LibvirtError) in try check(virDomainIsPersistent(self.handle)) == 1 }
    }

    /// Whether the domain starts when libvirtd starts.
    ///
    /// The corresponding C function is `virDomainGetAutostart`.
    public func autostart() async throws(LibvirtError) -> Bool {
        try await blocking { () throws(LibvirtError) in
            var value: Int32 = 0
            try check(virDomainGetAutostart(self.handle, &value))
            return value != 0
        }
    }

    /// Sets whether the domain starts when libvirtd starts.
    ///
    /// The corresponding C function is `virDomainSetAutostart`.
    public func setAutostart(_ enabled: Bool) async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in
            _ = try check(virDomainSetAutostart(self.handle, enabled ? 1 : 0))
        }
    }

    /// The domain's `<metadata>` element in the namespace `namespaceURI`, or `nil` when it has none.
    ///
    /// The corresponding C function is `virDomainGetMetadata` with `VIR_DOMAIN_METADATA_ELEMENT`.
    public func metadata(namespace namespaceURI: String, affecting: Affect = []) async throws(LibvirtError) -> String? {
        try await blocking { () throws(LibvirtError) -> String? in
            try self.metadataElement(namespace: namespaceURI, flags: affecting.rawValue)
        }
    }

    /// The blocking call behind both metadata reads; `nil` when the domain has no element there.
    private func metadataElement(namespace namespaceURI: String, flags: UInt32) throws(LibvirtError) -> String? {
        guard let raw = virDomainGetMetadata(handle, Int32(VIR_DOMAIN_METADATA_ELEMENT.rawValue), namespaceURI, flags) else {
            let error = LibvirtError.copyLast()
            if error.code == .noDomainMetadata { return nil }
            throw error
        }
        defer { free(raw) }
        return String(cString: raw)
    }

    /// The `<metadata>` element in `namespaceURI` of the domains `next` hands out, asked one
    /// after another on one thread until `next` returns `nil`: for hundreds of domains the calls
    /// then cost what libvirt's round trip costs, not a thread hop each, and the threads of
    /// several connections can share one list, each taking the next entry when it is free.
    /// `domain` gives this connection's handle of an entry (`nil`: not answered here). A domain's
    /// failure is its entry's error; the others are still read. Each answer goes through `read`
    /// on the same thread as it arrives (a parse there overlaps the other connections' calls);
    /// what it returns is the entry's value, `nil` leaves the entry out.
    ///
    /// The corresponding C function is `virDomainGetMetadata` with `VIR_DOMAIN_METADATA_ELEMENT`.
    public static func metadata<Value: Sendable>(
        namespace namespaceURI: String, taking next: @escaping @Sendable () -> Int?, domain: @escaping @Sendable (Int) -> Domain?,
        reading read: @escaping @Sendable (MetadataRead) -> Value?
    ) async -> [Int: Value] {
        await blocking { () -> [Int: Value] in
            var values: [Int: Value] = [:]
            while let index = next() {
                guard let domain = domain(index) else { continue }
                let answer: MetadataRead
                do throws(LibvirtError) {
                    answer = MetadataRead(xml: try domain.metadataElement(namespace: namespaceURI, flags: 0), error: nil)
                } catch {
                    answer = MetadataRead(xml: nil, error: error)
                }
                values[index] = read(answer)
            }
            return values
        }
    }

    /// One domain's answer to ``metadata(namespace:taking:domain:reading:)``: the element (`nil` when it has none) or
    /// the error of its call.
    public struct MetadataRead: Sendable {
        /// The element, or `nil` when the domain has none in the namespace (or the call failed).
        public var xml: String?
        /// The call's error, if it failed.
        public var error: LibvirtError?
    }

    /// Replaces the domain's `<metadata>` element in the namespace `namespaceURI`; `nil` removes it.
    ///
    /// - Parameters:
    ///   - xml: one XML element, written without a namespace prefix; libvirt puts it in
    ///     `namespaceURI` under `prefix`.
    ///   - prefix: the namespace prefix libvirt writes, such as `vmctl`.
    ///
    /// The corresponding C function is `virDomainSetMetadata` with `VIR_DOMAIN_METADATA_ELEMENT`.
    public func setMetadata(
        _ xml: String?, prefix: String, namespace namespaceURI: String, affecting: Affect = []
    ) async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in
            _ = try check(virDomainSetMetadata(
                self.handle, Int32(VIR_DOMAIN_METADATA_ELEMENT.rawValue), xml,
                xml == nil ? nil : prefix, namespaceURI, affecting.rawValue))
        }
    }

    /// The addresses of the domain's network interfaces, as one source knows them.
    ///
    /// The corresponding C function is `virDomainInterfaceAddresses`.
    public func interfaceAddresses(source: AddressSource) async throws(LibvirtError) -> [Interface] {
        try await blocking { () throws(LibvirtError) in
            var list: UnsafeMutablePointer<virDomainInterfacePtr?>?
            let count = try check(virDomainInterfaceAddresses(self.handle, &list, source.rawValue, 0))
            guard let list else { return [] }
            defer { free(list) }
            return (0..<Int(count)).compactMap { index -> Interface? in
                guard let item = list[index] else { return nil }
                defer { virDomainInterfaceFree(item) }
                let addresses = (0..<Int(item.pointee.naddrs)).compactMap { n -> Interface.Address? in
                    guard let address = item.pointee.addrs?[n], let text = address.addr else { return nil }
                    let family: AddressFamily = address.type == Int32(VIR_IP_ADDR_TYPE_IPV6.rawValue) ? .ipv6 : .ipv4
                    return Interface.Address(family: family, address: String(cString: text), prefix: Int(address.prefix))
                }
                return Interface(
                    name: item.pointee.name.map { String(cString: $0) } ?? "",
                    mac: item.pointee.hwaddr.map { String(cString: $0) },
                    addresses: addresses)
            }
        }
    }
}

extension Domain {
    /// A domain's run state (`virDomainState`).
    public enum State: Sendable, Hashable {
        case noState, running, blocked, paused, shuttingDown, shutoff, crashed, pmSuspended
        case unknown(Int32)

        init(rawValue: Int32) {
            switch UInt32(bitPattern: rawValue) {
            case VIR_DOMAIN_NOSTATE.rawValue: self = .noState
            case VIR_DOMAIN_RUNNING.rawValue: self = .running
            case VIR_DOMAIN_BLOCKED.rawValue: self = .blocked
            case VIR_DOMAIN_PAUSED.rawValue: self = .paused
            case VIR_DOMAIN_SHUTDOWN.rawValue: self = .shuttingDown
            case VIR_DOMAIN_SHUTOFF.rawValue: self = .shutoff
            case VIR_DOMAIN_CRASHED.rawValue: self = .crashed
            case VIR_DOMAIN_PMSUSPENDED.rawValue: self = .pmSuspended
            default: self = .unknown(rawValue)
            }
        }
    }

    /// What `virDomainGetInfo` reports.
    public struct Info: Sendable, Hashable {
        /// The run state (`virDomainInfo.state`).
        public var state: State
        /// The most memory the domain may have, in KiB (`maxMem`).
        public var maxMemoryKiB: UInt64
        /// The memory the domain has now, in KiB (`memory`).
        public var memoryKiB: UInt64
        /// The number of virtual CPUs (`nrVirtCpu`).
        public var vcpus: Int
        /// CPU time used, in nanoseconds (`cpuTime`).
        public var cpuTimeNanoseconds: UInt64
    }

    /// Options for ``Domain/undefine(_:)`` (`virDomainUndefineFlagsValues`).
    public struct UndefineOptions: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// Also removes a managed-save image (`VIR_DOMAIN_UNDEFINE_MANAGED_SAVE`).
        public static let managedSave = UndefineOptions(rawValue: VIR_DOMAIN_UNDEFINE_MANAGED_SAVE.rawValue)
        /// Also removes snapshot metadata (`VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA`).
        public static let snapshotsMetadata = UndefineOptions(rawValue: VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA.rawValue)
        /// Also deletes the UEFI variable store (`VIR_DOMAIN_UNDEFINE_NVRAM`).
        public static let nvram = UndefineOptions(rawValue: VIR_DOMAIN_UNDEFINE_NVRAM.rawValue)
        /// Keeps the UEFI variable store (`VIR_DOMAIN_UNDEFINE_KEEP_NVRAM`).
        public static let keepNVRAM = UndefineOptions(rawValue: VIR_DOMAIN_UNDEFINE_KEEP_NVRAM.rawValue)
        /// Also removes checkpoint metadata (`VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA`).
        public static let checkpointsMetadata = UndefineOptions(rawValue: VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA.rawValue)
        /// Also deletes the emulated TPM's state (`VIR_DOMAIN_UNDEFINE_TPM`).
        public static let tpm = UndefineOptions(rawValue: VIR_DOMAIN_UNDEFINE_TPM.rawValue)
    }

    /// Options for ``Domain/xml(_:)`` (`virDomainXMLFlags`).
    public struct XMLOptions: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// Includes security-sensitive data such as passwords (`VIR_DOMAIN_XML_SECURE`).
        public static let secure = XMLOptions(rawValue: VIR_DOMAIN_XML_SECURE.rawValue)
        /// The persistent definition instead of the live one (`VIR_DOMAIN_XML_INACTIVE`).
        public static let inactive = XMLOptions(rawValue: VIR_DOMAIN_XML_INACTIVE.rawValue)
        /// Fills in the host's CPU model (`VIR_DOMAIN_XML_UPDATE_CPU`).
        public static let updateCPU = XMLOptions(rawValue: VIR_DOMAIN_XML_UPDATE_CPU.rawValue)
        /// XML fit for migration (`VIR_DOMAIN_XML_MIGRATABLE`).
        public static let migratable = XMLOptions(rawValue: VIR_DOMAIN_XML_MIGRATABLE.rawValue)
    }

    /// Which domains ``Connection/domains(_:)`` returns (`virConnectListAllDomainsFlags`).
    /// Empty means all. Within each pair (active/inactive, persistent/transient, ...) giving both
    /// or neither means either.
    public struct ListFilter: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// `VIR_CONNECT_LIST_DOMAINS_ACTIVE`
        public static let active = ListFilter(rawValue: VIR_CONNECT_LIST_DOMAINS_ACTIVE.rawValue)
        /// `VIR_CONNECT_LIST_DOMAINS_INACTIVE`
        public static let inactive = ListFilter(rawValue: VIR_CONNECT_LIST_DOMAINS_INACTIVE.rawValue)
        /// `VIR_CONNECT_LIST_DOMAINS_PERSISTENT`
        public static let persistent = ListFilter(rawValue: VIR_CONNECT_LIST_DOMAINS_PERSISTENT.rawValue)
        /// `VIR_CONNECT_LIST_DOMAINS_TRANSIENT`
        public static let transient = ListFilter(rawValue: VIR_CONNECT_LIST_DOMAINS_TRANSIENT.rawValue)
        /// `VIR_CONNECT_LIST_DOMAINS_RUNNING`
        public static let running = ListFilter(rawValue: VIR_CONNECT_LIST_DOMAINS_RUNNING.rawValue)
        /// `VIR_CONNECT_LIST_DOMAINS_PAUSED`
        public static let paused = ListFilter(rawValue: VIR_CONNECT_LIST_DOMAINS_PAUSED.rawValue)
        /// `VIR_CONNECT_LIST_DOMAINS_SHUTOFF`
        public static let shutoff = ListFilter(rawValue: VIR_CONNECT_LIST_DOMAINS_SHUTOFF.rawValue)
        /// `VIR_CONNECT_LIST_DOMAINS_OTHER`
        public static let other = ListFilter(rawValue: VIR_CONNECT_LIST_DOMAINS_OTHER.rawValue)
        /// `VIR_CONNECT_LIST_DOMAINS_AUTOSTART`
        public static let autostart = ListFilter(rawValue: VIR_CONNECT_LIST_DOMAINS_AUTOSTART.rawValue)
        /// `VIR_CONNECT_LIST_DOMAINS_NO_AUTOSTART`
        public static let noAutostart = ListFilter(rawValue: VIR_CONNECT_LIST_DOMAINS_NO_AUTOSTART.rawValue)
    }

    /// Where ``Domain/interfaceAddresses(source:)`` looks (`virDomainInterfaceAddressesSource`).
    public struct AddressSource: Sendable, Hashable {
        let rawValue: UInt32
        /// The DHCP leases of libvirt-managed networks (`VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE`).
        public static let lease = AddressSource(rawValue: VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE.rawValue)
        /// The QEMU guest agent inside the guest (`VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT`).
        public static let agent = AddressSource(rawValue: VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT.rawValue)
        /// The host's ARP table (`VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP`).
        public static let arp = AddressSource(rawValue: VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP.rawValue)
    }

    /// One guest network interface and its addresses (`virDomainInterface`).
    public struct Interface: Sendable, Hashable {
        /// The interface's name: in the guest (agent) or on the host (`vnet0`, lease and ARP).
        public var name: String
        /// The interface's MAC address, when known (`hwaddr`).
        public var mac: String?
        /// The interface's addresses (`addrs`).
        public var addresses: [Address]

        /// One address of an interface (`virDomainIPAddress`).
        public struct Address: Sendable, Hashable {
            /// IPv4 or IPv6 (`type`).
            public var family: AddressFamily
            /// The address, as text (`addr`).
            public var address: String
            /// The prefix length (`prefix`).
            public var prefix: Int
        }
    }
}

/// An IP address family (`virIPAddrType`).
public enum AddressFamily: String, Sendable, Hashable, Codable {
    case ipv4, ipv6
}

extension Connection {
    /// Defines (or redefines) a persistent domain from its XML, without starting it.
    ///
    /// The corresponding C function is `virDomainDefineXML`.
    public func defineDomain(xml: String) async throws(LibvirtError) -> Domain {
        try await blocking { () throws(LibvirtError) in
            Domain(owning: try check(virDomainDefineXML(self.handle, xml)))
        }
    }

    /// The domain called `name`; throws ``LibvirtError/Code/noDomain`` when there is none.
    ///
    /// The corresponding C function is `virDomainLookupByName`.
    public func domain(named name: String) async throws(LibvirtError) -> Domain {
        try await blocking { () throws(LibvirtError) in
            Domain(owning: try check(virDomainLookupByName(self.handle, name)))
        }
    }

    /// The domain with `uuid`; throws ``LibvirtError/Code/noDomain`` when there is none.
    ///
    /// The corresponding C function is `virDomainLookupByUUIDString`.
    public func domain(uuid: UUID) async throws(LibvirtError) -> Domain {
        try await blocking { () throws(LibvirtError) in
            Domain(owning: try check(virDomainLookupByUUIDString(self.handle, uuid.uuidString.lowercased())))
        }
    }

    /// How many domains there are, running and defined: a count without a listing (no handle
    /// is made), for a caller that plans by the number.
    ///
    /// The corresponding C functions are `virConnectNumOfDomains` and `virConnectNumOfDefinedDomains`.
    public func domainCount() async throws(LibvirtError) -> Int {
        try await blocking { () throws(LibvirtError) in
            Int(try check(virConnectNumOfDomains(self.handle))) + Int(try check(virConnectNumOfDefinedDomains(self.handle)))
        }
    }

    /// All domains that match `filter` (all of them when it is empty).
    ///
    /// The corresponding C function is `virConnectListAllDomains`.
    public func domains(_ filter: Domain.ListFilter = []) async throws(LibvirtError) -> [Domain] {
        try await blocking { () throws(LibvirtError) in
            var list: UnsafeMutablePointer<OpaquePointer?>?
            let count = try check(virConnectListAllDomains(self.handle, &list, filter.rawValue))
            return takeHandles(list, count: count, Domain.init(owning:))
        }
    }
}

/// Reads an object's UUID through one of libvirt's `vir*GetUUID` functions (no round trip), as
/// its 16 bytes: the string form costs libvirt a formatting (16 `%02x`) and Foundation a parse
/// (sscanf), 15k instructions a handle, and `list` makes 800 handles for 200 domains.
func readUUID(of handle: OpaquePointer, _ read: (OpaquePointer?, UnsafeMutablePointer<UInt8>?) -> Int32) -> UUID {
    var bytes = [UInt8](repeating: 0, count: Int(VIR_UUID_BUFLEN))
    guard bytes.withUnsafeMutableBufferPointer({ read(handle, $0.baseAddress) }) == 0 else {
        return UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
    }
    return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                       bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
}
