import Foundation
import Libvirt
import Testing
import TestSupport
import Provisioning

extension Integration {
    @Suite("vmctl info")
    struct InfoCommandTests {
        @Test("vmctl info --format json describes the harness's libvirtd")
        func infoJSON() async throws {
            let harness = try Harness.require()
            let result = try runVMCtl(["info", "--format", "json"], environment: ["VMCTL_CONNECT": harness.uri])
            #expect(result.status == 0, "\(result.standardError)")
            #expect(result.standardError.isEmpty, "\(result.standardError)")
            let report = try JSONDecoder().decode(InfoReport.self, from: Data(result.standardOutput.utf8))
            #expect(report.uri == harness.uri)
            #expect(report.hypervisor.type == "QEMU")
            #expect(report.hypervisor.version >= Version(major: 7, minor: 0, release: 0))
            #expect(report.libvirtVersion >= Version(major: 9, minor: 0, release: 0))

            // The counts are libvirt's own.
            let connection = try await harness.connect()
            #expect(report.domains.total == (try await connection.domains().count))
            #expect(report.networks.total == (try await connection.networks().count))
            #expect(report.storagePools.total == (try await connection.storagePools().count))
        }

        @Test("--connect wins over VMCTL_CONNECT")
        func connectOption() throws {
            let harness = try Harness.require()
            let result = try runVMCtl(["info", "--connect", harness.uri, "--format", "json"],
                                      environment: ["VMCTL_CONNECT": "qemu:///system?socket=/nonexistent/sock"])
            #expect(result.status == 0, "\(result.standardError)")
            #expect(result.standardOutput.contains("\"uri\" : \"\(harness.uri)\""))
        }
    }
}
