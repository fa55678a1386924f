public import ArgumentParser

/// The `vmctl` command: every subcommand lives in this library so that tests can drive it.
public struct VMCtl: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "vmctl",
        abstract: "Provision virtual machines and their networks on a libvirt host.",
        discussion: """
            Exit status: 0 on success, 1 when the operation failed, 64 for a usage error.
            """,
        subcommands: [Create.self, Destroy.self, List.self, Show.self, Wait.self, Info.self, NetworkCommand.self, PoolCommand.self, Doctor.self]
    )

    /// `--connect` given before the subcommand: `vmctl --connect URI info`.
    @OptionGroup var global: GlobalOptions

    public init() {}
}
