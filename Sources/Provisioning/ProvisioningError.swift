public import AllocationStore
public import Libvirt

/// Why an operation of vmctl failed: a code a caller can match, a message that names the value
/// involved (never a command-line flag: the library has none), what to do about it, and the
/// underlying error where there was one.
public struct ProvisioningError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is; the command layer turns `invalidValue` into a usage error.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// A value given by the caller is malformed or out of range.
        public static let invalidValue = Code(rawValue: "invalidValue")
        /// A named object (VM, network, pool, volume, file) does not exist.
        public static let notFound = Code(rawValue: "notFound")
        /// An object of that name exists already.
        public static let alreadyExists = Code(rawValue: "alreadyExists")
        /// The request contradicts the state of things (a MAC in use, a range outside the subnet).
        public static let conflict = Code(rawValue: "conflict")
        /// libvirt refused or failed (the cause is the `LibvirtError`).
        public static let libvirt = Code(rawValue: "libvirt")
        /// The state file failed (the cause is the `StoreError`).
        public static let store = Code(rawValue: "store")
        /// An external program failed or is missing.
        public static let tool = Code(rawValue: "tool")
        /// A local file could not be read or written.
        public static let file = Code(rawValue: "file")
        /// Stopped by SIGINT, SIGTERM or SIGHUP.
        public static let interrupted = Code(rawValue: "interrupted")
        /// A wait ran out of time.
        public static let timedOut = Code(rawValue: "timedOut")
        /// Done only in part: the message says what is left, and how to finish it.
        public static let incomplete = Code(rawValue: "incomplete")
        /// Not possible on this connection or host.
        public static let unsupported = Code(rawValue: "unsupported")
    }

    public var code: Code
    /// What failed, naming the value involved.
    public var message: String
    /// What to do about it, if there is something to say.
    public var hint: String?
    /// The error this one reports, if any.
    public var cause: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, hint: String? = nil, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.hint = hint
        self.cause = cause
    }

    /// One line, whatever libvirt's message held: `message; hint`.
    public var description: String {
        let text = hint.map { "\(message); \($0)" } ?? message
        return text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    /// The same error with another hint (the command layer's, naming its flags).
    public func hinted(_ hint: String) -> ProvisioningError {
        var copy = self
        copy.hint = hint
        return copy
    }

    /// The same error with more context in front: `context: message`.
    public func prefixed(_ context: String) -> ProvisioningError {
        var copy = self
        copy.message = "\(context): \(message)"
        return copy
    }
}

extension ProvisioningError {
    /// A libvirt failure of `action` ("read the domain list", ...).
    public init(while action: String, _ error: LibvirtError) {
        self.init(.libvirt, "cannot \(action): \(error.message)", cause: error)
    }

    /// A failure of the state file, with its own words.
    public init(_ error: StoreError) {
        let code: Code = switch error {
        case .noSuchPool, .notAllocated, .noSuchImage: .notFound
        case .poolExists, .imageExists: .alreadyExists
        default: .store
        }
        let hint: String? = if case .unavailable = error { "check the path and its permissions" } else { nil }
        self.init(code, error.description, hint: hint, cause: error)
    }

    /// Whether the store said the address is not allocated, or its pool is gone: released already.
    var isNotAllocated: Bool {
        switch cause as? StoreError {
        case .notAllocated?, .noSuchPool?: true
        default: false
        }
    }

    /// A bad value given by the caller: `invalid WHAT 'VALUE': what is allowed`.
    static func invalid(_ message: String, hint: String? = nil) -> ProvisioningError {
        ProvisioningError(.invalidValue, message, hint: hint)
    }
}

/// Runs a store call, turning its error into a `ProvisioningError`.
func storeCall<T>(_ body: () throws(StoreError) -> T) throws(ProvisioningError) -> T {
    do { return try body() } catch { throw ProvisioningError(error) }
}
