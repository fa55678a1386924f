import Foundation
import Logging
import VMCtlCommands

/// The executable is only this: logging set up, then every command lives in VMCtlCommands.
@main
enum Entry {
    static func main() async {
        // Bootstrapped before any command runs: --debug (or VMCTL_DEBUG=1) shows each step and
        // libvirt call on stderr; otherwise only warnings and worse.
        // getenv, not ProcessInfo's dictionary of the whole environment: start-up is measured.
        let environment = getenv("VMCTL_DEBUG").map { String(cString: $0) } ?? ""
        let debug = CommandLine.arguments.dropFirst().contains("--debug") || !(environment.isEmpty || environment == "0")
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = debug ? .debug : .warning
            return handler
        }
        await VMCtl.main()
    }
}
