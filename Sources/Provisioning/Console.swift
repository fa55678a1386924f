public import Foundation
public import Libvirt
import LibvirtXML

extension Session {
    /// What the VM's serial console has written so far: its console volume, read through
    /// libvirt, or the `--console-log` file it was created with (read here when the libvirt host
    /// is this machine).
    public func consoleLog(of name: String) async throws(ProvisioningError) -> Data {
        let domain = try await connection.existingDomain(name)
        let (definition, _) = try await reader.read(domain)
        if let volume = definition.metadata?.volumes.first(where: { $0.role == "console" }) {
            return try await libvirtCall("read the console log of \(name)") { () async throws(LibvirtError) in
                try await connection.storagePool(named: volume.pool).volume(named: volume.name).download()
            }
        }
        if let file = definition.consoleLog {
            guard isLocal(uri), let data = FileManager.default.contents(atPath: file) else {
                throw ProvisioningError(.notFound, "cannot read \(name)'s console log \(file)", hint: "read it on the libvirt host")
            }
            return data
        }
        throw ProvisioningError(.notFound, "VM \(name) has no console log", hint: "vmctl console \(name) shows what it writes from now on")
    }

    /// The VM's serial console, taken over from any other client.
    public func openConsole(of name: String) async throws(ProvisioningError) -> ConsoleConnection {
        let domain = try await connection.existingDomain(name)
        guard try await libvirtCall("read its state", { () async throws(LibvirtError) in try await domain.isActive() }) else {
            throw ProvisioningError(.conflict, "VM \(name) is shut off", hint: "start it with vmctl start \(name); vmctl console \(name) --log shows its last boot")
        }
        let stream = try await libvirtCall("open the console of \(name)") { () async throws(LibvirtError) in try await domain.openConsole() }
        return ConsoleConnection(name: name, stream: stream)
    }
}

/// A VM's serial console: bytes the guest writes, bytes typed to it.
public struct ConsoleConnection: Sendable {
    public let name: String
    let stream: Libvirt.Stream

    /// The next output; empty when the console closed (the VM stopped).
    public func receive() async throws(ProvisioningError) -> Data {
        try await libvirtCall("read \(name)'s console") { () async throws(LibvirtError) in try await stream.receive() }
    }

    public func send(_ data: Data) async throws(ProvisioningError) {
        try await libvirtCall("write to \(name)'s console") { () async throws(LibvirtError) in try await stream.send(data) }
    }

    public func close() async { await stream.abort() }
}
