import Foundation

/// The CLIP vocabulary that ships with VLSeg, so that `init-model`, the demo and phrase-initialised
/// prompts work on machines that cannot download a model.
public enum BundledTokenizer {
    /// The files a Hugging Face CLIP tokenizer directory holds, as bundled.
    public static let fileNames = ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"]

    /// The bundled directory, or nil when the package's resources were not installed beside the binary.
    public static var directory: URL? { Bundle.module.url(forResource: "clip-tokenizer", withExtension: nil) }

    /// The bundled directory, or an error saying the resources are missing.
    public static func requireDirectory() throws -> URL {
        guard let directory else {
            throw TokenizerError.fileNotFound(URL(fileURLWithPath: "<bundled clip-tokenizer resources>"))
        }
        return directory
    }

    /// The bundled tokenizer.
    public static func load() throws -> CLIPTokenizer { try CLIPTokenizer(directory: try requireDirectory()) }

    /// Puts the bundled tokenizer files into a model directory (replacing any there).
    public static func copy(to destination: URL) throws {
        let source = try requireDirectory()
        let fm = FileManager.default
        for file in fileNames {
            let dst = destination.appendingPathComponent(file)
            if fm.fileExists(atPath: dst.path) { try fm.removeItem(at: dst) }
            try fm.copyItem(at: source.appendingPathComponent(file), to: dst)
        }
    }
}
