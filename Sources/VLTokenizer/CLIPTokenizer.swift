import Foundation

/// Errors raised while loading CLIP tokenizer files. Each case names the file, and where it applies the line or
/// vocabulary entry at fault, so a broken checkpoint directory can be fixed without a debugger.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// The file does not exist.
    case fileNotFound(URL)
    /// The file exists but could not be read (permissions, a directory, an I/O error).
    case unreadableFile(URL, reason: String)
    /// The file is not valid UTF-8 text.
    case invalidUTF8(URL)
    /// `vocab.json` is not a JSON object (syntax error, or a different top-level type).
    case malformedVocabulary(URL, reason: String)
    /// One `vocab.json` entry does not map a token to a non-negative integer id.
    case invalidVocabularyEntry(URL, token: String, reason: String)
    /// Two `vocab.json` tokens share one id, so ids could not be decoded unambiguously.
    case duplicateVocabularyID(URL, id: Int, tokens: [String])
    /// A token the tokenizer cannot work without (`<|startoftext|>`, `<|endoftext|>`) is absent from `vocab.json`.
    case missingSpecialToken(URL, token: String)
    /// A `merges.txt` line (1-based, counted in the file as written) is not two whitespace-separated symbols.
    case malformedMerge(URL, line: Int, content: String)
    /// A `merges.txt` line merges symbols, or produces a symbol, that `vocab.json` does not contain: the two files
    /// do not belong together.
    case mergeSymbolNotInVocabulary(URL, line: Int, symbol: String)

    public var description: String {
        switch self {
        case .fileNotFound(let url):
            return "tokenizer file not found: \(url.path)"
        case .unreadableFile(let url, let reason):
            return "cannot read tokenizer file \(url.path): \(reason)"
        case .invalidUTF8(let url):
            return "tokenizer file \(url.path) is not valid UTF-8"
        case .malformedVocabulary(let url, let reason):
            return "malformed vocabulary \(url.path): \(reason)"
        case .invalidVocabularyEntry(let url, let token, let reason):
            return "malformed vocabulary \(url.path): entry \"\(token)\": \(reason)"
        case .duplicateVocabularyID(let url, let id, let tokens):
            let list = tokens.map { "\"\($0)\"" }.joined(separator: ", ")
            return "malformed vocabulary \(url.path): id \(id) is used by several tokens (\(list))"
        case .missingSpecialToken(let url, let token):
            return "vocabulary \(url.path) has no entry for the special token \"\(token)\""
        case .malformedMerge(let url, let line, let content):
            let shown = content.count > 80 ? String(content.prefix(80)) + "…" : content
            return "malformed merges file \(url.path), line \(line): expected two space-separated symbols, "
                + "found \"\(shown)\""
        case .mergeSymbolNotInVocabulary(let url, let line, let symbol):
            return "merges file \(url.path), line \(line): symbol \"\(symbol)\" is not in the vocabulary"
        }
    }
}

/// CLIP's byte-level BPE tokenizer, producing the same ids as Hugging Face `transformers.CLIPTokenizer` (the
/// `tokenizers`-backed implementation, which is what the fixtures were made with; see `cases.json`).
///
/// The pipeline:
/// 1. Exact, case-sensitive occurrences of `<|startoftext|>` / `<|endoftext|>` in the raw text become their ids
///    (they are "added tokens" in the reference and are matched before normalisation).
/// 2. The text between them is NFC-normalised (precomposed and decomposed accents give the same ids), whitespace
///    runs are collapsed, and each scalar is lower-cased. Nothing else: accents, control and format characters
///    (ZWJ), CJK runs, fullwidth forms, ligatures and HTML entities are kept as they are. (`open_clip` cleans
///    text with `ftfy` first, which is why a few fixture cases are marked as not matching it.)
/// 3. Pre-tokenisation with `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
///    (whitespace and nothing else is dropped; digits are always single tokens).
/// 4. Byte-level BPE of each pre-token, with `</w>` on its last symbol.
///
/// The tokenizer is a value type whose only mutable state is an internal, lock-protected BPE cache, so one
/// instance can be shared freely between threads.
public struct CLIPTokenizer: Sendable {
    /// CLIP's text encoder has 77 positions: `<|startoftext|>`, up to 75 BPE tokens, `<|endoftext|>`.
    public static let contextLength = 77

    static let startOfText = "<|startoftext|>"
    static let endOfText = "<|endoftext|>"

    /// How `encodeBatch` pads.
    public enum Padding: Equatable, Sendable {
        /// Every encoding has exactly this length (truncated and padded), like HF `padding="max_length"`.
        case maxLength(Int)
        /// Dynamic padding: every encoding is padded to the longest one in the batch, after truncating each to
        /// `max` tokens (bos and eos included). Saves compute when prompts are short, like HF `padding="longest"`.
        case longest(max: Int = CLIPTokenizer.contextLength)
    }

    /// Model inputs for one text.
    public struct Encoding: Equatable, Sendable {
        /// `<|startoftext|>`, the BPE ids, `<|endoftext|>`, then padding (`<|endoftext|>` again).
        public let inputIDs: [Int]
        /// 1 for `<|startoftext|>` through the first `<|endoftext|>`, 0 for padding.
        public let attentionMask: [Int]

        public init(inputIDs: [Int], attentionMask: [Int]) {
            self.inputIDs = inputIDs
            self.attentionMask = attentionMask
        }
    }

    private let vocabulary: [String: Int]
    private let tokensByID: [Int: String]
    private let bpe: ByteLevelBPE
    private let cache = CLIPTokenCache()

    /// Id of `<|startoftext|>` (49406 in CLIP), prepended to every encoding.
    public let bosTokenID: Int
    /// Id of `<|endoftext|>` (49407 in CLIP), appended to every encoding; CLIP pools the text embedding here.
    public let eosTokenID: Int
    /// CLIP pads with `<|endoftext|>`; the attention mask, not the id, tells padding from the real end token.
    public var padTokenID: Int { eosTokenID }
    /// Symbols missing from the vocabulary map to `<|endoftext|>`, as in Hugging Face. This cannot happen with
    /// CLIP's vocabulary, which holds every byte symbol in both plain and `</w>` form.
    private var unknownTokenID: Int { eosTokenID }

    /// Number of entries in `vocab.json`.
    public var vocabularySize: Int { vocabulary.count }

    /// Loads a tokenizer from a `vocab.json` (token → id) and a `merges.txt` (one merge per line, ranked by order,
    /// after an optional `#version` header).
    ///
    /// - Throws: `TokenizerError` naming the file and the entry or line at fault.
    public init(vocabURL: URL, mergesURL: URL) throws {
        let vocabulary = try Self.loadVocabulary(vocabURL)
        guard let bos = vocabulary[Self.startOfText] else {
            throw TokenizerError.missingSpecialToken(vocabURL, token: Self.startOfText)
        }
        guard let eos = vocabulary[Self.endOfText] else {
            throw TokenizerError.missingSpecialToken(vocabURL, token: Self.endOfText)
        }
        self.vocabulary = vocabulary
        var tokensByID: [Int: String] = [:]
        tokensByID.reserveCapacity(vocabulary.count)
        for (token, id) in vocabulary { tokensByID[id] = token }
        self.tokensByID = tokensByID
        self.bpe = ByteLevelBPE(ranks: try Self.loadMerges(mergesURL, vocabulary: vocabulary))
        self.bosTokenID = bos
        self.eosTokenID = eos
    }

    /// Loads `vocab.json` and `merges.txt` from a model directory (the Hugging Face checkpoint layout).
    public init(directory: URL) throws {
        try self.init(
            vocabURL: directory.appendingPathComponent("vocab.json"),
            mergesURL: directory.appendingPathComponent("merges.txt"))
    }

    // MARK: - Encoding

    /// The BPE ids of `text`, without `<|startoftext|>`/`<|endoftext|>` and without truncation.
    ///
    /// Exact literal `<|startoftext|>` / `<|endoftext|>` in the text become their special ids (Hugging Face matches
    /// them as added tokens before normalising). Other spellings such as `<|EndOfText|>` are ordinary text.
    ///
    /// Overloading note: without type context `encode(text)` resolves to this method; write
    /// `encode(text, maxLength: 77)` or annotate the result as `Encoding` to get model inputs.
    public func encode(_ text: String) -> [Int] {
        var ids: [Int] = []
        for segment in Self.splitOnSpecialTokens(Array(text.unicodeScalars)) {
            switch segment {
            case .special(let token):
                ids.append(token == Self.startOfText ? bosTokenID : eosTokenID)
            case .text(let scalars):
                for word in CLIPTextNormalizer.words(scalars) {
                    for piece in CLIPTextNormalizer.preTokenize(word) {
                        ids.append(contentsOf: tokenIDs(forPreToken: piece))
                    }
                }
            }
        }
        return ids
    }

    /// Model inputs: `<|startoftext|>` + the first `maxLength - 2` BPE ids + `<|endoftext|>`, padded with
    /// `<|endoftext|>` to `maxLength`, with the matching attention mask. Matches HF
    /// `tokenizer(text, padding="max_length", truncation=True, max_length=maxLength)`.
    public func encode(_ text: String, maxLength: Int = CLIPTokenizer.contextLength) -> Encoding {
        let framed = framedIDs(text, maxLength: maxLength)
        return Self.pad(framed, to: maxLength, with: padTokenID)
    }

    /// Encodes several texts. `.maxLength(n)` gives every text `n` positions; `.longest(max:)` truncates each to
    /// `max` and pads all to the longest result, so a batch of short prompts runs on a short sequence.
    public func encodeBatch(_ texts: [String], padding: Padding) -> [Encoding] {
        switch padding {
        case .maxLength(let length):
            return texts.map { encode($0, maxLength: length) }
        case .longest(let maximum):
            let framed = texts.map { framedIDs($0, maxLength: maximum) }
            let length = framed.map(\.count).max() ?? 0
            return framed.map { Self.pad($0, to: length, with: padTokenID) }
        }
    }

    /// Best-effort inverse of `encode`, for logs and debugging: byte symbols are turned back into UTF-8 (invalid
    /// sequences become U+FFFD) and each `</w>` becomes a space. Case, accents-vs-NFC and whitespace are not
    /// recovered. Unknown ids are skipped; special tokens (and therefore padding) are skipped unless asked for.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = true) -> String {
        var bytes: [UInt8] = []
        for id in ids {
            if skipSpecialTokens && (id == bosTokenID || id == eosTokenID) { continue }
            guard let token = tokensByID[id] else { continue }
            for scalar in token.unicodeScalars {
                if let byte = ByteLevelBPE.byteDecoder[scalar] {
                    bytes.append(byte)
                } else {
                    bytes.append(contentsOf: Array(String(scalar).utf8))
                }
            }
        }
        let text = String(decoding: bytes, as: UTF8.self)
            .replacingOccurrences(of: ByteLevelBPE.endOfWord, with: " ")
        let scalars = Array(text.unicodeScalars)
        guard let start = scalars.firstIndex(where: { !CLIPTextNormalizer.isWhitespace($0) }),
            let end = scalars.lastIndex(where: { !CLIPTextNormalizer.isWhitespace($0) })
        else { return "" }
        return String(String.UnicodeScalarView(scalars[start...end]))
    }

    // MARK: - Internals

    private func framedIDs(_ text: String, maxLength: Int) -> [Int] {
        precondition(maxLength >= 2, "maxLength must leave room for <|startoftext|> and <|endoftext|>")
        let ids = encode(text)
        var framed: [Int] = [bosTokenID]
        framed.append(contentsOf: ids.prefix(maxLength - 2))
        framed.append(eosTokenID)
        return framed
    }

    private static func pad(_ ids: [Int], to length: Int, with padID: Int) -> Encoding {
        let padding = max(0, length - ids.count)
        return Encoding(
            inputIDs: ids + Array(repeating: padID, count: padding),
            attentionMask: Array(repeating: 1, count: ids.count) + Array(repeating: 0, count: padding))
    }

    /// Ids of one pre-token, through the cache.
    private func tokenIDs(forPreToken piece: String) -> [Int] {
        if let cached = cache.lookup(piece) { return cached }
        let result = bpe.symbols(forUTF8: Array(piece.utf8)).map { vocabulary[$0] ?? unknownTokenID }
        cache.store(piece, result)
        return result
    }

    private enum Segment {
        case text(ArraySlice<Unicode.Scalar>)
        case special(String)
    }

    /// Hugging Face splits the raw text on its added tokens (exact, case-sensitive match) before any
    /// normalisation, so e.g. `(<|endoftext|>` gives `(` and the end token rather than one punctuation run.
    private static func splitOnSpecialTokens(_ scalars: [Unicode.Scalar]) -> [Segment] {
        let specials = [startOfText, endOfText].map { ($0, Array($0.unicodeScalars)) }
        var segments: [Segment] = []
        var segmentStart = 0
        var i = 0
        scan: while i < scalars.count {
            if scalars[i] == "<" {
                for (token, pattern) in specials
                where i + pattern.count <= scalars.count && scalars[i..<(i + pattern.count)].elementsEqual(pattern) {
                    if segmentStart < i { segments.append(.text(scalars[segmentStart..<i])) }
                    segments.append(.special(token))
                    i += pattern.count
                    segmentStart = i
                    continue scan
                }
            }
            i += 1
        }
        if segmentStart < scalars.count { segments.append(.text(scalars[segmentStart...])) }
        return segments
    }

    // MARK: - Loading

    private static func readFile(_ url: URL) throws -> Data {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw TokenizerError.fileNotFound(url)
        }
        if isDirectory.boolValue { throw TokenizerError.unreadableFile(url, reason: "is a directory") }
        do {
            return try Data(contentsOf: url)
        } catch {
            throw TokenizerError.unreadableFile(url, reason: error.localizedDescription)
        }
    }

    /// One `vocab.json` value, decoded leniently so a bad entry can be reported by name instead of as an opaque
    /// decoding failure.
    private enum VocabularyValue: Decodable {
        case id(Int)
        case invalid(String)

        init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let id = try? container.decode(Int.self) {
                self = .id(id)
            } else if let number = try? container.decode(Double.self) {
                self = .invalid("expected an integer id, found the number \(number)")
            } else if let flag = try? container.decode(Bool.self) {
                self = .invalid("expected an integer id, found \(flag)")
            } else if let string = try? container.decode(String.self) {
                self = .invalid("expected an integer id, found the string \"\(string)\"")
            } else if container.decodeNil() {
                self = .invalid("expected an integer id, found null")
            } else {
                self = .invalid("expected an integer id, found an array or object")
            }
        }
    }

    static func loadVocabulary(_ url: URL) throws -> [String: Int] {
        let data = try readFile(url)
        guard String(data: data, encoding: .utf8) != nil else { throw TokenizerError.invalidUTF8(url) }
        let raw: [String: VocabularyValue]
        do {
            raw = try JSONDecoder().decode([String: VocabularyValue].self, from: data)
        } catch let DecodingError.typeMismatch(_, context) {
            throw TokenizerError.malformedVocabulary(
                url, reason: "expected a JSON object mapping tokens to ids (\(context.debugDescription))")
        } catch let DecodingError.dataCorrupted(context) {
            let detail = context.underlyingError.map { " (\($0))" } ?? ""
            throw TokenizerError.malformedVocabulary(url, reason: "invalid JSON: \(context.debugDescription)\(detail)")
        } catch {
            throw TokenizerError.malformedVocabulary(url, reason: "\(error)")
        }

        var vocabulary: [String: Int] = [:]
        vocabulary.reserveCapacity(raw.count)
        var owners: [Int: String] = [:]
        owners.reserveCapacity(raw.count)
        // Sorted so that, with several bad entries, the one reported does not depend on hash order.
        for token in raw.keys.sorted() {
            switch raw[token]! {
            case .invalid(let reason):
                throw TokenizerError.invalidVocabularyEntry(url, token: token, reason: reason)
            case .id(let id):
                guard id >= 0 else {
                    throw TokenizerError.invalidVocabularyEntry(url, token: token, reason: "negative id \(id)")
                }
                if let other = owners[id] {
                    throw TokenizerError.duplicateVocabularyID(url, id: id, tokens: [other, token])
                }
                owners[id] = token
                vocabulary[token] = id
            }
        }
        return vocabulary
    }

    /// Parses `merges.txt`: one merge per line, ranked by order. As in the reference, `#version` header lines are
    /// skipped, a repeated pair keeps its last rank, and a line that is not exactly two symbols is an error, as is a
    /// merge whose symbols or result are not in the vocabulary (it would be a vocabulary/merges mismatch). Symbols
    /// are split on any whitespace, so CRLF files work, and blank lines at the end are ignored.
    static func loadMerges(_ url: URL, vocabulary: [String: Int]) throws -> [ByteLevelBPE.Pair: Int] {
        let data = try readFile(url)
        guard let text = String(data: data, encoding: .utf8) else { throw TokenizerError.invalidUTF8(url) }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        func fields(_ line: Substring) -> [Substring] {
            line.split(whereSeparator: { $0.unicodeScalars.allSatisfy(CLIPTextNormalizer.isWhitespace) })
        }
        var lastContentLine = lines.count - 1
        while lastContentLine >= 0, fields(lines[lastContentLine]).isEmpty { lastContentLine -= 1 }

        var ranks: [ByteLevelBPE.Pair: Int] = [:]
        ranks.reserveCapacity(lastContentLine + 1)
        var rank = 0
        for index in 0..<(lastContentLine + 1) where !lines[index].hasPrefix("#version") {
            let parts = fields(lines[index])
            guard parts.count == 2 else {
                throw TokenizerError.malformedMerge(url, line: index + 1, content: String(lines[index]))
            }
            let pair = ByteLevelBPE.Pair(first: String(parts[0]), second: String(parts[1]))
            for symbol in [pair.first, pair.second, pair.first + pair.second] where vocabulary[symbol] == nil {
                throw TokenizerError.mergeSymbolNotInVocabulary(url, line: index + 1, symbol: symbol)
            }
            ranks[pair] = rank
            rank += 1
        }
        return ranks
    }
}

/// A thread-safe memo of pre-token → ids. Prompts repeat the same few hundred words, so after warm-up almost
/// every word skips BPE. The size is capped (cleared when full) so adversarial input cannot grow it unboundedly.
// @unchecked Sendable: every access to the memo holds its lock.
final class CLIPTokenCache: @unchecked Sendable {
    private static let capacity = 100_000
    private let lock = NSLock()
    private var entries: [String: [Int]] = [:]

    func lookup(_ key: String) -> [Int]? {
        lock.lock()
        defer { lock.unlock() }
        return entries[key]
    }

    func store(_ key: String, _ value: [Int]) {
        lock.lock()
        defer { lock.unlock() }
        if entries.count >= Self.capacity { entries.removeAll(keepingCapacity: true) }
        entries[key] = value
    }
}

/// The normalisation and pre-tokenisation the reference applies before BPE, at the Unicode-scalar level (Swift
/// `Character` properties describe grapheme clusters, which would glue combining marks or ZWJ onto letters, whereas
/// the reference's `\p{L}` is the general category of each code point).
enum CLIPTextNormalizer {
    /// `\s` of the reference's regex engine (Oniguruma): the Unicode White_Space property (tab...CR, NEL, and the
    /// Zs/Zl/Zp separators). Note the ASCII information separators U+001C...U+001F are *not* whitespace here.
    static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        s.properties.isWhitespace
    }

    /// The reference normaliser `Sequence[NFC, Replace(\s+, " "), Lowercase]`, followed by splitting on whitespace
    /// (the pre-tokeniser drops whitespace, so words are independent). Lower-casing is per scalar with the full
    /// mapping (`İ` → `i̇`) and no context rules (capital sigma always becomes `σ`), as Rust's `char::to_lowercase`.
    /// There is no accent stripping, no control-character removal, no CJK splitting, and no NFKC folding of
    /// fullwidth forms or ligatures.
    static func words(_ text: ArraySlice<Unicode.Scalar>) -> [[Unicode.Scalar]] {
        let normalized = text.allSatisfy(\.isASCII) ? Array(text) : nfc(text)
        var words: [[Unicode.Scalar]] = []
        var current: [Unicode.Scalar] = []
        for s in normalized {
            if isWhitespace(s) {
                if !current.isEmpty { words.append(current); current.removeAll(keepingCapacity: true) }
            } else if s.isASCII {
                current.append(s.value >= 0x41 && s.value <= 0x5A ? Unicode.Scalar(s.value + 32)! : s)
            } else {
                current.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars)
            }
        }
        if !current.isEmpty { words.append(current) }
        return words
    }

    /// NFC via the standard library's own normaliser (the one behind `String` comparison), not Foundation's
    /// `precomposedStringWithCanonicalMapping`: on Linux the latter composes supplementary-plane scalars as if they
    /// were in the BMP (U+E0062 TAG B + U+0331 came out as U+1E07 "ḇ"), which changed ids.
    private static func nfc(_ scalars: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return Array(String(decoding: String(view)._nfcCodeUnits, as: UTF8.self).unicodeScalars)
    }

    private static func isLetter(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    private static func isNumber(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    private static func matches(_ word: [Unicode.Scalar], at index: Int, _ pattern: [Unicode.Scalar]) -> Bool {
        index + pattern.count <= word.count && word[index..<(index + pattern.count)].elementsEqual(pattern)
    }

    private static let specialPatterns: [[Unicode.Scalar]] =
        ["<|startoftext|>", "<|endoftext|>"].map { Array($0.unicodeScalars) }
    private static let contractionPatterns: [[Unicode.Scalar]] =
        ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].map { Array($0.unicodeScalars) }

    /// Pre-tokens of one whitespace-free, normalised word: the matches of
    /// `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`, trying the
    /// alternatives in order at each position as the regex engine does (case-sensitively; the text is already
    /// lower-case). Nothing is dropped, since every non-space scalar matches some alternative.
    ///
    /// The reference then runs a `ByteLevel` pre-tokeniser whose GPT-2 regex re-splits each piece. That is a no-op
    /// for every alternative except the special-token ones, which it cuts into `<|`, the name, and `|>`; so a
    /// special token that only appears after lower-casing (`<|ENDOFTEXT|>`) is BPE-encoded as text, not as its id.
    /// Its effect remains visible in the neighbours: `<|endoftext|>>` gives `<|`, `endoftext`, `|>`, `>`.
    static func preTokenize(_ word: [Unicode.Scalar]) -> [String] {
        var pieces: [String] = []
        var i = 0
        func emit(_ range: Range<Int>) {
            var view = String.UnicodeScalarView()
            view.append(contentsOf: word[range])
            pieces.append(String(view))
        }
        scan: while i < word.count {
            let s = word[i]
            if isWhitespace(s) { i += 1; continue }
            for pattern in specialPatterns where matches(word, at: i, pattern) {
                let end = i + pattern.count
                emit(i..<(i + 2))
                emit((i + 2)..<(end - 2))
                emit((end - 2)..<end)
                i = end
                continue scan
            }
            for pattern in contractionPatterns where matches(word, at: i, pattern) {
                emit(i..<(i + pattern.count))
                i += pattern.count
                continue scan
            }
            var end = i + 1
            if isLetter(s) {
                while end < word.count, isLetter(word[end]) { end += 1 }
            } else if !isNumber(s) {
                while end < word.count, !isWhitespace(word[end]), !isLetter(word[end]), !isNumber(word[end]) {
                    end += 1
                }
            }
            emit(i..<end)
            i = end
        }
        return pieces
    }
}
