/// A value whose text form is its identity: it is read with `init?(_:)`, written with
/// `description`, and encoded in JSON or SQLite as that text.
public protocol TextCodable: LosslessStringConvertible, Codable {
    /// What the value is, for decoding errors: "an IP address".
    static var textKind: String { get }
}

extension TextCodable {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = Self(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not \(Self.textKind): \(text)"))
        }
        self = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
