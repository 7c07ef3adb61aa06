import ArgumentParser
import Foundation
import VLModels
import VLTokenizer

/// `vlseg tokenize`: CLIP token ids and attention masks, as the model sees them.
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize", abstract: "Print the CLIP input ids and attention mask (77 long) of each text.")

    @Option(help: "Model directory holding vocab.json and merges.txt.")
    var model: String

    @Flag(help: "Print one JSON array of {text, input_ids, attention_mask}.")
    var json = false

    @Argument(help: "Texts to tokenize.")
    var texts: [String]

    func run() throws {
        try reportingErrors {
            let tokenizer = try CLIPTokenizer(directory: URL(fileURLWithPath: model))
            let encodings: [CLIPTokenizer.Encoding] = texts.map {
                tokenizer.encode($0, maxLength: CLIPTokenizer.contextLength)
            }
            if json {
                let array: [[String: Any]] = zip(texts, encodings).map {
                    ["text": $0, "input_ids": $1.inputIDs, "attention_mask": $1.attentionMask]
                }
                let data = try JSONSerialization.data(withJSONObject: array, options: [])
                print(String(decoding: data, as: UTF8.self))
            } else {
                for (text, e) in zip(texts, encodings) {
                    print(text)
                    print("  input_ids:      \(e.inputIDs.map(String.init).joined(separator: " "))")
                    print("  attention_mask: \(e.attentionMask.map(String.init).joined(separator: " "))")
                }
            }
        }
    }
}
