import Foundation
import Libvirt
import Testing
@testable import Provisioning
import TestSupport
@testable import VMCtlCommands

@Suite("vmctl info")
struct InfoTests {
    @Test("the report gathered from the test driver matches what it holds")
    func gather() async throws {
        let connection = try await Connection.open("test:///default")
        let report = try await InfoReport.gather(from: connection)
        #expect(report.uri == "test:///default")
        #expect(report.hypervisor.type == "TEST")
        #expect(report.libvirtVersion >= Version(major: 9, minor: 0, release: 0))
        // test:///default starts with one running domain, one active network, one active pool.
        #expect(report.domains.total >= 1 && report.domains.active >= 1)
        #expect(report.networks.active >= 1)
        #expect(report.storagePools.active >= 1)
        #expect(report.kvm == false)
    }

    @Test("text output is aligned key: value lines; JSON has sorted keys")
    func rendering() throws {
        let report = InfoReport(
            uri: "qemu:///system", hostname: "host1",
            libvirtVersion: Version(major: 9, minor: 0, release: 0),
            hypervisor: .init(type: "QEMU", version: Version(major: 7, minor: 2, release: 0)),
            kvm: true, domains: .init(total: 3, active: 1), networks: .init(total: 2, active: 2),
            storagePools: .init(total: 1, active: 0))
        let text = try Output.render(report, as: .text)
        #expect(text == """
            uri:            qemu:///system
            hostname:       host1
            libvirt:        9.0.0
            hypervisor:     QEMU 7.2.0
            kvm:            yes
            domains:        3 (1 running)
            networks:       2 (2 active)
            storage pools:  1 (0 active)

            """)
        let json = try Output.render(report, as: .json)
        let keys = json.split(separator: "\n").filter { $0.hasPrefix("  \"") }.map { $0.split(separator: "\"")[1] }
        #expect(keys == ["domains", "hostname", "hypervisor", "kvm", "libvirtVersion", "networks", "storagePools", "uri"])
        #expect(try JSONDecoder().decode(InfoReport.self, from: Data(json.utf8)) == report)
    }

    @Test("KVM is read from the guest domain types of the host's architecture")
    func capabilities() {
        let withKVM = HostCapabilities(xml: """
            <capabilities><host><cpu><arch>x86_64</arch></cpu></host>
              <guest><os_type>hvm</os_type><arch name='i686'><domain type='qemu'/></arch></guest>
              <guest><os_type>hvm</os_type><arch name='x86_64'><domain type='qemu'/><domain type='kvm'/></arch></guest>
            </capabilities>
            """)
        #expect(withKVM.hostArchitecture == "x86_64")
        #expect(withKVM.domainTypes == ["qemu", "kvm"])
        #expect(withKVM.offersKVM)
        #expect(!withKVM.isVirtualMachine && withKVM.defaultDomainType == "kvm")
        let nested = HostCapabilities(xml: """
            <capabilities><host><cpu><arch>x86_64</arch><feature name='vmx'/><feature name='hypervisor'/></cpu></host>
              <guest><os_type>hvm</os_type><arch name='x86_64'><domain type='qemu'/><domain type='kvm'/></arch></guest>
            </capabilities>
            """)
        #expect(nested.offersKVM && nested.isVirtualMachine && nested.defaultDomainType == "qemu")

        let kvmOnlyForOtherArch = HostCapabilities(xml: """
            <capabilities><host><cpu><arch>x86_64</arch></cpu></host>
              <guest><arch name='aarch64'><domain type='kvm'/></arch></guest>
              <guest><arch name='x86_64'><domain type='qemu'/></arch></guest></capabilities>
            """)
        #expect(!kvmOnlyForOtherArch.offersKVM && kvmOnlyForOtherArch.defaultDomainType == "qemu")
        #expect(!HostCapabilities(xml: "not xml").offersKVM)
    }
}

@Suite("vmctl command line")
struct CommandLineTests {
    @Test("--connect, then VMCTL_CONNECT, then qemu:///system")
    func connectPrecedence() throws {
        #expect(try GlobalOptions.parse(["--connect", "test:///default"]).uri == "test:///default")
        let fromEnvironment = try runVMCtl(["info", "--format", "json"], environment: ["VMCTL_CONNECT": "test:///default"])
        #expect(fromEnvironment.status == 0, "\(fromEnvironment.standardError)")
        #expect(fromEnvironment.standardOutput.contains("\"uri\" : \"test:///default\""))
        // --connect is global: before the subcommand too, and it wins over the environment.
        let beforeSubcommand = try runVMCtl(["--connect", "test:///default", "info", "--format", "json"],
                                            environment: ["VMCTL_CONNECT": "qemu:///system?socket=/nonexistent/sock"])
        #expect(beforeSubcommand.status == 0, "\(beforeSubcommand.standardError)")
        #expect(beforeSubcommand.standardOutput.contains("\"uri\" : \"test:///default\""))
    }

    @Test("a connection failure exits 1 with one line naming the URI and what to do")
    func connectionFailure() throws {
        let uri = "qemu:///system?socket=/nonexistent/vmctl.sock"
        let result = try runVMCtl(["info", "--connect", uri])
        #expect(result.status == 1)
        #expect(result.standardOutput.isEmpty)
        let lines = result.standardError.split(separator: "\n")
        #expect(lines.count == 1, "\(result.standardError)")
        #expect(result.standardError.contains(uri))
        #expect(result.standardError.contains("--connect"))
    }

    @Test("a bad option value is a usage error: exit 64, naming the value")
    func usageError() throws {
        let result = try runVMCtl(["info", "--format", "yaml"])
        #expect(result.status == 64)
        #expect(result.standardOutput.isEmpty)
        #expect(result.standardError.contains("'yaml'"))
    }

    @Test("user-facing errors are one line, whatever libvirt's message holds")
    func oneLineErrors() {
        let error = ProvisioningError(.libvirt, "cannot do it: first\nsecond", hint: "try again")
        #expect(error.description == "cannot do it: first second; try again")
    }
}

/// Every shape the JSON output has: nested objects, arrays and maps (empty too), optionals,
/// dates, numbers, and strings that need escaping.
private struct Shapes: Renderable, Hashable {
    struct Interface: Encodable, Hashable {
        var mac: String?
        var addresses: [String]
    }
    var name: String
    var created: Date
    var expires: Date?
    var memory: UInt64
    var vcpus: Int
    var ratio: Double
    var running: Bool
    var labels: [String: String]
    var interfaces: [Interface]
    var empty: [Interface] = []
    var nothing: [String: Int] = [:]
    var host: String?
    var text: String { "" }
    var names: [String] { [] }

    /// nil written as null, as vmctl's models write their optionals.
    enum CodingKeys: String, CodingKey { case name, created, expires, memory, vcpus, ratio, running, labels, interfaces, empty, nothing, host }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(created, forKey: .created)
        try container.encode(expires, forKey: .expires)
        try container.encode(memory, forKey: .memory)
        try container.encode(vcpus, forKey: .vcpus)
        try container.encode(ratio, forKey: .ratio)
        try container.encode(running, forKey: .running)
        try container.encode(labels, forKey: .labels)
        try container.encode(interfaces, forKey: .interfaces)
        try container.encode(empty, forKey: .empty)
        try container.encode(nothing, forKey: .nothing)
        try container.encodeIfPresent(host, forKey: .host)
    }
}

/// A value with dates, rendered as every verb's JSON renders them.
private struct Dated: Renderable {
    var created: Date
    var expires: Date?
    var text: String { "" }
    var names: [String] { [] }
}

@Suite("JSON dates")
struct JSONDateTests {
    @Test("dates in the JSON output are what JSONEncoder's .iso8601 writes, whole seconds in UTC")
    func sameAsISO8601Strategy() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        for seconds in [0, 1_796_663_370.999_9, 1_796_663_370.000_1, 4_102_444_799.5] {
            let value = Dated(created: Date(timeIntervalSince1970: seconds), expires: seconds > 1 ? Date(timeIntervalSince1970: seconds + 86_400) : nil)
            #expect(try Output.render(value, as: .json) == String(decoding: try encoder.encode(value), as: UTF8.self) + "\n")
        }
        #expect(try Output.render(Dated(created: Date(timeIntervalSince1970: 1_796_663_370.9)), as: .json).contains("\"2026-12-07T17:09:30Z\""))
    }
}

@Suite("JSON output")
struct JSONOutputTests {
    static func foundation(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(value), as: UTF8.self) + "\n"
    }

    @Test("vmctl's JSON is JSONEncoder's, byte for byte, for every shape the models have")
    func sameAsJSONEncoder() throws {
        let awkward = "a\"b\\c/d\n\r\t\u{08}\u{0C}\u{01}\u{1F}\u{7F} é 日本 🙂"
        let values = [
            Shapes(name: "web1", created: Date(timeIntervalSince1970: 1_796_663_370.75), expires: nil, memory: 1 << 40, vcpus: 2, ratio: 1.5,
                   running: true, labels: ["ci": "1234", "b": awkward, "B": "", "a-1": "x", "a10": "y", "a2": "z", "é": "1"],
                   interfaces: [.init(mac: "52:54:00:12:34:56", addresses: ["192.0.2.10", "2001:db8::10"]), .init(mac: nil, addresses: [])],
                   host: "hv1"),
            Shapes(name: awkward, created: Date(timeIntervalSince1970: 0), expires: Date(timeIntervalSince1970: 4_102_444_799.999), memory: 0,
                   vcpus: -1, ratio: 2, running: false, labels: [:], interfaces: [], nothing: ["k": 1], host: nil),
        ]
        for value in values {
            #expect(try Output.render(value, as: .json) == Self.foundation(value))
        }
        #expect(try Output.render(NameList(list: []), as: .json) == Self.foundation([String]()))
        #expect(try Output.render(NameList(list: ["a", "b"]), as: .json) == Self.foundation(["a", "b"]))
        let report = try Output.render(Shapes(name: "x", created: Date(), expires: nil, memory: 1, vcpus: 1, ratio: 0.1, running: true, labels: [:],
                                              interfaces: []), as: .json)
        #expect(report.contains("\"ratio\" : 0.1"))
        #expect(try Output.render(NameList(list: ["https://example.org/a b"]), as: .json) == Self.foundation(["https://example.org/a b"]))
        #expect(try JSONOutput.text(of: [URL(string: "https://example.org/a/b?c=1")!]) + "\n" == Self.foundation([URL(string: "https://example.org/a/b?c=1")!]))
        #expect(throws: EncodingError.self) { try JSONOutput.text(of: [Double.nan]) }
    }
}
