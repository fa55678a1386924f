import Foundation
import Testing
@testable import Libvirt

@Suite("Storage")
struct StorageTests {
    @Test("a dir pool is defined, built, started; volumes are created, found and deleted")
    func poolAndVolumes() async throws {
        let connection = try await TestDriver.connect()
        let name = TestDriver.uniqueName("pool")
        let pool = try await connection.defineStoragePool(xml: """
            <pool type='dir'><name>\(name)</name><target><path>/nonexistent/\(name)</path></target></pool>
            """)
        try await pool.build()
        try await pool.start()
        #expect(try await pool.isActive())
        #expect(try await pool.info().isRunning)
        #expect(try await connection.storagePool(named: name).uuid == pool.uuid)
        #expect(try await pool.xml().contains("/nonexistent/\(name)"))

        let volume = try await pool.createVolume(xml: """
            <volume><name>disk.qcow2</name><capacity unit='MiB'>16</capacity>
            <target><format type='qcow2'/></target></volume>
            """)
        #expect(volume.name == "disk.qcow2")
        #expect(try await volume.path() == "/nonexistent/\(name)/disk.qcow2")
        #expect(try await volume.info().capacity == 16 << 20)
        #expect(try await pool.volume(named: "disk.qcow2").key == volume.key)
        #expect(try await pool.volumes().map(\.name) == ["disk.qcow2"])
        #expect(try await connection.storageVolume(path: "/nonexistent/\(name)/disk.qcow2").name == "disk.qcow2")

        let duplicate = await #expect(throws: LibvirtError.self) {
            _ = try await pool.createVolume(xml: "<volume><name>disk.qcow2</name><capacity>1</capacity></volume>")
        }
        // The test driver reports OPERATION_FAILED here; the storage driver STORAGE_VOL_EXIST
        // (the integration tests check that one).
        #expect(duplicate?.message.contains("already exists") == true, "\(String(describing: duplicate))")

        try await volume.delete()
        #expect(try await pool.volumes().isEmpty)
        let missing = await #expect(throws: LibvirtError.self) { _ = try await pool.volume(named: "disk.qcow2") }
        #expect(missing?.code == .noStorageVolume)

        try await pool.destroy()
        try await pool.undefine()
        let gone = await #expect(throws: LibvirtError.self) { _ = try await connection.storagePool(named: name) }
        #expect(gone?.code == .noStoragePool)
    }
}
