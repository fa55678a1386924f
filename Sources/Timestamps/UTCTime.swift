public import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A moment as a UTC calendar date and time of day, to the millisecond, converted to and from
/// text without Foundation's formatters: their calendars and time zones load ICU (a
/// `DateFormatter` in GRDB's date columns, the current time zone behind `Date.ISO8601FormatStyle`),
/// whose tables and code were 2.7 MiB of a create's 41 MiB peak memory. Pure: gmtime_r and timegm.
public struct UTCTime: Sendable, Equatable {
    public var year, month, day, hour, minute, second, millisecond: Int

    /// `date`'s UTC fields, to the nearest millisecond.
    public init(_ date: Date) {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded())
        var seconds = time_t(milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        (year, month, day) = (Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday))
        (hour, minute, second) = (Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
        millisecond = Int(milliseconds - Int64(seconds) * 1000)
    }

    /// The moment.
    public var date: Date {
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        return Date(timeIntervalSince1970: Double(timegm(&parts)) + Double(millisecond) / 1000)
    }

    /// `yyyy-MM-dd HH:mm:ss.SSS`: how GRDB stores a date in SQLite.
    public var databaseText: String {
        "\(datePart) \(pad(hour, 2)):\(pad(minute, 2)):\(pad(second, 2)).\(pad(millisecond, 3))"
    }

    /// `yyyy-MM-ddTHH:mm:ssZ`, what `Date.ISO8601FormatStyle` writes by default (no milliseconds).
    public var iso8601: String { "\(datePart)T\(pad(hour, 2)):\(pad(minute, 2)):\(pad(second, 2))Z" }

    /// `date` as `Date.ISO8601FormatStyle` (and JSONEncoder's `.iso8601`) writes it: the second it
    /// falls in, never rounded up.
    public static func iso8601(_ date: Date) -> String {
        UTCTime(Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down))).iso8601
    }

    /// Reads ``databaseText``; `nil` for any other shape.
    public init?(databaseText text: String) {
        self.init(text, separator: " ", milliseconds: true, zone: false)
    }

    /// Reads ``iso8601``; `nil` for any other shape (an offset, fractions).
    public init?(iso8601 text: String) {
        self.init(text, separator: "T", milliseconds: false, zone: true)
    }

    private init?(_ text: String, separator: Character, milliseconds: Bool, zone: Bool) {
        let bytes = Array(text.utf8)
        let length = 19 + (milliseconds ? 4 : 0) + (zone ? 1 : 0)
        func at(_ index: Int, _ character: Character) -> Bool { bytes[index] == character.asciiValue }
        guard bytes.count == length, at(4, "-"), at(7, "-"), at(10, separator), at(13, ":"), at(16, ":"),
              !milliseconds || at(19, "."), !zone || at(length - 1, "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for byte in bytes[range] {
                guard (0x30...0x39).contains(byte) else { return nil }
                value = value * 10 + Int(byte - 0x30)
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
              let minute = number(14..<16), let second = number(17..<19), let millisecond = milliseconds ? number(20..<23) : 0,
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        (self.year, self.month, self.day, self.hour, self.minute, self.second, self.millisecond) = (year, month, day, hour, minute, second, millisecond)
    }

    private var datePart: String { "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))" }

    private func pad(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }
}
