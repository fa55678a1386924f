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
        optionOrEnvironment(stateOption, "VMCTL_STATE")
            ?? AllocationStore.defaultPath(environment: ProcessInfo.processInfo.environment, isRoot: geteuid() == 0)
    }

    func open() throws(StoreError) -> AllocationStore {
        try AllocationStore(path: path)
    }
}
