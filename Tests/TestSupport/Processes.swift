import Foundation

/// What a finished child process left behind.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var standardOutput: String
    public var standardError: String
}

/// Runs a program to completion and captures its output; `input` is its standard input (none
/// when `nil`). For tests only.
public func runProcess(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                       input: String? = nil) throws -> ProcessResult {
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
    if let input {
        let inputURL = scratch.appendingPathComponent("stdin")
        try input.write(to: inputURL, atomically: false, encoding: .utf8)
        process.standardInput = try FileHandle(forReadingFrom: inputURL)
    } else {
        process.standardInput = FileHandle.nullDevice
    }
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

/// Compares `actual` with the golden file `Golden/NAME` beside the calling test file, whole:
/// `nil` when they are equal, else what differs (the first differing line). With
/// `VMCTL_UPDATE_GOLDEN=1` the file is written instead; a missing golden file is a mismatch,
/// never created silently.
public func goldenMismatch(_ actual: String, golden name: String, file: String = #filePath) -> String? {
    let url = URL(fileURLWithPath: file).deletingLastPathComponent().appendingPathComponent("Golden/\(name)")
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

/// Processes started together and running at once: what `runTogether` saw.
public struct TogetherRun: Sendable {
    public var results: [ProcessResult]
    /// When each process began its work and ended it (CLOCK_REALTIME nanoseconds, as `date +%s%N`
    /// records them in the wrapper around it).
    public var spans: [(start: UInt64, end: UInt64)]

    /// Whether one moment lay inside every span: all of them ran at the same time.
    public var allOverlapped: Bool { (spans.map(\.start).max() ?? 0) < (spans.map(\.end).min() ?? 0) }

    public var description: String {
        let first = spans.map(\.start).min() ?? 0, last = spans.map(\.start).max() ?? 0, end = spans.map(\.end).min() ?? 0
        return "\(spans.count) processes: all started within \((last - first) / 1_000_000) ms, the first ended \((Int64(end) - Int64(last)) / 1_000_000) ms after the last started"
    }
}

/// Starts every process of `argumentLists` (each `executable ARGS`) first, holds them at a
/// barrier until all are up, releases them at once, then waits for all: a real test of
/// contention, which starting them one blocking call at a time is not (a cooperative pool of
/// two threads runs them two at a time). Each records when it starts and ends its work.
public func runTogether(_ executable: String, _ argumentLists: [[String]], environment: [String: String]) throws -> TogetherRun {
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("vmctl-together-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: scratch) }
    let go = scratch.appendingPathComponent("go").path
    // sh waits without forking until the barrier file appears, then runs the command, timing it.
    let script = #"""
        touch "$1.ready"; while [ ! -e "$2" ]; do :; done
        date +%s%N > "$1.start"; "$3" "${@:4}" > "$1.out" 2> "$1.err"; status=$?; date +%s%N > "$1.end"; exit $status
        """#
    var processes: [(Process, String)] = []
    for (index, arguments) in argumentLists.enumerated() {
        let base = scratch.appendingPathComponent("p\(index)").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", script, "together", base, go, executable] + arguments
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        try process.run()
        processes.append((process, base))
    }
    let deadline = Date().addingTimeInterval(60)
    while processes.contains(where: { !FileManager.default.fileExists(atPath: $0.1 + ".ready") }), Date() < deadline {
        usleep(1000)
    }
    _ = FileManager.default.createFile(atPath: go, contents: nil)
    var results: [ProcessResult] = []
    var spans: [(start: UInt64, end: UInt64)] = []
    for (process, base) in processes {
        process.waitUntilExit()
        func read(_ suffix: String) -> String { (try? String(contentsOfFile: base + suffix, encoding: .utf8)) ?? "" }
        results.append(ProcessResult(status: process.terminationStatus, standardOutput: read(".out"), standardError: read(".err")))
        spans.append((UInt64(read(".start").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0,
                      UInt64(read(".end").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0))
    }
    return TogetherRun(results: results, spans: spans)
}

/// Starts a long-running helper (a DHCP server, a listener) in the background through bash, and
/// returns its PID; stop it with `stopBackground`. The helper keeps no descriptor but its
/// standard ones: Foundation's `Process` learns that a child ended when a socket the child
/// inherited closes, so a helper holding one (started as a `Process`, or by a child that was)
/// makes `waitUntilExit` of that child wait for the helper (corelibs Foundation, Swift 6.3).
public func startBackground(_ executable: String, _ arguments: [String]) throws -> Int32 {
    let script = #"""
        for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
        setsid "$0" "$@" </dev/null >/dev/null 2>&1 &
        echo $!
        """#
    let started = try runProcess("/bin/bash", ["-c", script, executable] + arguments)
    guard started.status == 0, let pid = Int32(started.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)) else {
        throw TestSupportError("cannot start \(executable): \(started.standardError)")
    }
    return pid
}

/// Stops a helper `startBackground` started (SIGTERM), and waits up to 5 s until it has exited.
public func stopBackground(_ pid: Int32) {
    guard pid > 0 else { return }
    kill(pid, SIGTERM)
    for _ in 0..<50 {
        // Gone, or a zombie waiting for init to reap it: either way it has exited.
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let state = stat.split(separator: ")").last?.split(separator: " ").first, state != "Z" else { return }
        usleep(100_000)
    }
}

/// A variable scripts/test sets, or a failure saying what needs it (`why`) and how to run the tests.
public func requiredVariable(_ name: String, _ why: String) throws -> String {
    guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
        throw TestSupportError("\(name) is not set: \(why); run them with scripts/test")
    }
    return value
}

/// A new, empty database on the test server (scripts/postgres, `VMCTL_TEST_POSTGRES`), named
/// `PREFIX_RANDOM`; returns its URL. `why` says which tests need the server.
public func makePostgresDatabase(_ prefix: String, why: String) throws -> String {
    let server = try requiredVariable("VMCTL_TEST_POSTGRES", why)
    let name = "\(prefix)_\(UUID().uuidString.prefix(8).lowercased())"
    let created = try runProcess("/usr/bin/psql", ["-X", "-q", server, "-c", "CREATE DATABASE \(name)"])
    guard created.status == 0 else { throw TestSupportError("psql could not create database \(name): \(created.standardError)") }
    var components = URLComponents(string: server)!
    components.path = "/" + name
    return components.string!
}
