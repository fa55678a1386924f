public import Addressing
public import AllocationStore
import Dispatch
import Synchronization
import Foundation
public import Libvirt
public import LibvirtXML
public import Logging

/// One `vmctl create` as a transaction: checks that change nothing, then a journal entry, then
/// the steps, each recorded so that a failure, a signal or (through the journal and
/// `vmctl doctor --fix`) a SIGKILL undoes everything done so far.
public struct Creation: Sendable {
    public let plan: CreatePlan
    public let state: State
    public let connection: Connection
    public let templates: Templates
    public let logger: Logger
    /// Where host routes and leases are changed.
    public let host: any HostSide
    /// Called with each step's title as it begins (a terminal shows them).
    public let progress: @Sendable (String) -> Void

    /// Whether the connection's host is this machine: libvirt there reads the files named by
    /// path (kernel, initrd, image). On another host they are uploaded as volumes.
    public let isLocalHost: Bool
    /// The connection's URI, to connect again when the connection is lost during the create:
    /// the undo needs libvirt too.
    public let uri: String?
    /// The fleet host the VM goes on (`create --host`), recorded in the journal, its allocations
    /// and its metadata; nil when the connection was not named as a fleet host.
    public let hostName: String?
    /// The journal entry `create --host auto` already recorded when it placed the VM (the
    /// placement and the claim of the name are one transaction); nil: the create claims the name.
    public let claimed: PendingCreate?

    public init(plan: CreatePlan, state: State, connection: Connection, host: some HostSide, templates: Templates, logger: Logger, isLocalHost: Bool = true,
                uri: String? = nil, hostName: String? = nil, claim: Fleet.Claim? = nil, progress: @escaping @Sendable (String) -> Void = { _ in }) {
        self.isLocalHost = isLocalHost
        self.uri = uri
        self.hostName = hostName
        self.claimed = claim?.entry
        self.host = host
        self.plan = plan
        self.state = state
        self.connection = connection
        self.templates = templates
        self.logger = logger
        self.progress = progress
    }

    /// The steps, in order; each name appears in errors and in `VMCTL_TEST_STOP_AFTER`.
    public enum Step: String, CaseIterable, Sendable {
        case journal, rootDisk = "root-disk", dataDisks = "data-disks", addresses, seed, consoleLog = "console-log", upload, define, start

        public var title: String {
            switch self {
            case .journal: "claiming the name"
            case .rootDisk: "creating the root disk"
            case .dataDisks: "creating the data disks"
            case .addresses: "reserving addresses"
            case .seed: "building the cloud-init seed"
            case .consoleLog: "creating the console log"
            case .upload: "uploading the kernel and initrd"
            case .define: "defining the domain"
            case .start: "starting the domain"
            }
        }
    }

    /// Creates and starts the VM; on failure or a signal, undoes every step done so far.
    public func run() async throws(ProvisioningError) -> Domain {
        let interrupts = Interrupts()
        interrupts.install()
        let result = await outcome { () async throws(ProvisioningError) -> Domain in try await run(interrupts: interrupts) }
        interrupts.remove()
        // A signal whose handler ran after the create had finished (between its last check and
        // the removal of the handlers): the VM is complete, and the signal ends the process now,
        // as it would have without handlers; it is never swallowed into a success.
        if case .success = result, let number = interrupts.receivedNumber { raise(number) }
        return try result.get()
    }

    /// The create, with signals handled by `interrupts`, which the caller installed and keeps
    /// after it (`vmctl run` goes on after the create).
    func run(interrupts: Interrupts) async throws(ProvisioningError) -> Domain {
        let pending: PendingCreate
        let checked: Checked
        if let claimed {
            pending = claimed
            do { checked = try await check() } catch {
                // Nothing was made: the claim goes with the failed check.
                try? await state.run { store throws(StoreError) in try store.end(claimed.name) }
                throw error
            }
        } else {
            try await finishAbandonedCreate()
            checked = try await check()
            pending = Self.journalEntry(plan, host: hostName)
            try await state.run { store throws(StoreError) in try store.begin(pending) }
        }
        let journal = Journal(state: state, pending: pending)
        let steps = Task { () async throws(ProvisioningError) -> Domain in
            try await perform(checked, journal: journal)
        }
        interrupts.onSignal = { steps.cancel() }
        let result = await steps.result
        // A signal counts until this returns, even one that came as the last step ended.
        if case .success(let domain) = result, interrupts.received == nil { return domain }
        let failure: ProvisioningError? = if case .failure(let error) = result { error as? ProvisioningError } else { nil }
        let code: ProvisioningError.Code = interrupts.received != nil ? .interrupted : (failure?.code ?? .libvirt)
        let cause = interrupts.received.map { "interrupted by \($0)" } ?? (failure?.description ?? "unknown failure")
        progress("undoing the create of \(plan.name)")
        do {
            try await rollBack(await journal.pending, state: state, connection: await connectionForUndo(), host: host)
        } catch {
            throw ProvisioningError(.incomplete, "cannot create VM \(plan.name): \(cause); \(error.message)", hint: error.hint, cause: failure)
        }
        throw ProvisioningError(code, "cannot create VM \(plan.name): \(cause)", hint: "nothing was left behind", cause: failure)
    }

    /// The journal entry of a create of `plan` by this process, on `host`.
    public static func journalEntry(_ plan: CreatePlan, host: String?) -> PendingCreate {
        PendingCreate(name: plan.name, uuid: plan.uuid, process: ProcessTag.current, host: host, memory: plan.memoryMiB << 20)
    }

    /// The connection to undo with: this one, or a new one when it was lost (libvirtd
    /// restarted, SSH dropped) and the host answers again.
    private func connectionForUndo() async -> Connection {
        guard let uri, (try? await connection.isAlive()) != true else { return connection }
        progress("the connection to \(uri) was lost: connecting again to undo")
        return (try? await Connection.open(uri)) ?? connection
    }

    /// An earlier create of this name whose process is gone (killed, or its undo could not
    /// reach libvirt) is undone first, as `vmctl doctor --fix` would: rerunning the create
    /// finishes the job.
    private func finishAbandonedCreate() async throws(ProvisioningError) {
        let earlier = try await state.run { store throws(StoreError) in try store.pendingCreates() }.first { $0.name == plan.name }
        guard let earlier, !ProcessTag.isAlive(earlier.process) else { return }
        progress("finishing the undo of an earlier create of \(plan.name)")
        try await rollBack(earlier, state: state, connection: connection, host: host)
    }

    // MARK: Checks (nothing changes)

    /// What the checks found out, used by the steps.
    struct Checked: Sendable {
        var virtType: VirtType
        var image: (path: String, format: String, size: UInt64)?
        /// The image's file, when it must go to the libvirt host (another machine) first.
        var uploadedImage: (file: String, size: UInt64)?
        /// The image's user, recorded for `vmctl ssh`.
        var sshUser: String?
        var nics: [PlannedNIC]
        var sshKeys: [String]
        var userData: String?
    }

    /// A NIC as the checks settled it: its MAC, the pool its addresses come from, its network.
    public struct PlannedNIC: Sendable {
        public var spec: NICSpec
        public var mac: MACAddress
        public var pool: Pool?
        public var network: NetworkDefinition
    }

    private func check() async throws(ProvisioningError) -> Checked {
        // The libvirt reads are independent: in flight together while the local files are checked.
        async let exists = outcome { () async throws(ProvisioningError) in try await connection.domainIfExists(plan.name) != nil }
        async let type = outcome { () async throws(ProvisioningError) in try await virtType() }
        async let survey = outcome { () async throws(ProvisioningError) in plan.nics.isEmpty ? Survey() : try await surveyConnection() }
        async let node = outcome { () async throws(ProvisioningError) in
            try await libvirtCall("read the host's size") { () async throws(LibvirtError) in try await connection.nodeInfo() }
        }
        // An image's name, else its path: a name in vmctl's images comes first.
        let imageRecord: ImageRecord? = if let image = plan.image, !image.contains("/") {
            try await state.run { store throws(StoreError) in try store.image(named: image) }
        } else { nil }
        let local = localChecks(imageRecord)
        if try await exists.get() {
            throw ProvisioningError(.alreadyExists, "VM \(plan.name) already exists", hint: "pick another name, or vmctl destroy \(plan.name) first")
        }
        var (image, sshKeys, userData) = try local.get()
        if let imageRecord { try await requireVolume(of: imageRecord) }
        if plan.cloudInit && plan.sshKeyFiles.isEmpty {
            // Every VM can be reached: the user's default key, else vmctl's own.
            sshKeys = [try await SSHFiles(directory: state.store.localDirectory).defaultKey(home: ProcessInfo.processInfo.environment["HOME"]).publicKey]
        }
        let pools = plan.nics.isEmpty ? [] : try await state.run { store throws(StoreError) in try store.pools() }
        let domainType = try await type.get()
        try await checkHostLimits(domainType, node: try await node.get())
        let uploaded: (file: String, size: UInt64)? = if let image, imageRecord == nil, !isLocalHost {
            (image.path, fileSize(image.path) ?? image.size)
        } else { nil }
        return Checked(virtType: domainType, image: image, uploadedImage: uploaded, sshUser: imageRecord?.user,
                       nics: try Self.assignNICs(plan, survey: try await survey.get(), pools: pools),
                       sshKeys: sshKeys, userData: userData)
    }

    /// A pulled image lives as a volume of the host it was pulled to: this connection's, or no use.
    private func requireVolume(of image: ImageRecord) async throws(ProvisioningError) {
        do {
            _ = try await connection.storagePool(named: image.pool).volume(named: image.volume)
        } catch where error.code == .noStoragePool || error.code == .noStorageVolume {
            throw ProvisioningError(.notFound, "image \(image.name) is not on this libvirt host: no volume \(image.pool)/\(image.volume)",
                                    hint: "pull or import it with this --connect, under another --name")
        } catch {
            throw ProvisioningError(while: "look up the volume of image \(image.name)", error)
        }
    }

    /// Memory within the host's, vCPUs within what the hypervisor allows for the domain type.
    private func checkHostLimits(_ type: VirtType, node: NodeInfo) async throws(ProvisioningError) {
        if plan.memoryMiB > node.memoryKiB / 1024 {
            throw ProvisioningError(.invalidValue, "invalid memory \(ByteSize(bytes: plan.memoryMiB << 20)): the host has \(node.memoryKiB / 1024) MiB",
                                    hint: "give at most the host's memory")
        }
        // Every hypervisor takes one vCPU: the common create needs no second round trip.
        guard plan.vcpus > 1 else { return }
        let maxVCPUs = try await libvirtCall("read the most vCPUs a \(type.rawValue) domain may have") { () async throws(LibvirtError) in
            try await connection.maxVCPUs(type: type.rawValue)
        }
        if plan.vcpus > maxVCPUs {
            throw ProvisioningError(.invalidValue, "invalid vCPU count \(plan.vcpus): \(type.rawValue) domains take at most \(maxVCPUs) here")
        }
    }

    /// A throwing step as a value, so that it can run in an `async let`.
    private func outcome<T>(_ body: () async throws(ProvisioningError) -> T) async -> Result<T, ProvisioningError> {
        do { return .success(try await body()) } catch { return .failure(error) }
    }

    /// The image, kernel, initrd, key and user-data files, read on this machine.
    private func localChecks(_ imageRecord: ImageRecord?) -> Result<((path: String, format: String, size: UInt64)?, [String], String?), ProvisioningError> {
        do throws(ProvisioningError) {
            return .success(try readLocalFiles(imageRecord))
        } catch {
            return .failure(error)
        }
    }

    private func readLocalFiles(_ imageRecord: ImageRecord?) throws(ProvisioningError) -> ((path: String, format: String, size: UInt64)?, [String], String?) {
        var image: (path: String, format: String, size: UInt64)?
        if let imageRecord {
            image = (imageRecord.path, imageRecord.format, imageRecord.virtualSize)
        } else if let path = plan.image {
            if !path.contains("/") && !FileManager.default.fileExists(atPath: path) {
                throw ProvisioningError(.notFound, "no image or file named \(path)",
                                        hint: "see vmctl image list, pull it with vmctl image pull \(path), or give a path")
            }
            let (format, size) = try probeImage(path, format: plan.imageFormat)
            image = (path, format, size)
        }
        if let image, let wanted = plan.diskSize, wanted.bytes < image.size {
            throw ProvisioningError(.conflict, "disk size \(wanted) is smaller than image \(plan.image ?? image.path) (\(ByteSize(bytes: image.size)))",
                                    hint: "give at least the image's size, or none to keep it")
        }
        // The console log is written by libvirt's daemons, as root: never over a file by surprise.
        if let log = plan.consoleLog, isLocalHost, !plan.consoleLogAppend, FileManager.default.fileExists(atPath: log) {
            throw ProvisioningError(.conflict, "console log \(log) exists", hint: "remove it, or append to it")
        }
        for (what, path) in [("kernel", plan.kernel), ("initrd", plan.initrd)] {
            if let path, !FileManager.default.isReadableFile(atPath: path) {
                throw ProvisioningError(.notFound, "cannot read \(what) \(path)", hint: "give the path of an existing file")
            }
        }
        var sshKeys: [String] = []
        for file in plan.sshKeyFiles {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ProvisioningError(.notFound, "cannot read SSH key \(file)", hint: "give a public key file such as ~/.ssh/id_ed25519.pub")
            }
            let keys = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty && !$0.hasPrefix("#") }
            guard !keys.isEmpty, keys.allSatisfy({ $0.hasPrefix("ssh-") || $0.hasPrefix("ecdsa-") || $0.hasPrefix("sk-") }) else {
                throw ProvisioningError(.invalidValue, "SSH key file \(file) holds no public key", hint: "give the .pub file, not the private key")
            }
            sshKeys += keys
        }
        var userData: String?
        if let file = plan.userDataFile {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ProvisioningError(.notFound, "cannot read user-data \(file)", hint: "give a readable cloud-init user-data file")
            }
            userData = text
        }
        return (image, sshKeys, userData)
    }

    private func virtType() async throws(ProvisioningError) -> VirtType {
        if let chosen = plan.virtType { return chosen }
        let capabilities = try await libvirtCall("read the host's capabilities") { () async throws(LibvirtError) in try await connection.capabilities() }
        return HostCapabilities(xml: capabilities).defaultDomainType == "kvm" ? .kvm : .qemu
    }

    /// Settles each NIC: its network and pool exist and belong together, its MAC (given, or
    /// derived from the VM's name and the NIC's index) is free on the connection. Pure.
    public static func assignNICs(_ plan: CreatePlan, survey: Survey, pools: [Pool]) throws(ProvisioningError) -> [PlannedNIC] {
        let used = survey.macs
        guard !plan.nics.isEmpty else { return [] }
        var chosen: Set<MACAddress> = []
        var nics: [PlannedNIC] = []
        for (index, spec) in plan.nics.enumerated() {
            guard let definition = survey.networks[spec.network] else {
                throw ProvisioningError(.notFound, "no network named \(spec.network)", hint: "see vmctl network list, or check the connection URI")
            }
            var pool: Pool?
            if let name = spec.pool {
                guard let found = pools.first(where: { $0.name == name }) else { throw ProvisioningError(StoreError.noSuchPool(name)) }
                guard found.network == spec.network else {
                    throw ProvisioningError(.conflict, "pool \(name) hands out addresses on network \(found.network), not \(spec.network)",
                                            hint: "attach the NIC to \(found.network), or use a pool of \(spec.network)")
                }
                pool = found
            } else if let address = spec.addresses.first {
                guard let found = pools.first(where: { $0.network == spec.network && $0.layout.allows(address) }) else {
                    throw ProvisioningError(.conflict, "address \(address) is in no pool of network \(spec.network)",
                                            hint: "see vmctl pool list, or create a pool holding it")
                }
                pool = found
            }
            let mac: MACAddress
            if let given = spec.mac {
                if let holder = used[given] {
                    throw ProvisioningError(.conflict, "MAC \(given) is already used by \(holder)", hint: "give another mac=, or leave it out to derive one")
                }
                guard !chosen.contains(given) else { throw ProvisioningError(.invalidValue, "MAC \(given) is given to two NICs", hint: "give each NIC its own mac=") }
                mac = given
            } else {
                var attempt = 0
                var candidate = MACAddress.derived(from: "\(plan.name)/\(index)")
                while used[candidate] != nil || chosen.contains(candidate) || plan.nics.contains(where: { $0.mac == candidate }) {
                    attempt += 1
                    candidate = MACAddress.derived(from: "\(plan.name)/\(index)/\(attempt)")
                }
                mac = candidate
            }
            chosen.insert(mac)
            nics.append(PlannedNIC(spec: spec, mac: mac, pool: pool, network: definition))
        }
        return nics
    }

    /// What the checks learn from the connection in one pass: every MAC in use, with who holds it
    /// (domains' NICs, DHCP host entries live and persistent, leases), and every network's
    /// definition (live when running), so the NICs need no second read.
    public struct Survey: Sendable {
        public var macs: [MACAddress: String] = [:]
        public var networks: [String: NetworkDefinition] = [:]
        public init(macs: [MACAddress: String] = [:], networks: [String: NetworkDefinition] = [:]) {
            self.macs = macs
            self.networks = networks
        }
    }

    private func surveyConnection() async throws(ProvisioningError) -> Survey {
        var survey = Survey()
        for (domain, definition) in try await VMReader(connection: connection).readAll() {
            for interface in definition.interfaces { if let mac = interface.mac { survey.macs[mac] = "VM \(domain.name)" } }
        }
        let networks = try await libvirtCall("list the networks") { () async throws(LibvirtError) in try await connection.networks() }
        for network in networks {
            let view = try await Reservations(state: state, connection: connection, host: host).views(of: network)
            survey.networks[network.name] = view.live ?? view.persistent
            for definition in [view.live, view.persistent].compactMap({ $0 }) {
                for host in definition.ips.flatMap(\.hosts) {
                    // IPv6 entries name the NIC by its DUID-LL.
                    for mac in [host.mac, host.id.flatMap(MACAddress.inDUIDLL)].compactMap({ $0 }) where survey.macs[mac] == nil {
                        survey.macs[mac] = "a DHCP host entry on network \(network.name)"
                    }
                }
            }
            if view.live != nil {
                for lease in (try? await network.dhcpLeases()) ?? [] {
                    if let mac = lease.mac.flatMap(MACAddress.init), survey.macs[mac] == nil {
                        survey.macs[mac] = "a DHCP lease on network \(network.name)"
                    }
                }
            }
        }
        return survey
    }

    // MARK: Steps

    private func perform(_ checked: Checked, journal: Journal) async throws(ProvisioningError) -> Domain {
        try await reached(.journal)
        var volumes: [VMMetadata.Volume] = []
        var disks: [DomainConfiguration.Disk] = []
        var storage: VMStorage?
        func openStorage() async throws(ProvisioningError) -> VMStorage {
            if let storage { return storage }
            let opened = try await VMStorage.open(plan.storagePool, on: connection)
            storage = opened
            return opened
        }

        var imagePath = checked.image?.path
        if plan.hasRootDisk {
            let made = try await step(.rootDisk) { () async throws(ProvisioningError) -> [VMMetadata.Volume] in
                let storage = try await openStorage()
                func overlay(on backing: (path: String, format: String)?) async throws(ProvisioningError) -> VMMetadata.Volume {
                    try await makeVolume("\(plan.name)-root.qcow2", role: "root", in: storage, journal: journal) { (storage: VMStorage, name: String) async throws(LibvirtError) -> StorageVolume in
                        try await storage.createQcow2(named: name, capacity: plan.diskSize?.bytes, backing: backing)
                    }
                }
                guard let image = checked.image, let upload = checked.uploadedImage else {
                    return [try await overlay(on: checked.image.map { ($0.path, $0.format) })]
                }
                // Another host: the image goes there as a shared base first (once), and the
                // overlay is made while its lock keeps a destroy from deleting the base.
                let base = SharedBase(sha256: try await digest(of: upload.file, .sha256), format: image.format)
                return try await base.use(file: upload.file, sizes: [upload.size, image.size], in: storage, directory: state.store.localDirectory,
                                          journal: { (reference: String) async throws(ProvisioningError) in try await journal.add(reference) },
                                          progress: progress) { (path: String) async throws(ProvisioningError) -> [VMMetadata.Volume] in
                    [try await overlay(on: (path, image.format)), VMMetadata.Volume(pool: storage.pool.name, name: base.name, path: path, role: "base")]
                }
            }
            volumes += made
            if let base = made.first(where: { $0.role == "base" }) { imagePath = base.path }
            disks.append(.init(path: made[0].path, format: "qcow2", target: "vda"))
            try await reached(.rootDisk)
        }
        if !plan.dataDisks.isEmpty {
            for (index, size) in plan.dataDisks.enumerated() {
                let made = try await step(.dataDisks) { () async throws(ProvisioningError) in
                    try await makeVolume("\(plan.name)-data\(index + 1).qcow2", role: "data", in: try await openStorage(), journal: journal) { (storage: VMStorage, name: String) async throws(LibvirtError) -> StorageVolume in
                        try await storage.createQcow2(named: name, capacity: size.bytes, backing: nil)
                    }
                }
                volumes.append(made)
                disks.append(.init(path: made.path, format: "qcow2", target: diskTarget(disks.count)))
            }
            try await reached(.dataDisks)
        }

        var addresses: [VMMetadata.Address] = []
        var seedNICs: [CloudInitSeed.NIC] = []
        if !checked.nics.isEmpty {
            try await step(.addresses) { () async throws(ProvisioningError) in
                let reservations = Reservations(state: state, connection: connection, host: host)
                for nic in checked.nics {
                    var reserved: [IPAddress] = []
                    if let pool = nic.pool {
                        let made = try await reservations.reserve(
                            from: pool, mac: nic.mac, owner: plan.name, ownerUUID: plan.uuid, requested: nic.spec.addresses, host: hostName)
                        reserved = made.map(\.address)
                        addresses += made.map { VMMetadata.Address(pool: $0.pool, network: $0.network, address: $0.address, mac: $0.mac) }
                    }
                    seedNICs.append(try guestConfiguration(mac: nic.mac, addresses: reserved, network: nic.network))
                }
            }
            try await reached(.addresses)
        }

        var seedPath: String?
        if plan.cloudInit {
            let seed = CloudInitSeed(instanceID: "\(plan.name)-\(plan.uuid.uuidString.lowercased())", hostname: plan.name,
                                     sshKeys: checked.sshKeys, userData: checked.userData, nics: CloudInitSeed.NIC.oneDefaultRoutePerFamily(seedNICs))
            let made = try await step(.seed) { () async throws(ProvisioningError) in
                let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-seed-\(plan.uuid.uuidString)")
                defer { try? FileManager.default.removeItem(at: directory) }
                let iso = directory.appendingPathComponent("seed.iso")
                try await seed.buildISO(at: iso)
                return try await makeVolume("\(plan.name)-seed.iso", role: "seed", in: try await openStorage(), journal: journal) { (storage: VMStorage, name: String) async throws(LibvirtError) -> StorageVolume in
                    try await storage.createRaw(named: name, from: iso)
                }
            }
            volumes.append(made)
            seedPath = made.path
            try await reached(.seed)
        }

        // The serial console goes to a volume of its own unless a file is named: `vmctl console
        // --log` reads it through libvirt, wherever the libvirt host is.
        var consoleLog = plan.consoleLog.map { (path: $0, append: plan.consoleLogAppend) }
        if consoleLog == nil {
            let made = try await step(.consoleLog) { () async throws(ProvisioningError) in
                try await makeVolume("\(plan.name)-console.log", role: "console", in: try await openStorage(), journal: journal) { (storage: VMStorage, name: String) async throws(LibvirtError) -> StorageVolume in
                    try await storage.createEmpty(named: name)
                }
            }
            volumes.append(made)
            consoleLog = (made.path, true)
            try await reached(.consoleLog)
        }

        // Another host boots from its own copies of the kernel and initrd, the VM's volumes.
        var kernel = plan.kernel
        var initrd = plan.initrd
        if !isLocalHost && (kernel != nil || initrd != nil) {
            let made = try await step(.upload) { () async throws(ProvisioningError) -> [VMMetadata.Volume] in
                var made: [VMMetadata.Volume] = []
                for (role, file) in [("kernel", plan.kernel), ("initrd", plan.initrd)] {
                    guard let file else { continue }
                    made.append(try await makeVolume("\(plan.name)-\(role)", role: role, in: try await openStorage(), journal: journal) { (storage: VMStorage, name: String) async throws(LibvirtError) -> StorageVolume in
                        try await storage.createRaw(named: name, from: URL(fileURLWithPath: file))
                    })
                }
                return made
            }
            volumes += made
            kernel = made.first { $0.role == "kernel" }?.path ?? kernel
            initrd = made.first { $0.role == "initrd" }?.path ?? initrd
            try await reached(.upload)
        }

        var metadata = VMMetadata(createdAt: Date(), expiresAt: plan.expiresAt, labels: plan.labels, image: imagePath,
                                  volumes: volumes, addresses: addresses, sshUser: checked.sshUser, host: hostName)
        var configuration = DomainConfiguration(
            type: checked.virtType.rawValue, hostCPU: checked.virtType == .kvm, name: plan.name,
            uuid: plan.uuid.uuidString.lowercased(), metadata: "", memoryMiB: plan.memoryMiB, vcpus: plan.vcpus,
            kernel: kernel, initrd: initrd, cmdline: plan.cmdline, disks: disks,
            seed: seedPath.map { .init(path: $0) },
            interfaces: checked.nics.map { .init(network: $0.spec.network, mac: $0.mac.description, model: $0.spec.model) },
            consoleLog: consoleLog?.path, consoleLogAppend: consoleLog?.append ?? false)
        // `vmctl list` shows the devices from the metadata instead of reading the whole XML;
        // a user's template may write other devices, so then list reads the XML.
        if !templates.writesDomain { metadata.devices = configuration.devices }
        configuration.metadata = metadata.xml
        let xml = try templates.render(configuration)
        let domain = try await step(.define) { () async throws(ProvisioningError) -> Domain in
            try await libvirtCall("define the domain") { () async throws(LibvirtError) -> Domain in
                let domain = try await connection.defineDomain(xml: xml)
                if plan.autostart { try await domain.setAutostart(true) }
                return domain
            }
        }
        try await reached(.define)
        try await step(.start) { () async throws(ProvisioningError) in
            try await libvirtCall("start the domain") { () async throws(LibvirtError) in try await domain.start() }
        }
        try await reached(.start)
        // Cancelled while the domain started (a signal during virDomainCreate): undo it all too.
        if Task.isCancelled { throw ProvisioningError(.interrupted, "interrupted") }
        try await state.run { store throws(StoreError) in try store.end(plan.name) }
        return domain
    }

    /// Runs one step, naming it in its error.
    private func step<T>(_ step: Step, _ body: () async throws(ProvisioningError) -> T) async throws(ProvisioningError) -> T {
        if Task.isCancelled { throw ProvisioningError(.interrupted, "interrupted") }
        progress(step.title)
        logger.debug("create \(plan.name): \(step.title)")
        do {
            return try await body()
        } catch {
            throw error.prefixed("\(step.title) failed")
        }
    }

    /// Creates a volume, recording it in the journal first, so that a SIGKILL between libvirt's
    /// work and the record cannot leave a volume nobody knows of.
    private func makeVolume(
        _ name: String, role: String, in storage: VMStorage, journal: Journal,
        _ create: (VMStorage, String) async throws(LibvirtError) -> StorageVolume
    ) async throws(ProvisioningError) -> VMMetadata.Volume {
        let reference = "\(storage.pool.name)/\(name)"
        try await journal.add(reference)
        do {
            let volume = try await create(storage, name)
            return VMMetadata.Volume(pool: storage.pool.name, name: name, path: try await volume.path(), role: role)
        } catch {
            if error.code == .storageVolumeExists {
                try? await journal.remove(reference)  // not ours: never deleted by the undo
                throw ProvisioningError(.alreadyExists, "volume \(name) already exists in storage pool \(storage.pool.name)",
                                        hint: "delete it (virsh vol-delete) or pick another VM name", cause: error)
            }
            throw ProvisioningError(.libvirt, "volume \(name): \(error.message)", cause: error)
        }
    }

    /// Test hook, in debug builds only: with `VMCTL_TEST_STOP_AFTER=STEP`, stops after that
    /// step (until a signal), so that the tests can interrupt or kill a create at every step.
    private func reached(_ step: Step) async throws(ProvisioningError) {
        #if DEBUG
        guard ProcessInfo.processInfo.environment["VMCTL_TEST_STOP_AFTER"] == step.rawValue else { return }
        FileHandle.standardError.write(Data("vmctl: test hook: stopped after \(step.rawValue)\n".utf8))
        do { try await Task.sleep(for: .seconds(600)) } catch { throw ProvisioningError(.interrupted, "interrupted") }
        #endif
    }
}

/// `vda`, `vdb`, ... for the disk number `index` (0-based).
public func diskTarget(_ index: Int) -> String {
    let letters = Array("abcdefghijklmnopqrstuvwxyz")
    return index < 26 ? "vd\(letters[index])" : "vd\(letters[index / 26 - 1])\(letters[index % 26])"
}

/// The journal of one create, in memory and in the store.
actor Journal {
    let state: State
    private(set) var pending: PendingCreate

    init(state: State, pending: PendingCreate) {
        self.state = state
        self.pending = pending
    }

    func add(_ volume: String) async throws(ProvisioningError) {
        pending.volumes.append(volume)
        try await save()
    }

    func remove(_ volume: String) async throws(ProvisioningError) {
        pending.volumes.removeAll { $0 == volume }
        try await save()
    }

    private func save() async throws(ProvisioningError) {
        let pending = self.pending
        try await state.run { store throws(StoreError) in try store.update(pending) }
    }
}

/// SIGINT, SIGTERM and SIGHUP during a create: recorded, and turned into a cancellation so that
/// the create stops at its next step and undoes what it did. Owned by the creating task.
final class Interrupts {
    /// What the signal handlers (on dispatch threads) and the creating task share.
    private final class Record: Sendable {
        struct Guarded {
            var received: String?
            var onSignal: (@Sendable () -> Void)?
        }
        let state = Mutex(Guarded())
    }
    private let record = Record()
    private var sources: [any DispatchSourceSignal] = []

    var received: String? { record.state.withLock { $0.received } }

    /// The number of the signal received, if one was.
    var receivedNumber: Int32? {
        switch received {
        case "SIGINT": SIGINT
        case "SIGTERM": SIGTERM
        case "SIGHUP": SIGHUP
        default: nil
        }
    }

    /// Called on the first signal; at once if one arrived before it was set.
    var onSignal: (@Sendable () -> Void)? {
        get { record.state.withLock { $0.onSignal } }
        set {
            let fire = record.state.withLock { state -> Bool in
                state.onSignal = newValue
                return state.received != nil
            }
            if fire { newValue?() }
        }
    }

    func install() {
        for (number, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP")] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            let record = self.record
            source.setEventHandler {
                let handler = record.state.withLock { state -> (@Sendable () -> Void)? in
                    if state.received == nil { state.received = name }
                    return state.onSignal
                }
                handler?()
            }
            source.resume()
            sources.append(source)
        }
    }

    func remove() {
        // The default action first: from here a signal ends the process as it would without
        // vmctl's handlers (the other order ignored one that came between the two).
        for number in [SIGINT, SIGTERM, SIGHUP] { signal(number, SIG_DFL) }
        for source in sources { source.cancel() }
        sources.removeAll()
        // A signal that dispatch took in but had not handed to its handler before the cancel
        // is still pending (dispatch blocks the signals it watches): it counts as received.
        var pending = sigset_t()
        sigemptyset(&pending)
        guard sigpending(&pending) == 0 else { return }
        for (number, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP")] where sigismember(&pending, number) == 1 {
            record.state.withLock { state in if state.received == nil { state.received = name } }
        }
    }
}
