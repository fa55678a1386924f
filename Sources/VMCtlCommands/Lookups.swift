import Libvirt

/// Looking objects up by name, where only libvirt's own "no such object" means absent: any other
/// failure (a lost connection, say) is reported as itself, never taken for "gone".
extension Connection {
    /// The network called `name`, or `nil` when libvirt has none.
    func networkIfExists(_ name: String) async throws(VMCtlError) -> Network? {
        do {
            return try await network(named: name)
        } catch where error.code == .noNetwork {
            return nil
        } catch {
            throw VMCtlError(while: "look up network \(name)", error)
        }
    }

    /// The domain called `name`, or `nil` when libvirt has none.
    func domainIfExists(_ name: String) async throws(VMCtlError) -> Domain? {
        do {
            return try await domain(named: name)
        } catch where error.code == .noDomain {
            return nil
        } catch {
            throw VMCtlError(while: "look up VM \(name)", error)
        }
    }
}

/// The network called `name`; its absence is an error that says where to look.
func lookUpNetwork(_ name: String, on connection: Connection) async throws(VMCtlError) -> Network {
    guard let network = try await connection.networkIfExists(name) else {
        throw VMCtlError("no network named \(name)", hint: "see vmctl network list, or check --connect")
    }
    return network
}
