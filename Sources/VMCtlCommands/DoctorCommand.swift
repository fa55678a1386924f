public import ArgumentParser
import Foundation
import Provisioning

/// `vmctl doctor [--fix]`
public struct Doctor: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Find (and with --fix, repair) disagreements between vmctl's allocations and libvirt.",
        discussion: """
            Finds creates that were killed before they finished (their domain, addresses and \
            volumes are undone by --fix), allocations whose VM or network is gone, allocations whose DHCP host entry is \
            missing or only in one of the live and persistent configs, host entries inside a pool's \
            ranges that no allocation owns, leases on reserved addresses held by another MAC, \
            host routes of routed addresses that are missing or left over, and vmctl's firewall \
            chains or nft tables for bridges no network has (the last two as root, on the \
            bridges' host). Across a fleet each host is examined for what was placed on it; a host \
            that does not answer is reported, and nothing of it is examined or freed. \
            Exit status 0 when nothing (is left) to report, 1 otherwise.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var state: StateOptions
    @Flag(help: "Repair what can be repaired.") var fix = false
    @OptionGroup var output: OutputOptions

    public init() {}

    public func run() async throws {
        let opened = try await state.open()
        let report = if let fleet = try await global.fleet(state) {
            try await Fleet.doctor(await global.reachFleet(fleet), state: opened, fix: fix)
        } else {
            try await global.connect(state).doctor(opened).run(fix: fix)
        }
        try Output.print(report, output)
        if !report.isClean { throw ExitCode.failure }
    }
}

/// `vmctl info`: what is at the other end of the connection.
public struct Info: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show the connection, libvirt and hypervisor versions, KVM, and object counts.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var output: OutputOptions

    public init() {}

    public func run() async throws {
        try Output.print(try await global.connect().info(), output)
    }
}
