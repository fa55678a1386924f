import Foundation
import Mustache

/// Where vmctl's XML templates are, and rendering them.
struct Templates {
    let directory: String

    /// `--templates DIR`, else `VMCTL_TEMPLATES`, else `<prefix>/share/vmctl/templates` next to an
    /// installed `<prefix>/bin/vmctl`, else the source tree's `templates/`.
    static func locate(_ option: String?) throws(VMCtlError) -> Templates {
        if let chosen = optionOrEnvironment(option, "VMCTL_TEMPLATES") {
            guard FileManager.default.fileExists(atPath: chosen) else {
                throw VMCtlError("templates directory \(chosen) does not exist", hint: "give --templates a directory holding network.xml.mustache")
            }
            return Templates(directory: chosen)
        }
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let installed = executable.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("share/vmctl/templates").path
        if FileManager.default.fileExists(atPath: installed) { return Templates(directory: installed) }
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("templates").path
        return Templates(directory: source)
    }

    /// Renders `NAME.mustache` with `values`; every `{{value}}` is XML-escaped.
    func render(_ name: String, _ values: [String: Any]) throws(VMCtlError) -> String {
        let path = directory + "/" + name + ".mustache"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw VMCtlError("cannot read template \(path)", hint: "check --templates or VMCTL_TEMPLATES")
        }
        do {
            return try MustacheTemplate(string: text).render(values)
        } catch {
            throw VMCtlError("template \(path) is not valid Mustache: \(error)")
        }
    }
}
