import Libvirt

/// A failure reported to the user: one line that says what failed and what to do about it.
public struct VMCtlError: Error, CustomStringConvertible, Sendable {
    /// What failed, naming the value involved.
    public var message: String
    /// What to do about it, if there is something to say.
    public var hint: String?

    public init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }

    public var description: String {
        let text = hint.map { "\(message); \($0)" } ?? message
        // One line, whatever libvirt's message held.
        return text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}

extension VMCtlError {
    /// Wraps a libvirt failure of `action` ("read the domain list", ...).
    init(while action: String, _ error: LibvirtError) {
        self.init("cannot \(action): \(error.message)")
    }
}
