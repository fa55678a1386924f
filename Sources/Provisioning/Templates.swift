import Foundation
public import LibvirtXML
import Mustache

/// The user's override point for the XML vmctl writes: a directory of Mustache templates
/// (`domain.xml.mustache`, `network.xml.mustache`), fed the same typed values that vmctl's own
/// writers render (`DomainConfiguration`, `NetworkConfiguration`). Without one, vmctl's writers
/// are used; `templates/` in the source tree holds templates equal to them, to start from.
public struct Templates: Sendable {
    /// The directory, or `nil` for vmctl's own writers.
    public let directory: String?

    /// vmctl's own writers.
    public static let builtIn = Templates(directory: nil)

    /// The templates in `directory`, which must exist.
    public static func at(_ directory: String) throws(ProvisioningError) -> Templates {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ProvisioningError(.notFound, "templates directory \(directory) does not exist",
                                    hint: "give a directory holding network.xml.mustache or domain.xml.mustache")
        }
        return Templates(directory: directory)
    }

    /// The domain's definition: `domain.xml.mustache` when the directory has it, else vmctl's writer.
    public func render(_ domain: DomainConfiguration) throws(ProvisioningError) -> String {
        if let template = try template("domain.xml") { return try render(template, domain) }
        do { return try domain.xml } catch { throw ProvisioningError(.invalidValue, "cannot write the domain's XML: \(error)") }
    }

    /// Whether a user's `domain.xml.mustache` writes domains instead of vmctl's writer.
    public var writesDomain: Bool {
        directory.map { FileManager.default.fileExists(atPath: $0 + "/domain.xml.mustache") } ?? false
    }

    /// The network's definition: `network.xml.mustache` when the directory has it, else vmctl's writer.
    public func render(_ network: NetworkConfiguration) throws(ProvisioningError) -> String {
        if let template = try template("network.xml") { return try render(template, network) }
        return network.xml
    }

    private func template(_ name: String) throws(ProvisioningError) -> (path: String, text: String)? {
        guard let directory else { return nil }
        let path = directory + "/" + name + ".mustache"
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ProvisioningError(.file, "cannot read template \(path)", hint: "check its permissions")
        }
        return (path, text)
    }

    /// Renders with every `{{value}}` XML-escaped; the typed value's stored properties are the keys.
    private func render(_ template: (path: String, text: String), _ value: Any) throws(ProvisioningError) -> String {
        do {
            return try MustacheTemplate(string: template.text).render(value)
        } catch {
            throw ProvisioningError(.invalidValue, "template \(template.path) is not valid Mustache: \(error)")
        }
    }
}
