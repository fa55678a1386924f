public import ArgumentParser
import Foundation
import Provisioning

/// `vmctl create NAME [options]`
public struct Create: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create and start a VM: disks, addresses, cloud-init seed, all or nothing.",
        discussion: """
            Create is a transaction: if a step fails, or SIGINT, SIGTERM or SIGHUP arrive, the steps \
            already done are undone in reverse order and the error names the step. A create killed \
            outright (SIGKILL) is undone by vmctl doctor --fix.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var state: StateOptions
    @Argument(help: "The VM's name (also its host name).") var name: String

    @OptionGroup var options: CreateOptions
    @Option(help: "ip: return once the guest holds its addresses; ssh: once its SSH server answers; none: once it runs.") var wait: CreateWait = .none
    @Option(help: "Seconds --wait waits.") var timeout = 120
    @OptionGroup var output: OutputOptions

    public init() {}

    public enum CreateWait: String, ExpressibleByArgument, CaseIterable, Sendable {
        case ip, ssh, none
    }

    public func validate() throws {
        _ = try usage { () throws(ProvisioningError) in try options.plan(name: name) }
        if timeout < 1 { throw ValidationError("invalid --timeout \(timeout): give a number of seconds, 1 or more") }
        if wait == .ssh && options.noCloudInit { throw ValidationError("--wait ssh needs cloud-init to install a key: drop --no-cloud-init") }
    }

    public func run() async throws {
        let profiler = Profiler.current  // starts the clock
        defer { profiler?.report("create \(name)") }
        let showProgress = !output.quiet && isatty(STDERR_FILENO) == 1
        let (creation, session) = try await options.creation(name: name, global: global, state: state, showProgress: showProgress)
        let domain = try await creation.run()
        var waitFailure: ProvisioningError?
        if wait != .none {
            if showProgress { Output.say("waiting up to \(timeout) s for \(name)'s \(wait == .ip ? "addresses" : "SSH server")") }
            do throws(ProvisioningError) {
                if wait == .ip {
                    try await session.wait(for: "ip", vm: domain.name, timeout: .seconds(timeout))
                } else {
                    try await session.waitForSSH(domain.name, timeout: .seconds(timeout))
                }
            } catch {
                waitFailure = error
            }
        }
        if output.quiet {
            Output.write(name + "\n")
        } else {
            try Output.print(try await session.reader.view(of: domain), output)
        }
        if let waitFailure { throw waitFailure }
    }
}

/// What a VM is made of: the options `create` and `run` share.
public struct CreateOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Base image, by name (vmctl image list) or path: the VM's root disk is a qcow2 overlay on it.", valueName: "name|path"), completion: .file())
    var image: String?
    @Option(help: ArgumentHelp("qcow2 or raw: take --image as this format (default: qcow2 by its header, raw only if it holds a partition table).",
                               valueName: "format"))
    var imageFormat: String?
    @Option(help: ArgumentHelp("Size of the root disk: grows the overlay, or without --image makes a blank one.", valueName: "size"))
    var diskSize: String?
    @Option(name: .customLong("disk"), help: ArgumentHelp("A blank data disk (repeatable).", valueName: "size=SIZE"))
    var dataDisks: [String] = []
    @Option(name: .customLong("network"), help: ArgumentHelp(
        "A NIC on a libvirt network (repeatable); pool= reserves an address of each family the pool holds, ip= exactly that one.",
        valueName: "NET[,pool=POOL][,ip=ADDR][,mac=MAC][,model=MODEL]"), completion: Complete.network)
    var networks: [String] = []
    @Option(name: .customLong("ssh-key"), help: ArgumentHelp(
        "A public key file for cloud-init (repeatable). Default: ~/.ssh/id_ed25519.pub, else id_rsa.pub, else vmctl's own key beside the state file.",
        valueName: "file"), completion: .file())
    var sshKeys: [String] = []
    @Option(help: ArgumentHelp("cloud-init user-data to use instead of vmctl's minimal #cloud-config.", valueName: "file"), completion: .file())
    var userData: String?
    @Flag(help: "Attach no cloud-init seed.") var noCloudInit = false
    @Option(help: ArgumentHelp("Kernel for direct kernel boot.", valueName: "path"), completion: .file()) var kernel: String?
    @Option(help: ArgumentHelp("Initrd for direct kernel boot.", valueName: "path"), completion: .file()) var initrd: String?
    @Option(help: ArgumentHelp("Kernel command line for direct kernel boot.", valueName: "text")) var cmdline: String?
    @Option(help: ArgumentHelp("Memory: MiB, or a size such as 2G.", valueName: "size")) var memory = "512M"
    @Option(help: "Virtual CPUs.") var vcpus = 1
    @Option(help: ArgumentHelp("kvm or qemu (software emulation). Default: $VMCTL_VIRT_TYPE, else kvm when libvirt offers it.", valueName: "type"))
    var virtType: VirtType?
    @Flag(help: "Start the VM when libvirtd starts.") var autostart = false
    @Option(name: .customLong("label"), help: ArgumentHelp("A label (repeatable).", valueName: "KEY=VALUE")) var labels: [String] = []
    @Option(help: ArgumentHelp("Record an expiry this long from now (vmctl destroy --expired).", valueName: "duration"))
    var ttl: String?
    @Option(help: ArgumentHelp("The storage pool for the VM's volumes (default vmctl, made if missing).", valueName: "name"))
    var storagePool = VMStorage.defaultName
    @Option(help: ArgumentHelp("Write the serial console to this file (on the libvirt host).", valueName: "path"))
    var consoleLog: String?
    @Flag(help: "Append to an existing --console-log file (without it, an existing file is refused).") var consoleLogAppend = false
    @Option(help: ArgumentHelp("Directory with domain.xml.mustache (default: $VMCTL_TEMPLATES, else vmctl's own XML).", valueName: "dir"),
            completion: .directory)
    var templates: String?

    public init() {}

    /// The options as values; a bad one is a usage error that names it.
    func plan(name: String) throws(ProvisioningError) -> CreatePlan {
        let memoryMiB: UInt64 = if let plain = UInt64(memory) { plain } else { try ByteSize(parsing: memory, what: "--memory").mebibytes }
        var labelValues: [String: String] = [:]
        for text in labels {
            let (key, value) = try parseLabel(text)
            labelValues[key] = value
        }
        var rootSize: ByteSize?
        if let diskSize { rootSize = try ByteSize(parsing: diskSize, what: "--disk-size") }
        var dataSizes: [ByteSize] = []
        for text in dataDisks { dataSizes.append(try DataDiskSpec(parsing: text).size) }
        var nics: [NICSpec] = []
        for text in networks { nics.append(try NICSpec(parsing: text)) }
        var expiresAt: Date?
        if let ttl { expiresAt = Date().addingTimeInterval(try parseDuration(ttl)) }
        var chosenType = virtType
        if chosenType == nil { chosenType = try environmentVirtType() }
        let plan = CreatePlan(
            name: name, image: image, imageFormat: imageFormat, diskSize: rootSize, dataDisks: dataSizes, nics: nics,
            sshKeyFiles: sshKeys, userDataFile: userData, cloudInit: !noCloudInit,
            kernel: kernel, initrd: initrd, cmdline: cmdline,
            memoryMiB: memoryMiB, vcpus: vcpus, virtType: chosenType,
            autostart: autostart, labels: labelValues, expiresAt: expiresAt,
            storagePool: storagePool, consoleLog: consoleLog, consoleLogAppend: consoleLogAppend)
        try plan.validate()
        return plan
    }

    /// `VMCTL_VIRT_TYPE`, refused when it is neither type rather than ignored.
    private func environmentVirtType() throws(ProvisioningError) -> VirtType? {
        guard let text = optionOrEnvironment(nil, "VMCTL_VIRT_TYPE") else { return nil }
        guard let type = VirtType(rawValue: text) else {
            throw ProvisioningError(.invalidValue, "invalid VMCTL_VIRT_TYPE '\(text)': use kvm or qemu, or unset it")
        }
        return type
    }

    /// The create transaction for `name` and the session of its host, progress on stderr when
    /// asked. The host: `--host NAME`; `--host auto`, or no connection named while the fleet has
    /// hosts: the one placement chooses (the name claimed with it); else the one connection.
    func creation(name: String, global: GlobalOptions, state stateOptions: StateOptions, showProgress: Bool) async throws -> (Creation, Session) {
        let plan = try plan(name: name)
        let templates = try optionOrEnvironment(self.templates, "VMCTL_TEMPLATES").map(Templates.at) ?? .builtIn
        let state = try await stateOptions.open()
        let session: Session
        var claim: Fleet.Claim?
        if let fleet = try await placementFleet(global: global, state: stateOptions) {
            claim = try await Fleet.place(plan, state: state, among: await global.reachFleet(fleet))
            session = claim!.session
            if showProgress { Output.say("placed on host \(session.hostName ?? "?")") }
        } else {
            session = try await global.connect(stateOptions)
        }
        let creation = Creation(plan: plan, state: state, connection: session.connection, host: session.host, templates: templates, logger: session.logger,
                                isLocalHost: isLocal(session.uri), uri: session.uri, hostName: session.hostName, claim: claim) { step in
            if showProgress { Output.say(step) }
        }
        return (creation, session)
    }

    /// The fleet to place the VM in, or nil when it goes on one named connection.
    private func placementFleet(global: GlobalOptions, state: StateOptions) async throws(ProvisioningError) -> Fleet? {
        guard global.placesAutomatically else { return try await global.fleet(state) }
        let fleet = try await state.fleetIfAny(logger: global.logger)
        guard !fleet.hosts.isEmpty else {
            throw ProvisioningError(.notFound, "--host auto places the VM on a host of the fleet, and the store has none", hint: "add them with vmctl host add NAME URI")
        }
        return fleet
    }
}
