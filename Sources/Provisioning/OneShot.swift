public import Foundation
import Libvirt
import Synchronization

/// `vmctl run`: a throwaway VM for one command. Creates it, waits until SSH answers, runs the
/// command over SSH with its output streamed, and destroys the VM whatever happened, also on
/// SIGINT, SIGTERM or SIGHUP.
public struct OneShot: Sendable {
    public let creation: Creation
    public let session: Session
    public let timeout: Duration
    public let user: String?
    public let identities: [String]
    public let command: [String]

    public init(creation: Creation, session: Session, timeout: Duration, user: String?, identities: [String], command: [String]) {
        self.creation = creation
        self.session = session
        self.timeout = timeout
        self.user = user
        self.identities = identities
        self.command = command
    }

    /// How it ended.
    public enum Ending: Sendable, Equatable {
        /// The command ran; its exit status.
        case exited(Int32)
        /// A signal (its number) stopped the run; the VM is gone.
        case interrupted(Int32)
    }

    public func run() async throws(ProvisioningError) -> Ending {
        let name = creation.plan.name
        let interrupts = Interrupts()
        interrupts.install()
        defer { interrupts.remove() }
        do {
            _ = try await creation.run(interrupts: interrupts)  // undoes itself on failure or a signal
        } catch where error.code == .interrupted {
            return .interrupted(signalNumber(interrupts.received ?? "SIGINT"))
        }
        let child = RunningChild()
        let work = Task { () async throws(ProvisioningError) -> Int32 in
            creation.progress("waiting up to \(timeout.components.seconds) s for \(name)'s SSH server")
            try await session.waitForSSH(name, timeout: timeout)
            let files = SSHFiles(directory: creation.state.store.localDirectory)
            let ssh = try await session.ssh(to: name, files: files, user: user, identities: identities, batch: true, command: command)
            return try await runToEnd(ssh.arguments, child: child)
        }
        interrupts.onSignal = {
            work.cancel()
            child.terminate()  // ssh ends, and with it the remote command's session
        }
        let result = await work.result
        creation.progress("destroying \(name)")
        let destroyed: ProvisioningError? = await destroy(name)
        if let signal = interrupts.received {
            if let destroyed { throw destroyed }
            return .interrupted(signalNumber(signal))
        }
        switch result {
        case .success(let status):
            if let destroyed { throw destroyed }
            return .exited(status)
        case .failure(let error):
            let failure = error as? ProvisioningError ?? ProvisioningError(.tool, "\(error)")
            if let destroyed { throw ProvisioningError(failure.code, "\(failure.description); \(destroyed.description)") }
            throw failure
        }
    }

    /// Destroys the VM at once (nothing in it is worth a clean shutdown); the failure, if any.
    private func destroy(_ name: String) async -> ProvisioningError? {
        let destroyer = session.destroyer(creation.state, force: true, grace: .zero)
        do throws(ProvisioningError) {
            let (outcomes, _) = try await destroyer.destroy(DestroySelection(names: [name], labels: [], expired: false, ignoreMissing: true))
            guard let error = outcomes.first?.error else { return nil }
            return ProvisioningError(.incomplete, "cannot destroy VM \(name): \(error.description)", hint: "vmctl destroy \(name)")
        } catch {
            return ProvisioningError(.incomplete, "cannot destroy VM \(name): \(error.description)", hint: "vmctl destroy \(name)")
        }
    }
}

/// Runs ssh with vmctl's standard input, output and error, and waits (on a dispatch thread) for
/// its exit status.
private func runToEnd(_ arguments: [String], child: RunningChild) async throws(ProvisioningError) -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/ssh")
    process.arguments = arguments
    do {
        try process.run()
    } catch {
        throw ProvisioningError(.tool, "cannot run ssh: \(error.localizedDescription)", hint: "install openssh-client")
    }
    child.set(process)
    if Task.isCancelled { process.terminate() }
    return await withCheckedContinuation { continuation in
        DispatchQueue.global().async {
            process.waitUntilExit()
            continuation.resume(returning: process.terminationStatus)
        }
    }
}

/// The ssh process, once started, for the signal handler to end.
private final class RunningChild: Sendable {
    private let process = Mutex<Process?>(nil)
    func set(_ started: Process) { process.withLock { $0 = started } }
    func terminate() { process.withLock { $0?.terminate() } }
}

/// SIGINT -> 2, as the interrupt handlers name them.
func signalNumber(_ name: String) -> Int32 {
    ["SIGINT": SIGINT, "SIGTERM": SIGTERM, "SIGHUP": SIGHUP][name] ?? SIGINT
}
