public import ArgumentParser
import BuildInfo
import Foundation
import Provisioning

/// The `vmctl` command: every subcommand lives in this library so that tests can drive it.
public struct VMCtl: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "vmctl",
        abstract: "Provision virtual machines and their networks on a libvirt host.",
        discussion: """
            Exit status: 0 on success, 1 when the operation failed, 64 for a usage error.
            """,
        version: vmctlVersion,
        subcommands: [Create.self, Run.self, Destroy.self, List.self, Show.self, Start.self, Stop.self, Reboot.self, SSH.self, Exec.self, Console.self,
                      Wait.self, ImageCommand.self, Info.self, NetworkCommand.self, PoolCommand.self, HostCommand.self, Doctor.self]
    )

    /// `--connect` given before the subcommand: `vmctl --connect URI info`.
    @OptionGroup var global: GlobalOptions

    public init() {}

    /// Parses, runs, and reports a failure as one line on stderr: exit status 64 for a usage
    /// error (a bad value, whoever found it), 1 for any other failure.
    public static func main() async {
        let command: any ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            fail(with: error)
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                var syncCommand = command
                try syncCommand.run()
            }
        } catch {
            fail(with: error)
        }
    }

    /// Ends the process for `error`: help and version as ArgumentParser prints them, anything
    /// else as `Error: ONE LINE` and its exit status.
    static func fail(with error: any Error) -> Never {
        if let failure = error as? ProvisioningError {
            FileHandle.standardError.write(Data("Error: \(failure.description)\n".utf8))
            Foundation.exit(failure.code == .invalidValue ? ExitCode.validationFailure.rawValue : ExitCode.failure.rawValue)
        }
        let code = exitCode(for: error)
        guard code != .success, !(error is ExitCode) else { exit(withError: error) }
        // ArgumentParser's usage block is for --help; a rejection is one line.
        let message = self.message(for: error).split(whereSeparator: \.isNewline).joined(separator: " ")
        FileHandle.standardError.write(Data("Error: \(message)\n".utf8))
        Foundation.exit(code.rawValue)
    }
}

/// `vmctl --version`: the version and the commit it was built from, `0.2.0 (commit 1a2b3c4d5e6f)`.
/// scripts/package takes the package's version from the first word.
let vmctlVersion = "0.2.0 (commit \(String(cString: vmctl_build_commit())))"
