import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
public import Libvirt

/// What `vmctl info` reports. Its JSON form is part of vmctl's documented output (docs/cli.md).
public struct InfoReport: Codable, Sendable, Equatable {
    public var uri: String
    public var hostname: String
    /// libvirt on the daemon side.
    public var libvirtVersion: Version
    /// The hypervisor driver's name (`QEMU`, `TEST`) and the hypervisor's version.
    public var hypervisor: Hypervisor
    /// Whether libvirt offers the `kvm` domain type for the host's architecture, that is, QEMU
    /// can use /dev/kvm there.
    public var kvm: Bool
    public var domains: Count
    public var networks: Count
    public var storagePools: Count

    public struct Hypervisor: Codable, Sendable, Equatable {
        public var type: String
        public var version: Version
    }

    /// How many objects exist, and how many of them are active (running).
    public struct Count: Codable, Sendable, Equatable {
        public var total: Int
        public var active: Int
    }

    /// Asks libvirt for everything the report holds.
    public static func gather(from connection: Connection) async throws(ProvisioningError) -> InfoReport {
        do {
            async let uri = connection.uri()
            async let hostname = connection.hostname()
            async let libvirtVersion = connection.libvirtVersion()
            async let type = connection.hypervisorType()
            async let version = connection.hypervisorVersion()
            async let capabilities = connection.capabilities()
            async let domains = connection.domains()
            async let activeDomains = connection.domains(.active)
            async let networks = connection.networks()
            async let activeNetworks = connection.networks(.active)
            async let pools = connection.storagePools()
            async let activePools = connection.storagePools(.active)
            return InfoReport(
                uri: try await uri,
                hostname: try await hostname,
                libvirtVersion: try await libvirtVersion,
                hypervisor: Hypervisor(type: try await type, version: try await version),
                kvm: HostCapabilities(xml: try await capabilities).offersKVM,
                domains: Count(total: try await domains.count, active: try await activeDomains.count),
                networks: Count(total: try await networks.count, active: try await activeNetworks.count),
                storagePools: Count(total: try await pools.count, active: try await activePools.count))
        } catch let error as LibvirtError {
            throw ProvisioningError(while: "read the host's information", error)
        } catch {
            throw ProvisioningError(.libvirt, "cannot read the host's information: \(error)")
        }
    }
}

/// The parts of libvirt's capabilities XML that vmctl uses.
public struct HostCapabilities: Sendable, Equatable {
    /// The host's architecture (`/capabilities/host/cpu/arch`).
    public var hostArchitecture: String?
    /// The domain types offered for guests of the host's architecture (`qemu`, `kvm`, ...).
    public var domainTypes: Set<String>
    /// Whether the host is itself a virtual machine (its CPU has the `hypervisor` feature), so
    /// that KVM there would be nested.
    public var isVirtualMachine: Bool

    /// Parses `virConnectGetCapabilities` output; anything unreadable reads as "nothing offered".
    public init(xml: String) {
        // FoundationXML accepts some non-XML as a document without a root; XPath on such a
        // document crashes, so walk the elements instead.
        guard let document = try? XMLDocument(xmlString: xml),
              let root = document.rootElement(), root.name == "capabilities"
        else {
            hostArchitecture = nil
            domainTypes = []
            isVirtualMachine = false
            return
        }
        func children(_ element: XMLElement, _ name: String) -> [XMLElement] { element.elements(forName: name) }
        let arch = root.elements(forName: "host").flatMap { children($0, "cpu") }.flatMap { children($0, "arch") }.first?.stringValue
        hostArchitecture = arch
        isVirtualMachine = root.elements(forName: "host").flatMap { children($0, "cpu") }.flatMap { children($0, "feature") }
            .contains { $0.attribute(forName: "name")?.stringValue == "hypervisor" }
        domainTypes = Set(
            root.elements(forName: "guest")
                .flatMap { children($0, "arch") }
                .filter { $0.attribute(forName: "name")?.stringValue == arch }
                .flatMap { children($0, "domain") }
                .compactMap { $0.attribute(forName: "type")?.stringValue })
    }

    /// Whether QEMU can use KVM for guests of the host's architecture.
    public var offersKVM: Bool { domainTypes.contains("kvm") }

    /// The domain type `vmctl create` uses by default: `kvm` where libvirt offers it on bare
    /// metal; `qemu` (TCG) otherwise, and on a host that is itself a VM, where nested KVM may be
    /// offered and still hang at boot (measured on this project's CI machines).
    public var defaultDomainType: String { offersKVM && !isVirtualMachine ? "kvm" : "qemu" }
}
