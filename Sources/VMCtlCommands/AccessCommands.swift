public import ArgumentParser
import Foundation
import Provisioning

/// Who to log in as, and with which key: the options `ssh`, `exec` and `run` share.
public struct LoginOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The user to log in as (default: the image's user, else root).", valueName: "name")) var user: String?
    @Option(name: .customLong("identity"), help: ArgumentHelp("A private key to offer (repeatable; vmctl's own key is offered too).", valueName: "file"),
            completion: .file())
    var identities: [String] = []
    public init() {}
}

/// `vmctl ssh NAME [-- COMMAND...]`
public struct SSH: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "ssh",
        abstract: "Log in to a VM with OpenSSH, or run a command in it.",
        discussion: """
            Runs ssh to the VM's first IPv4 address (else IPv6), as --user, with vmctl's own \
            known_hosts file (the VM's host key is accepted on first use, filed under the VM's \
            UUID, and forgotten when the VM is destroyed). Arguments after -- are the command, each \
            kept as one word. The exit status is ssh's: the command's, 255 when ssh itself failed.
            """)
    @OptionGroup var global: GlobalOptions
    @OptionGroup var state: StateOptions
    @Argument(help: "The VM's name.", completion: Complete.vm) var name: String
    @OptionGroup var login: LoginOptions
    @Argument(parsing: .postTerminator, help: "The command to run instead of a login shell.") var command: [String] = []
    public init() {}

    public func run() async throws {
        let ssh = try await global.session(forVM: name, state).ssh(to: name, files: SSHFiles(directory: State.localDirectory(for: state.path)), user: login.user,
                                                 identities: login.identities, batch: false, command: command)
        try replaceProcess(with: "/usr/bin/ssh", arguments: ssh.arguments)
    }
}

/// `vmctl exec NAME -- COMMAND...`
public struct Exec: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command in a VM over SSH and exit with its status.",
        discussion: """
            Like vmctl ssh NAME -- COMMAND, never prompting (BatchMode) and without a terminal. \
            The exit status is the command's; 255 when ssh itself failed (no route, no key).
            """)
    @OptionGroup var global: GlobalOptions
    @OptionGroup var state: StateOptions
    @Argument(help: "The VM's name.", completion: Complete.vm) var name: String
    @OptionGroup var login: LoginOptions
    @Argument(parsing: .postTerminator, help: "The command and its arguments.") var command: [String] = []
    public init() {}

    public func validate() throws {
        if command.isEmpty { throw ValidationError("give the command after --: vmctl exec \(name) -- COMMAND...") }
    }

    public func run() async throws {
        let ssh = try await global.session(forVM: name, state).ssh(to: name, files: SSHFiles(directory: State.localDirectory(for: state.path)), user: login.user,
                                                 identities: login.identities, batch: true, command: command)
        try replaceProcess(with: "/usr/bin/ssh", arguments: ssh.arguments)
    }
}

/// `vmctl run [create options] -- COMMAND...`
public struct Run: AsyncParsableCommand {
    /// vmctl's own failures in `run`, apart from the command's statuses.
    public static let failureStatus: Int32 = 125

    public static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run one command in a throwaway VM: create, wait for SSH, run, destroy.",
        discussion: """
            Takes the options of vmctl create. The VM is destroyed whatever happens: when the \
            command ends, when a step fails, and on SIGINT, SIGTERM or SIGHUP. Exit status: the \
            command's; 125 when vmctl failed (create, wait, destroy); 64 for a usage error; 128+N \
            after signal N (the VM destroyed).
            """)
    @OptionGroup var global: GlobalOptions
    @OptionGroup var state: StateOptions
    @Option(help: ArgumentHelp("The VM's name (default: run- and 8 random hex digits).", valueName: "name")) var name: String?
    @OptionGroup var options: CreateOptions
    @OptionGroup var login: LoginOptions
    @Option(help: "Seconds to wait for the VM's SSH server.") var timeout = 300
    @Flag(name: .shortAndLong, help: "No progress messages.") var quiet = false
    @Argument(parsing: .postTerminator, help: "The command and its arguments.") var command: [String] = []
    public init() {}

    public func validate() throws {
        if command.isEmpty { throw ValidationError("give the command after --: vmctl run [OPTIONS] -- COMMAND...") }
        if timeout < 1 { throw ValidationError("invalid --timeout \(timeout): give a number of seconds, 1 or more") }
        if options.noCloudInit { throw ValidationError("vmctl run needs cloud-init to install a key: drop --no-cloud-init") }
        _ = try usage { () throws(ProvisioningError) in try options.plan(name: vmName) }
    }

    /// Settled once: validate() and run() see the same name.
    private var vmName: String { name ?? Self.randomName }
    private static let randomName = "run-" + String(UInt32.random(in: 0...UInt32.max), radix: 16).leftPadded(to: 8)

    public func run() async throws {
        do {
            let showProgress = !quiet && isatty(STDERR_FILENO) == 1
            var identities = login.identities
            // The private half of each --ssh-key given, where it lies beside it.
            for key in options.sshKeys where key.hasSuffix(".pub") && FileManager.default.fileExists(atPath: String(key.dropLast(4))) {
                identities.append(String(key.dropLast(4)))
            }
            let (creation, session) = try await options.creation(name: vmName, global: global, state: state, showProgress: showProgress)
            let ending = try await OneShot(creation: creation, session: session, timeout: .seconds(timeout), user: login.user,
                                           identities: identities, command: command).run()
            switch ending {
            case .exited(let status): throw ExitCode(status)
            case .interrupted(let signal):
                Output.say("interrupted; VM \(vmName) destroyed")
                throw ExitCode(128 + signal)
            }
        } catch let error as ProvisioningError where error.code != .invalidValue {
            FileHandle.standardError.write(Data("Error: \(error.description)\n".utf8))
            throw ExitCode(Self.failureStatus)
        }
    }
}

/// `vmctl console NAME [--log]`
public struct Console: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "console",
        abstract: "Attach to a VM's serial console (Ctrl-] leaves), or print what it has written.",
        discussion: """
            --log prints the console's log so far: every VM vmctl creates logs its serial console \
            to a volume of its own (or to --console-log FILE), read through libvirt.
            """)
    @OptionGroup var global: GlobalOptions
    @OptionGroup var state: StateOptions
    @Argument(help: "The VM's name.", completion: Complete.vm) var name: String
    @Flag(help: "Print what the console has written so far and exit.") var log = false
    public init() {}

    public func run() async throws {
        let session = try await global.session(forVM: name, state)
        if log {
            FileHandle.standardOutput.write(try await session.consoleLog(of: name))
            return
        }
        let stream = try await session.openConsole(of: name)
        try await attach(to: stream, name: name)
    }
}

/// Replaces vmctl with `path` (ssh): its terminal, signals and exit status are the user's.
func replaceProcess(with path: String, arguments: [String]) throws -> Never {
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    // exec keeps the signal mask and ignored signals: this may be a dispatch thread, which blocks
    // them, and ssh must be interruptible and killable as if started by the shell.
    var none = sigset_t()
    sigemptyset(&none)
    pthread_sigmask(SIG_SETMASK, &none, nil)
    for number in [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE] { signal(number, SIG_DFL) }
    execv(path, argv)
    let reason = String(cString: strerror(errno))
    throw ProvisioningError(.tool, "cannot run \(path): \(reason)", hint: "install openssh-client")
}

extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
