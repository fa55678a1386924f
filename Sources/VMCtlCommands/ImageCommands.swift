public import ArgumentParser
import Foundation
import Provisioning

/// `vmctl image ...`: base images by name.
public struct ImageCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Pull, import, list and remove base images that VMs stand on (vmctl create --image NAME).",
        subcommands: [Pull.self, Import.self, List.self, Remove.self])

    public init() {}

    /// Where images go, and the user catalogue: what every image verb takes.
    struct ImageOptions: ParsableArguments {
        @Option(help: ArgumentHelp("The storage pool new images go to (default vmctl, made if missing).", valueName: "name"))
        var storagePool = VMStorage.defaultName
    }

    /// `vmctl image pull NAME|URL [--sha256 HEX | --checksums URL] [--name NAME]`
    public struct Pull: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            commandName: "pull",
            abstract: "Download an image by catalogue name or URL, check it, and keep it as a read-only base volume.",
            discussion: """
                The checksum is checked before the image can be used: a mismatch deletes the download \
                (exit 1, both sums named). An interrupted download is resumed by the same command. \
                qcow2 stays qcow2, and raw is recognised by its partition table. Names: the built-in \
                catalogue (debian-12, debian-13, ubuntu-22.04, ubuntu-24.04, alma-9) and a user one, \
                --catalogue FILE, else $VMCTL_CATALOGUE, else ~/.config/vmctl/images.yaml. Concurrent \
                pulls of one image download it once.
                """)
        @OptionGroup var global: GlobalOptions
        @OptionGroup var state: StateOptions
        @Argument(help: "A catalogue name or an http(s) URL.") var source: String
        @Option(help: ArgumentHelp("The image's name (default: the catalogue name, or the URL's file name).", valueName: "name")) var name: String?
        @Option(help: ArgumentHelp("The image's SHA-256.", valueName: "hex")) var sha256: String?
        @Option(help: ArgumentHelp("A SHA256SUMS or SHA512SUMS list naming the file.", valueName: "url")) var checksums: String?
        @Option(help: ArgumentHelp("The default login user of VMs made from it (vmctl ssh).", valueName: "name")) var user: String?
        @Option(help: ArgumentHelp("A YAML catalogue of more names: NAME: {url, sha256 or checksums, user}.", valueName: "file"), completion: .file())
        var catalogue: String?
        @OptionGroup var images: ImageOptions
        @OptionGroup var output: OutputOptions
        public init() {}

        public func validate() throws {
            if sha256 != nil && checksums != nil { throw ValidationError("give --sha256 or --checksums, not both") }
            _ = try usage { () throws(ProvisioningError) in try request() }
        }

        private func request() throws(ProvisioningError) -> Images.PullRequest {
            var request = try Images.PullRequest(source: source, name: name, sha256: sha256, checksums: checksums, catalogue: try userCatalogue())
            if let user { request.user = user }
            return request
        }

        /// The built-in catalogue and the user's: --catalogue, $VMCTL_CATALOGUE or the default file if it exists.
        private func userCatalogue() throws(ProvisioningError) -> ImageCatalogue {
            let home = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
            let config = ProcessInfo.processInfo.environment["XDG_CONFIG_HOME"] ?? home + "/.config"
            return try ImageCatalogue.builtIn(adding: optionOrEnvironment(catalogue, "VMCTL_CATALOGUE"), orIfPresent: config + "/vmctl/images.yaml")
        }

        public func run() async throws {
            let request = try request()
            let state = try await state.open()
            let session = try await global.connect()
            let bar = ProgressBar(label: request.name, enabled: !output.quiet && isatty(STDERR_FILENO) == 1)
            let pulled = try await Images(state: state, session: session, storagePool: images.storagePool).pull(request) { done, total in
                bar.update(done, of: total)
            }
            bar.finish()
            if pulled.alreadyPresent { Output.say("image \(request.name) is already here (vmctl image rm \(request.name) to pull it again)") }
            if pulled.resumedAt > 0 { Output.say("resumed the download at byte \(pulled.resumedAt)") }
            try Output.print(pulled.image, output)
        }
    }

    /// `vmctl image import FILE --name NAME`
    public struct Import: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(commandName: "import", abstract: "Keep a local qcow2 or raw image file as a read-only base volume.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var state: StateOptions
        @Argument(help: "The image file.", completion: .file()) var file: String
        @Option(help: ArgumentHelp("The image's name.", valueName: "name")) var name: String
        @Option(help: ArgumentHelp("The default login user of VMs made from it (vmctl ssh).", valueName: "name")) var user: String?
        @OptionGroup var images: ImageOptions
        @OptionGroup var output: OutputOptions
        public init() {}

        public func validate() throws {
            try usage { () throws(ProvisioningError) in try validateImageName(name) }
        }

        public func run() async throws {
            _ = try probeImage(file)  // a bad file is refused before anything is opened
            let state = try await state.open()
            let session = try await global.connect()
            try Output.print(try await Images(state: state, session: session, storagePool: images.storagePool).importFile(file, name: name, user: user), output)
        }
    }

    /// `vmctl image list`
    public struct List: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(commandName: "list", abstract: "List the images.", aliases: ["ls"])
        @OptionGroup var global: GlobalOptions
        @OptionGroup var state: StateOptions
        @OptionGroup var output: OutputOptions
        public init() {}

        public func run() async throws {
            let state = try await state.open()
            let session = try await global.connect()
            try Output.print(ImageTable(images: try await Images(state: state, session: session).list()), output)
        }
    }

    /// `vmctl image rm NAME`
    public struct Remove: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            commandName: "rm",
            abstract: "Delete an image: refused while a VM stands on it, naming the VMs.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var state: StateOptions
        @Argument(help: "The image's name.") var name: String
        @OptionGroup var output: OutputOptions
        public init() {}

        public func run() async throws {
            let state = try await state.open()
            let session = try await global.connect()
            let removed = try await Images(state: state, session: session).remove(name)
            try Output.print(NameList(list: [removed.name]), output)
        }
    }
}

/// A progress line on stderr, redrawn at most ten times a second; nothing when disabled.
final class ProgressBar: @unchecked Sendable {
    private let label: String
    private let enabled: Bool
    private let lock = NSLock()
    private var last = ContinuousClock.now - .seconds(1)
    private let started = ContinuousClock.now
    private var drawn = false

    init(label: String, enabled: Bool) {
        self.label = label
        self.enabled = enabled
    }

    func update(_ done: UInt64, of total: UInt64?) {
        guard enabled else { return }
        lock.lock()
        defer { lock.unlock() }
        let now = ContinuousClock.now
        guard now - last >= .milliseconds(100) || done == total else { return }
        last = now
        let seconds = max(0.001, Double((now - started).components.attoseconds) / 1e18 + Double((now - started).components.seconds))
        let rate = Double(done) / seconds / 1_048_576
        var line = "\r\(label): \(mebibytes(done))"
        if let total, total > 0 {
            let percent = Int(Double(done) / Double(total) * 100)
            let filled = percent / 4
            line += " of \(mebibytes(total)) [\(String(repeating: "#", count: filled))\(String(repeating: " ", count: 25 - filled))] \(percent)%"
        }
        line += String(format: " %.1f MiB/s", rate)
        FileHandle.standardError.write(Data((line + "\u{1b}[K").utf8))
        drawn = true
    }

    func finish() {
        lock.lock()
        defer { lock.unlock() }
        if drawn { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    private func mebibytes(_ bytes: UInt64) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
}
