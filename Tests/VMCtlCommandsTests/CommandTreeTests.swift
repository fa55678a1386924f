import ArgumentParser
import Testing
import VMCtlCommands

/// Start-up cost that argument parsing must not pay again.
@Suite("command tree")
struct CommandTreeTests {
    /// Every command, depth first.
    static func commands(under root: any ParsableCommand.Type = VMCtl.self) -> [any ParsableCommand.Type] {
        [root] + root.configuration.subcommands.flatMap { commands(under: $0) }
    }

    /// Without a `commandName`, ArgumentParser derives it with `String(describing: Self.self)` for
    /// every command of the tree on every run, and each of those casts scans all of the binary's
    /// protocol conformances: 5 ms of vmctl's start-up (profiled with perf).
    @Test("every command names itself")
    func namedCommands() {
        let commands = Self.commands()
        #expect(commands.count > 40)
        for command in commands {
            #expect(command.configuration.commandName != nil, "\(command) has no commandName in its CommandConfiguration")
        }
    }
}
