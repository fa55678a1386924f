import Addressing
import AllocationStore
import Foundation
import LibvirtXML
import Testing
import TestSupport
@testable import Provisioning

@Suite("the create plan, without a daemon")
struct CreatePlanTests {
    static let lan = try! NetworkDefinition(xml: """
        <network><name>lan</name><forward mode='open'/><bridge name='vmbr9'/>
          <ip address='10.40.0.1' prefix='24'><dhcp><range start='10.40.0.200' end='10.40.0.250'/></dhcp></ip></network>
        """)
    static let wan = try! NetworkDefinition(xml: "<network><name>wan</name><forward mode='nat'/><bridge name='vmbr8'/><ip address='10.41.0.1' prefix='24'/></network>")
    static let pools = [
        Pool(name: "p", network: "lan", layout: try! PoolLayout(ranges: [AddressRange("10.40.0.10-10.40.0.20")!],
                                                                  subnets: [(Subnet("10.40.0.0/24")!, IPAddress("10.40.0.1"))]), allUsable: false),
    ]
    static let survey = Creation.Survey(networks: ["lan": lan, "wan": wan])

    func nics(_ specs: [String], name: String = "web1", survey: Creation.Survey = survey) throws(ProvisioningError) -> [Creation.PlannedNIC] {
        var parsed: [NICSpec] = []
        for spec in specs { parsed.append(try NICSpec(parsing: spec)) }
        return try Creation.assignNICs(CreatePlan(name: name, nics: parsed), survey: survey, pools: Self.pools)
    }

    func failure(_ body: () throws -> Void) -> ProvisioningError? {
        do { try body(); return nil } catch { return error as? ProvisioningError }
    }

    @Test("the steps follow the options: only what is asked for, define and start always last")
    func steps() {
        #expect(CreatePlan(name: "a", cloudInit: false).steps == [.journal, .define, .start])
        #expect(CreatePlan(name: "a", image: "/i.qcow2", dataDisks: [ByteSize(bytes: 1 << 30)], nics: [try! NICSpec(parsing: "lan")]).steps
                == [.journal, .rootDisk, .dataDisks, .addresses, .seed, .define, .start])
        #expect(CreatePlan(name: "a", diskSize: ByteSize(bytes: 1 << 30), cloudInit: false).steps == [.journal, .rootDisk, .define, .start])
    }

    @Test("the plan's values are checked together, each failure naming the value")
    func validation() {
        #expect(failure { try CreatePlan(name: "bad name").validate() }?.message.contains("'bad name'") == true)
        #expect(failure { try CreatePlan(name: "a", memoryMiB: 8).validate() }?.message.contains("8 MiB") == true)
        #expect(failure { try CreatePlan(name: "a", vcpus: 0).validate() }?.message.contains("vCPU count 0") == true)
        #expect(failure { try CreatePlan(name: "a", initrd: "/i").validate() }?.code == .invalidValue)
        #expect(failure { try CreatePlan(name: "a", sshKeyFiles: ["k.pub"], cloudInit: false).validate() }?.code == .invalidValue)
        #expect(failure { try CreatePlan(name: "a").validate() } == nil)
    }

    @Test("derived MACs depend on the VM's name and the NIC's index, in 52:54:00, all 24 bits used")
    func derivedMACs() throws {
        let two = try nics(["lan", "wan"])
        #expect(two.map(\.mac) == [MACAddress.derived(from: "web1/0"), MACAddress.derived(from: "web1/1")])
        #expect(two[0].mac != two[1].mac)
        #expect(two.allSatisfy { Array($0.mac.bytes.prefix(3)) == [0x52, 0x54, 0x00] })
        #expect(try nics(["lan"], name: "web2")[0].mac != two[0].mac)
        // Over many names every value of the last byte turns up: no bits masked away.
        let last = Set((0..<5000).map { MACAddress.derived(from: "vm\($0)/0").bytes[5] })
        #expect(last.count == 256)
    }

    @Test("a derived MAC that is in use is passed over for the next candidate")
    func usedMAC() throws {
        var survey = Self.survey
        survey.macs[MACAddress.derived(from: "web1/0")] = "VM other"
        let nic = try nics(["lan"], survey: survey)[0]
        #expect(nic.mac == MACAddress.derived(from: "web1/0/1"))
    }

    @Test("given MACs, pools and addresses are checked against the survey and the pools")
    func checks() {
        var survey = Self.survey
        survey.macs[MACAddress("52:54:00:00:00:09")!] = "VM other"
        #expect(failure { _ = try nics(["lan,mac=52:54:00:00:00:09"], survey: survey) }?.message == "MAC 52:54:00:00:00:09 is already used by VM other")
        #expect(failure { _ = try nics(["lan,mac=52:54:00:00:00:08", "wan,mac=52:54:00:00:00:08"]) }?.message.contains("given to two NICs") == true)
        #expect(failure { _ = try nics(["nowhere"]) }?.code == .notFound)
        #expect(failure { _ = try nics(["wan,pool=p"]) }?.message.contains("pool p hands out addresses on network lan, not wan") == true)
        #expect(failure { _ = try nics(["lan,pool=q"]) }?.code == .notFound)
        #expect(failure { _ = try nics(["lan,ip=10.40.0.99"]) }?.message.contains("address 10.40.0.99 is in no pool of network lan") == true)
        let fixed = try? nics(["lan,ip=10.40.0.12,mac=52:54:00:00:00:07,model=e1000"])
        #expect(fixed?.first?.pool?.name == "p" && fixed?.first?.mac == MACAddress("52:54:00:00:00:07") && fixed?.first?.spec.model == "e1000")
    }

    @Test("the domain written from a plan: vmctl's writer and the shipped template give the same definition")
    func domainTemplates() throws {
        let metadata = VMMetadata(createdAt: Date(timeIntervalSince1970: 1_780_000_000), expiresAt: nil, labels: ["a": "b"],
                                  image: nil, volumes: [], addresses: [])
        let domain = DomainConfiguration(
            type: "qemu", hostCPU: false, name: "web1", uuid: UUID().uuidString.lowercased(), metadata: metadata.xml, memoryMiB: 256,
            vcpus: 1, kernel: "/k", initrd: "/i", cmdline: "console=ttyS0", disks: [.init(path: "/d.qcow2", format: "qcow2", target: "vda")],
            seed: .init(path: "/s.iso"), interfaces: [.init(network: "lan", mac: "52:54:00:00:00:01", model: "virtio")], consoleLog: "/c.log")
        let builtIn = try DomainDefinition(xml: try Templates.builtIn.render(domain))
        let shipped = try DomainDefinition(xml: try Templates.at(shippedTemplates).render(domain))
        #expect(builtIn == shipped)
        #expect(builtIn.metadata == metadata)
    }

    @Test("the cloud-init seed's files, whole")
    func seed() throws {
        let nic = try guestConfiguration(mac: MACAddress("52:54:00:00:00:01")!, addresses: [IPAddress("203.0.113.70")!],
                                         network: Self.wan)
        let seed = CloudInitSeed(instanceID: "web1-0000", hostname: "web1", sshKeys: ["ssh-ed25519 AAAA test@vmctl"],
                                 userData: nil, nics: [nic])
        #expect(goldenMismatch(seed.metaData, golden: "seed-meta-data.yaml") == nil)
        #expect(goldenMismatch(seed.networkConfig, golden: "seed-network-config.yaml") == nil)
    }
}

@Suite("destroy's targets, without a daemon")
struct DestroySelectionTests {
    static func vm(_ name: String, labels: [String: String] = [:], expires: Date? = nil, vmctl: Bool = true) -> (target: String, definition: DomainDefinition) {
        let metadata = vmctl ? VMMetadata(createdAt: Date(timeIntervalSince1970: 0), expiresAt: expires, labels: labels, image: nil,
                                          volumes: [], addresses: []).xml : ""
        let xml = "<domain type='qemu'><name>\(name)</name><uuid>\(UUID().uuidString)</uuid><metadata>\(metadata)</metadata><memory>1024</memory></domain>"
        return (name, try! DomainDefinition(xml: xml))
    }

    static let now = Date(timeIntervalSince1970: 1_000)
    static let all = [vm("a", labels: ["ci": "1"]), vm("b", labels: ["ci": "1", "x": "y"], expires: Date(timeIntervalSince1970: 999)),
                      vm("c", expires: Date(timeIntervalSince1970: 1_001)), vm("foreign", vmctl: false)]

    func select(_ names: [String] = [], labels: [(String, String)] = [], expired: Bool = false, ignoreMissing: Bool = false) -> ([String], [String]) {
        let (targets, missing) = DestroySelection(names: names, labels: labels.map { (key: $0.0, value: $0.1) }, expired: expired,
                                                  ignoreMissing: ignoreMissing).select(from: Self.all, now: Self.now)
        return (targets.map(\.target), missing)
    }

    @Test("names in the order given, each once; missing ones reported unless ignored")
    func names() {
        #expect(select(["c", "a", "c"]).0 == ["c", "a"])
        #expect(select(["a", "nope"]) == (["a"], ["no VM named nope; see vmctl list"]))
        #expect(select(["nope"], ignoreMissing: true) == ([], []))
        // A domain vmctl did not create is taken by name (the destroy then refuses it), never by label.
        #expect(select(["foreign"]).0 == ["foreign"])
    }

    @Test("labels must all match; --expired takes those whose expiry has passed; names and selectors combine without repeats")
    func selectors() {
        #expect(select(labels: [("ci", "1")]).0 == ["a", "b"])
        #expect(select(labels: [("ci", "1"), ("x", "y")]).0 == ["b"])
        #expect(select(labels: [("ci", "2")]).0 == [])
        #expect(select(expired: true).0 == ["b"])
        #expect(select(labels: [("ci", "1")], expired: true).0 == ["b"])
        #expect(select(["b"], labels: [("ci", "1")]).0 == ["b", "a"])
    }
}
