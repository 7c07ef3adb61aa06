import ArgumentParser
import Foundation
import VLModels

/// `vlseg init-model`: a randomly initialised CLIPSeg (Hugging Face format) or CRIS (state-dict names).
struct InitModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init-model",
        abstract: "Write a randomly initialised model directory (config.json, model.safetensors, tokenizer).",
        discussion:
            "CLIPSeg presets: tiny (tests), small (the demo), base (the CIDAS/clipseg-rd64-refined architecture). CRIS presets: cris-tiny (tests, the CRIS demo), cris-base (CRIS with CLIP RN50, as published). --config takes any config.json instead (a Hugging Face CLIPSeg config, or a CRIS one with model_type \"cris\"), for trying an architecture before its weights exist."
    )

    @Option(help: "Architecture: \(Self.presetNames.joined(separator: ", ")).")
    var preset: String = "tiny"

    @Option(help: "A config.json to initialise instead of a preset (CLIPSeg, or CRIS when its model_type is \"cris\").")
    var config: String?

    @Option(help: "Output directory.")
    var out: String

    @Option(help: "Random seed.")
    var seed: UInt64 = 0

    static var presetNames: [String] { CLIPSegPreset.allCases.map(\.rawValue) + CRISPreset.allCases.map(\.rawValue) }

    func run() throws {
        try reportingErrors {
            let dir = URL(fileURLWithPath: out)
            var lastPercent = -1
            let progress: (Int, Int) -> Void = { done, total in
                let percent = done * 100 / total
                if percent / 10 != lastPercent / 10 {
                    printError("init-model: \(percent)% (\(done)/\(total) tensors)")
                    lastPercent = percent
                }
            }
            if let config {
                let url = URL(fileURLWithPath: config)
                // Checked here too, so a refusal names the file given rather than the one to write.
                if CRISConfig.isCRIS(configAt: url) {
                    let cris = try CRISConfig.load(from: url)
                    try cris.checkParameterMemory(file: url.path)
                    let count = try CRISInitializer.write(config: cris, seed: seed, to: dir, progress: progress)
                    print("wrote CRIS from \(config) to \(dir.path): \(count.grouped) parameters")
                } else {
                    let clipseg = try CLIPSegConfig.load(from: url)
                    try clipseg.checkParameterMemory(file: url.path)
                    let count = try CLIPSegInitializer.write(config: clipseg, seed: seed, to: dir, progress: progress)
                    print("wrote CLIPSeg from \(config) to \(dir.path): \(count.grouped) parameters")
                }
            } else if let p = CLIPSegPreset(rawValue: preset) {
                let count = try CLIPSegInitializer.write(
                    config: p.config, seed: seed, to: dir, processorSize: p.processorSize, progress: progress)
                print("wrote \(p.rawValue) CLIPSeg to \(dir.path): \(count.grouped) parameters")
            } else if let p = CRISPreset(rawValue: preset) {
                let count = try CRISInitializer.write(config: p.config, seed: seed, to: dir, progress: progress)
                print("wrote \(p.rawValue) CRIS to \(dir.path): \(count.grouped) parameters")
            } else {
                throw ValidationError(
                    "unknown preset '\(preset)'; choose one of \(Self.presetNames.joined(separator: ", "))")
            }
        }
    }
}
