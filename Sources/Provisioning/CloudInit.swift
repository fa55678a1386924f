import Addressing
import Foundation
import HostFirewall
import LibvirtXML
import Yams

/// A cloud-init NoCloud seed: `meta-data`, `user-data` and `network-config` (version 2) on an
/// ISO 9660 volume labelled `cidata`, built with genisoimage or xorriso as virt-install does.
struct CloudInitSeed: Equatable, Sendable {
    var instanceID: String
    var hostname: String
    var sshKeys: [String]
    /// `--user-data FILE`'s contents, else a minimal `#cloud-config`.
    var userData: String?
    var nics: [NIC]

    /// What the guest must configure on one NIC (matched by MAC).
    struct NIC: Equatable, Sendable {
        var mac: MACAddress
        var dhcp4: Bool
        var dhcp6: Bool
        /// Addresses to configure statically, with their prefix.
        var addresses: [(address: IPAddress, prefix: Int)]
        /// Default routes: the gateway and whether it is on-link (outside the address's prefix).
        var routes: [(via: IPAddress, onLink: Bool)]

        static func == (lhs: NIC, rhs: NIC) -> Bool {
            lhs.mac == rhs.mac && lhs.dhcp4 == rhs.dhcp4 && lhs.dhcp6 == rhs.dhcp6
                && lhs.addresses.map { "\($0.address)/\($0.prefix)" } == rhs.addresses.map { "\($0.address)/\($0.prefix)" }
                && lhs.routes.map { "\($0.via) \($0.onLink)" } == rhs.routes.map { "\($0.via) \($0.onLink)" }
        }
    }

    var metaData: String {
        var lines = ["instance-id: \(quoted(instanceID))", "local-hostname: \(quoted(hostname))"]
        if !sshKeys.isEmpty {
            lines.append("public-keys:")
            lines += sshKeys.map { "  - \(quoted($0))" }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    var userDataText: String {
        userData ?? "#cloud-config\n"
    }

    /// Network configuration version 2, without the top-level `network:` key (NoCloud's form).
    var networkConfig: String {
        struct Config: Encodable {
            var version = 2
            var ethernets: [String: Ethernet]
        }
        struct Ethernet: Encodable {
            struct Match: Encodable { var macaddress: String }
            struct Route: Encodable {
                var to: String
                var via: String
                var onLink: Bool?
                enum CodingKeys: String, CodingKey { case to, via, onLink = "on-link" }
            }
            var match: Match
            var dhcp4: Bool
            var dhcp6: Bool
            var addresses: [String]?
            var routes: [Route]?
        }
        var ethernets: [String: Ethernet] = [:]
        for (index, nic) in nics.enumerated() {
            ethernets["nic\(index)"] = Ethernet(
                match: .init(macaddress: nic.mac.description), dhcp4: nic.dhcp4, dhcp6: nic.dhcp6,
                addresses: nic.addresses.isEmpty ? nil : nic.addresses.map { "\($0.address)/\($0.prefix)" },
                routes: nic.routes.isEmpty ? nil : nic.routes.map {
                    .init(to: $0.via.family == .ipv4 ? "0.0.0.0/0" : "::/0", via: $0.via.description, onLink: $0.onLink ? true : nil)
                })
        }
        let encoder = YAMLEncoder()
        encoder.options.sortKeys = true
        return (try? encoder.encode(Config(ethernets: ethernets))) ?? ""
    }

    /// Writes the three files and builds the ISO at `iso`.
    func buildISO(at iso: URL) async throws(ProvisioningError) {
        let directory = iso.deletingLastPathComponent().appendingPathComponent("cidata")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try Data(metaData.utf8).write(to: directory.appendingPathComponent("meta-data"))
            try Data(userDataText.utf8).write(to: directory.appendingPathComponent("user-data"))
            try Data(networkConfig.utf8).write(to: directory.appendingPathComponent("network-config"))
        } catch {
            throw ProvisioningError(.file, "cannot write the cloud-init files in \(directory.path): \(error.localizedDescription)")
        }
        // genisoimage when installed: 7 ms here against xorriso's 105 ms for the same three files.
        let options = ["-quiet", "-output", iso.path, "-volid", "cidata", "-joliet", "-rock", directory.path]
        let genisoimage = SystemTool("genisoimage")
        do {
            if genisoimage.isInstalled {
                try await genisoimage.run(options)
            } else {
                try await SystemTool("xorriso").run(["-as", "mkisofs"] + options)
            }
        } catch {
            throw ProvisioningError(.tool, error.description, cause: error)
        }
    }
}

/// What a NIC's addresses need from the guest: DHCP where the network serves it, else static
/// configuration (an address outside every subnet of the network, as in a routed `--all-usable`
/// pool, gets a /32 or /128 and an on-link default route through the network's own address).
func guestConfiguration(mac: MACAddress, addresses: [IPAddress], network: NetworkDefinition) throws(ProvisioningError) -> CloudInitSeed.NIC {
    var nic = CloudInitSeed.NIC(
        mac: mac,
        dhcp4: network.ips.contains { $0.address.family == .ipv4 && $0.hasDHCP },
        dhcp6: network.ips.contains { $0.address.family == .ipv6 && $0.hasDHCP },
        addresses: [], routes: [])
    for address in addresses {
        if let ip = network.ipElement(containing: address) {
            if ip.hasDHCP { continue }
            nic.addresses.append((address, ip.subnet.prefix))
            nic.routes.append((ip.address, false))
        } else {
            guard let gateway = network.ips.first(where: { $0.address.family == address.family })?.address else {
                throw ProvisioningError(.conflict, "cannot configure \(address) on network \(network.name): the network has no \(address.family) address to route it through",
                                 hint: "give the network an \(address.family) address, or use a pool inside its subnet")
            }
            nic.addresses.append((address, address.family == .ipv4 ? 32 : 128))
            nic.routes.append((gateway, true))
        }
    }
    return nic
}

/// A YAML double-quoted scalar.
private func quoted(_ text: String) -> String {
    var result = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": result += "\\\""
        case "\\": result += "\\\\"
        case "\n": result += "\\n"
        default:
            if scalar.value < 0x20 { result += String(format: "\\x%02x", scalar.value) } else { result.unicodeScalars.append(scalar) }
        }
    }
    return result + "\""
}
