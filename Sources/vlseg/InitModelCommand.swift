import ArgumentParser
import Foundation
import VLModels

/// `vlseg init-model`: a randomly initialised CLIPSeg in the Hugging Face format.
struct InitModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init-model",
        abstract: "Write a randomly initialised CLIPSeg model directory (config.json, model.safetensors, tokenizer).",
        discussion: "Presets: tiny (tests), small (the demo), base (the CIDAS/clipseg-rd64-refined architecture).")

    @Option(help: "Architecture: \(CLIPSegPreset.allCases.map(\.rawValue).joined(separator: ", ")).")
    var preset: String = "tiny"

    @Option(help: "Output directory.")
    var out: String

    @Option(help: "Random seed.")
    var seed: UInt64 = 0

    func run() throws {
        try reportingErrors {
            guard let p = CLIPSegPreset(rawValue: preset) else {
                throw ValidationError("unknown preset '\(preset)'; choose one of \(CLIPSegPreset.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let dir = URL(fileURLWithPath: out)
            var lastPercent = -1
            let count = try CLIPSegInitializer.write(config: p.config, seed: seed, to: dir) { done, total in
                let percent = done * 100 / total
                if percent / 10 != lastPercent / 10 {
                    printError("init-model: \(percent)% (\(done)/\(total) tensors)")
                    lastPercent = percent
                }
            }
            print("wrote \(p.rawValue) CLIPSeg to \(dir.path): \(count.grouped) parameters")
        }
    }
}
