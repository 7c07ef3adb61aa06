import Foundation

/// The byte-level byte-pair-encoding core used by CLIP (and GPT-2): raw UTF-8 bytes are mapped to printable
/// Unicode scalars, then adjacent symbols are merged greedily by merge rank.
///
/// Working on bytes rather than characters means every input string is representable without an unknown token:
/// the 256 byte symbols (and their `</w>` forms) are all in the vocabulary, so BPE can only fail to merge, never
/// fail to encode.
struct ByteLevelBPE: Sendable {
    /// An adjacent pair of symbols; the key of the merge-rank table.
    struct Pair: Hashable, Sendable {
        let first: String
        let second: String
    }

    /// CLIP marks the last symbol of every pre-token with this suffix, so "cat" at the end of a word and "cat" in
    /// the middle of "cathedral" are different vocabulary entries.
    static let endOfWord = "</w>"

    /// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes (`!`...`~`, `¡`...`¬`, `®`...`ÿ`) map to themselves; the
    /// remaining 68 bytes (controls, space, DEL, NBSP, soft hyphen) map in order to U+0100, U+0101, ... so that no
    /// symbol is whitespace or a control character, which the merges file format could not represent.
    static let byteEncoder: [Unicode.Scalar] = {
        func printable(_ b: Int) -> Bool {
            (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
        }
        var table = [Unicode.Scalar](repeating: "\0", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            if printable(b) {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    /// The inverse of `byteEncoder`, used by decoding.
    static let byteDecoder: [Unicode.Scalar: UInt8] = {
        var table: [Unicode.Scalar: UInt8] = [:]
        for (b, scalar) in byteEncoder.enumerated() { table[scalar] = UInt8(b) }
        return table
    }()

    /// The one-scalar string for each byte, precomputed so the hot loop does not rebuild them.
    private static let byteSymbols: [String] = byteEncoder.map { String(String.UnicodeScalarView([$0])) }
    private static let byteSymbolsEndOfWord: [String] = byteSymbols.map { $0 + endOfWord }

    /// Merge rank of each pair: lower ranks were learned earlier and are applied first.
    let ranks: [Pair: Int]

    init(ranks: [Pair: Int]) {
        self.ranks = ranks
    }

    /// Splits the UTF-8 bytes of one pre-token into BPE symbols.
    ///
    /// This is the standard GPT-2/CLIP loop: start from one symbol per byte (the last carrying `</w>`), repeatedly
    /// pick the adjacent pair with the lowest merge rank and merge every non-overlapping occurrence of it left to
    /// right, until no adjacent pair has a rank.
    func symbols(forUTF8 bytes: [UInt8]) -> [String] {
        guard let lastByte = bytes.last else { return [] }
        var word = bytes.dropLast().map { Self.byteSymbols[Int($0)] }
        word.append(Self.byteSymbolsEndOfWord[Int(lastByte)])

        while word.count > 1 {
            var bestRank = Int.max
            var bestIndex = -1
            for i in 0..<(word.count - 1) {
                if let rank = ranks[Pair(first: word[i], second: word[i + 1])], rank < bestRank {
                    bestRank = rank
                    bestIndex = i
                }
            }
            if bestIndex < 0 { break }

            let first = word[bestIndex]
            let second = word[bestIndex + 1]
            let joined = first + second
            var merged: [String] = []
            merged.reserveCapacity(word.count - 1)
            var i = 0
            while i < word.count {
                if i + 1 < word.count, word[i] == first, word[i + 1] == second {
                    merged.append(joined)
                    i += 2
                } else {
                    merged.append(word[i])
                    i += 1
                }
            }
            word = merged
        }
        return word
    }
}
