/// A fragment of HTML (or inline SVG) built so that nothing from data can become markup.
///
/// Tag and attribute names are `StaticString`s, so only the program's own literals can name them;
/// every text and every attribute value goes through `HTML.escape`, the one escaping function of the
/// report. File names, prompts, config keys and error texts from a run are data: a prompt holding
/// `<script>` shows as those characters and never runs. The only unescaped text is `styleSheet`'s,
/// which is a `StaticString` too.
public struct HTML: Sendable, Equatable {
    /// The markup, ready to concatenate.
    public let rendered: String

    private init(rendered: String) { self.rendered = rendered }

    /// Characters that would end a text or an attribute value are replaced by their references; NUL,
    /// which HTML parsers drop or replace inconsistently, becomes U+FFFD. Quotes are escaped in text
    /// too, so one function serves both places.
    public static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            case "\u{0}": out += "\u{FFFD}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// Text content, escaped.
    public static func text(_ text: String) -> HTML { HTML(rendered: escape(text)) }

    /// An element with escaped attribute values (a nil value leaves the attribute out) and children.
    public static func element(
        _ name: StaticString, _ attributes: [(StaticString, String?)] = [], _ children: [HTML] = []
    ) -> HTML {
        var s = "<\(name)"
        for (key, value) in attributes {
            guard let value else { continue }
            s += " \(key)=\"\(escape(value))\""
        }
        s += ">"
        for child in children { s += child.rendered }
        s += "</\(name)>"
        return HTML(rendered: s)
    }

    /// An element with text content only.
    public static func element(_ name: StaticString, _ attributes: [(StaticString, String?)] = [], text: String)
        -> HTML
    {
        element(name, attributes, [.text(text)])
    }

    /// A void element (`<meta>`, `<img>`, `<br>`): attributes, no children, no end tag.
    public static func void(_ name: StaticString, _ attributes: [(StaticString, String?)] = []) -> HTML {
        var s = "<\(name)"
        for (key, value) in attributes {
            guard let value else { continue }
            s += " \(key)=\"\(escape(value))\""
        }
        return HTML(rendered: s + ">")
    }

    /// A `<style>` element: the program's own CSS, never data.
    public static func styleSheet(_ css: StaticString) -> HTML { HTML(rendered: "<style>\(css)</style>") }

    /// Children side by side, without a wrapping element.
    public static func group(_ children: [HTML]) -> HTML { HTML(rendered: children.map(\.rendered).joined()) }

    /// A whole document: the doctype, then `<html>`.
    public static func document(lang: String, head: [HTML], body: [HTML]) -> String {
        "<!DOCTYPE html>\n"
            + element("html", [("lang", lang)], [element("head", [], head), element("body", [], body)]).rendered
            + "\n"
    }
}
