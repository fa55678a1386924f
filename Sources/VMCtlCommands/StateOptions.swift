public import ArgumentParser
import AllocationStore
import Foundation

/// Where vmctl keeps its allocations: `--state`, else `VMCTL_STATE`, else the default path.
public struct StateOptions: ParsableArguments {
    @Option(name: .customLong("state"), help: ArgumentHelp(
        "The state file (default: $VMCTL_STATE, else /var/lib/vmctl/state.sqlite for root, else $XDG_DATA_HOME/vmctl/state.sqlite).",
        valueName: "path"))
    var stateOption: String?

    public init() {}

    var path: String {
        if let stateOption { return stateOption }
        let environment = ProcessInfo.processInfo.environment
        if let fromEnvironment = environment["VMCTL_STATE"], !fromEnvironment.isEmpty { return fromEnvironment }
        return AllocationStore.defaultPath(environment: environment, isRoot: geteuid() == 0)
    }

    func open() throws(VMCtlError) -> AllocationStore {
        do {
            return try AllocationStore(path: path)
        } catch {
            throw VMCtlError(error.description)
        }
    }
}
