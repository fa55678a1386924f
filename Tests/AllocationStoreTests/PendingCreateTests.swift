import Addressing
import AllocationStore
import Foundation
import Testing

@Suite("Pending creates")
struct PendingCreateTests {
    @Test("a name is claimed once; the journal records volumes, is listed, and ends", arguments: Backend.allCases)
    func journal(_ backend: Backend) throws {
        let store = try makeStore(backend)
        var pending = PendingCreate(name: "web1", uuid: UUID(), process: "boot:123:456")
        try store.begin(pending)
        #expect(throws: StoreError.createInProgress("web1", process: "boot:123:456")) {
            try store.begin(PendingCreate(name: "web1", uuid: UUID(), process: "boot:124:1"))
        }
        #expect("\(StoreError.createInProgress("web1", process: "boot:123:456"))".contains("process 123"))
        pending.volumes = ["vmctl/web1-root.qcow2"]
        try store.update(pending)
        #expect(try store.pendingCreates().map { [$0.name, $0.uuid.uuidString, $0.process, $0.volumes.joined()] }
            == [[pending.name, pending.uuid.uuidString, pending.process, "vmctl/web1-root.qcow2"]])
        try store.end("web1")
        #expect(try store.pendingCreates().isEmpty)
        try store.begin(PendingCreate(name: "web1", uuid: UUID(), process: "boot:125:1"))
    }

    @Test("allocations are found by their owner's UUID", arguments: Backend.allCases)
    func allocationsByOwner(_ backend: Backend) throws {
        let store = try makeStore(backend)
        try store.create(try smallPool())
        let owner = UUID()
        let mine = try store.allocate(from: "public", family: .ipv4, ownerUUID: owner, ownerName: "web1", mac: mac(1))
        _ = try store.allocate(from: "public", family: .ipv4, ownerUUID: UUID(), ownerName: "web2", mac: mac(2))
        _ = try store.allocate(from: "public", family: .ipv4, ownerName: "by-hand", mac: mac(3))
        #expect(try store.allocations(ownedBy: owner).map(\.id) == [mine.id])
    }
}

@Suite("Image records")
struct ImageRecordTests {
    @Test("one record a name; listed by name; removing a missing one says so; kept across opening the file again", arguments: Backend.allCases)
    func records(_ backend: Backend) throws {
        let location = try backend.freshLocation()
        let store = try backend.open(location)
        let image = ImageRecord(name: "debian-12", pool: "vmctl", volume: "debian-12.image.qcow2", path: "/var/lib/libvirt/vmctl/debian-12.image.qcow2",
                                format: "qcow2", size: 400 << 20, virtualSize: 2 << 30, sha256: String(repeating: "a", count: 64),
                                source: "https://images.test/debian-12.qcow2", user: "debian", addedAt: Date(timeIntervalSince1970: 1_800_000_000))
        try store.add(image)
        #expect(throws: StoreError.imageExists("debian-12")) { try store.add(image) }
        var other = image
        other.name = "alpine"
        other.user = nil
        try store.add(other)
        #expect(try store.images().map(\.name) == ["alpine", "debian-12"])
        #expect(try backend.open(location).image(named: "debian-12") == image)
        try store.removeImage(named: "debian-12")
        #expect(try store.image(named: "debian-12") == nil)
        #expect(throws: StoreError.noSuchImage("debian-12")) { try store.removeImage(named: "debian-12") }
    }
}
