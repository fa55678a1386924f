import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Synchronization

/// An HTTP(S) download into a file that survives an interrupted transfer: a `.part` file left by
/// an earlier attempt is continued with a `Range` request, and started over when the server
/// does not honour it.
struct Download: Sendable {
    var url: URL
    var file: String
    /// Called as bytes arrive: (bytes in the file, total or nil).
    var progress: @Sendable (UInt64, UInt64?) -> Void = { _, _ in }

    /// What one attempt came to.
    struct Outcome: Sendable {
        /// Where the file started from (0 unless continued).
        var resumedAt: UInt64
        var size: UInt64
    }

    /// Downloads to the end; a transfer cut short leaves the `.part` file for the next attempt.
    func run() async throws(ProvisioningError) -> Outcome {
        let existing = fileSize(file) ?? 0
        if existing == 0 { FileManager.default.createFile(atPath: file, contents: nil, attributes: [.posixPermissions: 0o600]) }
        guard let handle = FileHandle(forUpdatingAtPath: file) else {
            throw ProvisioningError(.file, "cannot write \(file)", hint: "check the state directory's permissions")
        }
        defer { try? handle.close() }
        var request = URLRequest(url: url)
        if existing > 0 { request.setValue("bytes=\(existing)-", forHTTPHeaderField: "Range") }
        let receiver = Receiver(handle: handle, offset: existing, progress: progress)
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 60
        configuration.urlCache = nil  // an image is read once: no cache under ~/.cache
        let session = URLSession(configuration: configuration, delegate: receiver, delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        let failure: String? = await withCheckedContinuation { continuation in
            receiver.finished = { continuation.resume(returning: $0) }
            session.dataTask(with: request).resume()
        }
        let (written, expected, resumedAt) = receiver.result
        if let failure {
            if failure.hasPrefix("HTTP ") {
                throw ProvisioningError(.tool, "cannot download \(url.absoluteString): the server answered \(failure)", hint: "check the URL")
            }
            throw ProvisioningError(.tool, "download of \(url.absoluteString) stopped at \(written) of \(expected.map(String.init) ?? "?") bytes: \(failure)",
                                    hint: "run the same vmctl image pull again to resume it")
        }
        if let expected, written != expected {
            throw ProvisioningError(.tool, "download of \(url.absoluteString) stopped at \(written) of \(expected) bytes: the server closed the connection",
                                    hint: "run the same vmctl image pull again to resume it")
        }
        return Outcome(resumedAt: resumedAt, size: written)
    }

    /// A small document (a checksum list), whole, in memory.
    static func text(of url: URL) async throws(ProvisioningError) -> String {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 60
        configuration.urlCache = nil  // an image is read once: no cache under ~/.cache
        let session = URLSession(configuration: configuration)
        defer { session.finishTasksAndInvalidate() }
        do {
            let (data, response) = try await session.data(from: url)
            if let status = (response as? HTTPURLResponse)?.statusCode, status != 200 {
                throw ProvisioningError(.tool, "cannot fetch \(url.absoluteString): HTTP \(status)", hint: "check the URL")
            }
            return String(decoding: data, as: UTF8.self)
        } catch let error as ProvisioningError {
            throw error
        } catch {
            throw ProvisioningError(.tool, "cannot fetch \(url.absoluteString): \(error.localizedDescription)", hint: "check the URL and the network")
        }
    }
}

/// The session's delegate: writes each chunk where it belongs and reports the end once.
private final class Receiver: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    private struct Progress {
        var offset: UInt64
        var resumedAt: UInt64
        var expected: UInt64?
        var failure: String?
        var complete = false
    }
    private let handle: FileHandle
    private let state: Mutex<Progress>
    private let progress: @Sendable (UInt64, UInt64?) -> Void
    /// Set before the task starts; called once with the failure or nil.
    var finished: (@Sendable (String?) -> Void)?

    init(handle: FileHandle, offset: UInt64, progress: @escaping @Sendable (UInt64, UInt64?) -> Void) {
        self.handle = handle
        self.state = Mutex(Progress(offset: offset, resumedAt: offset))
        self.progress = progress
    }

    /// (bytes in the file, the whole file's size if known, where this attempt started).
    var result: (UInt64, UInt64?, UInt64) { state.withLock { ($0.offset, $0.expected, $0.resumedAt) } }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        let http = response as? HTTPURLResponse
        let status = http?.statusCode ?? 0
        let length = http?.value(forHTTPHeaderField: "Content-Length").flatMap { UInt64($0) }
        let total = http?.value(forHTTPHeaderField: "Content-Range").flatMap(Self.total(ofRange:))
        let accept = state.withLock { state -> Bool in
            switch status {
            case 206 where Self.start(ofRange: http?.value(forHTTPHeaderField: "Content-Range")) == state.offset:
                state.expected = total ?? length.map { $0 + state.offset }
                return true
            case 200:
                // A server without ranges sends it all again: start over.
                try? handle.truncate(atOffset: 0)
                state.offset = 0
                state.resumedAt = 0
                state.expected = length
                return true
            case 416 where total != nil && total == state.offset:
                state.expected = total
                state.complete = true
                return false
            default:
                state.failure = "HTTP \(status)"
                if status == 206 || status == 416 { try? handle.truncate(atOffset: 0) }  // a range we cannot use: next time from 0
                return false
            }
        }
        completionHandler(accept ? .allow : .cancel)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        let written = state.withLock { state -> (UInt64, UInt64?)? in
            do {
                try handle.seek(toOffset: state.offset)
                try handle.write(contentsOf: data)
            } catch {
                state.failure = "cannot write the download: \(error.localizedDescription)"
                return nil
            }
            state.offset += UInt64(data.count)
            return (state.offset, state.expected)
        }
        guard let written else { return dataTask.cancel() }
        progress(written.0, written.1)
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
        let failure = state.withLock { state -> String? in
            if state.complete { return nil }
            if let failure = state.failure { return failure }
            return error.map { ($0 as NSError).localizedDescription }
        }
        finished?(failure)
    }

    /// `bytes START-END/TOTAL`'s TOTAL (or `bytes */TOTAL`'s).
    static func total(ofRange header: String) -> UInt64? {
        header.split(separator: "/").last.flatMap { UInt64($0.trimmingCharacters(in: .whitespaces)) }
    }

    static func start(ofRange header: String?) -> UInt64? {
        guard let header, let range = header.split(separator: " ").last?.split(separator: "-").first else { return nil }
        return UInt64(range)
    }
}

/// The size of a regular file, or nil.
func fileSize(_ path: String) -> UInt64? {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.uint64Value
}
