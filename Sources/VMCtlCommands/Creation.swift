import Addressing
import AllocationStore
import Dispatch
import Foundation
import Libvirt
import LibvirtXML

/// One `vmctl create` as a transaction: checks that change nothing, then a journal entry, then
/// the steps, each recorded so that a failure, a signal or (through the journal and
/// `vmctl doctor --fix`) a SIGKILL undoes everything done so far.
struct Creation {
    let plan: CreatePlan
    let store: AllocationStore
    let connection: Connection
    let templates: Templates
    let progress: Progress

    /// The steps, in order; each name appears in errors and in `VMCTL_TEST_STOP_AFTER`.
    enum Step: String, CaseIterable {
        case journal, rootDisk = "root-disk", dataDisks = "data-disks", addresses, seed, define, start

        var title: String {
            switch self {
            case .journal: "claiming the name"
            case .rootDisk: "creating the root disk"
            case .dataDisks: "creating the data disks"
            case .addresses: "reserving addresses"
            case .seed: "building the cloud-init seed"
            case .define: "defining the domain"
            case .start: "starting the domain"
            }
        }
    }

    func run() async throws(VMCtlError) -> Domain {
        let checked = try await check()
        let journal = Journal(store: store, pending: PendingCreate(name: plan.name, uuid: plan.uuid, process: ProcessTag.current))
        let interrupts = Interrupts()
        interrupts.install()
        defer { interrupts.remove() }
        do {
            try store.begin(journal.pending)
        } catch {
            throw VMCtlError(error.description)
        }
        let steps = Task { () async throws(VMCtlError) -> Domain in
            try await perform(checked, journal: journal)
        }
        interrupts.onSignal = { steps.cancel() }
        let result = await steps.result
        switch result {
        case .success(let domain):
            return domain
        case .failure(let failure):
            let cause = interrupts.received.map { "interrupted by \($0)" } ?? ((failure as? VMCtlError)?.description ?? "\(failure)")
            progress.say("undoing the create of \(plan.name)")
            do {
                try await rollBack(journal.pending, store: store, connection: connection)
            } catch {
                throw VMCtlError("cannot create VM \(plan.name): \(cause); \(error.description)")
            }
            throw VMCtlError("cannot create VM \(plan.name): \(cause)", hint: "nothing was left behind")
        }
    }

    // MARK: Checks (nothing changes)

    /// What the checks found out, used by the steps.
    struct Checked: Sendable {
        var virtType: VirtType
        var image: (path: String, format: String, size: UInt64)?
        var nics: [(spec: NICSpec, mac: MACAddress, pool: Pool?, network: NetworkDefinition)]
        var sshKeys: [String]
        var userData: String?
    }

    private func check() async throws(VMCtlError) -> Checked {
        // The libvirt reads are independent: in flight together while the local files are checked.
        async let exists = outcome { () async throws(VMCtlError) in try await connection.domainIfExists(plan.name) != nil }
        async let type = outcome { () async throws(VMCtlError) in try await virtType() }
        async let survey = outcome { () async throws(VMCtlError) in plan.nics.isEmpty ? Survey() : try await surveyConnection() }
        let local = localChecks()
        if try await exists.get() {
            throw VMCtlError("VM \(plan.name) already exists", hint: "pick another name, or vmctl destroy \(plan.name) first")
        }
        let (image, sshKeys, userData) = try local.get()
        return Checked(virtType: try await type.get(), image: image, nics: try checkNICs(try await survey.get()),
                       sshKeys: sshKeys, userData: userData)
    }

    /// A throwing step as a value, so that it can run in an `async let`.
    private func outcome<T>(_ body: () async throws(VMCtlError) -> T) async -> Result<T, VMCtlError> {
        do { return .success(try await body()) } catch { return .failure(error) }
    }

    /// The image, kernel, initrd, key and user-data files, read on this machine.
    private func localChecks() -> Result<((path: String, format: String, size: UInt64)?, [String], String?), VMCtlError> {
        do throws(VMCtlError) {
            return .success(try readLocalFiles())
        } catch {
            return .failure(error)
        }
    }

    private func readLocalFiles() throws(VMCtlError) -> ((path: String, format: String, size: UInt64)?, [String], String?) {
        var image: (path: String, format: String, size: UInt64)?
        if let path = plan.image {
            let (format, size) = try probeImage(path)
            if let wanted = plan.diskSize, wanted.bytes < size {
                throw VMCtlError("--disk-size \(wanted) is smaller than image \(path) (\(ByteSize(bytes: size)))",
                                 hint: "give at least the image's size, or leave --disk-size out")
            }
            image = (path, format, size)
        }
        for (option, path) in [("--kernel", plan.kernel), ("--initrd", plan.initrd)] {
            if let path, !FileManager.default.isReadableFile(atPath: path) {
                throw VMCtlError("cannot read \(option) \(path)", hint: "give the path of an existing file")
            }
        }
        var sshKeys: [String] = []
        for file in plan.sshKeyFiles {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw VMCtlError("cannot read --ssh-key \(file)", hint: "give a public key file such as ~/.ssh/id_ed25519.pub")
            }
            let keys = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty && !$0.hasPrefix("#") }
            guard !keys.isEmpty, keys.allSatisfy({ $0.hasPrefix("ssh-") || $0.hasPrefix("ecdsa-") || $0.hasPrefix("sk-") }) else {
                throw VMCtlError("--ssh-key \(file) holds no public key", hint: "give the .pub file, not the private key")
            }
            sshKeys += keys
        }
        var userData: String?
        if let file = plan.userDataFile {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw VMCtlError("cannot read --user-data \(file)", hint: "give a readable cloud-init user-data file")
            }
            userData = text
        }
        return (image, sshKeys, userData)
    }

    private func virtType() async throws(VMCtlError) -> VirtType {
        if let chosen = plan.virtType { return chosen }
        do {
            return HostCapabilities(xml: try await connection.capabilities()).defaultDomainType == "kvm" ? .kvm : .qemu
        } catch {
            throw VMCtlError(while: "read the host's capabilities", error)
        }
    }

    /// Networks and pools exist and belong together; every MAC is free on the connection.
    private func checkNICs(_ survey: Survey) throws(VMCtlError) -> [(spec: NICSpec, mac: MACAddress, pool: Pool?, network: NetworkDefinition)] {
        let used = survey.macs
        guard !plan.nics.isEmpty else { return [] }
        let pools: [Pool]
        do { pools = try store.pools() } catch { throw VMCtlError(error.description) }
        var chosen: Set<MACAddress> = []
        var nics: [(spec: NICSpec, mac: MACAddress, pool: Pool?, network: NetworkDefinition)] = []
        for (index, spec) in plan.nics.enumerated() {
            guard let definition = survey.networks[spec.network] else {
                throw VMCtlError("no network named \(spec.network)", hint: "see vmctl network list, or check --connect")
            }
            var pool: Pool?
            if let name = spec.pool {
                guard let found = pools.first(where: { $0.name == name }) else { throw VMCtlError(StoreError.noSuchPool(name).description) }
                guard found.network == spec.network else {
                    throw VMCtlError("pool \(name) hands out addresses on network \(found.network), not \(spec.network)",
                                     hint: "give --network \(found.network),pool=\(name)")
                }
                pool = found
            } else if let address = spec.addresses.first {
                guard let found = pools.first(where: { $0.network == spec.network && $0.layout.allows(address) }) else {
                    throw VMCtlError("address \(address) is in no pool of network \(spec.network)",
                                     hint: "see vmctl pool list, or create a pool holding it")
                }
                pool = found
            }
            let mac: MACAddress
            if let given = spec.mac {
                if let holder = used[given] {
                    throw VMCtlError("MAC \(given) is already used by \(holder)", hint: "give another mac=, or leave it out to derive one")
                }
                guard !chosen.contains(given) else { throw VMCtlError("MAC \(given) is given to two NICs", hint: "give each NIC its own mac=") }
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
            nics.append((spec, mac, pool, definition))
        }
        return nics
    }

    /// What the checks learn from the connection in one pass: every MAC in use, with who holds it
    /// (domains' NICs, DHCP host entries live and persistent, leases), and every network's
    /// definition (live when running), so the NICs need no second read.
    struct Survey: Sendable {
        var macs: [MACAddress: String] = [:]
        var networks: [String: NetworkDefinition] = [:]
    }

    private func surveyConnection() async throws(VMCtlError) -> Survey {
        var survey = Survey()
        for (domain, definition, _) in try await VMReader(connection: connection).readAll() {
            for interface in definition.interfaces { if let mac = interface.mac { survey.macs[mac] = "VM \(domain.name)" } }
        }
        let networks: [Network]
        do { networks = try await connection.networks() } catch { throw VMCtlError(while: "list the networks", error) }
        for network in networks {
            let view = try await Reservations(store: store, connection: connection).views(of: network)
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

    private func perform(_ checked: Checked, journal: Journal) async throws(VMCtlError) -> Domain {
        try await reached(.journal)
        var volumes: [VMMetadata.Volume] = []
        var disks: [[String: String]] = []
        var storage: VMStorage?
        func openStorage() async throws(VMCtlError) -> VMStorage {
            if let storage { return storage }
            let opened = try await VMStorage.open(plan.storagePool, on: connection)
            storage = opened
            return opened
        }

        if plan.hasRootDisk {
            let made = try await step(.rootDisk) { () async throws(VMCtlError) in
                try await makeVolume("\(plan.name)-root.qcow2", role: "root", in: try await openStorage(), journal: journal) { (storage: VMStorage, name: String) async throws(LibvirtError) -> StorageVolume in
                    try await storage.createQcow2(named: name, capacity: plan.diskSize?.bytes,
                                                  backing: checked.image.map { ($0.path, $0.format) })
                }
            }
            volumes.append(made)
            disks.append(["path": made.path, "format": "qcow2", "target": "vda"])
            try await reached(.rootDisk)
        }
        if !plan.dataDisks.isEmpty {
            for (index, size) in plan.dataDisks.enumerated() {
                let made = try await step(.dataDisks) { () async throws(VMCtlError) in
                    try await makeVolume("\(plan.name)-data\(index + 1).qcow2", role: "data", in: try await openStorage(), journal: journal) { (storage: VMStorage, name: String) async throws(LibvirtError) -> StorageVolume in
                        try await storage.createQcow2(named: name, capacity: size.bytes, backing: nil)
                    }
                }
                volumes.append(made)
                disks.append(["path": made.path, "format": "qcow2", "target": diskTarget(disks.count)])
            }
            try await reached(.dataDisks)
        }

        var addresses: [VMMetadata.Address] = []
        var seedNICs: [CloudInitSeed.NIC] = []
        if !checked.nics.isEmpty {
            try await step(.addresses) { () async throws(VMCtlError) in
                let reservations = Reservations(store: store, connection: connection)
                for nic in checked.nics {
                    var reserved: [IPAddress] = []
                    if let pool = nic.pool {
                        let made = try await reservations.reserve(
                            from: pool, mac: nic.mac, owner: plan.name, ownerUUID: plan.uuid, requested: nic.spec.addresses)
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
                                     sshKeys: checked.sshKeys, userData: checked.userData, nics: seedNICs)
            let made = try await step(.seed) { () async throws(VMCtlError) in
                let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-seed-\(plan.uuid.uuidString)")
                defer { try? FileManager.default.removeItem(at: directory) }
                let iso = directory.appendingPathComponent("seed.iso")
                try seed.buildISO(at: iso)
                return try await makeVolume("\(plan.name)-seed.iso", role: "seed", in: try await openStorage(), journal: journal) { (storage: VMStorage, name: String) async throws(LibvirtError) -> StorageVolume in
                    try await storage.createRaw(named: name, from: iso)
                }
            }
            volumes.append(made)
            seedPath = made.path
            try await reached(.seed)
        }

        let metadata = VMMetadata(createdAt: Date(), expiresAt: plan.expiresAt, labels: plan.labels, image: checked.image?.path,
                                  volumes: volumes, addresses: addresses)
        var values: [String: Any] = [
            "type": checked.virtType.rawValue, "name": plan.name, "uuid": plan.uuid.uuidString.lowercased(),
            "metadata": metadata.xml, "memoryMiB": plan.memoryMiB, "vcpus": plan.vcpus, "disks": disks,
            "interfaces": checked.nics.map { ["network": $0.spec.network, "mac": $0.mac.description, "model": $0.spec.model] },
        ]
        if checked.virtType == .kvm { values["hostCPU"] = true }
        if let kernel = plan.kernel { values["kernel"] = kernel }
        if let initrd = plan.initrd { values["initrd"] = initrd }
        if let cmdline = plan.cmdline { values["cmdline"] = cmdline }
        if let seedPath { values["seed"] = ["path": seedPath] }
        if let consoleLog = plan.consoleLog { values["consoleLog"] = consoleLog }
        let xml = try templates.render("domain.xml", values)
        let domain = try await step(.define) { () async throws(VMCtlError) -> Domain in
            do throws(LibvirtError) {
                let domain = try await connection.defineDomain(xml: xml)
                if plan.autostart { try await domain.setAutostart(true) }
                return domain
            } catch {
                throw VMCtlError(error.message)
            }
        }
        try await reached(.define)
        try await step(.start) { () async throws(VMCtlError) in
            do throws(LibvirtError) { try await domain.start() } catch { throw VMCtlError(error.message) }
        }
        try await reached(.start)
        do { try store.end(plan.name) } catch { throw VMCtlError(error.description) }
        return domain
    }

    /// Runs one step, naming it in its error.
    private func step<T>(_ step: Step, _ body: () async throws(VMCtlError) -> T) async throws(VMCtlError) -> T {
        if Task.isCancelled { throw VMCtlError("interrupted") }
        progress.say(step.title)
        do {
            return try await body()
        } catch {
            throw VMCtlError("\(step.title) failed: \(error.description)")
        }
    }

    /// Creates a volume, recording it in the journal first, so that a SIGKILL between libvirt's
    /// work and the record cannot leave a volume nobody knows of.
    private func makeVolume(
        _ name: String, role: String, in storage: VMStorage, journal: Journal,
        _ create: (VMStorage, String) async throws(LibvirtError) -> StorageVolume
    ) async throws(VMCtlError) -> VMMetadata.Volume {
        let reference = "\(storage.pool.name)/\(name)"
        try journal.add(reference)
        do {
            let volume = try await create(storage, name)
            return VMMetadata.Volume(pool: storage.pool.name, name: name, path: try await volume.path(), role: role)
        } catch {
            if error.code == .storageVolumeExists {
                try? journal.remove(reference)  // not ours: never deleted by the undo
                throw VMCtlError("volume \(name) already exists in storage pool \(storage.pool.name)",
                                 hint: "delete it (virsh vol-delete) or pick another VM name")
            }
            throw VMCtlError("volume \(name): \(error.message)")
        }
    }

    /// Test hook: with `VMCTL_TEST_STOP_AFTER=STEP`, stops after that step (until a signal), so
    /// that the tests can interrupt or kill a create at every step.
    private func reached(_ step: Step) async throws(VMCtlError) {
        guard ProcessInfo.processInfo.environment["VMCTL_TEST_STOP_AFTER"] == step.rawValue else { return }
        FileHandle.standardError.write(Data("vmctl: test hook: stopped after \(step.rawValue)\n".utf8))
        do { try await Task.sleep(for: .seconds(600)) } catch { throw VMCtlError("interrupted") }
    }
}

/// `vda`, `vdb`, ... for the disk number `index` (0-based).
func diskTarget(_ index: Int) -> String {
    let letters = Array("abcdefghijklmnopqrstuvwxyz")
    return index < 26 ? "vd\(letters[index])" : "vd\(letters[index / 26 - 1])\(letters[index % 26])"
}

/// The journal of one create, in memory and in the store.
final class Journal: @unchecked Sendable {
    let store: AllocationStore
    private(set) var pending: PendingCreate

    init(store: AllocationStore, pending: PendingCreate) {
        self.store = store
        self.pending = pending
    }

    func add(_ volume: String) throws(VMCtlError) {
        pending.volumes.append(volume)
        do { try store.update(pending) } catch { throw VMCtlError(error.description) }
    }

    func remove(_ volume: String) throws(VMCtlError) {
        pending.volumes.removeAll { $0 == volume }
        do { try store.update(pending) } catch { throw VMCtlError(error.description) }
    }
}

/// SIGINT, SIGTERM and SIGHUP during a create: recorded, and turned into a cancellation so that
/// the create stops at its next step and undoes what it did.
final class Interrupts: @unchecked Sendable {
    private let lock = NSLock()
    private var sources: [any DispatchSourceSignal] = []
    private var _received: String?
    private var _onSignal: (@Sendable () -> Void)?

    var received: String? { lock.withLock { _received } }
    var onSignal: (@Sendable () -> Void)? {
        get { lock.withLock { _onSignal } }
        set {
            let fire = lock.withLock { () -> Bool in
                _onSignal = newValue
                return _received != nil
            }
            if fire { newValue?() }
        }
    }

    func install() {
        for (number, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP")] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [weak self] in
                guard let self else { return }
                let handler = self.lock.withLock { () -> (@Sendable () -> Void)? in
                    if self._received == nil { self._received = name }
                    return self._onSignal
                }
                handler?()
            }
            source.resume()
            sources.append(source)
        }
    }

    func remove() {
        for source in sources { source.cancel() }
        sources.removeAll()
        for number in [SIGINT, SIGTERM, SIGHUP] { signal(number, SIG_DFL) }
    }
}
