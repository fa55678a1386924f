import Foundation
import Libvirt
import LibvirtXML
import Testing
import TestSupport

extension Integration {
    /// What docs/cli.md promises and the other suites do not reach: each option used for real
    /// against the harness's libvirtd, and the outcome read back from libvirt.
    @Suite("documented options")
    struct DocumentedOptionsTests {
        typealias Setup = VMLifecycleTests.Setup

        /// The shipped domain template with a marker, as a user's own template would differ.
        func userTemplates(in scratch: URL) throws -> URL {
            let shipped = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("templates/domain.xml.mustache")
            let text = try String(contentsOf: shipped, encoding: .utf8)
            let directory = scratch.appendingPathComponent("templates")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let marked = text.replacingOccurrences(of: "  <name>{{name}}</name>\n", with: "  <name>{{name}}</name>\n  <description>from a user template</description>\n")
            #expect(marked != text, "the shipped template no longer has the line the test marks")
            try marked.write(to: directory.appendingPathComponent("domain.xml.mustache"), atomically: true, encoding: .utf8)
            return directory
        }

        @Test("create: --vcpus, mac= and model=, --image-format raw, VMCTL_VIRT_TYPE and --virt-type over it, VMCTL_TEMPLATES, VMCTL_PROFILE, --debug, --quiet; destroy of several names; a domain vmctl did not create is refused",
              .timeLimit(.minutes(4)))
        func createOptions() async throws {
            try await Setup.with { setup in
                let id = setup.id
                let templates = try userTemplates(in: setup.scratch)
                let raw = setup.scratch.appendingPathComponent("base.raw").path
                #expect(try runProcess("/usr/bin/qemu-img", ["create", "-q", "-f", "raw", raw, "32M"]).status == 0)
                let mac = String(format: "52:54:00:d0:%02x:01", Int.random(in: 0...255))
                let first = "ido-\(id)-a"
                let created = try runVMCtl(setup.createArguments(first, [
                    "--vcpus", "2", "--network", "ivn-\(id),mac=\(mac),model=e1000", "--image", raw, "--image-format", "raw",
                    "--quiet", "--debug"]),
                    environment: setup.environment.merging(["VMCTL_VIRT_TYPE": "qemu", "VMCTL_TEMPLATES": templates.path, "VMCTL_PROFILE": "1"]) { $1 })
                #expect(created.status == 0, "\(created.standardError)")
                #expect(created.standardOutput == "\(first)\n", "--quiet prints the name only")
                #expect(created.standardError.contains("vmctl profile: create \(first) run="), "\(created.standardError)")
                #expect(created.standardError.contains("libvirt Domain.start() took"), "--debug: \(created.standardError)")
                let xml = try await setup.connection.domain(named: first).xml()
                let definition = try DomainDefinition(xml: xml)
                #expect(definition.type == "qemu" && definition.vcpus == 2)
                #expect(definition.interfaces.map { $0.mac?.description } == [mac] && definition.interfaces.map(\.model) == ["e1000"])
                #expect(definition.disks.first?.backingPath == raw)
                #expect(xml.contains("<description>from a user template</description>"), "VMCTL_TEMPLATES was not used: \(xml)")
                let shown = try setup.vmctl("show", first, "--format", "json")
                struct Shown: Decodable { struct NIC: Decodable { var mac: String? }; var vcpus: Int; var interfaces: [NIC] }
                let view = try JSONDecoder().decode(Shown.self, from: Data(shown.standardOutput.utf8))
                #expect(view.vcpus == 2 && view.interfaces.map(\.mac) == [mac])

                // --virt-type wins over VMCTL_VIRT_TYPE.
                let second = "ido-\(id)-b"
                let overridden = try runVMCtl(setup.createArguments(second, ["--virt-type", "qemu", "--network", "ivn-\(id)"]),
                                              environment: setup.environment.merging(["VMCTL_VIRT_TYPE": "kvm"]) { $1 })
                #expect(overridden.status == 0, "\(overridden.standardError)")
                #expect(try DomainDefinition(xml: try await setup.connection.domain(named: second).xml()).type == "qemu")
                // VMCTL_VIRT_TYPE alone: a kvm domain where libvirt offers kvm. It may not start
                // (nested KVM fails on these machines: QEMU dies setting an MSR), and then the
                // create is undone; a qemu domain would have started.
                let kvmOffered = try await setup.connection.capabilities().contains("<domain type='kvm'")
                let third = "ido-\(id)-k"
                let kvm = try runVMCtl(setup.createArguments(third, ["--network", "ivn-\(id)"]),
                                       environment: setup.environment.merging(["VMCTL_VIRT_TYPE": "kvm"]) { $1 })
                if kvm.status == 0 {
                    #expect(kvmOffered)
                    #expect(try DomainDefinition(xml: try await setup.connection.domain(named: third).xml()).type == "kvm")
                    #expect(try setup.vmctl("destroy", third, "--force").status == 0)
                } else {
                    #expect(kvm.status == 1 && kvm.standardError.contains(kvmOffered ? "starting the domain failed" : "kvm"), "\(kvm.standardError)")
                }
                try await setup.expectNothingLeft(of: third)
                let bad = try runVMCtl(setup.createArguments("ido-\(id)-c", []), environment: setup.environment.merging(["VMCTL_VIRT_TYPE": "xen"]) { $1 })
                #expect(bad.status == 64 && bad.standardError.contains("VMCTL_VIRT_TYPE 'xen'"), "\(bad.standardError)")

                // VMCTL_DEBUG and VMCTL_PROFILE on list.
                let listed = try runVMCtl(["list", "-q"], environment: setup.environment.merging(["VMCTL_DEBUG": "1", "VMCTL_PROFILE": "1"]) { $1 })
                #expect(listed.status == 0 && listed.standardOutput.contains("\(first)\n"))
                #expect(listed.standardError.contains("vmctl profile: list run=") && listed.standardError.contains(" debug "), "\(listed.standardError)")

                // Several names in one destroy.
                let names = [first, second]
                let destroyed = try runVMCtl(["destroy", "--force"] + names, environment: setup.environment.merging(["VMCTL_PROFILE": "1"]) { $1 })
                #expect(destroyed.status == 0, "\(destroyed.standardError)")
                #expect(destroyed.standardOutput.split(separator: "\n").map(String.init).sorted() == names.sorted())
                #expect(destroyed.standardError.contains("vmctl profile: destroy run="), "\(destroyed.standardError)")
                for name in names { try await setup.expectNothingLeft(of: name) }
                #expect(FileManager.default.fileExists(atPath: raw), "the base image is never deleted")

                // A domain vmctl did not create is not vmctl's to destroy.
                let foreign = "ido-\(id)-foreign"
                let domain = try await setup.connection.defineDomain(xml: setup.harness.guestXML(
                    name: foreign, network: "ivn-\(id)", mac: "52:54:00:d1:00:01", console: setup.scratch.appendingPathComponent("foreign.log")))
                let refused = try setup.vmctl("destroy", foreign)
                #expect(refused.status == 1 && refused.standardError.contains("it was not created by vmctl (no vmctl metadata)"), "\(refused.standardError)")
                #expect(try await setup.connection.domains().contains { $0.name == foreign }, "the foreign domain was touched")
                try await domain.undefine()
            }
        }

        @Test("--wait ip that times out: exit 1, the message says so, the VM is kept and running", .timeLimit(.minutes(2)))
        func waitTimesOut() async throws {
            try await Setup.with { setup in
                let name = "idw-\(setup.id)"
                // An e1000 NIC: the busybox guest has no driver for it, so no lease can ever come.
                let created = try setup.vmctl(setup.createArguments(name, ["--network", "ivn-\(setup.id),model=e1000", "--wait", "ip", "--timeout", "3"]))
                #expect(created.status == 1, "\(created.standardError)")
                #expect(created.standardError.contains("VM \(name) does not hold its addresses after 3 s") && created.standardError.contains("the VM is kept"),
                        "\(created.standardError)")
                #expect(created.standardError.split(separator: "\n").count == 1, "\(created.standardError)")
                #expect(try await setup.connection.domain(named: name).isActive())
                #expect(try setup.vmctl("destroy", name, "--force").status == 0)
                try await setup.expectNothingLeft(of: name)
            }
        }

        @Test("network create's --domain, --forward-dev, --gateway6, --no-dns, --autostart; network list; pool create with --exclude and --all-usable; pool list; --state; a pool with no usable address")
        func networkAndPoolOptions() async throws {
            let harness = try Harness.require()
            let id = uniqueSuffix()
            let octet = Int.random(in: 10...250)
            let state = try harness.scratch(id).appendingPathComponent("state.sqlite").path
            let environment = ["VMCTL_CONNECT": harness.uri, "VMCTL_STATE": state]
            func vmctl(_ arguments: String...) throws -> ProcessResult { try runVMCtl(arguments, environment: environment) }
            struct NetworkJSON: Decodable {
                var name: String; var mode: String; var bridge: String; var forwardDevice: String?; var ipv6: String?; var ipv6Addressing: String?
                var domain: String?; var dns: Bool; var autostart: Bool
            }
            let nat = "idn-\(id)", routed = "idr-\(id)"
            defer {
                _ = try? vmctl("network", "destroy", nat)
                _ = try? vmctl("network", "destroy", routed)
            }
            let made = try vmctl("network", "create", nat, "--mode", "nat", "--ipv4", "10.247.\(octet).0/24", "--dhcp4", "10.247.\(octet).100-10.247.\(octet).200",
                                 "--domain", "lab-\(id).test", "--forward-dev", "up\(id)", "--format", "json")
            #expect(made.status == 0, "\(made.standardError)")
            let natJSON = try JSONDecoder().decode(NetworkJSON.self, from: Data(made.standardOutput.utf8))
            #expect(natJSON.domain == "lab-\(id).test" && natJSON.forwardDevice == "up\(id)" && natJSON.dns)
            #expect(try await harness.connect().network(named: nat).xml().contains("<domain name='lab-\(id).test'"))
            let routedMade = try vmctl("network", "create", routed, "--mode", "route", "--ipv6", "fd45:\(octet)::/64", "--gateway6", "fd45:\(octet)::fe",
                                       "--no-dns", "--autostart", "--format", "json")
            #expect(routedMade.status == 0, "\(routedMade.standardError)")
            let routedJSON = try JSONDecoder().decode(NetworkJSON.self, from: Data(routedMade.standardOutput.utf8))
            #expect(routedJSON.ipv6 == "fd45:\(octet)::fe/64" && routedJSON.ipv6Addressing == "slaac" && !routedJSON.dns && routedJSON.autostart)
            #expect(try harness.ip("-6", "addr", "show").standardOutput.contains("fd45:\(octet)::fe/64"), "the gateway is on the bridge")

            let listed = try vmctl("network", "list")
            let rows = listed.standardOutput.split(separator: "\n")
            #expect(rows.first?.hasPrefix("NAME") == true, "\(listed.standardOutput)")
            #expect(rows.contains { $0.hasPrefix(nat + " ") && $0.contains("nat") } && rows.contains { $0.hasPrefix(routed + " ") && $0.contains("route") },
                    "\(listed.standardOutput)")
            #expect(try vmctl("network", "list", "--quiet").standardOutput.split(separator: "\n").contains { $0 == nat })

            // --all-usable: a routed block outside the network's subnet, its network address
            // handed out first; --exclude skips what it names.
            let pool = "idp-\(id)"
            let created = try vmctl("pool", "create", pool, "--network", nat, "--range", "203.0.113.0/29",
                                    "--exclude", "203.0.113.1", "--exclude", "203.0.113.3-203.0.113.4", "--all-usable")
            #expect(created.status == 0, "\(created.standardError)")
            // Addresses outside the network's subnet get a host route to its bridge, so vmctl
            // reserves them where the bridge is (the harness's namespace); from elsewhere it refuses.
            func inNamespace(_ arguments: String...) throws -> ProcessResult { try harness.vmctlInNamespace(arguments, environment: environment) }
            let outside = try vmctl("pool", "reserve", pool, "--mac", "52:54:00:d2:00:01", "--owner", "a")
            #expect(outside.status == 1 && outside.standardError.contains("needs a host route to bridge") && outside.standardError.contains("is not in this network namespace"),
                    "\(outside.standardError)")
            let reserved = try inNamespace("pool", "reserve", pool, "--mac", "52:54:00:d2:00:01", "--owner", "a")
            #expect(reserved.standardOutput == "203.0.113.0\n", "\(reserved.standardError)")
            #expect(try inNamespace("pool", "reserve", pool, "--mac", "52:54:00:d2:00:02", "--owner", "b").standardOutput == "203.0.113.2\n")
            #expect(try inNamespace("pool", "reserve", pool, "--mac", "52:54:00:d2:00:03", "--owner", "c").standardOutput == "203.0.113.5\n")
            let bridge = natJSON.bridge
            let routes = try harness.ip("route", "show", "proto", "118").standardOutput
            #expect(["203.0.113.0", "203.0.113.2", "203.0.113.5"].allSatisfy { routes.contains("\($0) dev \(bridge) ") }, "\(routes)")
            let pools = try vmctl("pool", "list")
            let poolRow = pools.standardOutput.split(separator: "\n").first { $0.hasPrefix(pool + " ") }.map { $0.split(separator: " ").map(String.init) }
            // NAME NETWORK RANGES SIZE USED FREE
            #expect(poolRow.map { Array($0.suffix(3)) } == ["5", "3", "2"], "\(pools.standardOutput)")
            #expect(pools.standardOutput.split(separator: "\n").first?.hasPrefix("NAME") == true)
            // --state names another file: a state with no pools.
            let other = try harness.scratch(id).appendingPathComponent("other.sqlite").path
            let elsewhere = try vmctl("pool", "list", "--state", other, "-q")
            #expect(elsewhere.status == 0 && elsewhere.standardOutput.isEmpty, "\(elsewhere.standardOutput)")
            #expect(try vmctl("pool", "list", "-q").standardOutput == "\(pool)\n")

            let empty = try vmctl("pool", "create", "ide-\(id)", "--network", nat, "--range", "10.247.\(octet).1")
            #expect(empty.status == 64 && empty.standardError.contains("no address is left to hand out"), "\(empty.standardError)")
            #expect(try inNamespace("pool", "destroy", pool, "--force").status == 0)
            #expect(!(try harness.ip("route", "show", "proto", "118").standardOutput.contains(" dev \(bridge) ")), "the routes go with the addresses")
            #expect(try vmctl("network", "destroy", nat).status == 0 && vmctl("network", "destroy", routed).status == 0)
        }
    }
}
