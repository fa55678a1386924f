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
        case scalar([UInt8])
        case object([(String, Slot)])
        case array([Slot])
    }
    var content = Content.empty

    /// `value`: a date as ISO 8601, the scalars as JSON writes them, anything else through its
    /// own `encode(to:)`. Concrete-type checks only: casts to protocols are what cost.
    func store<T: Encodable>(_ value: T) throws {
        if T.self == Date.self {
            content = .scalar(quoted(UTCTime.iso8601(value as! Date)))
        } else if T.self == String.self {
            content = .scalar(quoted(value as! String))
        } else if T.self == URL.self {
            content = .scalar(quoted((value as! URL).absoluteString))  // as JSONEncoder writes a URL
        } else {
            try value.encode(to: SlotEncoder(slot: self))
        }
    }

    func write(to output: inout [UInt8], indent: Int) {
        switch content {
        case .scalar(let text):
            output.append(contentsOf: text)
        case .object(let members) where !members.isEmpty:
            output.append(UInt8(ascii: "{"))
            // Keys in UTF-8 byte order, as JSONEncoder sorts them; the last value given for a key wins.
            let keyed = members.enumerated().map { (key: Array($0.element.0.utf8), order: $0.offset, slot: $0.element.1) }
                .sorted { $0.key.lexicographicallyPrecedes($1.key) || ($0.key == $1.key && $0.order < $1.order) }
            var first = true
            for (index, member) in keyed.enumerated() where index + 1 == keyed.count || keyed[index + 1].key != member.key {
                output.append(contentsOf: first ? [UInt8(ascii: "\n")] : [UInt8(ascii: ","), UInt8(ascii: "\n")])
                first = false
                output.append(contentsOf: repeatElement(UInt8(ascii: " "), count: indent + 2))
                appendQuoted(member.key, to: &output)
                output.append(contentsOf: " : ".utf8)
                member.slot.write(to: &output, indent: indent + 2)
            }
            output.append(UInt8(ascii: "\n"))
            output.append(contentsOf: repeatElement(UInt8(ascii: " "), count: indent))
            output.append(UInt8(ascii: "}"))
        case .array(let elements) where !elements.isEmpty:
            output.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                output.append(contentsOf: index == 0 ? [UInt8(ascii: "\n")] : [UInt8(ascii: ","), UInt8(ascii: "\n")])
                output.append(contentsOf: repeatElement(UInt8(ascii: " "), count: indent + 2))
                element.write(to: &output, indent: indent + 2)
            }
            output.append(UInt8(ascii: "\n"))
            output.append(contentsOf: repeatElement(UInt8(ascii: " "), count: indent))
            output.append(UInt8(ascii: "]"))
        case .array:
            output.append(contentsOf: "[\n\n".utf8)
            output.append(contentsOf: repeatElement(UInt8(ascii: " "), count: indent))
            output.append(UInt8(ascii: "]"))
        case .object, .empty:
            output.append(contentsOf: "{\n\n".utf8)
            output.append(contentsOf: repeatElement(UInt8(ascii: " "), count: indent))
            output.append(UInt8(ascii: "}"))
        }
    }
}

/// A JSON string: quotes, backslashes and control characters escaped, `/` and non-ASCII as they are.
private func quoted(_ text: String) -> [UInt8] {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(text.utf8.count + 2)
    appendQuoted(Array(text.utf8), to: &bytes)
    return bytes
}

private func appendQuoted(_ text: [UInt8], to output: inout [UInt8]) {
    output.append(UInt8(ascii: "\""))
    for byte in text {
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
    private func put(_ text: String, _ key: Key) { child(key).content = .scalar(Array(text.utf8)) }
    private func put(_ bytes: [UInt8], _ key: Key) { child(key).content = .scalar(bytes) }

    mutating func encodeNil(forKey key: Key) throws { put("null", key) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { put(value ? "true" : "false", key) }
    mutating func encode(_ value: String, forKey key: Key) throws { put(quoted(value), key) }
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
    private func put(_ text: String) { scalarSlot().content = .scalar(Array(text.utf8)) }
    private func put(_ bytes: [UInt8]) { scalarSlot().content = .scalar(bytes) }

    mutating func encodeNil() throws { put("null") }
    mutating func encode(_ value: Bool) throws { put(value ? "true" : "false") }
    mutating func encode(_ value: String) throws { put(quoted(value)) }
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
