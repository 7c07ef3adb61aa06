import ArgumentParser
import Foundation
import VLModels
import VLTrain

/// `vlseg export`: a checkpoint of a method that trains the model's own weights (`full`, `decoder`),
/// written as a complete model directory.
///
/// Such checkpoints' `trainable.safetensors` hold the trained tensors under the model's own names, so
/// the model directory is the base model's `model.safetensors` with those tensors replaced, next to
/// the base directory's other files (config, tokenizer, processor). Every command then loads it like
/// any downloaded checkpoint, and every tuning method can start from it: this is how the demo's
/// pretrained backbone (`experiment=demo_pretrain`) becomes a model. Methods that add tensors of their
/// own (adapters, prompts) are refused: their tensors have no place in the model (LoRA: `vlseg lora merge`).
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a full or decoder checkpoint as a complete model directory (config, weights, tokenizer).",
        discussion: """
            --checkpoint is a checkpoint directory, or a run directory (its best checkpoint, else its latest). \
            The base model is --model, else the checkpoint config's model.path. --out must be new or empty; it \
            is written beside itself first and moved into place, so a failure leaves nothing half-written.
            """)

    @Option(help: "Checkpoint directory, or a run directory (best, else latest).")
    var checkpoint: String

    @Option(help: "The model directory to create.")
    var out: String

    @Option(help: "The base model directory (default: model.path of the checkpoint's config).")
    var model: String?

    func run() throws {
        try reportingErrors {
            let fm = FileManager.default
            let outDir = URL(fileURLWithPath: out).standardizedFileURL
            if fm.fileExists(atPath: outDir.path) {
                let contents = (try? fm.contentsOfDirectory(atPath: outDir.path)) ?? ["(a file)"]
                guard contents.isEmpty else {
                    throw SetupError(message: "\(outDir.path): already exists and is not empty; give a new directory")
                }
            }
            let ckptURL = try Self.checkpointDirectory(URL(fileURLWithPath: checkpoint))
            let ckpt = try CheckpointStore.load(ckptURL)
            let baseDir: URL
            if let model {
                baseDir = URL(fileURLWithPath: model).standardizedFileURL
            } else {
                let config = try ConfigLoader.decode(
                    yaml: ckpt.configYAML, source: ckptURL.appendingPathComponent(CheckpointStore.configFile).path
                ).config
                baseDir = URL(fileURLWithPath: config.model.path).standardizedFileURL
            }
            guard ModelWeights.exist(in: baseDir) else {
                throw SetupError(
                    message:
                        "\(baseDir.path): base model weights not found (looked for \(ModelWeights.fileNames.joined(separator: ", "))); give --model"
                )
            }
            let base = try ModelWeights.open(directory: baseDir)
            let trained = ckpt.trainable
            let foreign = trained.names.filter { !base.contains($0) }
            if !foreign.isEmpty {
                let shown = foreign.prefix(3).joined(separator: ", ")
                throw SetupError(
                    message:
                        "\(ckptURL.path): method '\(ckpt.state.method)' trained \(foreign.count) tensor(s) the model does not have (\(shown)...); only methods that train the model's own weights (full, decoder) export as a model directory (LoRA: vlseg lora merge)"
                )
            }
            for name in trained.names {
                let (a, b) = (try trained.entry(name).shape, try base.shape(of: name))
                guard a == b else {
                    throw SetupError(
                        message:
                            "\(ckptURL.path): '\(name)' has shape \(a), the base model's has \(b): not this model's checkpoint"
                    )
                }
            }

            var writer = SafeTensorsWriter()
            writer.metadata = [
                "format": "pt", "vlseg_exported_from": ckptURL.path, "vlseg_method": ckpt.state.method,
                "vlseg_step": "\(ckpt.state.step)",
            ]
            var replaced = 0
            for name in base.names {
                if trained.contains(name) {
                    writer.add(name, try trained.tensor(name))
                    replaced += 1
                } else {
                    writer.add(name, try base.tensor(name))
                }
            }
            try ModelDirectoryOutput.write(writer, replacingWeightsOf: baseDir, into: outDir)
            print(
                "exported step \(ckpt.state.step) of \(ckptURL.path) (\(ckpt.state.method)): \(replaced) of \(base.names.count) tensors trained, into \(outDir.path)"
            )
        }
    }

    /// A checkpoint directory as given, or a run directory's best (else latest) checkpoint.
    static func checkpointDirectory(_ url: URL) throws -> URL {
        if FileManager.default.fileExists(atPath: url.appendingPathComponent(CheckpointStore.stateFile).path) {
            return url
        }
        let store = CheckpointStore(runDirectory: url)
        if let name = store.pointer("best") ?? store.pointer("latest") {
            return store.directory.appendingPathComponent(name)
        }
        throw SetupError(message: "\(url.path): neither a checkpoint nor a run directory with checkpoints")
    }
}
