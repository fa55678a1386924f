import CLibvirt

/// An error reported by libvirt, copied from libvirt's thread-local last error on the thread of
/// the failing call.
///
/// Match on ``code`` (and, where it matters, ``domain``):
///
/// ```swift
/// do { _ = try await connection.domain(named: "web") }
/// catch let error as LibvirtError where error.code == .noDomain { ... }
/// ```
///
/// The corresponding C type is `virError`, read with `virCopyLastError`.
public struct LibvirtError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong: libvirt's `virErrorNumber`.
    public var code: Code
    /// Which part of libvirt raised the error: libvirt's `virErrorDomain`.
    public var domain: Domain
    /// libvirt's human-readable message.
    public var message: String

    /// Creates an error from its parts.
    public init(code: Code, domain: Domain, message: String) {
        self.code = code
        self.domain = domain
        self.message = message
    }

    public var description: String { message }

    /// A libvirt error code (`virErrorNumber`). Unknown codes keep their raw value.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        init(_ c: virErrorNumber) { self.rawValue = Int32(bitPattern: c.rawValue) }

        public var description: String { "\(rawValue)" }

        /// `VIR_ERR_INTERNAL_ERROR`
        public static let internalError = Code(VIR_ERR_INTERNAL_ERROR)
        /// `VIR_ERR_NO_SUPPORT`
        public static let noSupport = Code(VIR_ERR_NO_SUPPORT)
        /// `VIR_ERR_NO_CONNECT`
        public static let noConnect = Code(VIR_ERR_NO_CONNECT)
        /// `VIR_ERR_INVALID_CONN`
        public static let invalidConnection = Code(VIR_ERR_INVALID_CONN)
        /// `VIR_ERR_INVALID_ARG`
        public static let invalidArgument = Code(VIR_ERR_INVALID_ARG)
        /// `VIR_ERR_OPERATION_FAILED`
        public static let operationFailed = Code(VIR_ERR_OPERATION_FAILED)
        /// `VIR_ERR_XML_ERROR`
        public static let xmlError = Code(VIR_ERR_XML_ERROR)
        /// `VIR_ERR_XML_DETAIL`
        public static let xmlDetail = Code(VIR_ERR_XML_DETAIL)
        /// `VIR_ERR_DOM_EXIST`
        public static let domainExists = Code(VIR_ERR_DOM_EXIST)
        /// `VIR_ERR_OPERATION_DENIED`
        public static let operationDenied = Code(VIR_ERR_OPERATION_DENIED)
        /// `VIR_ERR_NETWORK_EXIST`
        public static let networkExists = Code(VIR_ERR_NETWORK_EXIST)
        /// `VIR_ERR_SYSTEM_ERROR`
        public static let systemError = Code(VIR_ERR_SYSTEM_ERROR)
        /// `VIR_ERR_RPC`
        public static let rpc = Code(VIR_ERR_RPC)
        /// `VIR_ERR_NO_DOMAIN`
        public static let noDomain = Code(VIR_ERR_NO_DOMAIN)
        /// `VIR_ERR_NO_NETWORK`
        public static let noNetwork = Code(VIR_ERR_NO_NETWORK)
        /// `VIR_ERR_INVALID_MAC`
        public static let invalidMAC = Code(VIR_ERR_INVALID_MAC)
        /// `VIR_ERR_AUTH_FAILED`
        public static let authFailed = Code(VIR_ERR_AUTH_FAILED)
        /// `VIR_ERR_NO_STORAGE_POOL`
        public static let noStoragePool = Code(VIR_ERR_NO_STORAGE_POOL)
        /// `VIR_ERR_NO_STORAGE_VOL`
        public static let noStorageVolume = Code(VIR_ERR_NO_STORAGE_VOL)
        /// `VIR_ERR_OPERATION_INVALID`: for example `virNetworkUpdate` adding a host entry whose
        /// MAC, name or address is already there.
        public static let operationInvalid = Code(VIR_ERR_OPERATION_INVALID)
        /// `VIR_ERR_CONFIG_UNSUPPORTED`
        public static let configUnsupported = Code(VIR_ERR_CONFIG_UNSUPPORTED)
        /// `VIR_ERR_OPERATION_TIMEOUT`
        public static let operationTimeout = Code(VIR_ERR_OPERATION_TIMEOUT)
        /// `VIR_ERR_ARGUMENT_UNSUPPORTED`
        public static let argumentUnsupported = Code(VIR_ERR_ARGUMENT_UNSUPPORTED)
        /// `VIR_ERR_NO_DOMAIN_METADATA`: the domain has no metadata element for that namespace.
        public static let noDomainMetadata = Code(VIR_ERR_NO_DOMAIN_METADATA)
        /// `VIR_ERR_OPERATION_UNSUPPORTED`
        public static let operationUnsupported = Code(VIR_ERR_OPERATION_UNSUPPORTED)
        /// `VIR_ERR_RESOURCE_BUSY`
        public static let resourceBusy = Code(VIR_ERR_RESOURCE_BUSY)
        /// `VIR_ERR_ACCESS_DENIED`
        public static let accessDenied = Code(VIR_ERR_ACCESS_DENIED)
        /// `VIR_ERR_STORAGE_VOL_EXIST`
        public static let storageVolumeExists = Code(VIR_ERR_STORAGE_VOL_EXIST)
        /// `VIR_ERR_AGENT_UNRESPONSIVE`
        public static let agentUnresponsive = Code(VIR_ERR_AGENT_UNRESPONSIVE)
    }

    /// The part of libvirt that raised an error (`virErrorDomain`).
    public struct Domain: RawRepresentable, Hashable, Sendable {
        public var rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        init(_ c: virErrorDomain) { self.rawValue = Int32(bitPattern: c.rawValue) }

        /// `VIR_FROM_NONE`
        public static let none = Domain(VIR_FROM_NONE)
        /// `VIR_FROM_RPC`
        public static let rpc = Domain(VIR_FROM_RPC)
        /// `VIR_FROM_QEMU`
        public static let qemu = Domain(VIR_FROM_QEMU)
        /// `VIR_FROM_TEST`
        public static let test = Domain(VIR_FROM_TEST)
        /// `VIR_FROM_REMOTE`
        public static let remote = Domain(VIR_FROM_REMOTE)
        /// `VIR_FROM_STORAGE`
        public static let storage = Domain(VIR_FROM_STORAGE)
        /// `VIR_FROM_NETWORK`
        public static let network = Domain(VIR_FROM_NETWORK)
        /// `VIR_FROM_DOMAIN`
        public static let domain = Domain(VIR_FROM_DOMAIN)
        /// `VIR_FROM_SSH`
        public static let ssh = Domain(VIR_FROM_SSH)
    }
}

extension LibvirtError {
    /// Copies libvirt's last error of the calling thread and resets it.
    ///
    /// Must run on the thread that made the failing call, before anything else calls libvirt
    /// there: libvirt keeps the last error per thread. The corresponding C functions are
    /// `virCopyLastError` and `virResetError`.
    static func copyLast(_ fallback: @autoclosure () -> String = "libvirt call failed") -> LibvirtError {
        var raw = virError()
        let found = virCopyLastError(&raw)
        defer {
            virResetError(&raw)
            virResetLastError()
        }
        guard found > 0 else {
            return LibvirtError(code: .internalError, domain: .none, message: fallback())
        }
        let message = raw.message.map { String(cString: $0) } ?? fallback()
        return LibvirtError(code: Code(rawValue: raw.code), domain: Domain(rawValue: raw.domain), message: message)
    }
}

/// Calls a libvirt function that returns a negative number on failure.
@discardableResult
func check(_ result: Int32) throws(LibvirtError) -> Int32 {
    if result < 0 { throw LibvirtError.copyLast() }
    return result
}

/// Calls a libvirt function that returns NULL on failure.
func check<T>(_ result: T?) throws(LibvirtError) -> T {
    guard let result else { throw LibvirtError.copyLast() }
    return result
}

/// Takes ownership of a string libvirt allocated (`char *` to be freed by the caller).
func takeString(_ pointer: UnsafeMutablePointer<CChar>?) throws(LibvirtError) -> String {
    let pointer = try check(pointer)
    defer { free(pointer) }
    return String(cString: pointer)
}
