import Foundation
import PropertyBased
import Testing
import Timestamps

/// The metadata's timestamps against Foundation's ISO 8601 format style, which vmctl used
/// before: the same text for every date, and each reads the other's back.
@Suite("ISO 8601 timestamps")
struct TimestampTests {
    @Test("written as Date.ISO8601FormatStyle writes them, read back as it reads them")
    func sameAsFoundation() async {
        // 1970 to 2200, with fractions of a second: the cut to seconds must match.
        await propertyCheck(count: 2000, input: Gen.int64(in: 0...7_258_118_400), Gen.int(in: 0...999_999)) { seconds, microseconds in
            let date = Date(timeIntervalSince1970: Double(seconds) + Double(microseconds) / 1_000_000)
            let ours = UTCTime.iso8601(date)
            #expect(ours == date.formatted(.iso8601), "\(date.timeIntervalSince1970)")
            #expect(UTCTime(iso8601: ours)?.date == (try? Date(ours, strategy: .iso8601)), "\(ours)")
        }
    }

    @Test("other shapes are not read as ours")
    func otherShapes() {
        #expect(UTCTime(iso8601: "2026-12-07T17:09:30Z")?.date == Date(timeIntervalSince1970: 1_796_663_370))
        for text in ["2026-12-07T17:09:30+01:00", "2026-12-07T17:09:30.5Z", "2026-12-07 17:09:30Z", "2026-12-32T17:09:30Z", "2026-12-07T17:09:30"] {
            #expect(UTCTime(iso8601: text) == nil, "\(text)")
        }
    }
}
