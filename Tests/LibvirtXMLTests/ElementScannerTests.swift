import Addressing
import Foundation
import PropertyBased
import Testing
@testable import LibvirtXML

/// vmctl's own reader of its metadata element against Foundation's event parser: the same tree
/// for what libvirt hands back, and nothing read where it would differ (those go to Foundation's).
@Suite("the metadata element's reader")
struct ElementScannerTests {
    static func scanned(_ xml: String) -> ParsedElement? {
        var scanner = ElementScanner(xml)
        return scanner.root()
    }

    @Test("vmctl's metadata, as written and as libxml2 serialises it, reads as Foundation reads it")
    func sameAsFoundation() async throws {
        let golden = try String(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden/metadata.xml"),
                                encoding: .utf8)
        // libvirt's form: double quotes, a namespace declaration, entities in text and attributes.
        let served = """
            <vmctl:vm xmlns:vmctl="https://vmctl.dev/xmlns/vm/1">
              <vmctl:created>2026-12-07T18:01:00Z</vmctl:created>
              <vmctl:label key="a&amp;b &lt;c&gt; &quot;d&quot; &apos;e&apos;">x &amp; y &#233; &#xE9; &#10;</vmctl:label>
              <vmctl:volume pool="vmctl" name="t0-root.qcow2" path="/var/lib/libvirt/vmctl/t0-root.qcow2" role="root"/>
              <vmctl:devices>
                <vmctl:nic type="network" network="bench-open" mac="52:54:00:be:01:01" model="virtio"/>
              </vmctl:devices>
            </vmctl:vm>
            """
        for xml in [golden, served] {
            let ours = try #require(Self.scanned(xml))
            #expect(ours == ParsedElement.parseWithFoundation(xml))
        }
        // Labels of every printable character, written by vmctl's writer.
        await propertyCheck(count: 300, input: Gen<Character>.character(in: " "..."~").string(of: 0...12)) { text in
            let metadata = VMMetadata(createdAt: Date(timeIntervalSince1970: 1_796_663_370), expiresAt: nil, labels: [text: text], image: text,
                                      volumes: [], addresses: [])
            #expect(Self.scanned(metadata.xml) == ParsedElement.parseWithFoundation(metadata.xml), "\(text)")
        }
    }

    @Test("what it does not read goes to Foundation's parser; what is not XML is nil")
    func leftToFoundation() {
        for xml in ["<a><!-- c --></a>", "<a><![CDATA[x]]></a>", "<?xml version='1.0'?><a/>", "<a>&nbsp;</a>"] {
            #expect(Self.scanned(xml) == nil, "\(xml)")
        }
        #expect(ParsedElement.parse("<a><![CDATA[x<y]]></a>")?.text == "x<y")
        for xml in ["", "<a>", "<a></b>", "<a b=c/>", "<a/><b/>", "<a>x</a>y", "<a b='1'c='2'/>", "<a b='<'/>"] {
            #expect(Self.scanned(xml) == nil, "\(xml)")
        }
        for xml in ["", "<a>", "<a></b>", "<a b=c/>", "<a b='1' b='2'/>"] {
            #expect(ParsedElement.parse(xml) == nil, "\(xml)")
        }
        // A repeated attribute is not XML: neither reader takes one of the two values.
        #expect(Self.scanned("<a b='1' b='2'/>") == nil)
    }
}
