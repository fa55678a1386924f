public import Foundation

/// What a create was asked for, parsed and checked for sense (files and libvirt are looked at
/// only when the create runs).
public struct CreatePlan: Sendable {
    public var name: String
    /// The UUID the domain will get: the owner of its addresses from the moment they are reserved.
    public var uuid: UUID
    public var image: String?
    /// `raw` takes `image` as a raw disk whatever it holds; `qcow2` insists on qcow2; `nil` sniffs.
    public var imageFormat: String?
    public var diskSize: ByteSize?
    public var dataDisks: [ByteSize]
    public var nics: [NICSpec]
    public var sshKeyFiles: [String]
    public var userDataFile: String?
    public var cloudInit: Bool
    public var kernel: String?
    public var initrd: String?
    public var cmdline: String?
    public var memoryMiB: UInt64
    public var vcpus: Int
    /// `nil`: kvm when libvirt offers it on bare metal, else qemu.
    public var virtType: VirtType?
    public var autostart: Bool
    public var labels: [String: String]
    public var expiresAt: Date?
    public var storagePool: String
    public var consoleLog: String?
    /// Append to an existing console log instead of refusing it.
    public var consoleLogAppend: Bool

    public init(name: String, uuid: UUID = UUID(), image: String? = nil, imageFormat: String? = nil, diskSize: ByteSize? = nil, dataDisks: [ByteSize] = [],
                nics: [NICSpec] = [], sshKeyFiles: [String] = [], userDataFile: String? = nil, cloudInit: Bool = true,
                kernel: String? = nil, initrd: String? = nil, cmdline: String? = nil, memoryMiB: UInt64 = 512, vcpus: Int = 1,
                virtType: VirtType? = nil, autostart: Bool = false, labels: [String: String] = [:], expiresAt: Date? = nil,
                storagePool: String = VMStorage.defaultName, consoleLog: String? = nil, consoleLogAppend: Bool = false) {
        self.name = name
        self.uuid = uuid
        self.image = image
        self.imageFormat = imageFormat
        self.diskSize = diskSize
        self.dataDisks = dataDisks
        self.nics = nics
        self.sshKeyFiles = sshKeyFiles
        self.userDataFile = userDataFile
        self.cloudInit = cloudInit
        self.kernel = kernel
        self.initrd = initrd
        self.cmdline = cmdline
        self.memoryMiB = memoryMiB
        self.vcpus = vcpus
        self.virtType = virtType
        self.autostart = autostart
        self.labels = labels
        self.expiresAt = expiresAt
        self.storagePool = storagePool
        self.consoleLog = consoleLog
        self.consoleLogAppend = consoleLogAppend
    }

    /// Whether the VM gets a root disk.
    public var hasRootDisk: Bool { image != nil || diskSize != nil }

    /// The steps a create of this plan goes through, in order.
    public var steps: [Creation.Step] {
        var steps: [Creation.Step] = [.journal]
        if hasRootDisk { steps.append(.rootDisk) }
        if !dataDisks.isEmpty { steps.append(.dataDisks) }
        if !nics.isEmpty { steps.append(.addresses) }
        if cloudInit { steps.append(.seed) }
        return steps + [.define, .start]
    }

    /// Checks that the values make sense together; the error names the bad one.
    public func validate() throws(ProvisioningError) {
        try validateObjectName(name, what: "VM")
        guard memoryMiB >= 16 else { throw .invalid("invalid memory \(memoryMiB) MiB: give at least 16 MiB") }
        guard vcpus >= 1 else { throw .invalid("invalid vCPU count \(vcpus): give 1 or more") }
        if kernel == nil, initrd != nil || cmdline != nil {
            throw .invalid("an initrd or kernel command line needs a kernel")
        }
        if !cloudInit, userDataFile != nil || !sshKeyFiles.isEmpty {
            throw .invalid("user-data and SSH keys need the cloud-init seed")
        }
        for (what, size) in [("disk size ", diskSize)] + dataDisks.map({ ("data disk size=", Optional($0)) }) {
            if let size, size.bytes > ByteSize.qcow2Limit.bytes {
                throw .invalid("invalid \(what)\(size): qcow2 disks hold at most \(ByteSize.qcow2Limit)")
            }
        }
        if let image, image.isEmpty { throw .invalid("invalid image '': give an image's name (vmctl image list) or the path of a qcow2 or raw image") }
        if let imageFormat, !["qcow2", "raw"].contains(imageFormat) {
            throw .invalid("invalid image format '\(imageFormat)': give qcow2 or raw")
        }
        if imageFormat != nil && image == nil { throw .invalid("an image format needs an image") }
        if let consoleLog, !consoleLog.hasPrefix("/") {
            throw .invalid("invalid console log '\(consoleLog)': give an absolute path (libvirt's daemons write it, from their own directory)")
        }
        if consoleLogAppend && consoleLog == nil { throw .invalid("appending to a console log needs a console log") }
        for text in sshKeyFiles + [userDataFile, kernel, initrd].compactMap({ $0 }) where text.isEmpty {
            throw .invalid("invalid path '': give a file")
        }
    }
}

/// The domain type: `kvm`, or `qemu` (TCG, software emulation).
public enum VirtType: String, CaseIterable, Sendable {
    case kvm, qemu
}

/// Names vmctl gives to libvirt objects and pools: nothing a shell or libvirt would mangle.
public func validateObjectName(_ name: String, what: String) throws(ProvisioningError) {
    let allowed = name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    guard !name.isEmpty, name.count <= 64, allowed, name.first!.isLetter || name.first!.isNumber else {
        throw .invalid("invalid \(what) name '\(name)': use up to 64 letters, digits, '-', '_' or '.', starting with a letter or digit")
    }
}
