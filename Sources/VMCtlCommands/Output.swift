import Foundation

/// The one place where command results become text on stdout.
enum Output {
    /// Renders a result in the requested format; JSON has sorted keys and ISO 8601 dates.
    static func render<Value: Encodable & TextRenderable>(_ value: Value, as format: OutputFormat) throws -> String {
        switch format {
        case .text:
            return value.text
        case .json:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            encoder.dateEncodingStrategy = .iso8601
            return String(decoding: try encoder.encode(value), as: UTF8.self) + "\n"
        }
    }

    /// Writes data to stdout.
    static func write(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    /// Columns under upper-case headers, padded to the widest cell.
    static func columns(_ headers: [String], _ rows: [[String]]) -> String {
        let widths = headers.indices.map { column in
            ([headers[column]] + rows.map { $0[column] }).map(\.count).max() ?? 0
        }
        return ([headers] + rows).map { row in
            row.indices.map { column in
                column == row.count - 1 ? row[column] : row[column].padding(toLength: widths[column] + 2, withPad: " ", startingAt: 0)
            }.joined()
        }.joined(separator: "\n") + "\n"
    }

    /// Aligned `key: value` lines.
    static func table(_ rows: [(String, String)]) -> String {
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { key, value in
            key + ":" + String(repeating: " ", count: width - key.count + 2) + value
        }.joined(separator: "\n") + "\n"
    }
}

/// A result that has a human-readable text form.
protocol TextRenderable {
    var text: String { get }
}
