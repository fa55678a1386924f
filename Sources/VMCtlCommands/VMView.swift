import Addressing
import Foundation
import Libvirt
import LibvirtXML

/// A VM as `vmctl show`, `list` and `create --format json` print it: the stable JSON contract
/// of docs/cli.md.
struct VMView: Encodable, Equatable, TextRenderable {
    var name: String
    var uuid: String
    /// `running`, `paused`, `shutoff`, `crashed` or `other`.
    var state: String
    var vcpus: Int
    var memoryMiB: UInt64
    var labels: [String: String]
    var expiresAt: Date?
    var interfaces: [InterfaceView]
    var disks: [DiskView]

    struct InterfaceView: Encodable, Equatable {
        var network: String?
        var mac: String?
        /// Reserved addresses first, then those leased, IPv4 before IPv6.
        var addresses: [String]

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(network, forKey: .network)
            try container.encode(mac, forKey: .mac)
            try container.encode(addresses, forKey: .addresses)
        }
        enum CodingKeys: String, CodingKey { case network, mac, addresses }
    }

    struct DiskView: Encodable, Equatable {
        var target: String
        var path: String?
        var format: String?
        var backingPath: String?

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(target, forKey: .target)
            try container.encode(path, forKey: .path)
            try container.encode(format, forKey: .format)
            try container.encode(backingPath, forKey: .backingPath)
        }
        enum CodingKeys: String, CodingKey { case target, path, format, backingPath }
    }

    /// Nulls are written, not left out: the contract names every field.
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(uuid, forKey: .uuid)
        try container.encode(state, forKey: .state)
        try container.encode(vcpus, forKey: .vcpus)
        try container.encode(memoryMiB, forKey: .memoryMiB)
        try container.encode(labels, forKey: .labels)
        try container.encode(expiresAt, forKey: .expiresAt)
        try container.encode(interfaces, forKey: .interfaces)
        try container.encode(disks, forKey: .disks)
    }
    enum CodingKeys: String, CodingKey { case name, uuid, state, vcpus, memoryMiB, labels, expiresAt, interfaces, disks }

    /// Builds the view from the domain's XML, its state and the leases of its networks.
    init(definition: DomainDefinition, uuid: UUID, state: Domain.State, leases: [String: [DHCPLease]]) {
        name = definition.name
        self.uuid = uuid.uuidString.lowercased()
        self.state = Self.name(of: state)
        vcpus = definition.vcpus
        memoryMiB = definition.memoryKiB / 1024
        labels = definition.metadata?.labels ?? [:]
        expiresAt = definition.metadata?.expiresAt
        let reserved = definition.metadata?.addresses ?? []
        interfaces = definition.interfaces.map { interface in
            var addresses = reserved.filter { $0.mac == interface.mac && $0.network == interface.network }.map(\.address)
            if let mac = interface.mac {
                for lease in leases[interface.network ?? ""] ?? [] where lease.belongs(to: mac) {
                    if let address = IPAddress(lease.address), !addresses.contains(address) { addresses.append(address) }
                }
            }
            addresses.sort(by: ipv4First)
            return InterfaceView(network: interface.network, mac: interface.mac?.description, addresses: addresses.map(\.description))
        }
        let image = definition.metadata?.image
        let rootPath = definition.metadata?.volumes.first { $0.role == "root" }?.path
        disks = definition.disks.map { disk in
            DiskView(target: disk.target, path: disk.path, format: disk.format,
                     backingPath: disk.backingPath ?? (disk.path != nil && disk.path == rootPath ? image : nil))
        }
    }

    var labelText: String {
        labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
    }

    static func name(of state: Domain.State) -> String {
        switch state {
        case .running, .blocked, .shuttingDown: "running"
        case .paused, .pmSuspended: "paused"
        case .shutoff: "shutoff"
        case .crashed: "crashed"
        default: "other"
        }
    }

    var text: String {
        var rows: [(String, String)] = [
            ("name", name), ("uuid", uuid), ("state", state), ("vcpus", "\(vcpus)"), ("memory", "\(memoryMiB) MiB"),
            ("labels", labelText.ifEmpty("-")),
            ("expires", expiresAt.map { $0.formatted(.iso8601) } ?? "-"),
        ]
        for (index, interface) in interfaces.enumerated() {
            let addresses: String = interface.addresses.joined(separator: " ")
            rows.append(("nic\(index)", "\(interface.network ?? "-") \(interface.mac ?? "-") \(addresses)"))
        }
        for disk in disks {
            let backing: String = disk.backingPath.map { " on \($0)" } ?? ""
            rows.append((disk.target, "\(disk.path ?? "-") \(disk.format ?? "")\(backing)"))
        }
        return Output.table(rows)
    }
}

/// `vmctl list`: a table in text, an array in JSON.
struct VMTable: Encodable, TextRenderable {
    var vms: [VMView]
    func encode(to encoder: any Encoder) throws { try vms.encode(to: encoder) }
    var text: String {
        Output.columns(["NAME", "STATE", "VCPUS", "MEMORY", "ADDRESSES", "LABELS", "EXPIRES"], vms.map { vm in
            [vm.name, vm.state, "\(vm.vcpus)", "\(vm.memoryMiB)M",
             vm.interfaces.flatMap(\.addresses).joined(separator: ",").ifEmpty("-"),
             vm.labelText.ifEmpty("-"),
             vm.expiresAt.map { $0.formatted(.iso8601) } ?? "-"]
        })
    }
}

extension DHCPLease {
    /// Whether the lease is the NIC's: by MAC, or (DHCPv6) by the NIC's DUID-LL.
    func belongs(to mac: MACAddress) -> Bool {
        if let leaseMAC = self.mac.flatMap(MACAddress.init), leaseMAC == mac { return true }
        return family == .ipv6 && clientID.flatMap(MACAddress.inDUIDLL) == mac
    }
}

/// IPv4 addresses before IPv6 ones, each family in order.
func ipv4First(_ lhs: IPAddress, _ rhs: IPAddress) -> Bool {
    if lhs.family != rhs.family { return lhs.family == .ipv4 }
    return lhs < rhs
}

extension String {
    func ifEmpty(_ replacement: String) -> String { isEmpty ? replacement : self }
}

/// Reads domains and what their views need, with the calls for different domains in flight
/// together on the one connection.
struct VMReader {
    let connection: Connection

    /// One domain's definition and state.
    func read(_ domain: Domain) async throws(VMCtlError) -> (DomainDefinition, Domain.State) {
        do {
            async let xml = domain.xml()
            async let state = domain.state()
            return (try DomainDefinition(xml: try await xml), try await state.state)
        } catch let error as LibvirtError {
            throw VMCtlError(while: "read VM \(domain.name)", error)
        } catch {
            throw VMCtlError("cannot read VM \(domain.name): \(error)")
        }
    }

    /// How many domains `readAll` reads at once.
    static let parallelReads = 8

    /// ``read(_:)`` as a value, for task groups; the state is read only when not already known.
    private func readResult(_ domain: Domain, state: Domain.State?) async -> Result<(DomainDefinition, Domain.State), VMCtlError> {
        do {
            guard let state else { return .success(try await read(domain)) }
            return .success((try DomainDefinition(xml: try await domain.xml()), state))
        } catch let error as LibvirtError {
            return .failure(VMCtlError(while: "read VM \(domain.name)", error))
        } catch let error as VMCtlError {
            return .failure(error)
        } catch {
            return .failure(VMCtlError("cannot read VM \(domain.name): \(error)"))
        }
    }

    /// Every domain's definition and state, in name order. Domains that vanish meanwhile are left out.
    func readAll() async throws(VMCtlError) -> [(Domain, DomainDefinition, Domain.State)] {
        // The states come from four listings (all, running, paused, shut off) instead of one
        // virDomainGetState a domain; only domains in none of those are asked one by one.
        let listings: [[Domain]]
        do {
            async let all = connection.domains()
            async let running = connection.domains(.running)
            async let paused = connection.domains(.paused)
            async let shutoff = connection.domains(.shutoff)
            listings = try await [all, running, paused, shutoff]
        } catch let error as LibvirtError {
            throw VMCtlError(while: "list the VMs", error)
        } catch {
            throw VMCtlError("cannot list the VMs: \(error)")
        }
        let domains = listings[0]
        var known: [UUID: Domain.State] = [:]
        for (listing, state) in zip(listings.dropFirst(), [Domain.State.running, .paused, .shutoff]) {
            for domain in listing { known[domain.uuid] = state }
        }
        // At most `parallelReads` calls in flight: libvirt answers them over one socket, and
        // hundreds at once only queue (measured: 200 domains, 125 ms all at once).
        let results = await withTaskGroup(of: (Int, Result<(DomainDefinition, Domain.State), VMCtlError>).self) { group in
            var results: [Result<(DomainDefinition, Domain.State), VMCtlError>?] = Array(repeating: nil, count: domains.count)
            var next = 0
            func addNext() {
                guard next < domains.count else { return }
                let index = next
                let domain = domains[index]
                let state = known[domain.uuid]
                group.addTask { (index, await readResult(domain, state: state)) }
                next += 1
            }
            for _ in 0..<Self.parallelReads { addNext() }
            for await (index, result) in group {
                results[index] = result
                addNext()
            }
            return results
        }
        var rows: [(Domain, DomainDefinition, Domain.State)] = []
        for (domain, result) in zip(domains, results) {
            switch result {
            case .success(let (definition, state))?:
                rows.append((domain, definition, state))
            case .failure(let error)?:
                // Destroyed between the listing and the read: not an error of the listing.
                if (try? await connection.domain(uuid: domain.uuid)) != nil { throw error }
            case nil:
                throw VMCtlError("cannot read VM \(domain.name): no answer")
            }
        }
        return rows.sorted { $0.0.name < $1.0.name }
    }

    /// The DHCP leases of the named networks that are running (one call per network).
    func leases(of networks: Set<String>) async -> [String: [DHCPLease]] {
        var leases: [String: [DHCPLease]] = [:]
        for name in networks {
            if let network = try? await connection.network(named: name), (try? await network.isActive()) == true {
                leases[name] = (try? await network.dhcpLeases()) ?? []
            }
        }
        return leases
    }
}
