public import ArgumentParser
import Addressing
import Foundation
import Libvirt

/// `vmctl create NAME [options]`
public struct Create: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Create and start a VM: disks, addresses, cloud-init seed, all or nothing.",
        discussion: """
            Create is a transaction: if a step fails, or SIGINT, SIGTERM or SIGHUP arrive, the steps \
            already done are undone in reverse order and the error names the step. A create killed \
            outright (SIGKILL) is undone by vmctl doctor --fix.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var state: StateOptions
    @Argument(help: "The VM's name (also its host name).") var name: String

    @Option(help: ArgumentHelp("Base image: the VM's root disk is a qcow2 overlay on it.", valueName: "path")) var image: String?
    @Option(help: ArgumentHelp("Size of the root disk: grows the overlay, or without --image makes a blank one.", valueName: "size"))
    var diskSize: String?
    @Option(name: .customLong("disk"), help: ArgumentHelp("A blank data disk (repeatable).", valueName: "size=SIZE"))
    var dataDisks: [String] = []
    @Option(name: .customLong("network"), help: ArgumentHelp(
        "A NIC on a libvirt network (repeatable); pool= reserves an address of each family the pool holds, ip= exactly that one.",
        valueName: "NET[,pool=POOL][,ip=ADDR][,mac=MAC][,model=MODEL]"))
    var networks: [String] = []
    @Option(name: .customLong("ssh-key"), help: ArgumentHelp("A public key file for cloud-init (repeatable).", valueName: "file"))
    var sshKeys: [String] = []
    @Option(help: ArgumentHelp("cloud-init user-data to use instead of vmctl's minimal #cloud-config.", valueName: "file"))
    var userData: String?
    @Flag(help: "Attach no cloud-init seed.") var noCloudInit = false
    @Option(help: ArgumentHelp("Kernel for direct kernel boot.", valueName: "path")) var kernel: String?
    @Option(help: ArgumentHelp("Initrd for direct kernel boot.", valueName: "path")) var initrd: String?
    @Option(help: ArgumentHelp("Kernel command line for direct kernel boot.", valueName: "text")) var cmdline: String?
    @Option(help: ArgumentHelp("Memory: MiB, or a size such as 2G.", valueName: "size")) var memory = "512M"
    @Option(help: "Virtual CPUs.") var vcpus = 1
    @Option(help: ArgumentHelp("kvm or qemu (software emulation). Default: $VMCTL_VIRT_TYPE, else kvm when libvirt offers it.", valueName: "type"))
    var virtType: VirtType?
    @Flag(help: "Start the VM when libvirtd starts.") var autostart = false
    @Option(name: .customLong("label"), help: ArgumentHelp("A label (repeatable).", valueName: "KEY=VALUE")) var labels: [String] = []
    @Option(help: ArgumentHelp("Record an expiry this long from now (vmctl destroy --expired).", valueName: "duration"))
    var ttl: String?
    @Option(help: "ip: return once the guest holds its addresses; none: once it runs.") var wait: CreateWait = .none
    @Option(help: "Seconds --wait ip waits.") var timeout = 120
    @Option(help: ArgumentHelp("The storage pool for the VM's volumes (default vmctl, made if missing).", valueName: "name"))
    var storagePool = VMStorage.defaultName
    @Option(help: ArgumentHelp("Write the serial console to this file (on the libvirt host).", valueName: "path"))
    var consoleLog: String?
    @Option(help: ArgumentHelp("Directory with domain.xml.mustache.", valueName: "dir")) var templates: String?
    @Option(help: "Output format: text or json.") var format: OutputFormat = .text
    @Flag(name: .shortAndLong, help: "Print only the VM's name.") var quiet = false

    public init() {}

    public func validate() throws {
        try validateObjectName(name, what: "VM")
        _ = try plan()
        if vcpus < 1 { throw ValidationError("invalid --vcpus \(vcpus): give 1 or more") }
        if timeout < 1 { throw ValidationError("invalid --timeout \(timeout): give a number of seconds, 1 or more") }
        if kernel == nil, initrd != nil || cmdline != nil {
            throw ValidationError("--initrd and --cmdline need --kernel")
        }
        if noCloudInit, userData != nil || !sshKeys.isEmpty {
            throw ValidationError("--user-data and --ssh-key need the cloud-init seed: drop --no-cloud-init")
        }
    }

    /// The options as values; a bad one is a usage error that names it.
    func plan() throws(ValidationError) -> CreatePlan {
        do throws(SpecError) {
            let memoryMiB: UInt64 = if let plain = UInt64(memory) { plain } else { try ByteSize(parsing: memory, what: "--memory").mebibytes }
            guard memoryMiB >= 16 else { throw SpecError("invalid --memory '\(memory)': give at least 16 MiB") }
            var labelValues: [String: String] = [:]
            for text in labels {
                let (key, value) = try parseLabel(text)
                labelValues[key] = value
            }
            return CreatePlan(
                name: name, uuid: UUID(), image: image,
                diskSize: try diskSize.map { text throws(SpecError) in try ByteSize(parsing: text, what: "--disk-size") },
                dataDisks: try dataDisks.map { text throws(SpecError) in try DataDiskSpec(parsing: text).size },
                nics: try networks.map { text throws(SpecError) in try NICSpec(parsing: text) },
                sshKeyFiles: sshKeys, userDataFile: userData, cloudInit: !noCloudInit,
                kernel: kernel, initrd: initrd, cmdline: cmdline,
                memoryMiB: memoryMiB, vcpus: vcpus, virtType: virtType ?? optionOrEnvironment(nil, "VMCTL_VIRT_TYPE").flatMap(VirtType.init),
                autostart: autostart, labels: labelValues,
                expiresAt: try ttl.map { text throws(SpecError) in Date().addingTimeInterval(try parseDuration(text)) },
                storagePool: storagePool, consoleLog: consoleLog)
        } catch {
            throw ValidationError(error.description)
        }
    }

    public func run() async throws {
        let profiler = Profiler.current  // starts the clock
        defer { profiler?.report("create \(name)") }
        let plan = try plan()
        let store = try state.open()
        let connection = try await global.connect()
        let progress = Progress(enabled: !quiet)
        let domain = try await Creation(
            plan: plan, store: store, connection: connection, templates: try Templates.locate(templates), progress: progress
        ).run()
        var waitFailure: VMCtlError?
        if wait == .ip {
            progress.say("waiting up to \(timeout) s for \(name)'s addresses")
            do throws(VMCtlError) {
                try await waitForAddresses(of: domain, on: connection, timeout: .seconds(timeout))
            } catch {
                waitFailure = error
            }
        }
        if quiet {
            Output.write(name + "\n")
        } else {
            let reader = VMReader(connection: connection)
            let (definition, state) = try await reader.read(domain)
            let view = VMView(definition: definition, uuid: domain.uuid, state: state,
                              leases: await reader.leases(of: Set(definition.networks)))
            Output.write(try Output.render(view, as: format))
        }
        if let waitFailure { throw waitFailure }
    }
}

/// What `vmctl create` was asked for, checked and parsed.
struct CreatePlan: Sendable {
    var name: String
    var uuid: UUID
    var image: String?
    var diskSize: ByteSize?
    var dataDisks: [ByteSize]
    var nics: [NICSpec]
    var sshKeyFiles: [String]
    var userDataFile: String?
    var cloudInit: Bool
    var kernel: String?
    var initrd: String?
    var cmdline: String?
    var memoryMiB: UInt64
    var vcpus: Int
    /// `nil`: kvm when libvirt offers it, else qemu.
    var virtType: VirtType?
    var autostart: Bool
    var labels: [String: String]
    var expiresAt: Date?
    var storagePool: String
    var consoleLog: String?

    /// Whether the VM gets a root disk.
    var hasRootDisk: Bool { image != nil || diskSize != nil }
}

public enum VirtType: String, ExpressibleByArgument, CaseIterable, Sendable {
    case kvm, qemu
}

public enum CreateWait: String, ExpressibleByArgument, CaseIterable, Sendable {
    case ip, none
}

/// Progress lines on stderr, for a person watching a terminal.
struct Progress: Sendable {
    let enabled: Bool

    init(enabled: Bool) {
        self.enabled = enabled && isatty(STDERR_FILENO) == 1
    }

    func say(_ text: String) {
        guard enabled else { return }
        FileHandle.standardError.write(Data("vmctl: \(text)\n".utf8))
    }
}
