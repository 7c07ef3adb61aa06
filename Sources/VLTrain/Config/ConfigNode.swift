import Foundation
import Yams

/// Where a configuration value came from: a file (and line), a command-line override, or the built-in
/// defaults of `VLSegConfig`. Every error about a value names it.
public struct ConfigSource: Sendable, Equatable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable, Hashable {
        /// A YAML file, with the 1-based line when known.
        case file(path: String, line: Int?)
        /// A command-line override, as the user typed it (`trainer.lr=1e-3`, `tuning=coop`).
        case override(String)
        /// The default value declared in `VLSegConfig` (no file sets the key).
        case builtin
        /// A value computed while resolving (`${...}` interpolation), with the source of the template.
        case interpolated(String)
    }

    public var kind: Kind

    public init(_ kind: Kind) { self.kind = kind }

    public static let builtin = ConfigSource(.builtin)
    public static func file(_ path: String, line: Int? = nil) -> ConfigSource {
        ConfigSource(.file(path: path, line: line))
    }
    public static func override(_ text: String) -> ConfigSource { ConfigSource(.override(text)) }

    public var description: String {
        switch kind {
        case let .file(path, line?): return "\(path):\(line)"
        case let .file(path, nil): return path
        case let .override(text): return "override '\(text)'"
        case .builtin: return "built-in default"
        case let .interpolated(from): return "interpolation in \(from)"
        }
    }
}

/// One node of a configuration tree: what YAML gives, with the source of every value and the order of
/// keys kept (printing follows it).
public struct ConfigNode: Sendable, Equatable {
    public enum Value: Sendable, Equatable {
        case null
        /// `text` as written. `isString` is true for quoted YAML scalars and for strings produced by the
        /// encoder: such a value is never read as a number, a boolean or null.
        case scalar(String, isString: Bool)
        case list([ConfigNode])
        case map([(key: String, node: ConfigNode)])

        public static func == (a: Value, b: Value) -> Bool {
            switch (a, b) {
            case (.null, .null): return true
            case let (.scalar(x, s), .scalar(y, t)): return x == y && s == t
            case let (.list(x), .list(y)): return x == y
            case let (.map(x), .map(y)):
                return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.node == $1.node }
            default: return false
            }
        }
    }

    public var value: Value
    public var source: ConfigSource

    public init(_ value: Value, source: ConfigSource) {
        self.value = value
        self.source = source
    }

    public static func map(_ pairs: [(key: String, node: ConfigNode)] = [], source: ConfigSource) -> ConfigNode {
        ConfigNode(.map(pairs), source: source)
    }

    public var isMap: Bool { if case .map = value { return true } else { return false } }
    public var isNull: Bool { if case .null = value { return true } else { return false } }

    public var pairs: [(key: String, node: ConfigNode)]? {
        if case let .map(p) = value { return p } else { return nil }
    }

    public var scalarText: String? {
        if case let .scalar(t, _) = value { return t } else { return nil }
    }

    public subscript(key: String) -> ConfigNode? {
        pairs?.first { $0.key == key }?.node
    }

    /// The node at a dotted path (`trainer.schedule.name`), if every step exists.
    public func node(at path: [String]) -> ConfigNode? {
        var n = self
        for k in path {
            guard let next = n[k] else { return nil }
            n = next
        }
        return n
    }

    /// Sets (or inserts, keeping order) `key` in a map node.
    public mutating func set(_ key: String, _ child: ConfigNode) {
        guard case var .map(p) = value else { return }
        if let i = p.firstIndex(where: { $0.key == key }) {
            p[i].node = child
        } else {
            p.append((key: key, node: child))
        }
        value = .map(p)
    }

    public mutating func remove(_ key: String) {
        guard case var .map(p) = value else { return }
        p.removeAll { $0.key == key }
        value = .map(p)
    }

    /// Every leaf (scalar, null, list, or empty map) by dotted path, in tree order.
    public func leaves(prefix: String = "") -> [(path: String, node: ConfigNode)] {
        switch value {
        case let .map(p) where !p.isEmpty:
            return p.flatMap { pair in
                pair.node.leaves(prefix: prefix.isEmpty ? pair.key : "\(prefix).\(pair.key)")
            }
        default:
            return [(prefix, self)]
        }
    }

    /// Every dotted path of every map key (interior nodes too).
    public func allPaths(prefix: String = "") -> [String] {
        guard let p = pairs else { return [] }
        return p.flatMap { pair -> [String] in
            let path = prefix.isEmpty ? pair.key : "\(prefix).\(pair.key)"
            return [path] + pair.node.allPaths(prefix: path)
        }
    }
}

// MARK: - Merging

extension ConfigNode {
    /// Hydra/OmegaConf merge: maps merge key by key (recursively); anything else replaces.
    public func merged(with other: ConfigNode) -> ConfigNode {
        guard case let .map(mine) = value, case let .map(theirs) = other.value else { return other }
        var result = ConfigNode(.map(mine), source: source)
        for (k, v) in theirs {
            if let existing = result[k] {
                result.set(k, existing.merged(with: v))
            } else {
                result.set(k, v)
            }
        }
        return result
    }
}

// MARK: - YAML parsing

enum ConfigYAML {
    /// Parses a YAML document into a tree; an empty document is an empty map.
    static func parse(_ text: String, source: ConfigSource) throws -> ConfigNode {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw ConfigError(
                .parse, message: "invalid YAML: \(yamlErrorSummary(error))", source: sourceWithLine(source, error))
        }
        guard let root else { return .map(source: source) }
        return try convert(root, source: source)
    }

    /// Parses a command-line value (`20`, `[p1, p2]`, `a photo of a`, `{a: 1}`). Text that is not valid
    /// YAML is taken as a plain string.
    static func parseValue(_ text: String, source: ConfigSource) -> ConfigNode {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.isEmpty { return ConfigNode(.null, source: source) }
        if let node = try? Yams.compose(yaml: trimmed), let converted = try? convert(node, source: source) {
            return converted
        }
        return ConfigNode(.scalar(trimmed, isString: true), source: source)
    }

    private static func sourceWithLine(_ source: ConfigSource, _ mark: Mark?) -> ConfigSource {
        guard case let .file(path, _) = source.kind, let mark else { return source }
        return .file(path, line: mark.line)
    }

    private static func sourceWithLine(_ source: ConfigSource, _ error: YamlError) -> ConfigSource {
        switch error {
        case let .scanner(_, _, mark, _), let .parser(_, _, mark, _), let .composer(_, _, mark, _):
            return sourceWithLine(source, mark)
        case let .duplicatedKeysInMapping(_, context):
            return sourceWithLine(source, context.mark)
        default:
            return source
        }
    }

    private static func yamlErrorSummary(_ error: YamlError) -> String {
        switch error {
        case let .scanner(_, problem, _, _), let .parser(_, problem, _, _), let .composer(_, problem, _, _):
            return problem
        case let .duplicatedKeysInMapping(duplicates, _):
            return "duplicated key(s) \(duplicates.joined(separator: ", "))"
        default:
            return "\(error)".split(separator: "\n").first.map(String.init) ?? "\(error)"
        }
    }

    private static func convert(_ node: Node, source: ConfigSource) throws -> ConfigNode {
        let here = sourceWithLine(source, node.mark)
        switch node {
        case let .scalar(s):
            if s.style == .plain || s.style == .any {
                if isNullLiteral(s.string) { return ConfigNode(.null, source: here) }
                return ConfigNode(.scalar(s.string, isString: false), source: here)
            }
            return ConfigNode(.scalar(s.string, isString: true), source: here)
        case let .sequence(seq):
            return ConfigNode(.list(try seq.map { try convert($0, source: source) }), source: here)
        case let .mapping(m):
            var pairs: [(key: String, node: ConfigNode)] = []
            for (k, v) in m {
                guard case let .scalar(ks) = k else {
                    throw ConfigError(
                        .parse, message: "mapping keys must be plain strings", source: sourceWithLine(source, k.mark))
                }
                if pairs.contains(where: { $0.key == ks.string }) {
                    throw ConfigError(
                        .parse, message: "duplicated key '\(ks.string)'", source: sourceWithLine(source, k.mark))
                }
                pairs.append((key: ks.string, node: try convert(v, source: source)))
            }
            return ConfigNode(.map(pairs), source: here)
        case .alias:
            throw ConfigError(.parse, message: "YAML aliases are not supported in configs", source: here)
        }
    }

    static func isNullLiteral(_ s: String) -> Bool {
        s.isEmpty || s == "~" || s == "null" || s == "Null" || s == "NULL"
    }
}

// MARK: - YAML emitting (canonical, stable)

enum ConfigYAMLWriter {
    /// Block-style YAML: maps as indented blocks, lists of scalars in flow style, strings quoted only where
    /// a YAML reader would take them for something else. With `annotate`, each leaf carries its source as a
    /// comment.
    static func write(_ node: ConfigNode, annotate: Bool = false) -> String {
        var out = ""
        writeMap(node, indent: 0, annotate: annotate, into: &out)
        return out
    }

    private static func writeMap(_ node: ConfigNode, indent: Int, annotate: Bool, into out: inout String) {
        guard let pairs = node.pairs else { return }
        let pad = String(repeating: " ", count: indent)
        for (key, child) in pairs {
            let k = quoteIfNeeded(key, isString: true)
            switch child.value {
            case let .map(p) where !p.isEmpty:
                out += "\(pad)\(k):\n"
                writeMap(child, indent: indent + 2, annotate: annotate, into: &out)
            default:
                out += "\(pad)\(k): \(inline(child))"
                if annotate { out += "  # \(child.source)" }
                out += "\n"
            }
        }
    }

    /// A value on one line (flow style for lists and maps).
    static func inline(_ node: ConfigNode) -> String {
        switch node.value {
        case .null: return "null"
        case let .scalar(text, isString): return quoteIfNeeded(text, isString: isString)
        case let .list(items): return "[" + items.map(inline).joined(separator: ", ") + "]"
        case let .map(p):
            return "{"
                + p.map { "\(quoteIfNeeded($0.key, isString: true)): \(inline($0.node))" }.joined(separator: ", ") + "}"
        }
    }

    static func quoteIfNeeded(_ text: String, isString: Bool) -> String {
        if !isString {
            // A plain scalar from YAML or a number/boolean from the encoder: written as it reads.
            if text.isEmpty || needsQuotes(text) { return quoted(text) }
            return text
        }
        if text.isEmpty || needsQuotes(text) || readsAsNonString(text) { return quoted(text) }
        return text
    }

    private static func needsQuotes(_ s: String) -> Bool {
        if s.hasPrefix(" ") || s.hasSuffix(" ") { return true }
        if s.contains(": ") || s.contains(" #") || s.hasSuffix(":") { return true }
        if s.contains("\n") || s.contains("\t") || s.contains("\"") || s.contains("\\") { return true }
        if s.contains(",") || s.contains("[") || s.contains("]") || s.contains("{") || s.contains("}") { return true }
        guard let first = s.first else { return true }
        if "&*!|>'%@`#".contains(first) { return true }
        if (first == "-" || first == "?" || first == ":") && (s.count == 1 || s.dropFirst().first == " ") {
            return true
        }
        return false
    }

    /// Whether a plain scalar with this text would be read as null, a boolean or a number.
    static func readsAsNonString(_ s: String) -> Bool {
        let lower = s.lowercased()
        if ConfigYAML.isNullLiteral(s) { return true }
        if ["true", "false", "yes", "no", "on", "off", "y", "n"].contains(lower) { return true }
        if Int(s) != nil || Double(s) != nil { return true }
        if [".inf", "-.inf", "+.inf", ".nan"].contains(lower) { return true }
        if s.hasPrefix("0x") || s.hasPrefix("0o") { return true }
        return false
    }

    private static func quoted(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }
}
