import Foundation

/// Which of an entry's prompts a sample uses (`data.prompt` in the config).
///
/// - `key("p1")`: always that key (a list value: uniform within the list).
/// - `random`: uniform among the non-empty keys other than `p0`, then uniform within the key's list. This
///   is medvlsm's and TuneVLSeg's `random`, except that blank keys are never drawn (they would train on an
///   empty prompt by accident).
/// - `anyOf(["p1", "p3"])`: uniform among those keys that are non-empty in the entry.
///
/// The draw uses `CounterRandom(seed, epoch, sample index, .prompt)`, so a sample gets the same prompt
/// whatever rank or loader thread prepares it, and a resumed run sees the prompts an uninterrupted one
/// would have seen.
///
/// Written in a config as `p1`, `random`, `p1,p3` or `[p1, p3]`; encoded as a string or a list.
public enum PromptChoice: Sendable, Equatable, Hashable, Codable, CustomStringConvertible, LosslessStringConvertible {
    case key(String)
    case random
    case anyOf([String])

    /// The chosen key and text for one sample.
    public struct Choice: Sendable, Equatable {
        public var key: String
        public var text: String
    }

    public init?(_ description: String) {
        try? self.init(parsing: description)
    }

    /// Parses `p1`, `random`, `p1,p3` or `[p1, p3]`.
    public init(parsing text: String) throws {
        var s = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if s.hasPrefix("[") && s.hasSuffix("]") { s = String(s.dropFirst().dropLast()) }
        let parts = s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"'")) }
            .filter { !$0.isEmpty }
        if parts.isEmpty {
            throw PromptChoiceError(
                text: text, detail: "empty; use a key such as p1, \"random\", or a list such as p1,p3")
        }
        if parts.count == 1 {
            self = parts[0].lowercased() == "random" ? .random : .key(parts[0])
            return
        }
        if parts.contains(where: { $0.lowercased() == "random" }) {
            throw PromptChoiceError(text: text, detail: "\"random\" cannot be part of a list of keys")
        }
        self = .anyOf(parts)
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let list = try? container.decode([String].self) {
            guard !list.isEmpty else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "an empty list of prompt keys")
            }
            self = list.count == 1 ? .key(list[0]) : .anyOf(list)
        } else {
            let text = try container.decode(String.self)
            do {
                try self.init(parsing: text)
            } catch let error as PromptChoiceError {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: error.description)
            }
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case let .key(k): try container.encode(k)
        case .random: try container.encode("random")
        case let .anyOf(keys): try container.encode(keys)
        }
    }

    public var description: String {
        switch self {
        case let .key(k): return k
        case .random: return "random"
        case let .anyOf(keys): return keys.joined(separator: ",")
        }
    }

    /// The keys this choice may draw from for `prompts` (non-empty ones only), in natural order.
    public func candidateKeys(_ prompts: PromptSet) -> [String] {
        switch self {
        case let .key(k): return prompts[k].isEmpty ? [] : [k]
        case .random: return prompts.nonEmptyKeys.filter { $0 != "p0" }
        case let .anyOf(keys): return keys.filter { !prompts[$0].isEmpty }
        }
    }

    /// The candidate keys, or the error that names why there are none.
    @discardableResult
    public func validate(_ prompts: PromptSet, entry: EntryReference) throws -> [String] {
        let keys = candidateKeys(prompts)
        if !keys.isEmpty { return keys }
        let present = prompts.nonEmptyKeys
        let have =
            present.isEmpty ? "the entry has no non-empty prompt" : "non-empty keys: \(present.joined(separator: ", "))"
        let detail: String
        switch self {
        case let .key(k): detail = "prompt \"\(k)\" is missing or empty (\(have))"
        case .random: detail = "\"random\" needs a non-empty prompt other than p0 (\(have))"
        case let .anyOf(keys): detail = "none of \(keys.joined(separator: ", ")) is non-empty (\(have))"
        }
        throw DataError.noUsablePrompt(entry, detail: detail)
    }

    /// Draws the prompt of sample `index` in `epoch`.
    public func choose(from prompts: PromptSet, seed: UInt64, epoch: Int, index: Int, entry: EntryReference) throws
        -> Choice
    {
        let keys = try validate(prompts, entry: entry)
        var rng = CounterRandom(seed: seed, epoch: UInt64(epoch), index: UInt64(index), purpose: .prompt)
        let key = keys.count == 1 ? keys[0] : keys[rng.drawIndex(below: keys.count)]
        let texts = prompts[key]
        let text = texts.count == 1 ? texts[0] : texts[rng.drawIndex(below: texts.count)]
        return Choice(key: key, text: text)
    }
}

/// A prompt choice that cannot be parsed from the config.
public struct PromptChoiceError: Error, Sendable, CustomStringConvertible, LocalizedError {
    public var text: String
    public var detail: String
    public var description: String { "invalid prompt choice \"\(text)\": \(detail)" }
    public var errorDescription: String? { description }
}

extension CounterRandom {
    /// Uniform in 0..<n, by Lemire's multiply-and-reject method.
    ///
    /// Written out here rather than using `Int.random(in:using:)` because the standard library does not
    /// promise that its algorithm stays the same across Swift releases, and permutations, prompt choices
    /// and class draws must be reproducible from the seed alone.
    @inline(__always)
    mutating func drawIndex(below n: Int) -> Int {
        precondition(n > 0, "drawIndex(below: \(n))")
        let bound = UInt64(n)
        var product = next().multipliedFullWidth(by: bound)
        if product.low < bound {
            let threshold = (0 &- bound) % bound
            while product.low < threshold {
                product = next().multipliedFullWidth(by: bound)
            }
        }
        return Int(product.high)
    }
}
