import Foundation
import Provisioning

/// Ctrl-], the byte that leaves the console (as in virsh and telnet).
let consoleEscape: UInt8 = 0x1d

/// Copies the console to stdout and stdin to the console until Ctrl-], the end of stdin, or the
/// console closing; a terminal is in raw mode meanwhile and restored after.
func attach(to console: ConsoleConnection, name: String) async throws {
    let terminal = RawTerminal()
    defer { terminal.restore() }
    FileHandle.standardError.write(Data("vmctl: connected to \(name)'s console (Ctrl-] leaves)\r\n".utf8))
    // Two copies, each on its own task; the first to end ends the session. A task group would
    // wait for the other, blocked in a read that nothing interrupts.
    let (ended, end) = AsyncStream<(any Error)?>.makeStream()
    let output = Task {
        do {
            while true {
                let data = try await console.receive()
                if data.isEmpty { break }
                FileHandle.standardOutput.write(data)
            }
            end.yield(nil)
        } catch {
            end.yield(error)
        }
    }
    let input = Task {
        do {
            while let data = await readStandardInput() {
                if let escape = data.firstIndex(of: consoleEscape) {
                    if escape > data.startIndex { try await console.send(data[..<escape]) }
                    break
                }
                try await console.send(data)
            }
            end.yield(nil)
        } catch {
            end.yield(error)
        }
    }
    var failure: (any Error)?
    for await result in ended {
        failure = result
        break
    }
    output.cancel()
    input.cancel()
    await console.close()
    terminal.restore()
    if let failure { throw failure }
    FileHandle.standardError.write(Data("\nvmctl: left \(name)'s console\n".utf8))
    // A copy may still be blocked in read(2): nothing else is left to do.
    exit(0)
}

/// The next bytes on stdin, read on a dispatch thread; nil at its end.
private func readStandardInput() async -> Data? {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = read(STDIN_FILENO, &buffer, buffer.count)
            continuation.resume(returning: count > 0 ? Data(buffer[..<count]) : nil)
        }
    }
}

/// stdin in raw mode while attached (keys go to the guest as typed), if it is a terminal.
private final class RawTerminal {
    private var saved: termios?

    init() {
        guard isatty(STDIN_FILENO) == 1 else { return }
        var settings = termios()
        guard tcgetattr(STDIN_FILENO, &settings) == 0 else { return }
        saved = settings
        cfmakeraw(&settings)
        tcsetattr(STDIN_FILENO, TCSANOW, &settings)
    }

    func restore() {
        guard var saved else { return }
        tcsetattr(STDIN_FILENO, TCSANOW, &saved)
        self.saved = nil
    }
}
