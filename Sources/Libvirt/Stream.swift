import CLibvirt
public import Foundation

/// A libvirt data stream in blocking mode, such as a guest's console.
///
/// Owns one reference to its `virStreamPtr`, released in `deinit` (`virStreamFree`).
public final class Stream: @unchecked Sendable {
    let handle: OpaquePointer

    init(owning handle: OpaquePointer) {
        self.handle = handle
    }

    deinit { virStreamFree(handle) }

    /// The next bytes the stream delivers, waiting for them; empty data at the end of the stream.
    ///
    /// The corresponding C function is `virStreamRecv`.
    public func receive(upTo count: Int = 64 << 10) async throws(LibvirtError) -> Data {
        try await blocking { () throws(LibvirtError) in try self.receiveNow(upTo: count) }
    }

    /// Sends all of `data`.
    ///
    /// The corresponding C function is `virStreamSend`.
    public func send(_ data: Data) async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in try self.sendNow(data) }
    }

    /// Ends the stream cleanly once all data went through.
    ///
    /// The corresponding C function is `virStreamFinish`.
    public func finish() async throws(LibvirtError) {
        try await blocking { () throws(LibvirtError) in _ = try check(virStreamFinish(self.handle)) }
    }

    /// Ends the stream at once, dropping what is in flight.
    ///
    /// The corresponding C function is `virStreamAbort`.
    public func abort() async {
        await blocking { () -> Void in _ = virStreamAbort(self.handle) }
    }

    func receiveNow(upTo count: Int) throws(LibvirtError) -> Data {
        var buffer = Data(count: count)
        let received = buffer.withUnsafeMutableBytes { (bytes: UnsafeMutableRawBufferPointer) -> Int32 in
            virStreamRecv(handle, bytes.baseAddress!.assumingMemoryBound(to: CChar.self), count)
        }
        if received < 0 { throw LibvirtError.copyLast() }
        return buffer.prefix(Int(received))
    }

    func sendNow(_ data: Data) throws(LibvirtError) {
        let failed = data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) -> Bool in
            var sent = 0
            while sent < bytes.count {
                let base = bytes.baseAddress!.advanced(by: sent).assumingMemoryBound(to: CChar.self)
                let count = virStreamSend(handle, base, bytes.count - sent)
                if count < 0 { return true }
                sent += Int(count)
            }
            return false
        }
        if failed { throw LibvirtError.copyLast() }
    }
}
