import Foundation
import Testing
@testable import Libvirt

@Suite("Connection")
struct ConnectionTests {
    @Test("reports URI, driver, versions, hostname and capabilities")
    func describesItself() async throws {
        let connection = try await TestDriver.connect()
        #expect(try await connection.uri() == "test:///default")
        #expect(try await connection.hypervisorType() == "TEST")
        #expect(try await connection.libvirtVersion() >= Version(major: 9, minor: 0, release: 0))
        #expect(Connection.libraryVersion >= Version(major: 9, minor: 0, release: 0))
        #expect(try await connection.hostname() == ProcessInfo.processInfo.hostName)
        #expect(try await connection.capabilities().contains("<capabilities>"))
        #expect(try await connection.isAlive())
    }

    @Test("a connection without events counts its domains, running and defined, and lists them")
    func countWithoutEvents() async throws {
        // A file of the test driver is a driver of its own: no other test's domains in it.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("\(TestDriver.uniqueName("node")).xml")
        try "<node>\(TestDriver.domainXML(name: "running-one"))</node>".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let connection = try await Connection.open("test://\(file.path)", events: false)
        #expect(try await connection.domainCount() == 1)
        let defined = try await connection.defineDomain(xml: TestDriver.domainXML(name: "defined-one"))
        #expect(try await connection.domainCount() == 2)
        #expect(Set(try await connection.domains().map(\.name)) == ["running-one", "defined-one"])
        #expect(try await connection.domain(named: "running-one").isActive())
        try await defined.undefine()
        #expect(try await connection.domainCount() == 1)
    }

    @Test("keepalive is reported unsupported by a local driver")
    func keepAliveUnsupported() async throws {
        let connection = try await TestDriver.connect()
        // libvirt answers "not supported by the other side" for drivers without keepalive.
        #expect(try await connection.setKeepAlive(interval: 5, count: 3) == false)
    }

    @Test("a URI no driver serves throws, with libvirt's message")
    func unknownURI() async throws {
        let error = await #expect(throws: LibvirtError.self) {
            _ = try await Connection.open("nosuchdriver:///nowhere?socket=/nonexistent/sock")
        }
        #expect(error?.message.contains("/nonexistent/sock") == true)
    }

    @Test("versions decode from libvirt's integer form and compare")
    func versions() throws {
        let version = Version(encoded: 9_000_000 + 7_002)
        #expect(version == Version(major: 9, minor: 7, release: 2))
        #expect(version.description == "9.7.2")
        #expect(Version(major: 9, minor: 0, release: 0) < version)
        let json = try JSONEncoder().encode(version)
        #expect(String(decoding: json, as: UTF8.self) == "\"9.7.2\"")
        #expect(try JSONDecoder().decode(Version.self, from: json) == version)
    }

    @Test("errors of concurrent failing calls are captured per thread, none mixed up")
    func errorsStayWithTheirCall() async throws {
        let connection = try await TestDriver.connect()
        let names = (0..<64).map { "missing-\($0)" }
        let messages = try await withThrowingTaskGroup(of: (String, LibvirtError?).self) { group in
            for name in names {
                group.addTask {
                    do throws(LibvirtError) {
                        _ = try await connection.network(named: name)
                        return (name, nil)
                    } catch {
                        return (name, error)
                    }
                }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        for name in names {
            let error = try #require(messages[name] ?? nil, "lookup of \(name) did not fail")
            #expect(error.code == .noNetwork)
            #expect(error.message.contains("'\(name)'"), "message for \(name): \(error.message)")
        }
    }

    @Test("blocking calls run on dedicated threads, not on the cooperative pool")
    func blockingThreads() async throws {
        let name = await blocking { BlockingCalls.currentThreadName }
        #expect(name == "libvirt-call")
        // 16 calls blocked at once: each waits until all 16 are in flight, so a pool that ran
        // fewer at a time (a fixed pool of 1, 2 or 8 threads) times out here instead of passing.
        let arrivals = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        async let waiters: [Bool] = withTaskGroup(of: Bool.self) { group in
            for _ in 0..<16 {
                group.addTask {
                    await blocking { arrivals.signal(); return release.wait(timeout: .now() + 10) == .success }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        // Counted on a thread of its own: a blocking wait on the cooperative pool (two threads on
        // two cores, shared with every other test running) could keep the calls from starting.
        let arrived = await withCheckedContinuation { (continuation: CheckedContinuation<Int, Never>) in
            Thread {
                var count = 0
                while count < 16, arrivals.wait(timeout: .now() + 10) == .success { count += 1 }
                continuation.resume(returning: count)
            }.start()
        }
        #expect(arrived == 16, "only \(arrived) of 16 blocking calls were in flight at once")
        for _ in 0..<16 { release.signal() }
        #expect(await waiters == Array(repeating: true, count: 16))
    }
}
