import CLibvirt

/// One domain's record from ``Connection/domainStatistics(_:filter:)``: the domain and the
/// values libvirt reported for it, by field name (`state.state`, `vcpu.maximum`, ...).
public struct DomainStatistics: Sendable {
    /// The domain the record is about (its own reference).
    public let domain: Domain
    /// Every reported field, by name, as libvirt typed it.
    public let values: [String: Value]

    /// One typed parameter's value (`virTypedParameterType`).
    public enum Value: Sendable, Hashable {
        case int(Int64), uint(UInt64), double(Double), boolean(Bool), string(String)

        /// The value as an unsigned integer, when it is a non-negative integer.
        public var unsigned: UInt64? {
            switch self {
            case .uint(let value): value
            case .int(let value) where value >= 0: UInt64(value)
            default: nil
            }
        }
    }

    /// The groups of statistics to report (`virDomainStatsTypes`).
    public struct Groups: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// `state.state` and `state.reason` (`VIR_DOMAIN_STATS_STATE`).
        public static let state = Groups(rawValue: VIR_DOMAIN_STATS_STATE.rawValue)
        /// `vcpu.current`, `vcpu.maximum`, ... (`VIR_DOMAIN_STATS_VCPU`).
        public static let vcpu = Groups(rawValue: VIR_DOMAIN_STATS_VCPU.rawValue)
        /// `balloon.current`, `balloon.maximum` (KiB), ... (`VIR_DOMAIN_STATS_BALLOON`).
        public static let balloon = Groups(rawValue: VIR_DOMAIN_STATS_BALLOON.rawValue)
    }

    /// The run state (`state.state`), when reported.
    public var state: Domain.State? {
        guard case .int(let raw)? = values["state.state"] else { return nil }
        return Domain.State(rawValue: Int32(truncatingIfNeeded: raw))
    }
}

extension Connection {
    /// Statistics of every domain matching `filter`, in one call: a listing that also carries
    /// what `groups` asks for, instead of one call per domain.
    ///
    /// The corresponding C functions are `virConnectGetAllDomainStats`, `virDomainRef` and
    /// `virDomainStatsRecordListFree`.
    public func domainStatistics(_ groups: DomainStatistics.Groups, filter: Domain.ListFilter = []) async throws(LibvirtError) -> [DomainStatistics] {
        try await blocking { () throws(LibvirtError) in
            var records: UnsafeMutablePointer<virDomainStatsRecordPtr?>?
            let count = try check(virConnectGetAllDomainStats(self.handle, groups.rawValue, &records, filter.rawValue))
            guard let records else { return [] }
            defer { virDomainStatsRecordListFree(records) }
            return (0..<Int(count)).compactMap { index -> DomainStatistics? in
                guard let record = records[index], let domain = record.pointee.dom else { return nil }
                // The list's free releases its own reference; the Domain keeps one of its own.
                guard virDomainRef(domain) == 0 else { return nil }
                return DomainStatistics(domain: Domain(owning: domain),
                                        values: typedValues(record.pointee.params, count: record.pointee.nparams))
            }
        }
    }
}

/// Reads a C array of typed parameters into Swift values (strings copied).
func typedValues(_ parameters: virTypedParameterPtr?, count: Int32) -> [String: DomainStatistics.Value] {
    guard let parameters else { return [:] }
    var values: [String: DomainStatistics.Value] = [:]
    for index in 0..<Int(count) {
        var parameter = parameters[index]
        let field = withUnsafeBytes(of: &parameter.field) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        let value: DomainStatistics.Value?
        switch UInt32(bitPattern: parameter.type) {
        case VIR_TYPED_PARAM_INT.rawValue: value = .int(Int64(parameter.value.i))
        case VIR_TYPED_PARAM_UINT.rawValue: value = .uint(UInt64(parameter.value.ui))
        case VIR_TYPED_PARAM_LLONG.rawValue: value = .int(parameter.value.l)
        case VIR_TYPED_PARAM_ULLONG.rawValue: value = .uint(parameter.value.ul)
        case VIR_TYPED_PARAM_DOUBLE.rawValue: value = .double(parameter.value.d)
        case VIR_TYPED_PARAM_BOOLEAN.rawValue: value = .boolean(parameter.value.b != 0)
        case VIR_TYPED_PARAM_STRING.rawValue: value = parameter.value.s.map { .string(String(cString: $0)) }
        default: value = nil
        }
        if let value { values[field] = value }
    }
    return values
}
