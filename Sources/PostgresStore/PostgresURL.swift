public import Foundation

/// A `postgres://` (or `postgresql://`) URL as libpq reads it, the part vmctl needs:
/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require]` over TCP,
/// or `postgres://USER@/DATABASE?host=/run/postgresql[&port=5432]` over the Unix socket in that
/// directory (`.s.PGSQL.PORT`).
public struct PostgresURL: Sendable, Equatable, CustomStringConvertible {
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case socket(path: String)
    }

    public enum TLSMode: String, Sendable, Equatable {
        case disable, prefer, require
    }

    public var endpoint: Endpoint
    public var user: String
    public var password: String?
    public var database: String
    public var tls: TLSMode

    /// Why a URL cannot be used, naming the part.
    public struct Invalid: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    public init(_ text: String) throws(Invalid) {
        guard let components = URLComponents(string: text), ["postgres", "postgresql"].contains(components.scheme ?? "") else {
            throw Invalid(description: "not a postgres:// URL")
        }
        var query: [String: String] = [:]
        for item in components.queryItems ?? [] {
            guard ["host", "port", "sslmode"].contains(item.name) else {
                throw Invalid(description: "unknown parameter \(item.name) (vmctl reads host, port and sslmode)")
            }
            query[item.name] = item.value ?? ""
        }
        guard let user = components.user.flatMap({ $0.removingPercentEncoding }), !user.isEmpty else {
            throw Invalid(description: "no user (postgres://USER@...)")
        }
        self.user = user
        password = components.password?.removingPercentEncoding
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        database = path.removingPercentEncoding.flatMap { $0.isEmpty ? nil : $0 } ?? user
        var port = 5432
        if let text = query["port"] ?? components.port.map(String.init) {
            guard let number = Int(text), (1...65535).contains(number) else { throw Invalid(description: "bad port \(text)") }
            port = number
        }
        let host = query["host"] ?? components.host.flatMap { $0.isEmpty ? nil : $0 }
        guard let host else { throw Invalid(description: "no host (postgres://USER@HOST/DB, or ?host=/SOCKET/DIRECTORY)") }
        if host.hasPrefix("/") {
            endpoint = .socket(path: host + "/.s.PGSQL.\(port)")
        } else {
            endpoint = .tcp(host: host, port: port)
        }
        // libpq's default is prefer; a socket is local and never uses TLS.
        let mode = query["sslmode"] ?? "prefer"
        guard let tls = TLSMode(rawValue: mode) else {
            throw Invalid(description: "sslmode \(mode) is not disable, prefer or require")
        }
        self.tls = tls
    }

    /// The URL as messages print it: the password replaced by `***`.
    public var description: String {
        let credentials = user + (password == nil ? "" : ":***")
        switch endpoint {
        case .tcp(let host, let port):
            let shownHost = host.contains(":") ? "[\(host)]" : host
            return "postgres://\(credentials)@\(shownHost):\(port)/\(database)" + (tls == .prefer ? "" : "?sslmode=\(tls.rawValue)")
        case .socket(let path):
            return "postgres://\(credentials)@/\(database)?host=\((path as NSString).deletingLastPathComponent)"
        }
    }

    /// `text` with any password replaced, for an error about a URL that could not be read.
    public static func redacted(_ text: String) -> String {
        guard var components = URLComponents(string: text), components.password != nil else { return text }
        components.password = "***"
        return components.string ?? text
    }
}
