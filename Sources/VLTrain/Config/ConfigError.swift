import Foundation

/// A configuration mistake, reported as one line that names the key, where its value came from, and, when
/// one is close, the key or option that was probably meant.
public struct ConfigError: Error, Sendable, CustomStringConvertible, LocalizedError {
    public enum Kind: String, Sendable {
        case parse
        case unknownKey
        case typeMismatch
        case invalidValue
        case unknownGroupOption
        case unknownGroup
        case unknownMethod
        case missingFile
        case badOverride
        case interpolation
        case noConfigDirectory
        case composition
    }

    public var kind: Kind
    /// Dotted key path (`trainer.lr`), when the error is about one key.
    public var path: String?
    public var message: String
    public var source: ConfigSource?
    /// The nearest valid key or option, when one is close.
    public var suggestion: String?

    public init(
        _ kind: Kind, path: String? = nil, message: String, source: ConfigSource? = nil, suggestion: String? = nil
    ) {
        self.kind = kind
        self.path = path
        self.message = message
        self.source = source
        self.suggestion = suggestion
    }

    public var description: String {
        var s = ""
        if let source { s += "\(source): " }
        if let path { s += "\(path): " }
        s += message
        if let suggestion { s += " (did you mean '\(suggestion)'?)" }
        return s
    }

    public var errorDescription: String? { description }
}

/// Nearest-name suggestions by edit distance.
public enum ConfigSuggest {
    /// Levenshtein distance (insertions, deletions, substitutions; an adjacent swap counts 1).
    public static func distance(_ a: String, _ b: String) -> Int {
        let x = Array(a.lowercased()), y = Array(b.lowercased())
        if x.isEmpty { return y.count }
        if y.isEmpty { return x.count }
        var prev2 = [Int](repeating: 0, count: y.count + 1)
        var prev = Array(0...y.count)
        var cur = [Int](repeating: 0, count: y.count + 1)
        for i in 1...x.count {
            cur[0] = i
            for j in 1...y.count {
                let cost = x[i - 1] == y[j - 1] ? 0 : 1
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
                if i > 1, j > 1, x[i - 1] == y[j - 2], x[i - 2] == y[j - 1] {
                    cur[j] = min(cur[j], prev2[j - 2] + 1)
                }
            }
            prev2 = prev
            prev = cur
        }
        return prev[y.count]
    }

    /// The candidate closest to `name`, if it is close enough to be a plausible typo (or `name` is a prefix
    /// of it).
    public static func nearest(_ name: String, in candidates: [String]) -> String? {
        guard !candidates.isEmpty else { return nil }
        let scored = candidates.map { ($0, distance(name, $0)) }
        let best = scored.min { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }!
        let limit = max(2, name.count / 3)
        if best.1 <= limit && best.1 < name.count { return best.0 }
        if name.count >= 3,
            let prefixed = candidates.sorted().first(where: { $0.lowercased().hasPrefix(name.lowercased()) })
        {
            return prefixed
        }
        return nil
    }
}
