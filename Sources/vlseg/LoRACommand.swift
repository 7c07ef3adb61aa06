import ArgumentParser
import Foundation
import VLModels
import VLTensor
import VLTrain
import VLTuning

/// `vlseg lora`: utilities for LoRA-tuned models.
struct LoRACommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lora",
        abstract: "LoRA utilities: merge trained low-rank updates into a plain model directory.",
        subcommands: [LoRAMergeCommand.self])
}

/// `vlseg lora merge`: W' = W + (alpha / r) B A for every adapted layer, written as a full Hugging Face
/// model directory that `vlseg forward`, `evaluate` and `predict` load like any CLIPSeg checkpoint.
struct LoRAMergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge LoRA tensors into a full model directory (config, weights, tokenizer files).",
        discussion: """
            --trainable is a checkpoint directory or its trainable.safetensors. The LoRA options (rank, alpha, \
            targets, towers) come from the checkpoint's config.yaml when it has one, else from configs/tuning/lora.yaml; \
            tuning.KEY=VALUE arguments override both (e.g. tuning.alpha=8). --out must be a new directory.
            """)

    @Option(help: "The base model directory the LoRA tensors were trained on (Hugging Face CLIPSeg layout).")
    var model: String

    @Option(help: "Checkpoint directory or trainable.safetensors holding the lora_A / lora_B tensors.")
    var trainable: String

    @Option(help: "The merged model directory to create.")
    var out: String

    @Option(help: "Directory of the YAML config groups (default: the checkout's configs/).")
    var configDir: String?

    @Argument(help: "LoRA options: tuning.KEY=VALUE (rank, alpha, targets, towers).")
    var tuningOptions: [String] = []

    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        if let bad = tuningOptions.first(where: { !$0.hasPrefix("tuning.") || !$0.contains("=") }) {
            throw ValidationError("'\(bad)': only tuning.KEY=VALUE arguments are accepted")
        }
    }

    func run() throws {
        try reportingErrors {
            threadOptions.apply()
            let fm = FileManager.default
            let modelDir = URL(fileURLWithPath: model).standardizedFileURL
            let outDir = URL(fileURLWithPath: out).standardizedFileURL
            if fm.fileExists(atPath: outDir.path) {
                let contents = (try? fm.contentsOfDirectory(atPath: outDir.path)) ?? ["(a file)"]
                guard contents.isEmpty else {
                    throw SetupError(message: "\(outDir.path): already exists and is not empty; give a new directory")
                }
            }

            // The trained tensors, and the options they were trained with.
            var file = URL(fileURLWithPath: trainable)
            var isDir: ObjCBool = false
            var checkpointOptions: [String] = []
            if fm.fileExists(atPath: file.path, isDirectory: &isDir), isDir.boolValue {
                let config = file.appendingPathComponent(CheckpointStore.configFile)
                file = file.appendingPathComponent(CheckpointStore.trainableFile)
                if let text = try? String(contentsOf: config, encoding: .utf8) {
                    let tuning = try ConfigLoader.decode(yaml: text, source: config.path).config.tuning
                    guard tuning.family == "lora" else {
                        throw SetupError(
                            message:
                                "\(config.path): the checkpoint was trained with tuning '\(tuning.method)', not lora")
                    }
                    checkpointOptions = tuning.options.keys.sorted().compactMap { key in
                        switch tuning.options[key]! {
                        case .null: return nil
                        case let .list(items):
                            return "tuning.\(key)=[\(items.map(\.description).joined(separator: ", "))]"
                        case let v: return "tuning.\(key)=\(v)"
                        }
                    }
                }
            }
            guard fm.fileExists(atPath: file.path) else { throw SetupError(message: "\(file.path): file not found") }
            let resolved = try ConfigLoader(configDir: configDir).load(
                overrides: ["tuning=lora"] + checkpointOptions + tuningOptions)
            guard let lora = try RunSetup.method(resolved.config.tuning) as? LoRATuning else {
                throw SetupError(message: "tuning '\(resolved.config.tuning.method)' is not lora")
            }

            let m = try CLIPSegModel.load(directory: modelDir)
            let names = try lora.prepare(m, seed: 0)
            let tensors = try SafeTensorsFile(url: file)
            let unknown = tensors.names.filter { !names.contains($0) }
            if !unknown.isEmpty { throw ModelLoadError.unexpectedKeys(file: file.path, keys: unknown) }
            let missing = names.filter { !tensors.contains($0) }
            if !missing.isEmpty { throw ModelLoadError.missingKeys(file: file.path, keys: missing) }
            for name in names {
                let t = try tensors.tensor(name)
                guard t.shape == m.parameters[name].shape else {
                    throw SetupError(
                        message:
                            "\(file.path): '\(name)' has shape \(t.shape), but rank \(lora.rank) on this model implies \(m.parameters[name].shape); pass the options it was trained with (tuning.rank=..., tuning.alpha=...)"
                    )
                }
                m.parameters.set(name, t)
            }

            let merged = Dictionary(uniqueKeysWithValues: lora.mergedWeights().map { ($0.name, $0.weight) })
            var writer = SafeTensorsWriter()
            writer.metadata = [
                "format": "pt", "vlseg_lora_merged": "rank \(lora.rank), alpha \(lora.alpha), \(merged.count) layers",
            ]
            for (name, _) in CLIPSegModel.expectedParameters(m.config) {
                writer.add(name, merged[name] ?? m.parameters[name])
            }
            try ModelDirectoryOutput.write(writer, replacingWeightsOf: modelDir, into: outDir)
            print(
                "merged \(merged.count) layers (rank \(lora.rank), alpha \(ConfigValue.double(lora.alpha)), scale \(lora.scale)) into \(outDir.path)"
            )
        }
    }
}
