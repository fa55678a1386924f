public import Libvirt
public import LibvirtXML

/// Looking objects up by name, where only libvirt's own "no such object" means absent: any other
/// failure (a lost connection, say) is reported as itself, never taken for "gone".
extension Connection {
    /// The network called `name`, or `nil` when libvirt has none.
    public func networkIfExists(_ name: String) async throws(ProvisioningError) -> Network? {
        do {
            return try await network(named: name)
        } catch where error.code == .noNetwork {
            return nil
        } catch {
            throw ProvisioningError(while: "look up network \(name)", error)
        }
    }

    /// The domain called `name`, or `nil` when libvirt has none.
    public func domainIfExists(_ name: String) async throws(ProvisioningError) -> Domain? {
        do {
            return try await domain(named: name)
        } catch where error.code == .noDomain {
            return nil
        } catch {
            throw ProvisioningError(while: "look up VM \(name)", error)
        }
    }

    /// The network called `name`; its absence is an error that says where to look.
    public func existingNetwork(_ name: String) async throws(ProvisioningError) -> Network {
        guard let network = try await networkIfExists(name) else {
            throw ProvisioningError(.notFound, "no network named \(name)", hint: "see vmctl network list, or check the connection URI")
        }
        return network
    }

    /// The domain called `name`; its absence is an error that says where to look.
    public func existingDomain(_ name: String) async throws(ProvisioningError) -> Domain {
        guard let domain = try await domainIfExists(name) else {
            throw ProvisioningError(.notFound, "no VM named \(name)", hint: "see vmctl list")
        }
        return domain
    }
}

/// A libvirt call whose failure is reported as `cannot ACTION: libvirt's words`.
func libvirtCall<T>(_ action: @autoclosure () -> String, _ body: () async throws(LibvirtError) -> T) async throws(ProvisioningError) -> T {
    do { return try await body() } catch { throw ProvisioningError(while: action(), error) }
}

extension Network {
    /// The network's definition, live unless `inactive`.
    public func definition(inactive: Bool = false) async throws(ProvisioningError) -> NetworkDefinition {
        let xml = try await libvirtCall("read network \(name)") { () async throws(LibvirtError) in try await self.xml(inactive: inactive) }
        do { return try NetworkDefinition(xml: xml) } catch {
            throw ProvisioningError(.libvirt, "cannot read network \(name): \(error)", cause: error)
        }
    }
}
