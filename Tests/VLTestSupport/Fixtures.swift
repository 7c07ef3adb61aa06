import Foundation
import VLModels
import VLTokenizer

/// The reference fixtures the repository carries in `Tests/Fixtures` (made by the Python reference
/// implementations; `Tests/Fixtures/README.md` says what each key is). Every test finds them here, so a
/// clone of the repository alone runs the whole suite.
public enum Fixtures {
    /// A fixture that is not where the repository keeps it: the test fails with this, it never traps.
    public struct Missing: Error, CustomStringConvertible {
        public let path: String
        public var description: String {
            "fixture missing: \(path) (the repository keeps its test fixtures in Tests/Fixtures; is the checkout complete?)"
        }
    }

    /// `Tests/Fixtures`, found from this source file's place in the package.
    public static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// The fixture at `relativePath` below `Tests/Fixtures`, checked to exist.
    public static func url(_ relativePath: String) throws -> URL {
        let url = root.appendingPathComponent(relativePath)
        guard FileManager.default.fileExists(atPath: url.path) else { throw Missing(path: url.path) }
        return url
    }

    /// The tiny CLIPSeg checkpoint (Hugging Face layout) with its reference outputs and method cases.
    public static func clipsegTiny() throws -> URL { try url("clipseg-tiny") }

    /// The tiny CRIS checkpoint with its reference outputs.
    public static func crisTiny() throws -> URL { try url("cris-tiny") }

    /// The tokenizer reference cases (`cases.json`); the vocabulary itself is the package's bundled one.
    public static func tokenizerCases() throws -> URL { try url("clip-tokenizer/cases.json") }
}

extension Fixtures {
    /// The CLIP vocabulary bundled with VLModels (identical to the reference fixture's tokenizer files).
    public static func bundledTokenizer() throws -> URL {
        guard let dir = BundledTokenizer.directory else {
            throw Missing(path: "VLModels' bundled clip-tokenizer resources")
        }
        return dir
    }
}
