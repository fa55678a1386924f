public import Foundation

/// What a finished child process left behind.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var standardOutput: String
    public var standardError: String
}

/// Runs a program to completion and captures its output. For tests only.
public func runProcess(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    // Files rather than pipes: a chatty child can never block on a full pipe.
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: scratch) }
    let outputURL = scratch.appendingPathComponent("stdout")
    let errorURL = scratch.appendingPathComponent("stderr")
    _ = FileManager.default.createFile(atPath: outputURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errorURL.path, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: outputURL)
    process.standardError = try FileHandle(forWritingTo: errorURL)
    process.standardInput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    return ProcessResult(
        status: process.terminationStatus,
        standardOutput: try String(contentsOf: outputURL, encoding: .utf8),
        standardError: try String(contentsOf: errorURL, encoding: .utf8))
}

/// The `vmctl` executable under test: `$VMCTL_TEST_BINARY` (scripts/test sets it to the release
/// build for its second pass), else the one built next to the test bundle.
public func vmctlExecutable() throws -> String {
    if let chosen = ProcessInfo.processInfo.environment["VMCTL_TEST_BINARY"], !chosen.isEmpty {
        guard FileManager.default.isExecutableFile(atPath: chosen) else { throw TestSupportError("VMCTL_TEST_BINARY \(chosen) is not an executable") }
        return chosen
    }
    let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let candidate = bundle.appendingPathComponent("vmctl").path
    guard FileManager.default.isExecutableFile(atPath: candidate) else {
        throw TestSupportError("vmctl is not built at \(candidate): run `swift build` before the tests")
    }
    return candidate
}

/// Runs the built `vmctl` with `arguments` and extra environment variables.
public func runVMCtl(_ arguments: [String], environment extra: [String: String] = [:]) throws -> ProcessResult {
    var environment = ProcessInfo.processInfo.environment
    environment.merge(extra) { _, new in new }
    return try runProcess(try vmctlExecutable(), arguments, environment: environment)
}

public struct TestSupportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Compares `actual` with the golden file at `url`, whole: `nil` when they are equal, else what
/// differs (the first differing line). With `VMCTL_UPDATE_GOLDEN=1` the file is written instead;
/// a missing golden file is a mismatch, never created silently.
public func goldenMismatch(_ actual: String, at url: URL) -> String? {
    if ProcessInfo.processInfo.environment["VMCTL_UPDATE_GOLDEN"] == "1" {
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? actual.write(to: url, atomically: true, encoding: .utf8)
        return nil
    }
    guard let expected = try? String(contentsOf: url, encoding: .utf8) else {
        return "no golden file \(url.path) (run the test with VMCTL_UPDATE_GOLDEN=1 to write it, then review it)"
    }
    guard expected != actual else { return nil }
    let want = expected.components(separatedBy: "\n"), got = actual.components(separatedBy: "\n")
    for index in 0..<max(want.count, got.count) {
        let a = index < want.count ? want[index] : "<end>", b = index < got.count ? got[index] : "<end>"
        if a != b { return "\(url.lastPathComponent) line \(index + 1): expected \(a.debugDescription), got \(b.debugDescription)" }
    }
    return "\(url.lastPathComponent) differs"
}
