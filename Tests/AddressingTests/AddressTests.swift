import Addressing
import Foundation
import PropertyBased
import Testing

@Suite("Addresses")
struct AddressTests {
    @Test("IPv4 parses dotted quads only", arguments: [
        ("203.0.113.9", true), ("0.0.0.0", true), ("255.255.255.255", true),
        ("256.1.1.1", false), ("1.2.3", false), ("1.2.3.4.5", false), ("01.2.3.4", false),
        ("1.2.3.-4", false), ("", false), ("a.b.c.d", false), ("1.2.3.4 ", false),
    ])
    func ipv4(text: String, valid: Bool) {
        #expect((IPv4Address(text) != nil) == valid)
        if valid { #expect(IPv4Address(text)?.description == text) }
    }

    @Test("IPv4 reads what inet_pton reads, and every address it prints")
    func ipv4AsInetPton() async {
        // glibc's inet_pton: four decimal octets of at most 255, no leading zero, nothing else.
        let characters = Gen<Character?>.element(of: Array("0123456789.-+ a")).map { $0 ?? "0" }
        await propertyCheck(count: 3000, input: characters.string(of: 0...17)) { text in
            var raw = in_addr()
            let expected = inet_pton(AF_INET, text, &raw) == 1 ? UInt32(bigEndian: raw.s_addr) : nil
            #expect(IPv4Address(text)?.value == expected, "\(text)")
        }
        await propertyCheck(count: 1000, input: Gen.uint32()) { value in
            #expect(IPv4Address(IPv4Address(value).description)?.value == value)
        }
    }

    @Test("MACs read six hex pairs between colons or dashes, as the reader split by separators did")
    func macAsSplit() async {
        func split(_ text: String) -> [UInt8]? {
            let parts = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == ":" || $0 == "-" }).map(String.init)
            guard parts.count == 6, parts.allSatisfy({ $0.count == 2 && $0.allSatisfy(\.isHexDigit) }) else { return nil }
            return parts.compactMap { UInt8($0, radix: 16) }
        }
        let characters = Gen<Character?>.element(of: Array("0aF9fg:-:")).map { $0 ?? "0" }
        await propertyCheck(count: 3000, input: characters.string(of: 14...19)) { text in
            #expect(MACAddress(text)?.bytes == split(text), "\(text)")
        }
        await propertyCheck(count: 1000, input: Gen.uint8().array(of: 6)) { bytes in
            let mac = MACAddress(bytes: bytes)!
            #expect(MACAddress(mac.description) == mac)
            #expect(MACAddress(mac.description.uppercased().replacingOccurrences(of: ":", with: "-")) == mac)
        }
    }

    @Test("IPv6 parses every RFC 4291 form and prints RFC 5952", arguments: [
        ("2001:db8::1", "2001:db8::1"), ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"), ("::", "::"),
        ("fe80::1:2", "fe80::1:2"), ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
    ])
    func ipv6(text: String, canonical: String) {
        #expect(IPv6Address(text)?.description == canonical)
    }

    @Test("bad IPv6 text is refused", arguments: ["2001:db8:::1", "2001:db8::g", "fe80::1%eth0", "1.2.3.4", ""])
    func badIPv6(text: String) {
        #expect(IPv6Address(text) == nil)
    }

    @Test("subnets: host bits, containment, overlap, last address, size")
    func subnets() throws {
        let subnet = try #require(Subnet("203.0.113.64/28"))
        #expect(subnet.last == IPAddress("203.0.113.79"))
        #expect(subnet.size == 16)
        #expect(subnet.contains(IPAddress("203.0.113.70")!))
        #expect(!subnet.contains(IPAddress("203.0.113.80")!))
        #expect(Subnet("203.0.113.65/28") == nil, "host bits set")
        #expect(Subnet("203.0.113.64/33") == nil)
        #expect(Subnet(containing: IPAddress("10.0.0.1")!, prefix: 24) == Subnet("10.0.0.0/24"))
        #expect(subnet.overlaps(Subnet("203.0.113.0/24")!))
        #expect(!subnet.overlaps(Subnet("203.0.113.80/28")!))
        let v6 = try #require(Subnet("2001:db8:aa::/64"))
        #expect(v6.size == UInt128(1) << 64)
        #expect(v6.last == IPAddress("2001:db8:aa::ffff:ffff:ffff:ffff"))
        #expect(Subnet("::/0")?.size == UInt128.max)
    }

    @Test("MAC addresses parse, print as libvirt does, and give the DUID-LL")
    func macs() throws {
        let mac = try #require(MACAddress("52:54:00:AB:cd:0f"))
        #expect(mac.description == "52:54:00:ab:cd:0f")
        #expect(mac.duidLL == "00:03:00:01:52:54:00:ab:cd:0f")
        #expect(!mac.isMulticast)
        #expect(MACAddress("01:00:5e:00:00:01")?.isMulticast == true)
        #expect(MACAddress("52:54:00:ab:cd") == nil)
        #expect(MACAddress("52:54:00:ab:cd:0g") == nil)
        #expect(MACAddress("52:54:00:ab:cd:0f:00") == nil)
        #expect(MACAddress("52:54:00:ab::0f") == nil)
    }

    @Test("ranges parse from CIDR, FIRST-LAST or one address, and merge")
    func ranges() throws {
        #expect(AddressRange("10.0.0.8/29")?.description == "10.0.0.8-10.0.0.15")
        #expect(AddressRange("10.0.0.9-10.0.0.3") == nil, "reversed")
        #expect(AddressRange("10.0.0.1-2001:db8::1") == nil, "mixed families")
        #expect(AddressRange("2001:db8::10-2001:db8::1f")?.count == 16)
        #expect(AddressRange("10.0.0.7")?.count == 1)
        let merged = [AddressRange("10.0.0.5-10.0.0.9")!, AddressRange("10.0.0.1-10.0.0.4")!,
                      AddressRange("10.0.0.20")!, AddressRange("10.0.0.8-10.0.0.12")!].merged()
        #expect(merged.map(\.description) == ["10.0.0.1-10.0.0.12", "10.0.0.20"])
        let json = try JSONEncoder().encode(AddressRange("10.0.0.1-10.0.0.4")!)
        #expect(String(decoding: json, as: UTF8.self) == "\"10.0.0.1-10.0.0.4\"")
    }
}

@Suite("Pool allocator")
struct PoolLayoutTests {
    let lan = (subnet: Subnet("192.0.2.0/24")!, gateway: IPAddress("192.0.2.1"))

    func allocateAll(_ layout: PoolLayout, _ family: IPAddress.Family, limit: Int = 1000) -> [IPAddress] {
        var allocated: Set<IPAddress> = []
        var order: [IPAddress] = []
        while order.count < limit, let next = layout.firstFree(family, allocated: allocated) {
            allocated.insert(next)
            order.append(next)
        }
        return order
    }

    @Test("network, broadcast and gateway are never handed out by default")
    func reservedByDefault() throws {
        let layout = try PoolLayout(ranges: [AddressRange("192.0.2.0/29")!], subnets: [lan])
        #expect(layout.reserved.map(\.description) == ["192.0.2.0", "192.0.2.1"])
        #expect(layout.size == 6)
        #expect(allocateAll(layout, .ipv4).map(\.description) == (2...7).map { "192.0.2.\($0)" })

        let whole = try PoolLayout(ranges: [AddressRange("192.0.2.0/24")!], subnets: [lan])
        #expect(whole.reserved.map(\.description) == ["192.0.2.0", "192.0.2.1", "192.0.2.255"])
        #expect(whole.size == 253)
        #expect(!whole.allows(IPAddress("192.0.2.255")!))
        #expect(allocateAll(whole, .ipv4).count == 253)
    }

    @Test("a range as the fewest subnets that hold exactly it")
    func rangeSubnets() throws {
        func subnets(_ text: String) -> [String] { AddressRange(text)!.subnets.map(\.description) }
        #expect(subnets("203.0.113.16-203.0.113.31") == ["203.0.113.16/28"])
        #expect(subnets("203.0.113.1-203.0.113.6") == ["203.0.113.1/32", "203.0.113.2/31", "203.0.113.4/31", "203.0.113.6/32"])
        #expect(subnets("203.0.113.9") == ["203.0.113.9/32"])
        #expect(subnets("0.0.0.0-255.255.255.255") == ["0.0.0.0/0"])
        #expect(subnets("2001:db8::-2001:db8::ffff:ffff:ffff:ffff") == ["2001:db8::/64"])
        #expect(subnets("::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == ["::/0"])
        #expect(subnets("255.255.255.254-255.255.255.255") == ["255.255.255.254/31"])
        // Every address of a range is in exactly one of its subnets, and nothing else is.
        let range = AddressRange("10.0.0.3-10.0.1.77")!
        let covered = range.subnets.reduce(UInt128(0)) { $0 + $1.size }
        #expect(covered == range.count)
        #expect(range.subnets.allSatisfy { range.contains($0.network) && range.contains($0.last) })
    }

    @Test("a /31 has no broadcast address (RFC 3021): the address that is not the gateway is handed out")
    func pointToPoint() throws {
        let link = (subnet: Subnet("192.0.2.8/31")!, gateway: IPAddress("192.0.2.8"))
        let layout = try PoolLayout(ranges: [AddressRange("192.0.2.8/31")!], subnets: [link])
        #expect(layout.reserved.map(\.description) == ["192.0.2.8"])
        #expect(allocateAll(layout, .ipv4).map(\.description) == ["192.0.2.9"])
        // A /30 still loses its broadcast address.
        let small = try PoolLayout(ranges: [AddressRange("192.0.2.8/30")!], subnets: [(Subnet("192.0.2.8/30")!, IPAddress("192.0.2.9"))])
        #expect(allocateAll(small, .ipv4).map(\.description) == ["192.0.2.10"])
    }

    @Test("--all-usable hands out every address, network and broadcast included (seed 000)")
    func allUsable() throws {
        let routed = (subnet: Subnet("203.0.113.64/28")!, gateway: IPAddress?.none)
        let layout = try PoolLayout(ranges: [AddressRange("203.0.113.64/28")!], subnets: [routed], allUsable: true)
        #expect(layout.size == 16)
        #expect(layout.reserved.isEmpty)
        let all = allocateAll(layout, .ipv4)
        #expect(all.first?.description == "203.0.113.64")
        #expect(all.last?.description == "203.0.113.79")
        #expect(all.count == 16)
    }

    @Test("several ranges are used in order; exclusions are skipped, however large")
    func rangesAndExclusions() throws {
        let layout = try PoolLayout(
            ranges: [AddressRange("192.0.2.100-192.0.2.103")!, AddressRange("192.0.2.10-192.0.2.12")!],
            exclusions: [AddressRange("192.0.2.11")!, AddressRange("192.0.2.101-192.0.2.102")!,
                         AddressRange("192.0.2.102-192.0.2.150")!],
            subnets: [lan])
        #expect(layout.size == 3)
        #expect(allocateAll(layout, .ipv4).map(\.description) == ["192.0.2.10", "192.0.2.12", "192.0.2.100"])
        #expect(!layout.allows(IPAddress("192.0.2.11")!))
        #expect(layout.allows(IPAddress("192.0.2.12")!))
    }

    @Test("IPv6: a /64 range costs nothing to search; the subnet-router anycast address is reserved")
    func ipv6() throws {
        let subnet = (subnet: Subnet("2001:db8:aa::/64")!, gateway: IPAddress("2001:db8:aa::1"))
        let layout = try PoolLayout(
            ranges: [AddressRange("2001:db8:aa::/64")!],
            exclusions: [AddressRange("2001:db8:aa::2-2001:db8:aa::ff")!], subnets: [subnet])
        #expect(layout.size == (UInt128(1) << 64) - 256)
        var allocated: Set<IPAddress> = []
        let first = try #require(layout.firstFree(.ipv6, allocated: allocated))
        #expect(first.description == "2001:db8:aa::100")
        allocated.insert(first)
        #expect(layout.firstFree(.ipv6, allocated: allocated)?.description == "2001:db8:aa::101")
        #expect(layout.firstFree(.ipv4, allocated: allocated) == nil)
    }

    @Test("one pool holds both families; each family is allocated separately")
    func dualStack() throws {
        let layout = try PoolLayout(
            ranges: [AddressRange("192.0.2.10-192.0.2.11")!, AddressRange("2001:db8::10-2001:db8::11")!],
            subnets: [lan])
        #expect(layout.families == [.ipv4, .ipv6])
        #expect(layout.size(of: .ipv4) == 2)
        #expect(layout.size(of: .ipv6) == 2)
        #expect(layout.size == 4)
        #expect(layout.firstFree(.ipv6, allocated: [])?.description == "2001:db8::10")
    }

    @Test("exhaustion returns nil; a released address is handed out again, lowest first")
    func exhaustionAndReuse() throws {
        let layout = try PoolLayout(ranges: [AddressRange("192.0.2.20-192.0.2.23")!], subnets: [lan])
        var allocated = Set(allocateAll(layout, .ipv4))
        #expect(allocated.count == 4)
        #expect(layout.firstFree(.ipv4, allocated: allocated) == nil)
        allocated.remove(IPAddress("192.0.2.22")!)
        allocated.remove(IPAddress("192.0.2.21")!)
        #expect(layout.firstFree(.ipv4, allocated: allocated)?.description == "192.0.2.21")
    }

    @Test("a layout must have ranges that do not overlap and at least one usable address")
    func problems() {
        #expect(throws: PoolLayout.Problem.noRanges) { try PoolLayout(ranges: []) }
        #expect(throws: PoolLayout.Problem.overlappingRanges(AddressRange("10.0.0.1-10.0.0.5")!, AddressRange("10.0.0.5-10.0.0.9")!)) {
            try PoolLayout(ranges: [AddressRange("10.0.0.5-10.0.0.9")!, AddressRange("10.0.0.1-10.0.0.5")!])
        }
        #expect(throws: PoolLayout.Problem.empty) {
            try PoolLayout(ranges: [AddressRange("192.0.2.0-192.0.2.1")!], subnets: [lan])
        }
        #expect(throws: PoolLayout.Problem.empty) {
            try PoolLayout(ranges: [AddressRange("10.0.0.0/30")!], exclusions: [AddressRange("10.0.0.0/29")!])
        }
    }
}
