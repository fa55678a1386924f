@testable import AllocationStore
import Foundation
import GRDB
import PropertyBased
import Testing
import Timestamps

/// The store's own date text against GRDB's default (a DateFormatter and a Calendar): the same
/// text for every date, and each reads the other's back, so state files stay readable both ways.
@Suite("stored dates")
struct StoredDateTests {
    @Test("written as GRDB writes them, to the millisecond, and read back as GRDB reads them")
    func sameAsGRDB() async {
        // 1970 to 2200, with microseconds: the rounding to milliseconds must match ICU's.
        await propertyCheck(count: 2000, input: Gen.int64(in: 0...7_258_118_400_000), Gen.int(in: 0...999)) { milliseconds, microseconds in
            let date = Date(timeIntervalSince1970: Double(milliseconds) / 1000 + Double(microseconds) / 1_000_000)
            let ours = UTCTime(date).databaseText
            let grdbs = String.fromDatabaseValue(date.databaseValue)
            #expect(ours == grdbs, "\(date.timeIntervalSince1970)")
            let read = StoredDate.date(from: ours.databaseValue)
            let grdbRead = Date.fromDatabaseValue(ours.databaseValue)
            #expect(read != nil && grdbRead != nil && abs(read!.timeIntervalSince(grdbRead!)) < 1e-6, "\(ours)")
        }
    }

    @Test("other shapes fall back to GRDB's reading; garbage is nil")
    func otherShapes() {
        #expect(UTCTime(databaseText: "2026-12-07 17:09:30.123")?.date == Date(timeIntervalSince1970: 1_796_663_370.123))
        #expect(UTCTime(databaseText: "2026-12-07 17:09:30") == nil)
        #expect(UTCTime(databaseText: "2026-13-07 17:09:30.123") == nil)
        #expect(UTCTime(databaseText: "2026-12-07T17:09:30.123") == nil)
        #expect(UTCTime(databaseText: "2026-12-07 17:09:3x.123") == nil)
        #expect(StoredDate.date(from: "2026-12-07 17:09".databaseValue) == Date(timeIntervalSince1970: 1_796_663_340))
        #expect(StoredDate.date(from: 1_796_663_370.5.databaseValue) == Date(timeIntervalSince1970: 1_796_663_370.5))
        #expect(StoredDate.date(from: "never".databaseValue) == nil)
    }

    @Test("every record type of the store writes and reads its dates through StoredDate")
    func recordsUseIt() throws {
        func custom(_ record: (some StoredRecord).Type) -> Bool {
            guard case .custom = record.databaseDateEncodingStrategy(for: "createdAt"),
                  case .custom = record.databaseDateDecodingStrategy(for: "createdAt") else { return false }
            return true
        }
        #expect(custom(Pool.self) && custom(Allocation.self) && custom(PortForward.self) && custom(PendingCreate.self)
                && custom(ImageRecord.self) && custom(HostRecord.self))
        // Through GRDB's own encoding of a record.
        let started = Date(timeIntervalSince1970: 1_796_663_370.123_9)
        let row = try PendingCreate(name: "a", uuid: UUID(), process: "p", startedAt: started).databaseDictionary
        #expect(row["startedAt"] == "2026-12-07 17:09:30.124".databaseValue)
    }
}
