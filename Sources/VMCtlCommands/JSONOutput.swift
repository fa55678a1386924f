import Foundation
import Timestamps

/// JSON exactly as JSONEncoder writes it with `[.prettyPrinted, .sortedKeys,
/// .withoutEscapingSlashes]` and ISO 8601 dates, from an `Encoder` of its own: JSONEncoder tries
/// every value's type against its marker protocols, and each first try of a type scans the
/// binary's 10,000 protocol conformances. That was 80M of the 223M instructions of `vmctl list
/// --format json` with 200 VMs. A unit test renders the real models both ways.
enum JSONOutput {
    /// `value` as pretty-printed JSON with sorted keys.
    static func text(of value: some Encodable) throws -> String {
        let root = Slot()
        try root.store(value)
        var output: [UInt8] = []
        output.reserveCapacity(4096)
        root.write(to: &output, indent: 0)
        return String(decoding: output, as: UTF8.self)
    }
}

/// One value of the tree being encoded: containers fill it in place.
private final class Slot {
    enum Content {
        case empty
        /// A number, `true`, `false` or `null`, written as it is.
        case literal(String)
        /// A string, quoted and escaped when written.
        case string(String)
        case object([(String, Slot)])
        case array([Slot])
    }
    var content = Content.empty

    /// `value`: a date as ISO 8601, the scalars as JSON writes them, anything else through its
    /// own `encode(to:)`. Concrete-type checks only: casts to protocols are what cost.
    func store<T: Encodable>(_ value: T) throws {
        if T.self == Date.self {
            content = .string(UTCTime.iso8601(value as! Date))
        } else if T.self == String.self {
            content = .string(value as! String)
        } else if T.self == URL.self {
            content = .string((value as! URL).absoluteString)  // as JSONEncoder writes a URL
        } else {
            try value.encode(to: SlotEncoder(slot: self))
        }
    }

    func write(to output: inout [UInt8], indent: Int) {
        switch content {
        case .literal(let text):
            output.append(contentsOf: text.utf8)
        case .string(let text):
            appendQuoted(text, to: &output)
        case .object(let members) where !members.isEmpty:
            output.append(UInt8(ascii: "{"))
            // Keys in UTF-8 byte order, as JSONEncoder sorts them; the last value given for a key wins.
            let keyed = members.enumerated().sorted { lhs, rhs in
                lhs.element.0.utf8.lexicographicallyPrecedes(rhs.element.0.utf8)
                    || (lhs.element.0.utf8.elementsEqual(rhs.element.0.utf8) && lhs.offset < rhs.offset)
            }.map(\.element)
            var first = true
            for (index, member) in keyed.enumerated() where index + 1 == keyed.count || !keyed[index + 1].0.utf8.elementsEqual(member.0.utf8) {
                if !first { output.append(UInt8(ascii: ",")) }
                first = false
                newLine(&output, indent: indent + 2)
                appendQuoted(member.0, to: &output)
                output.append(contentsOf: " : ".utf8)
                member.1.write(to: &output, indent: indent + 2)
            }
            newLine(&output, indent: indent)
            output.append(UInt8(ascii: "}"))
        case .array(let elements) where !elements.isEmpty:
            output.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                newLine(&output, indent: indent + 2)
                element.write(to: &output, indent: indent + 2)
            }
            newLine(&output, indent: indent)
            output.append(UInt8(ascii: "]"))
        case .array:
            output.append(contentsOf: "[\n".utf8)
            newLine(&output, indent: indent)
            output.append(UInt8(ascii: "]"))
        case .object, .empty:
            output.append(contentsOf: "{\n".utf8)
            newLine(&output, indent: indent)
            output.append(UInt8(ascii: "}"))
        }
    }

    /// A line break and `indent` spaces.
    private func newLine(_ output: inout [UInt8], indent: Int) {
        output.append(UInt8(ascii: "\n"))
        for _ in 0..<indent { output.append(UInt8(ascii: " ")) }
    }
}

/// A JSON string: quotes, backslashes and control characters escaped, `/` and non-ASCII as they are.
private func appendQuoted(_ text: String, to output: inout [UInt8]) {
    output.append(UInt8(ascii: "\""))
    // Most text needs no escape: one copy of its bytes.
    var text = text
    let plain = text.withUTF8 { bytes in
        guard !bytes.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else { return false }
        output.append(contentsOf: bytes)
        return true
    }
    if plain {
        output.append(UInt8(ascii: "\""))
        return
    }
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "\""): output.append(contentsOf: "\\\"".utf8)
        case UInt8(ascii: "\\"): output.append(contentsOf: "\\\\".utf8)
        case 0x0A: output.append(contentsOf: "\\n".utf8)
        case 0x0D: output.append(contentsOf: "\\r".utf8)
        case 0x09: output.append(contentsOf: "\\t".utf8)
        case 0x08: output.append(contentsOf: "\\b".utf8)
        case 0x0C: output.append(contentsOf: "\\f".utf8)
        case 0..<0x20:
            let hex = Array("0123456789abcdef".utf8)
            output.append(contentsOf: "\\u00".utf8)
            output.append(hex[Int(byte >> 4)])
            output.append(hex[Int(byte & 0x0F)])
        default: output.append(byte)
        }
    }
    output.append(UInt8(ascii: "\""))
}

/// A number as JSONEncoder writes it; like it, no NaN or infinity.
private func number(_ value: Double) throws -> String {
    guard value.isFinite else {
        throw EncodingError.invalidValue(value, .init(codingPath: [], debugDescription: "\(value) is not valid in JSON"))
    }
    let text = String(value)
    return text.hasSuffix(".0") ? String(text.dropLast(2)) : text
}

private struct SlotEncoder: Encoder {
    let slot: Slot
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if case .object = slot.content {} else { slot.content = .object([]) }
        return KeyedEncodingContainer(KeyedSlot<Key>(slot: slot))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        if case .array = slot.content {} else { slot.content = .array([]) }
        return UnkeyedSlot(slot: slot)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleSlot(slot: slot) }
}

private struct KeyedSlot<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let slot: Slot
    var codingPath: [any CodingKey] { [] }

    private func child(_ key: Key) -> Slot {
        let child = Slot()
        if case .object(var members) = slot.content {
            slot.content = .empty  // one reference to the members while they grow
            members.append((key.stringValue, child))
            slot.content = .object(members)
        }
        return child
    }
    private func put(_ text: String, _ key: Key) { child(key).content = .literal(text) }

    mutating func encodeNil(forKey key: Key) throws { put("null", key) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { put(value ? "true" : "false", key) }
    mutating func encode(_ value: String, forKey key: Key) throws { child(key).content = .string(value) }
    mutating func encode(_ value: Double, forKey key: Key) throws { put(try number(value), key) }
    mutating func encode(_ value: Float, forKey key: Key) throws { put(try number(Double(value)), key) }
    mutating func encode(_ value: Int, forKey key: Key) throws { put(String(value), key) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { put(String(value), key) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { put(String(value), key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { put(String(value), key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { put(String(value), key) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { put(String(value), key) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { put(String(value), key) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { put(String(value), key) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { put(String(value), key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { put(String(value), key) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { try child(key).store(value) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        SlotEncoder(slot: child(key)).container(keyedBy: keyType)
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer { SlotEncoder(slot: child(key)).unkeyedContainer() }
    mutating func superEncoder() -> any Encoder { SlotEncoder(slot: child(Key(stringValue: "super")!)) }
    mutating func superEncoder(forKey key: Key) -> any Encoder { SlotEncoder(slot: child(key)) }
}

private struct UnkeyedSlot: UnkeyedEncodingContainer, ScalarSink {
    let slot: Slot
    var codingPath: [any CodingKey] { [] }
    var count: Int {
        if case .array(let elements) = slot.content { return elements.count }
        return 0
    }

    private func next() -> Slot {
        let child = Slot()
        if case .array(var elements) = slot.content {
            slot.content = .empty  // one reference to the elements while they grow
            elements.append(child)
            slot.content = .array(elements)
        }
        return child
    }
    /// The next element, for ``ScalarSink``'s scalars.
    func scalarSlot() -> Slot { next() }

    mutating func encode<T: Encodable>(_ value: T) throws { try next().store(value) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        SlotEncoder(slot: next()).container(keyedBy: keyType)
    }
    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer { SlotEncoder(slot: next()).unkeyedContainer() }
    mutating func superEncoder() -> any Encoder { SlotEncoder(slot: next()) }
}

private struct SingleSlot: SingleValueEncodingContainer, ScalarSink {
    let slot: Slot
    var codingPath: [any CodingKey] { [] }

    func scalarSlot() -> Slot { slot }

    mutating func encode<T: Encodable>(_ value: T) throws { try slot.store(value) }
}

/// The scalar encodings an unkeyed and a single-value container share: each goes into the slot
/// the container hands out.
private protocol ScalarSink {
    func scalarSlot() -> Slot
}

extension ScalarSink {
    private func put(_ text: String) { scalarSlot().content = .literal(text) }

    mutating func encodeNil() throws { put("null") }
    mutating func encode(_ value: Bool) throws { put(value ? "true" : "false") }
    mutating func encode(_ value: String) throws { scalarSlot().content = .string(value) }
    mutating func encode(_ value: Double) throws { put(try number(value)) }
    mutating func encode(_ value: Float) throws { put(try number(Double(value))) }
    mutating func encode(_ value: Int) throws { put(String(value)) }
    mutating func encode(_ value: Int8) throws { put(String(value)) }
    mutating func encode(_ value: Int16) throws { put(String(value)) }
    mutating func encode(_ value: Int32) throws { put(String(value)) }
    mutating func encode(_ value: Int64) throws { put(String(value)) }
    mutating func encode(_ value: UInt) throws { put(String(value)) }
    mutating func encode(_ value: UInt8) throws { put(String(value)) }
    mutating func encode(_ value: UInt16) throws { put(String(value)) }
    mutating func encode(_ value: UInt32) throws { put(String(value)) }
    mutating func encode(_ value: UInt64) throws { put(String(value)) }
}
