// swift-tools-version:6.0
import PackageDescription
import Foundation

// The commit `vmctl --version` names: scripts/build-release sets it; other builds say "unknown".
let commit = ProcessInfo.processInfo.environment["VMCTL_COMMIT"].flatMap { $0.isEmpty ? nil : $0 } ?? "unknown"

let strictSwift: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

// Start-up of the programs a user (or the benchmark) runs many times. The static Swift runtime's
// link arguments export every symbol of the executable (-export-dynamic): 45,000 entries that
// every symbol lookup of the 60 shared libraries libvirt brings searches first (2 ms of each
// start, perf). Nothing looks vmctl's symbols up by name, so they stay local. lld packs the
// 190,000 relative relocations of the position-independent executable (DT_RELR, glibc 2.36):
// a 26 KB table instead of 4.6 MB read at every start. Together: 33.5 -> 26.3 MiB peak memory
// and ~1.5 ms of `vmctl --version` (docs/benchmarks.md).
let quickStart: [LinkerSetting] = [
    .unsafeFlags(["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs", "-Xlinker", "--no-export-dynamic"],
                 .when(platforms: [.linux])),
]

let package = Package(
    name: "vmctl",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "vmctl", targets: ["vmctl"]),
        .library(name: "Libvirt", targets: ["Libvirt"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // The C API of libvirt, found through pkg-config. Only `Libvirt` may import it.
        .systemLibrary(
            name: "CLibvirt",
            pkgConfig: "libvirt",
            providers: [.apt(["libvirt-dev"])]
        ),
        // The commit above as a C string: SwiftPM hands a target no other build-time value
        // without a plugin. No libvirt in it.
        .target(
            name: "BuildInfo",
            cSettings: [.define("VMCTL_COMMIT", to: "\"\(commit.filter { $0.isLetter || $0.isNumber || $0 == "-" })\"")]
        ),
        // The Swift wrapper over the C API: owns every C handle, turns errors into `LibvirtError`.
        .target(
            name: "Libvirt",
            dependencies: ["CLibvirt"],
            swiftSettings: strictSwift
        ),
        // Pure value types: IP addresses, subnets, MACs, ranges and the pool allocator's rules.
        .target(
            name: "Addressing",
            swiftSettings: strictSwift
        ),
        // Dates as UTC text without Foundation's formatters (they load ICU): pure.
        .target(
            name: "Timestamps",
            swiftSettings: strictSwift
        ),
        // Reading and writing libvirt's XML (networks, DHCP hosts): pure, tested without a daemon.
        .target(
            name: "LibvirtXML",
            dependencies: ["Addressing", "Timestamps"],
            swiftSettings: strictSwift
        ),
        // Pools and allocations in SQLite (GRDB): one owner per address, across processes.
        .target(
            name: "AllocationStore",
            dependencies: ["Addressing", "Timestamps", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: strictSwift
        ),
        // The same store on a PostgreSQL server (postgres-nio), shared by a fleet of vmctl clients.
        .target(
            name: "PostgresStore",
            dependencies: [
                "Addressing", "AllocationStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        // The host firewall as typed rules (iptables and nft), applied through swift-subprocess;
        // forwarding sysctls and the host's interface addresses. No libvirt in it.
        .target(
            name: "HostFirewall",
            dependencies: [
                "Addressing",
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        // What vmctl does, without a command line: the create transaction, destroy, reservations,
        // doctor, storage, cloud-init, networks, pools, reading VMs and waiting for them.
        .target(
            name: "Provisioning",
            dependencies: [
                "Libvirt", "Addressing", "LibvirtXML", "AllocationStore", "PostgresStore", "HostFirewall",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strictSwift
        ),
        // Every `vmctl` command, as a library so that tests can drive it: parse, call
        // Provisioning, render.
        .target(
            name: "VMCtlCommands",
            dependencies: [
                "Provisioning", "Addressing", "BuildInfo", "Timestamps",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift
        ),
        // scripts/bench: reservation latency per network mode, and the lifecycle benchmarks.
        .executableTarget(
            name: "vmctl-bench",
            dependencies: ["Provisioning", "Libvirt", "LibvirtXML", "AllocationStore", "PostgresStore", "Addressing",
                           .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: strictSwift,
            // lld, as for the programs it measures: scripts/build-release's symbol ordering is an lld option.
            linkerSettings: quickStart
        ),
        // scripts/bench: the libvirt calls of a create and a destroy made directly, the floor.
        .executableTarget(
            name: "libvirt-floor",
            dependencies: ["Libvirt"],
            swiftSettings: strictSwift,
            linkerSettings: quickStart
        ),
        .executableTarget(
            name: "vmctl",
            dependencies: ["VMCtlCommands", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSwift,
            linkerSettings: quickStart
        ),
        // Helpers shared by the test targets (running the built vmctl, and so on).
        .target(
            name: "TestSupport",
            path: "Tests/TestSupport",
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "LibvirtTests",
            dependencies: ["Libvirt"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "AddressingTests",
            dependencies: ["Addressing", .product(name: "PropertyBased", package: "swift-property-based")],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "LibvirtXMLTests",
            dependencies: ["LibvirtXML", "Addressing", "Timestamps", "TestSupport", .product(name: "PropertyBased", package: "swift-property-based")],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "AllocationStoreTests",
            dependencies: ["AllocationStore", "PostgresStore", "Addressing", "Timestamps", "TestSupport", .product(name: "GRDB", package: "GRDB.swift"),
                           .product(name: "PropertyBased", package: "swift-property-based")],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "HostFirewallTests",
            dependencies: ["HostFirewall", "Addressing", "TestSupport"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "ProvisioningTests",
            dependencies: ["Provisioning", "HostFirewall", "Libvirt", "LibvirtXML", "AllocationStore", "Addressing", "TestSupport",
                           .product(name: "PropertyBased", package: "swift-property-based")],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "VMCtlCommandsTests",
            dependencies: ["VMCtlCommands", "Provisioning", "Libvirt", "TestSupport",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["Libvirt", "Provisioning", "LibvirtXML", "AllocationStore", "PostgresStore", "Addressing", "TestSupport"],
            swiftSettings: strictSwift
        ),
    ],
    swiftLanguageModes: [.v6]
)
