import Addressing
import Foundation
import LibvirtXML
import PropertyBased
import Testing
@testable import Provisioning

/// Every parser and renderer against generated inputs: what is accepted is exactly the grammar,
/// and what is written reads back identical.
@Suite("properties of parsers and renderers")
struct PropertyTests {
    static let units: [(String, UInt64)] = [("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40), ("MiB", 1 << 20), ("g", 1 << 30)]

    @Test("sizes: N followed by a unit is N times the unit; what is printed parses back")
    func sizes() async {
        await propertyCheck(count: 300, input: Gen.uint64(in: 1...(1 << 20)), Gen.int(in: 0...(Self.units.count - 1))) { number, unit in
            let (suffix, factor) = Self.units[unit]
            let size = try? ByteSize(parsing: "\(number)\(suffix)", what: "size")
            #expect(size?.bytes == number * factor)
            if let size {
                let again = try? ByteSize(parsing: size.description, what: "size")
                #expect(again == size || size.description.hasSuffix("bytes"))
            }
        }
    }

    @Test("sizes: anything else is refused, naming it")
    func sizeGarbage() async {
        let grammar = /^[0-9]+(\.[0-9]{1,9})?([KMGTP]|[KMGTP]iB)$/.ignoresCase()
        await propertyCheck(count: 500, input: Gen<Character>.character(in: " "..."~").string(of: 0...8)) { text in
            do {
                let size = try ByteSize(parsing: text, what: "size")
                #expect(text.wholeMatch(of: grammar) != nil, "\(text) accepted as \(size.bytes)")
                #expect(size.bytes > 0 && size.bytes < 1 << 63)
            } catch let error as ProvisioningError {
                #expect(error.message.contains("'\(text)'"))
            } catch {
                Issue.record("\(error)")
            }
        }
        for text in ["0x10G", "1e-9G", "1e3M", "-1G", "+1G", " 1G", "1G ", "0G", "0.0M", "99999999999999999999T", "9223372036854775808K"] {
            #expect((try? ByteSize(parsing: text, what: "size")) == nil, "\(text)")
        }
    }

    @Test("durations: sums of parts, bounded to ten years")
    func durations() async {
        await propertyCheck(count: 300, input: Gen.int(in: 0...999), Gen.int(in: 0...59), Gen.int(in: 1...59)) { days, minutes, seconds in
            let text = "\(days)d\(minutes)m\(seconds)s"
            let parsed = try? parseDuration(text)
            #expect(parsed == TimeInterval(days * 86400 + minutes * 60 + seconds))
        }
        for text in ["99999999999999999999d", "3651d", "1w", "d", "1", "1.5h", "-1h", ""] {
            #expect((try? parseDuration(text)) == nil, "\(text)")
        }
        #expect((try? parseDuration("3650d")) == longestDuration)
    }

    @Test("names: up to 64 letters, digits, '-', '_', '.', starting with a letter or digit; nothing else")
    func names() async {
        let grammar = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
        await propertyCheck(count: 500, input: Gen<Character>.character(in: " "..."~").string(of: 0...70)) { text in
            let accepted = (try? validateObjectName(text, what: "VM")) != nil
            #expect(accepted == (text.wholeMatch(of: grammar) != nil), "\(text)")
        }
    }

    @Test("labels: any printable value written into vmctl's metadata reads back identical")
    func labelRoundTrip() async {
        let characters = Gen.oneOf(Gen<Character>.character(in: " "..."~"), Gen<Character>.character(in: "\u{a0}"..."\u{17f}"),
                                   Gen.element(of: ["<", ">", "&", "'", "\"", "é", "中", "\u{1F600}"]).map { $0! })
        await propertyCheck(count: 300, input: characters.string(of: 0...40)) { value in
            guard let (key, parsed) = try? parseLabel("k=\(value)") else {
                Issue.record("refused printable label value \(value.debugDescription)")
                return
            }
            let metadata = VMMetadata(createdAt: Date(timeIntervalSince1970: 0), expiresAt: nil, labels: [key: parsed], image: value,
                                      volumes: [], addresses: [])
            let read = try? VMMetadata(xml: metadata.xml)
            #expect(read?.labels == [key: value] && read?.image == value, "\(value.debugDescription)")
        }
        for value in ["a\rb", "a\nb", "tab\there", "\u{7f}", "\u{85}"] {
            #expect((try? parseLabel("k=\(value)")) == nil, "\(value.debugDescription)")
        }
    }

    @Test("addresses, subnets and ranges print as they parse", .timeLimit(.minutes(1)))
    func addresses() async {
        await propertyCheck(count: 300, input: Gen.uint32(), Gen.int(in: 0...32)) { number, prefix in
            let address = IPAddress(family: .ipv4, number: UInt128(number))
            #expect(IPAddress(address.description) == address)
            let subnet = Subnet(containing: address, prefix: prefix)
            #expect(subnet.flatMap { Subnet($0.description) } == subnet)
            #expect(subnet?.contains(address) == true)
        }
        await propertyCheck(count: 300, input: Gen.uint128(), Gen.int(in: 0...128)) { number, prefix in
            let address = IPAddress(family: .ipv6, number: number)
            #expect(IPAddress(address.description) == address)
            let subnet = Subnet(containing: address, prefix: prefix)
            #expect(subnet.flatMap { Subnet($0.description) } == subnet)
        }
        await propertyCheck(count: 200, input: Gen.uint32(), Gen.uint32(in: 0...1000)) { first, length in
            let start = IPAddress(family: .ipv4, number: UInt128(first))
            let end = IPAddress(family: .ipv4, number: UInt128(first) + UInt128(min(length, UInt32.max - first)))
            let range = AddressRange("\(start)-\(end)")
            #expect(range.map { AddressRange($0.description) == $0 } ?? false)
        }
    }

    @Test("network gateways: every subnet either gets one inside it or is refused, never a crash")
    func gateways() async {
        await propertyCheck(count: 300, input: Gen.uint128(), Gen.int(in: 96...128)) { number, prefix in
            let subnet = Subnet(containing: IPAddress(family: .ipv6, number: number), prefix: prefix)!
            if let config = try? ipConfig(subnet: subnet.description, gateway: nil, dhcp: nil, family: .ipv6, flag: "--ipv6") {
                #expect(subnet.contains(config.gateway))
            }
        }
        #expect((try? ipConfig(subnet: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", gateway: nil, dhcp: nil, family: .ipv6, flag: "--ipv6")) == nil)
        #expect((try? ipConfig(subnet: "::ffff:10.0.0.0/120", gateway: nil, dhcp: nil, family: .ipv6, flag: "--ipv6")) == nil)
    }

    @Test("every DNS domain the validator accepts is written and read back identical")
    func domains() async {
        let label = Gen<Character>.letterOrNumber.string(of: 1...10)
        await propertyCheck(count: 200, input: label.array(of: 1...4)) { labels in
            let domain = labels.joined(separator: ".")
            let network = NetworkConfiguration(name: "n", forwardMode: "nat", forwardDevice: nil, bridge: "b", managedBridge: true,
                                               domain: domain, dnsDisabled: false, ipv4: .init(gateway: "10.0.0.1", prefix: 24), ipv6: nil)
            #expect(isHostName(domain))
            #expect((try? NetworkDefinition(xml: network.xml))?.domain == domain)
        }
        for bad in ["x'/><mtu size='1400'/><x a='", "a b", "a..b", "-a", "a_b"] { #expect(!isHostName(bad), "\(bad)") }
    }
}
