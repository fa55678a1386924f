import Foundation
import Testing
import TestSupport

/// What users of other CLI tools expect of every verb, checked on the built binary against the
/// in-process test driver (no daemon).
@Suite("command-line conventions")
struct ConventionsTests {
    let testDriver = ["VMCTL_CONNECT": "test:///default"]

    @Test("--version prints the version and the commit it was built from (unknown outside scripts/build-release)")
    func version() throws {
        let result = try runVMCtl(["--version"])
        #expect(result.status == 0)
        #expect(result.standardOutput.range(of: #"^\d+\.\d+\.\d+ \(commit ([0-9a-f]{12}(-dirty)?|unknown)\)\n$"#, options: .regularExpression) != nil,
                "\(result.standardOutput)")
    }

    @Test("-q prints names only: list, network list; ls is list")
    func quiet() throws {
        let names = try runVMCtl(["list", "-q"], environment: testDriver)
        #expect(names.status == 0 && names.standardOutput == "test\n", "\(names.standardOutput)\(names.standardError)")
        #expect(try runVMCtl(["ls", "-q"], environment: testDriver).standardOutput == "test\n")
        let networks = try runVMCtl(["network", "list", "-q"], environment: testDriver)
        #expect(networks.status == 0 && networks.standardOutput == "default\n", "\(networks.standardOutput)\(networks.standardError)")
        let table = try runVMCtl(["list"], environment: testDriver).standardOutput
        #expect(table.hasPrefix("NAME") && table.contains("test"))
    }

    @Test("pool list -q and --format json on an empty state file")
    func pools() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-conventions-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let state = ["VMCTL_STATE": directory.appendingPathComponent("state.sqlite").path]
        let quiet = try runVMCtl(["pool", "list", "-q"], environment: state)
        #expect(quiet.status == 0 && quiet.standardOutput.isEmpty, "\(quiet.standardError)")
        let json = try runVMCtl(["pool", "list", "--format", "json"], environment: state)
        #expect(json.status == 0 && json.standardOutput == "[\n\n]\n", "\(json.standardOutput)")
    }

    @Test("the URI: --connect, then VMCTL_CONNECT, then LIBVIRT_DEFAULT_URI")
    func defaultURI() throws {
        let result = try runVMCtl(["info", "--format", "json"], environment: ["VMCTL_CONNECT": "", "LIBVIRT_DEFAULT_URI": "test:///default"])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.standardOutput.contains("\"uri\" : \"test:///default\""))
        let overridden = try runVMCtl(["info", "--format", "json"],
                                      environment: ["VMCTL_CONNECT": "test:///default", "LIBVIRT_DEFAULT_URI": "qemu:///system?socket=/nonexistent"])
        #expect(overridden.status == 0, "\(overridden.standardError)")
    }

    @Test("usage errors exit 64 with one line naming the value, on every verb; --help still shows the usage")
    func usageErrors() throws {
        let cases: [([String], String)] = [
            (["create", "bad!"], "'bad!'"),
            (["network", "create", "bad!", "--mode", "nat"], "'bad!'"),
            (["pool", "create", "bad!", "--network", "n", "--range", "10.0.0.0/24"], "'bad!'"),
            (["create", "vm1", "--vcpus", "0"], "0"),
            (["create", "vm1", "--network", "lan,ip=10.1.1.300"], "ip=10.1.1.300"),
            (["list", "--label", "no value"], "'no value'"),
            (["destroy"], "name the VMs"),
            (["network", "create", "n1", "--mode", "nat", "--ipv4", "10.0.0.0/33"], "'10.0.0.0/33'"),
            (["pool", "reserve", "p", "--mac", "zz", "--owner", "x"], "'zz'"),
        ]
        for (arguments, value) in cases {
            let result = try runVMCtl(arguments, environment: testDriver)
            #expect(result.status == 64, "\(arguments): \(result.status) \(result.standardError)")
            #expect(result.standardError.split(separator: "\n").count == 1, "\(arguments): \(result.standardError)")
            #expect(result.standardError.contains(value), "\(arguments): \(result.standardError)")
            #expect(result.standardError.hasPrefix("Error: "), "\(arguments): \(result.standardError)")
            #expect(result.standardOutput.isEmpty)
        }
        let help = try runVMCtl(["create", "--help"])
        #expect(help.status == 0 && help.standardOutput.contains("USAGE: vmctl create"))
        let short = try runVMCtl(["network", "create", "-h"])
        #expect(short.status == 0 && short.standardOutput.contains("USAGE: vmctl network create"))
        let helpVerb = try runVMCtl(["help", "pool", "reserve"])
        #expect(helpVerb.status == 0 && helpVerb.standardOutput.contains("USAGE: vmctl pool reserve"))
    }

    @Test("destroy is also rm; a missing VM exits 1 and --format json still reports it")
    func destroyAlias() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-conventions-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let environment = testDriver.merging(["VMCTL_STATE": directory.appendingPathComponent("state.sqlite").path]) { $1 }
        let result = try runVMCtl(["rm", "nope", "--format", "json"], environment: environment)
        #expect(result.status == 1 && result.standardError.contains("no VM named nope"), "\(result.standardError)")
        #expect(result.standardOutput == "[\n\n]\n", "\(result.standardOutput)")
        #expect(try runVMCtl(["rm", "nope", "--ignore-missing"], environment: environment).status == 0)
    }

    @Test("shell completions complete VM, network and pool names from vmctl itself", arguments: ["bash", "zsh", "fish"])
    func completions(shell: String) throws {
        let script = try runVMCtl(["--generate-completion-script", shell]).standardOutput
        for lister in ["vmctl list -q", "vmctl network list -q", "vmctl pool list -q"] {
            #expect(script.contains(lister), "\(shell): \(lister)")
        }
    }
}
