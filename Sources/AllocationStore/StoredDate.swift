public import Foundation
public import GRDB
import Timestamps

/// The dates of the SQLite store's rows, as GRDB's default writes them (`yyyy-MM-dd
/// HH:mm:ss.SSS`, UTC), but through ``UTCTime`` instead of GRDB's `DateFormatter` and
/// `Calendar`, which load ICU: every create writes its journal entry. Files written by either
/// stay readable by both.
public enum StoredDate {
    /// What a record writes for a date.
    public static func databaseValue(of date: Date) -> any DatabaseValueConvertible { UTCTime(date).databaseText }

    /// The date a record reads: the text this type writes, else whatever GRDB's default reads
    /// (another SQLite date format, a number).
    public static func date(from value: DatabaseValue) -> Date? {
        if let text = String.fromDatabaseValue(value), let time = UTCTime(databaseText: text) { return time.date }
        return Date.fromDatabaseValue(value)
    }
}

/// A row type of the SQLite store: its dates go through ``StoredDate``.
public protocol StoredRecord: FetchableRecord, EncodableRecord {}

extension StoredRecord {
    public static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy { .custom(StoredDate.databaseValue(of:)) }
    public static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy { .custom(StoredDate.date(from:)) }
}
