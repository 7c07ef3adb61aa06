import Foundation
import VLTestSupport
import XCTest

@testable import VLTokenizer

final class CLIPTokenizerTests: XCTestCase {
    /// The vocabulary the package ships (the same files every CLIPSeg checkpoint carries), loaded once:
    /// parsing 49k vocabulary entries and 49k merges is the slow part.
    static let loaded: Result<CLIPTokenizer, Error> = Result {
        try CLIPTokenizer(directory: Fixtures.bundledTokenizer())
    }

    func tokenizer() throws -> CLIPTokenizer {
        try Self.loaded.get()
    }

    struct FixtureCase: Decodable {
        let text: String
        let input_ids: [Int]
        let attention_mask: [Int]
        let matches_open_clip: Bool
    }

    struct FixtureFile: Decodable {
        let cases: [FixtureCase]
    }

    func fixtureCases() throws -> [FixtureCase] {
        let data = try Data(contentsOf: Fixtures.tokenizerCases())
        return try JSONDecoder().decode(FixtureFile.self, from: data).cases
    }

    // MARK: - Reference equality

    func testSpecialTokenIDs() throws {
        let tok = try tokenizer()
        XCTAssertEqual(tok.bosTokenID, 49406)
        XCTAssertEqual(tok.eosTokenID, 49407)
        XCTAssertEqual(tok.padTokenID, 49407)
        XCTAssertEqual(tok.vocabularySize, 49408)
        XCTAssertEqual(CLIPTokenizer.contextLength, 77)
    }

    func testEveryFixtureCaseMatchesReference() throws {
        let tok = try tokenizer()
        let cases = try fixtureCases()
        XCTAssertGreaterThanOrEqual(cases.count, 40)
        var failures: [String] = []
        for c in cases {
            let encoding = tok.encode(c.text, maxLength: 77)
            if encoding.inputIDs != c.input_ids || encoding.attentionMask != c.attention_mask {
                let real = encoding.inputIDs.prefix(encoding.attentionMask.reduce(0, +))
                let expected = c.input_ids.prefix(c.attention_mask.reduce(0, +))
                failures.append("\(c.text.debugDescription)\n  expected \(Array(expected))\n  got      \(Array(real))")
            }
        }
        XCTAssertTrue(
            failures.isEmpty,
            "\(failures.count) of \(cases.count) cases differ:\n"
                + failures.joined(separator: "\n"))
    }

    func testPromptExampleFromSpec() throws {
        let tok = try tokenizer()
        let ids: [Int] = tok.encode("a photo of a polyp")
        XCTAssertEqual(ids, [320, 1125, 539, 320, 6833, 335])
        let encoding: CLIPTokenizer.Encoding = tok.encode("a photo of a polyp")
        XCTAssertEqual(Array(encoding.inputIDs.prefix(8)), [49406, 320, 1125, 539, 320, 6833, 335, 49407])
        XCTAssertEqual(encoding.inputIDs.count, 77)
    }

    func testLiteralSpecialTokensAreSplitBeforeNormalisation() throws {
        let tok = try tokenizer()
        // Added tokens are matched on the raw text, so punctuation glued to the marker stays separate.
        XCTAssertEqual(tok.encode("(<|endoftext|>"), tok.encode("(") + [49407])
        XCTAssertEqual(tok.encode("a<|startoftext|>b"), tok.encode("a") + [49406] + tok.encode("b"))
        // Other spellings are text: the pattern's special alternative still claims the span, and the byte-level
        // pre-tokeniser then cuts it into "<|", the name and "|>", so a following ">" stays separate.
        let lt = tok.encode("<|"), name = tok.encode("endoftext"), gt = tok.encode("|>")
        XCTAssertEqual(tok.encode("<|EndOfText|>"), lt + name + gt)
        XCTAssertFalse(tok.encode("<|EndOfText|>").contains(49407))
        XCTAssertEqual(tok.encode("<|ENDOFTEXT|>>"), lt + name + gt + tok.encode(">"))
        XCTAssertNotEqual(tok.encode("<|ENDOFTEXT|>>"), lt + name + tok.encode("|>>"))
    }

    func testNormalisationRules() throws {
        let tok = try tokenizer()
        // NFC: decomposed and precomposed accents agree.
        XCTAssertEqual(tok.encode("cafe\u{301}"), tok.encode("caf\u{E9}"))
        // Whitespace of every kind separates words and is dropped.
        XCTAssertEqual(tok.encode(" a\u{A0}\tphoto\n\u{3000}"), tok.encode("a photo"))
        // Format characters are not removed: a zero-width space is punctuation between two words.
        XCTAssertEqual(tok.encode("po\u{200B}lyp"), tok.encode("po") + tok.encode("\u{200B}") + tok.encode("lyp"))
        // CJK ideographs are not split apart: one letter run, one word.
        XCTAssertEqual(CLIPTextNormalizer.preTokenize(Array("中文分割".unicodeScalars)), ["中文分割"])
        // Combining marks are not letters: the run of letters stops at them.
        XCTAssertEqual(CLIPTextNormalizer.preTokenize(Array("a\u{301}".unicodeScalars)), ["a", "\u{301}"])
        // Digits are single tokens; contractions are split off.
        XCTAssertEqual(CLIPTextNormalizer.preTokenize(Array("12".unicodeScalars)), ["1", "2"])
        XCTAssertEqual(CLIPTextNormalizer.preTokenize(Array("it's''s".unicodeScalars)), ["it", "'s", "''", "s"])
        // NFC must leave supplementary-plane scalars alone (Foundation's NFC on Linux turned TAG B + U+0331 into ḇ).
        XCTAssertEqual(
            CLIPTextNormalizer.words(ArraySlice("\u{E0062}\u{331}".unicodeScalars)),
            [["\u{E0062}", "\u{331}"]])
        XCTAssertEqual(
            CLIPTextNormalizer.words(ArraySlice("\u{1100}\u{1161}\u{11A8} \u{212B}".unicodeScalars)),
            [["\u{AC01}"], ["\u{E5}"]])
        // Lower-casing is per scalar with full mappings and no final-sigma rule.
        XCTAssertEqual(
            CLIPTextNormalizer.words(ArraySlice("ΟΔΟΣ İ".unicodeScalars)),
            [Array("οδοσ".unicodeScalars), Array("i\u{307}".unicodeScalars)])
    }

    // MARK: - Truncation and padding

    func testLongTextIsTruncatedTo77() throws {
        let tok = try tokenizer()
        let text = Array(repeating: "polyp", count: 200).joined(separator: " ")
        let raw = tok.encode(text) as [Int]
        XCTAssertGreaterThan(raw.count, 75)
        let encoding = tok.encode(text, maxLength: 77)
        XCTAssertEqual(encoding.inputIDs.count, 77)
        XCTAssertEqual(encoding.inputIDs.first, 49406)
        XCTAssertEqual(encoding.inputIDs.last, 49407)
        XCTAssertEqual(Array(encoding.inputIDs[1..<76]), Array(raw.prefix(75)))
        XCTAssertEqual(encoding.attentionMask, Array(repeating: 1, count: 77))
    }

    func testShorterMaxLength() throws {
        let tok = try tokenizer()
        let encoding = tok.encode("a photo of a polyp", maxLength: 5)
        XCTAssertEqual(encoding.inputIDs, [49406, 320, 1125, 539, 49407])
        XCTAssertEqual(encoding.attentionMask, [1, 1, 1, 1, 1])
        let padded = tok.encode("a", maxLength: 6)
        XCTAssertEqual(padded.inputIDs, [49406, 320, 49407, 49407, 49407, 49407])
        XCTAssertEqual(padded.attentionMask, [1, 1, 1, 0, 0, 0])
    }

    func testDynamicPaddingPadsToLongestInBatch() throws {
        let tok = try tokenizer()
        let texts = ["a cat", "a photo of a polyp", ""]
        let batch = tok.encodeBatch(texts, padding: .longest())
        XCTAssertEqual(batch.map(\.inputIDs.count), [8, 8, 8])
        XCTAssertEqual(batch[0].inputIDs, [49406, 320, 2368, 49407, 49407, 49407, 49407, 49407])
        XCTAssertEqual(batch[0].attentionMask, [1, 1, 1, 1, 0, 0, 0, 0])
        XCTAssertEqual(batch[1].attentionMask, Array(repeating: 1, count: 8))
        XCTAssertEqual(batch[2].inputIDs, [49406] + Array(repeating: 49407, count: 7))
        XCTAssertEqual(batch[2].attentionMask, [1, 1, 0, 0, 0, 0, 0, 0])

        // The cap truncates before padding.
        let capped = tok.encodeBatch(texts, padding: .longest(max: 4))
        XCTAssertEqual(
            capped.map(\.inputIDs),
            [
                [49406, 320, 2368, 49407],
                [49406, 320, 1125, 49407],
                [49406, 49407, 49407, 49407],
            ])
        XCTAssertEqual(capped[2].attentionMask, [1, 1, 0, 0])

        // A long prompt makes the batch 77 wide, never wider.
        let long = Array(repeating: "word", count: 300).joined(separator: " ")
        XCTAssertEqual(tok.encodeBatch(["a", long], padding: .longest()).map(\.inputIDs.count), [77, 77])

        let fixed = tok.encodeBatch(texts, padding: .maxLength(77))
        XCTAssertEqual(fixed, texts.map { tok.encode($0, maxLength: 77) })
        XCTAssertTrue(tok.encodeBatch([], padding: .longest()).isEmpty)
    }

    // MARK: - Decoding and concurrency

    func testDecodeRoundTrip() throws {
        let tok = try tokenizer()
        XCTAssertEqual(tok.decode(tok.encode("A photo of a Polyp!", maxLength: 77).inputIDs), "a photo of a polyp !")
        XCTAssertEqual(tok.decode(tok.encode("café 日本") as [Int]), "café 日本")
        XCTAssertEqual(tok.decode([49406, 320, 49407], skipSpecialTokens: false), "<|startoftext|>a <|endoftext|>")
    }

    func testConcurrentEncodingIsConsistent() throws {
        let tok = try tokenizer()
        let cases = try fixtureCases()
        let expected = cases.map(\.input_ids)
        let results = UnsafeResultBox(count: cases.count * 4)
        DispatchQueue.concurrentPerform(iterations: cases.count * 4) { i in
            results.set(i, tok.encode(cases[i % cases.count].text, maxLength: 77).inputIDs)
        }
        for i in 0..<(cases.count * 4) {
            XCTAssertEqual(results.get(i), expected[i % cases.count], "concurrent encoding of case \(i % cases.count)")
        }
    }

    // MARK: - Errors

    private func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("clip-tokenizer-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    private let tinyVocab =
        #"{"a": 0, "b": 1, "a</w>": 2, "b</w>": 3, "ab</w>": 4, "<|startoftext|>": 5, "<|endoftext|>": 6}"#

    private func write(_ text: String, _ url: URL) throws {
        try text.write(to: url, atomically: true, encoding: .utf8)
    }

    func testTinyVocabularyWorks() throws {
        let dir = try temporaryDirectory()
        try write(tinyVocab, dir.appendingPathComponent("vocab.json"))
        try write("#version: 0.2\na b</w>\n\n", dir.appendingPathComponent("merges.txt"))
        let tok = try CLIPTokenizer(directory: dir)
        XCTAssertEqual(tok.encode("AB") as [Int], [4])
        XCTAssertEqual(tok.encode("a b") as [Int], [2, 3])
        // Bytes missing from this toy vocabulary fall back to the unknown token, <|endoftext|>.
        XCTAssertEqual(tok.encode("c") as [Int], [6])
    }

    func testMissingFileError() throws {
        let dir = try temporaryDirectory()
        XCTAssertThrowsError(try CLIPTokenizer(directory: dir)) { error in
            XCTAssertEqual(error as? TokenizerError, .fileNotFound(dir.appendingPathComponent("vocab.json")))
            XCTAssertTrue("\(error)".contains("vocab.json"), "\(error)")
        }
        try write(tinyVocab, dir.appendingPathComponent("vocab.json"))
        XCTAssertThrowsError(try CLIPTokenizer(directory: dir)) { error in
            XCTAssertEqual(error as? TokenizerError, .fileNotFound(dir.appendingPathComponent("merges.txt")))
        }
    }

    func testMalformedMergesLineError() throws {
        let dir = try temporaryDirectory()
        let merges = dir.appendingPathComponent("merges.txt")
        try write(tinyVocab, dir.appendingPathComponent("vocab.json"))
        try write("#version: 0.2\na b</w>\na b c\n", merges)
        XCTAssertThrowsError(try CLIPTokenizer(directory: dir)) { error in
            XCTAssertEqual(error as? TokenizerError, .malformedMerge(merges, line: 3, content: "a b c"))
            let message = "\(error)"
            XCTAssertTrue(message.contains("merges.txt") && message.contains("line 3"), message)
        }
        try write("#version: 0.2\na b</w>\n\na b\n", merges)
        XCTAssertThrowsError(try CLIPTokenizer(directory: dir)) { error in
            XCTAssertEqual(error as? TokenizerError, .malformedMerge(merges, line: 3, content: ""))
        }
    }

    func testMergeOutsideVocabularyError() throws {
        let dir = try temporaryDirectory()
        let merges = dir.appendingPathComponent("merges.txt")
        try write(tinyVocab, dir.appendingPathComponent("vocab.json"))
        try write("#version: 0.2\na b</w>\nb a</w>\n", merges)
        XCTAssertThrowsError(try CLIPTokenizer(directory: dir)) { error in
            XCTAssertEqual(error as? TokenizerError, .mergeSymbolNotInVocabulary(merges, line: 3, symbol: "ba</w>"))
        }
    }

    func testMalformedVocabularyErrors() throws {
        let dir = try temporaryDirectory()
        let vocab = dir.appendingPathComponent("vocab.json")
        try write("#version: 0.2\n", dir.appendingPathComponent("merges.txt"))

        try write("{\"a\": 0,", vocab)
        XCTAssertThrowsError(try CLIPTokenizer(directory: dir)) { error in
            guard case .malformedVocabulary(let url, _)? = error as? TokenizerError else {
                return XCTFail("unexpected \(error)")
            }
            XCTAssertEqual(url, vocab)
        }

        try write("[1, 2]", vocab)
        XCTAssertThrowsError(try CLIPTokenizer(directory: dir)) { error in
            guard case .malformedVocabulary? = error as? TokenizerError else { return XCTFail("unexpected \(error)") }
        }

        try write(#"{"a": 0, "b": "one", "<|startoftext|>": 2, "<|endoftext|>": 3}"#, vocab)
        XCTAssertThrowsError(try CLIPTokenizer(directory: dir)) { error in
            guard case .invalidVocabularyEntry(_, let token, _)? = error as? TokenizerError else {
                return XCTFail("unexpected \(error)")
            }
            XCTAssertEqual(token, "b")
        }

        try write(#"{"a": 0, "b": 0, "<|startoftext|>": 2, "<|endoftext|>": 3}"#, vocab)
        XCTAssertThrowsError(try CLIPTokenizer(directory: dir)) { error in
            XCTAssertEqual(error as? TokenizerError, .duplicateVocabularyID(vocab, id: 0, tokens: ["a", "b"]))
        }

        try write(#"{"a": 0, "<|startoftext|>": 1}"#, vocab)
        XCTAssertThrowsError(try CLIPTokenizer(directory: dir)) { error in
            XCTAssertEqual(error as? TokenizerError, .missingSpecialToken(vocab, token: "<|endoftext|>"))
        }
    }
}

/// Per-index result slots written from `concurrentPerform`; each index is written by exactly one iteration.
private final class UnsafeResultBox: @unchecked Sendable {
    private var slots: [[Int]]
    private let lock = NSLock()
    init(count: Int) { slots = Array(repeating: [], count: count) }
    func set(_ i: Int, _ value: [Int]) { lock.lock(); slots[i] = value; lock.unlock() }
    func get(_ i: Int) -> [Int] { lock.lock(); defer { lock.unlock() }; return slots[i] }
}
