import Foundation
import Provisioning
import Timestamps

/// A result a command prints: JSON from its Encodable model (Provisioning's, or one of the small
/// models below), text and names (for `-q`) built here. The one place where results become text.
protocol Renderable: Encodable {
    /// The human-readable form.
    var text: String { get }
    /// What `-q` prints, one a line.
    var names: [String] { get }
}

enum Output {
    /// Writes `value` to stdout as `options` ask: names with `-q`, else JSON (sorted keys, ISO
    /// 8601 dates, nulls written) or text.
    static func print<Value: Renderable>(_ value: Value, _ options: OutputOptions) throws {
        if options.quiet {
            write(value.names.map { $0 + "\n" }.joined())
        } else {
            write(try render(value, as: options.format))
        }
    }

    static func render<Value: Renderable>(_ value: Value, as format: OutputFormat) throws -> String {
        switch format {
        case .text:
            return value.text
        case .json:
            // JSONEncoder's text (pretty, sorted keys, ISO 8601 dates), by JSONOutput: faster.
            return try JSONOutput.text(of: value) + "\n"
        }
    }

    /// Writes data to stdout.
    static func write(_ text: String) {
        guard !text.isEmpty else { return }
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    /// A message on stderr: `vmctl: TEXT`.
    static func say(_ text: String) {
        FileHandle.standardError.write(Data("vmctl: \(text)\n".utf8))
    }

    /// Columns under upper-case headers, padded to the widest cell.
    static func columns(_ headers: [String], _ rows: [[String]]) -> String {
        let widths = headers.indices.map { column in
            ([headers[column]] + rows.map { $0[column] }).map(\.count).max() ?? 0
        }
        return ([headers] + rows).map { row in
            row.indices.map { column in
                column == row.count - 1 ? row[column] : row[column].padding(toLength: widths[column] + 2, withPad: " ", startingAt: 0)
            }.joined()
        }.joined(separator: "\n") + "\n"
    }

    /// Aligned `key: value` lines.
    static func table(_ rows: [(String, String)]) -> String {
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { key, value in
            key + ":" + String(repeating: " ", count: width - key.count + 2) + value
        }.joined(separator: "\n") + "\n"
    }
}

// MARK: VMs

extension VMView: Renderable {
    var text: String {
        var rows: [(String, String)] = [
            ("name", name), ("uuid", uuid), ("state", state), ("vcpus", "\(vcpus)"), ("memory", "\(memoryMiB) MiB"),
            ("labels", labelText.ifEmpty("-")),
            ("expires", expiresAt.map { UTCTime.iso8601($0) } ?? "-"),
        ]
        if let host { rows.insert(("host", host), at: 1) }
        for (index, interface) in interfaces.enumerated() {
            rows.append(("nic\(index)", "\(interface.network ?? "-") \(interface.mac ?? "-") \(interface.addresses.joined(separator: " "))"))
        }
        for disk in disks {
            let backing: String = disk.backingPath.map { " on \($0)" } ?? ""
            rows.append((disk.target, "\(disk.path ?? "-") \(disk.format ?? "")\(backing)"))
        }
        return Output.table(rows)
    }
    var names: [String] { [name] }
}

extension VMTable: Renderable {
    /// With a HOST column when any VM was placed on a fleet host.
    var text: String {
        let hosts = vms.contains { $0.host != nil }
        return Output.columns((hosts ? ["NAME", "HOST"] : ["NAME"]) + ["STATE", "VCPUS", "MEMORY", "ADDRESSES", "LABELS", "EXPIRES"], vms.map { vm in
            [vm.name] + (hosts ? [vm.host ?? "-"] : []) + [vm.state, "\(vm.vcpus)", "\(vm.memoryMiB)M",
             vm.interfaces.flatMap(\.addresses).joined(separator: ",").ifEmpty("-"),
             vm.labelText.ifEmpty("-"),
             vm.expiresAt.map { UTCTime.iso8601($0) } ?? "-"]
        })
    }
    var names: [String] { vms.map(\.name) }
}

// MARK: Images

extension ImageView: Renderable {
    var text: String {
        Output.table([
            ("name", name), ("format", format), ("size", ByteSize(bytes: size).description),
            ("virtual size", ByteSize(bytes: virtualSize).description), ("sha256", sha256), ("source", source),
            ("user", user ?? "-"), ("volume", "\(pool) \(path)"), ("used by", usedBy.joined(separator: " ").ifEmpty("-")),
        ])
    }
    var names: [String] { [name] }
}

/// `image list`.
struct ImageTable: Renderable {
    var images: [ImageView]
    func encode(to encoder: any Encoder) throws { try images.encode(to: encoder) }
    var text: String {
        Output.columns(["NAME", "FORMAT", "SIZE", "VIRTUAL", "SHA256", "USED BY", "SOURCE"], images.map {
            [$0.name, $0.format, ByteSize(bytes: $0.size).description, ByteSize(bytes: $0.virtualSize).description,
             String($0.sha256.prefix(12)), "\($0.usedBy.count)", $0.source]
        })
    }
    var names: [String] { images.map(\.name) }
}

/// `host list` and `host add`: the hosts, an array in JSON.
struct HostTable: Renderable {
    var hosts: [HostStatus]
    func encode(to encoder: any Encoder) throws { try hosts.encode(to: encoder) }
    var text: String {
        Output.columns(["NAME", "URI", "REACHABLE", "LIBVIRT", "CPUS", "FREE", "VMS", "LABELS"], hosts.map { host in
            [host.name, host.uri, host.reachable ? "yes" : "no: \(host.error ?? "?")", host.libvirtVersion ?? "-",
             host.cpus.map(String.init) ?? "-", host.freeMemoryMiB.map { "\($0)M" } ?? "-", host.vms.map(String.init) ?? "-",
             host.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",").ifEmpty("-")]
        })
    }
    var names: [String] { hosts.map(\.name) }
}

/// `host rm`: the host forgotten.
struct RemovedHost: Renderable {
    var name: String
    var removed = true
    var text: String { "removed host \(name)\n" }
    var names: [String] { [name] }
}

/// Names only, for `list -q` and friends: read with one listing call, no definitions.
struct NameList: Renderable {
    var list: [String]
    func encode(to encoder: any Encoder) throws { try list.encode(to: encoder) }
    var text: String { list.map { $0 + "\n" }.joined() }
    var names: [String] { list }
}

/// What `destroy` did to each target.
struct DestroyResults: Renderable {
    struct Result: Encodable {
        var name: String
        var destroyed: Bool
        /// The failure, or null.
        var error: String?
        /// Volumes kept because something else still uses them.
        var kept: [String]

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(name, forKey: .name)
            try container.encode(destroyed, forKey: .destroyed)
            try container.encode(error, forKey: .error)
            try container.encode(kept, forKey: .kept)
        }
        enum CodingKeys: String, CodingKey { case name, destroyed, error, kept }
    }
    var results: [Result]
    func encode(to encoder: any Encoder) throws { try results.encode(to: encoder) }
    var text: String { names.map { $0 + "\n" }.joined() }
    var names: [String] { results.filter(\.destroyed).map(\.name) }
}

/// What `start`, `stop` and `reboot` did to each VM.
struct PowerResults: Renderable {
    struct Result: Encodable {
        var name: String
        /// "started", "stopped", "rebooted", "already running", "already shut off"; null on failure.
        var result: String?
        /// The failure, or null.
        var error: String?

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(name, forKey: .name)
            try container.encode(result, forKey: .result)
            try container.encode(error, forKey: .error)
        }
        enum CodingKeys: String, CodingKey { case name, result, error }
    }
    var action: String
    var results: [Result]
    func encode(to encoder: any Encoder) throws { try results.encode(to: encoder) }
    var text: String { results.compactMap { result in result.result.map { "\(result.name): \($0)\n" } }.joined() }
    var names: [String] { results.filter { $0.result != nil }.map(\.name) }
}

/// What `wait` saw.
struct WaitResult: Renderable {
    var name: String
    var condition: String
    var text: String { "" }
    var names: [String] { [name] }
}

// MARK: Networks

extension NetworkSummary: Renderable {
    var text: String {
        Output.table([
            ("network", name), ("mode", mode), ("bridge", bridge), ("forward dev", forwardDevice ?? "-"),
            ("ipv4", ipv4 ?? "-"), ("dhcp4", dhcp4 ?? "-"), ("ipv6", ipv6 ?? "-"), ("ipv6 addressing", ipv6Addressing ?? "-"),
            ("domain", domain ?? "-"), ("dns", dns ? "on" : "off"),
            ("active", active.map { $0 ? "yes" : "no" } ?? "-"), ("autostart", autostart.map { $0 ? "yes" : "no" } ?? "-"),
        ])
    }
    var names: [String] { [name] }
}

extension NetworkTable: Renderable {
    var text: String {
        Output.columns(["NAME", "MODE", "BRIDGE", "IPV4", "IPV6", "ACTIVE", "AUTOSTART"], networks.map {
            [$0.name, $0.mode, $0.bridge, $0.ipv4 ?? "-", $0.ipv6 ?? "-", $0.active == true ? "yes" : "no", $0.autostart == true ? "yes" : "no"]
        })
    }
    var names: [String] { networks.map(\.name) }
}

/// A network that was destroyed: nothing is left to describe.
struct DestroyedNetwork: Renderable {
    var name: String
    var destroyed = true
    var text: String { "" }
    var names: [String] { [name] }
}

extension PortForwardView: Renderable {
    var text: String { "\(proto)/\(hostPort) -> \(vm) \(guestAddress):\(guestPort)\n" }
    var names: [String] { ["\(proto)/\(hostPort)"] }
}

/// A port forward that was removed: the same fields, no text.
struct RemovedPortForward: Renderable {
    var forward: PortForwardView
    func encode(to encoder: any Encoder) throws { try forward.encode(to: encoder) }
    var text: String { "" }
    var names: [String] { ["\(forward.proto)/\(forward.hostPort)"] }
}

extension PortForwardTable: Renderable {
    var text: String {
        Output.columns(["NETWORK", "PROTO", "HOST PORT", "VM", "TO"], forwards.map {
            [$0.network, $0.proto, "\($0.hostPort)", $0.vm, "\($0.guestAddress):\($0.guestPort)"]
        })
    }
    var names: [String] { forwards.map { "\($0.proto)/\($0.hostPort)" } }
}

// MARK: Pools

extension PoolSummary: Renderable {
    var text: String {
        var lines = Output.table([
            ("pool", name),
            ("network", network),
            ("ranges", ranges.map(\.description).joined(separator: " ")),
            ("excluded", exclusions.isEmpty ? "-" : exclusions.map(\.description).joined(separator: " ")),
            ("all usable", allUsable ? "yes" : "no"),
            ("size", "\(size)"),
            ("used", "\(used)"),
            ("free", "\(free)"),
        ])
        if let allocations, !allocations.isEmpty {
            lines += "\n" + Output.columns(
                ["ADDRESS", "OWNER", "MAC", "NETWORK"],
                allocations.map { [$0.address.description, $0.owner, $0.mac.description, $0.network] })
        }
        return lines
    }
    var names: [String] { [name] }
}

extension PoolTable: Renderable {
    var text: String {
        Output.columns(
            ["NAME", "NETWORK", "RANGES", "SIZE", "USED", "FREE"],
            pools.map { [$0.name, $0.network, $0.ranges.map(\.description).joined(separator: ","), "\($0.size)", "\($0.used)", "\($0.free)"] })
    }
    var names: [String] { pools.map(\.name) }
}

extension ReservationList: Renderable {
    var text: String { allocations.map { $0.address.description + "\n" }.joined() }
    var names: [String] { allocations.map(\.address.description) }
}

/// An allocation that was released, or a pool that was destroyed: JSON only.
struct Silent<Model: Encodable>: Renderable {
    var model: Model
    var name: String
    func encode(to encoder: any Encoder) throws { try model.encode(to: encoder) }
    var text: String { "" }
    var names: [String] { [name] }
}

// MARK: Doctor and info

extension DoctorReport: Renderable {
    var text: String {
        func on(_ host: String?) -> String { host.map { "host \($0): " } ?? "" }
        var lines = undoneCreates.map { "undone abandonedCreate: \(on($0.host))\($0.message)" }
        lines += repaired.map { "repaired \($0.kind.rawValue): \(on($0.host))\($0.message)" }
        lines += removedFirewallRules.map { "removed strayFirewallRules: \($0.message)" }
        lines += abandonedCreates.map { "abandonedCreate: \(on($0.host))\($0.message)" }
        lines += findings.map { "\($0.kind.rawValue): \(on($0.host))\($0.message)" }
        lines += strayFirewallRules.map { "strayFirewallRules: \($0.message)" }
        lines += unreachableHosts.map { "unreachableHost: \($0); nothing of it was examined, rerun once it answers" }
        if isClean { lines.append("no problems found") }
        return lines.joined(separator: "\n") + "\n"
    }
    var names: [String] {
        abandonedCreates.map(\.name) + findings.map { "\($0.kind.rawValue) \($0.address)" } + strayFirewallRules.map { "strayFirewallRules \($0.bridge)" }
            + unreachableHosts.map { "unreachableHost \($0.split(separator: " ").dropFirst().first ?? "?")" }
    }
}

extension InfoReport: Renderable {
    var text: String {
        Output.table([
            ("uri", uri),
            ("hostname", hostname),
            ("libvirt", libvirtVersion.description),
            ("hypervisor", "\(hypervisor.type) \(hypervisor.version)"),
            ("kvm", kvm ? "yes" : "no"),
            ("domains", "\(domains.total) (\(domains.active) running)"),
            ("networks", "\(networks.total) (\(networks.active) active)"),
            ("storage pools", "\(storagePools.total) (\(storagePools.active) active)"),
        ])
    }
    var names: [String] { [hostname] }
}
