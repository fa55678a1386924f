import CLibvirt
public import Foundation

/// A domain lifecycle event: a domain was defined, started, stopped, and so on.
///
/// The corresponding C callback is `virConnectDomainEventCallback`
/// (`VIR_DOMAIN_EVENT_ID_LIFECYCLE`).
public struct DomainEvent: Sendable, Hashable {
    /// The name of the domain the event is about.
    public var domainName: String
    /// The UUID of the domain the event is about.
    public var domainUUID: UUID
    /// What happened.
    public var kind: Kind
    /// Why it happened, a `virDomainEvent*DetailType` value that depends on ``kind``; for
    /// ``Kind/stopped``, see ``StoppedDetail``.
    public var detail: Int32

    /// What happened to the domain (`virDomainEventType`).
    public enum Kind: Sendable, Hashable {
        case defined, undefined, started, suspended, resumed, stopped, shutdown, pmSuspended, crashed
        case unknown(Int32)

        init(rawValue: Int32) {
            switch UInt32(bitPattern: rawValue) {
            case VIR_DOMAIN_EVENT_DEFINED.rawValue: self = .defined
            case VIR_DOMAIN_EVENT_UNDEFINED.rawValue: self = .undefined
            case VIR_DOMAIN_EVENT_STARTED.rawValue: self = .started
            case VIR_DOMAIN_EVENT_SUSPENDED.rawValue: self = .suspended
            case VIR_DOMAIN_EVENT_RESUMED.rawValue: self = .resumed
            case VIR_DOMAIN_EVENT_STOPPED.rawValue: self = .stopped
            case VIR_DOMAIN_EVENT_SHUTDOWN.rawValue: self = .shutdown
            case VIR_DOMAIN_EVENT_PMSUSPENDED.rawValue: self = .pmSuspended
            case VIR_DOMAIN_EVENT_CRASHED.rawValue: self = .crashed
            default: self = .unknown(rawValue)
            }
        }
    }

    /// Why a domain stopped (`virDomainEventStoppedDetailType`).
    public enum StoppedDetail: Int32, Sendable {
        /// The guest shut down normally (`VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN`).
        case shutdown = 0
        /// It was destroyed (`VIR_DOMAIN_EVENT_STOPPED_DESTROYED`).
        case destroyed = 1
        /// The guest crashed (`VIR_DOMAIN_EVENT_STOPPED_CRASHED`).
        case crashed = 2
        /// It migrated away (`VIR_DOMAIN_EVENT_STOPPED_MIGRATED`).
        case migrated = 3
        /// It was saved to a file (`VIR_DOMAIN_EVENT_STOPPED_SAVED`).
        case saved = 4
        /// The hypervisor failed (`VIR_DOMAIN_EVENT_STOPPED_FAILED`).
        case failed = 5
        /// A snapshot was restored (`VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT`).
        case fromSnapshot = 6
    }
}

extension Connection {
    /// Lifecycle events of every domain on this connection, from the moment this call returns.
    ///
    /// Events are delivered by libvirt's event loop thread, which ``open(_:readOnly:)`` starts.
    /// The registration ends, and the sequence finishes, when the task iterating it is cancelled
    /// or the connection is closed. Events are buffered without limit: keep reading.
    ///
    /// The corresponding C functions are `virConnectDomainEventRegisterAny` with
    /// `VIR_DOMAIN_EVENT_ID_LIFECYCLE`, and `virConnectDomainEventDeregisterAny`.
    public func domainEvents() async throws(LibvirtError) -> AsyncStream<DomainEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: DomainEvent.self)
        let sink = EventSink(continuation)
        let callbackID = try await blocking { () throws(LibvirtError) -> Int32 in
            let opaque = Unmanaged.passRetained(sink).toOpaque()
            let id = virConnectDomainEventRegisterAny(
                self.handle, nil, Int32(VIR_DOMAIN_EVENT_ID_LIFECYCLE.rawValue),
                unsafeBitCast(lifecycleCallback, to: virConnectDomainEventGenericCallback.self),
                opaque, releaseEventSink)
            if id < 0 {
                Unmanaged<EventSink>.fromOpaque(opaque).release()
                throw LibvirtError.copyLast()
            }
            return id
        }
        continuation.onTermination = { _ in
            // Keeps the connection open until the registration is gone.
            BlockingCalls.shared.submit {
                if virConnectDomainEventDeregisterAny(self.handle, callbackID) < 0 { virResetLastError() }
            }
        }
        return stream
    }
}

/// What libvirt holds for one registration; released by libvirt through `releaseEventSink`.
private final class EventSink: Sendable {
    let continuation: AsyncStream<DomainEvent>.Continuation
    init(_ continuation: AsyncStream<DomainEvent>.Continuation) { self.continuation = continuation }
}

private let lifecycleCallback: @convention(c) (
    OpaquePointer?, OpaquePointer?, Int32, Int32, UnsafeMutableRawPointer?
) -> Int32 = { _, domain, event, detail, opaque in
    guard let domain, let opaque else { return 0 }
    let sink = Unmanaged<EventSink>.fromOpaque(opaque).takeUnretainedValue()
    // The domain handle is borrowed for the callback's duration: copy what we need, free nothing.
    let name = virDomainGetName(domain).map { String(cString: $0) } ?? ""
    sink.continuation.yield(DomainEvent(
        domainName: name, domainUUID: readUUID(of: domain, virDomainGetUUID),
        kind: DomainEvent.Kind(rawValue: event), detail: detail))
    return 0
}

private let releaseEventSink: @convention(c) (UnsafeMutableRawPointer?) -> Void = { opaque in
    guard let opaque else { return }
    let sink = Unmanaged<EventSink>.fromOpaque(opaque).takeRetainedValue()
    sink.continuation.finish()
}
