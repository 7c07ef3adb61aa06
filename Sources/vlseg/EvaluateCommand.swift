import ArgumentParser
import Foundation
import VLData
import VLDistributed
import VLModels
import VLTensor
import VLTokenizer
import VLTrain

/// Options shared by `evaluate` and `predict`: the run's config plus which weights and split.
struct InferenceOptions: ParsableArguments {
    @Argument(help: "Config overrides (the same as for training the checkpoint).")
    var overrides: [String] = []

    @Option(help: "Checkpoint directory or trainable.safetensors; 'best' or 'latest' of the run directory; 'none' for the base model alone (zero-shot) (default: best, else latest, else the base model alone).")
    var checkpoint: String?

    @Option(help: "Dataset split to use.")
    var split: String = "test"

    @Option(help: "Directory of the YAML config groups (default: the checkout's configs/).")
    var configDir: String?

    /// Resolves the config, the communicator, the model with its tuning method and weights, and a
    /// loader over `split` sharded across ranks.
    func setUp() throws -> (config: VLSegConfig, comm: Communicator, model: SegmentationModel, data: DataLoader, weights: String,
                            tokenizer: CLIPTokenizer) {
        let resolved = try ConfigLoader(configDir: configDir).load(overrides: overrides)
        let config = resolved.config
        let comm = Communicators.make(timeout: config.comm.timeoutS)
        try RunSetup.configureCompute(config, ranksOnThisMachine: comm.localSize)
        try RunSetup.prepareInputs(config, comm: comm, log: { if comm.isRoot { printError($0) } })
        let model = try RunSetup.loadModel(config)
        _ = try RunSetup.tuning(config, model: model)
        RunSetup.enableTextCache(config, model: model)
        let store = CheckpointStore(runDirectory: URL(fileURLWithPath: config.run.dir))
        var weights = "the base model (no checkpoint)"
        var path: String? = nil
        switch checkpoint {
        case "none"?:
            path = nil
        case "best"?, "latest"?:
            guard let name = store.pointer(checkpoint!) else { throw CheckpointError.notFound(path: store.directory.appendingPathComponent(checkpoint!).path) }
            path = store.directory.appendingPathComponent(name).path
        case let p?:
            path = p
        case nil:
            path = (store.pointer("best") ?? store.pointer("latest")).map { store.directory.appendingPathComponent($0).path }
        }
        if let path {
            let n = try Inference.loadTrainable(path, into: model)
            weights = "\(path) (\(n) trained tensors)"
        }
        let tokenizer = try RunSetup.tokenizer(config)
        let root = URL(fileURLWithPath: config.data.root)
        let available = DatasetIndex.availableSplits(root: root)
        guard available.contains(split) else {
            throw SetupError(message: "\(root.path): no split '\(split)' (available: \(available.joined(separator: ", ")))")
        }
        let (_, excluded) = try RunSetup.checkingSampleFiles(config, comm: comm, splits: [(split, false)],
                                                             log: { if comm.isRoot { printError($0) } }) {}
        let data = try RunSetup.evaluationLoader(config, comm: comm, split: split, tokenizer: tokenizer, excluding: excluded[split] ?? [])
        return (config, comm, model, data, weights, tokenizer)
    }
}

/// `vlseg evaluate`: Dice and IoU of a checkpoint on a split, sharded over the job's ranks.
struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Evaluate a checkpoint (or the base model) on a dataset split: Dice and IoU at model and original resolution.")

    @OptionGroup var options: InferenceOptions

    @Flag(help: "Print one JSON object as the last line.")
    var json = false

    @Option(name: .customLong("per-image"), help: ArgumentHelp(
        "Also write every sample's scores to this CSV file.",
        discussion: "Columns: index, image, mask, prompt, class, dice, iou (model resolution), dice_original, iou_original."),
        completion: .file(extensions: ["csv"]))
    var perImage: String?

    func run() throws {
        try reportingErrors {
            let (config, comm, model, data, weights, _) = try options.setUp()
            if comm.isRoot { printError("evaluating \(weights) on \(config.data.root) split '\(options.split)' (\(data.samples.count) samples, \(comm.size) rank(s))") }
            let loss = SegmentationLoss(diceWeight: Float(config.trainer.loss.diceWeight), bceWeight: Float(config.trainer.loss.bceWeight))
            let result = try Inference.evaluate(model: model, data: data, loss: loss, comm: comm, originalResolution: true,
                                                perImage: perImage != nil) { done, total in
                if comm.isRoot && (done == total || done % 10 == 0) { printError("  batch \(done)/\(total)") }
            }
            guard comm.isRoot else { return }
            let m = result.modelResolution, size = try RunSetup.inputSize(config)
            print(String(format: "split %@: %d images; loss %.4f; Dice %.4f, IoU %.4f at %dx%d%@", options.split, m.images, m.loss, m.dice, m.iou,
                         size, size, config.trainer.precision == .bf16 ? " (bf16 products)" : ""))
            if let o = result.originalResolution {
                print(String(format: "original resolution: Dice %.4f, IoU %.4f", o.dice, o.iou))
            }
            if !result.perClass.isEmpty {
                let names = Dictionary(uniqueKeysWithValues: (data.samples.classes?.classes ?? []).map { ($0.id, $0.name) })
                for (id, cm) in result.perClass.sorted(by: { $0.key < $1.key }) {
                    print(String(format: "  class %d (%@): Dice %.4f, IoU %.4f on %d images", id, names[id] ?? "?", cm.dice, cm.iou, cm.images))
                }
                let mean = result.perClass.values.map(\.dice).reduce(0, +) / Double(result.perClass.count)
                print(String(format: "mean class Dice %.4f", mean))
            }
            if let perImage {
                let url = URL(fileURLWithPath: perImage)
                let lines = [Inference.ImageScore.csvHeader] + result.perImage.map(\.csvRow)
                do {
                    try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
                } catch {
                    throw SetupError(message: "\(url.path): cannot write the per-image scores: \(error.localizedDescription)")
                }
                let worst = result.perImage.sorted { ($0.dice, $0.sampleIndex) < ($1.dice, $1.sampleIndex) }.prefix(3)
                print("per-image scores: \(url.path) (\(result.perImage.count) rows); lowest Dice: "
                      + worst.map { String(format: "%@ %.4f", $0.image, $0.dice) }.joined(separator: ", "))
            }
            if json {
                var obj: [String: Any] = ["split": options.split, "images": m.images, "loss": m.loss, "dice": m.dice, "iou": m.iou]
                if let o = result.originalResolution { obj["dice_original"] = o.dice; obj["iou_original"] = o.iou }
                try printJSONLine(obj)
            }
        }
    }
}

/// `vlseg predict`: predicted masks (PNG, original resolution) for a split.
struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Write predicted masks (0/255 PNG at the original resolution) and optional overlays for a dataset split.")

    @OptionGroup var options: InferenceOptions

    @Option(help: "Output directory (default: <run.dir>/predictions/<split>).")
    var out: String?

    @Flag(help: "Also write the image with the predicted mask overlaid.")
    var overlays = false

    func run() throws {
        try reportingErrors {
            let (config, comm, model, data, weights, tokenizer) = try options.setUp()
            let outDir = URL(fileURLWithPath: out ?? URL(fileURLWithPath: config.run.dir).appendingPathComponent("predictions/\(options.split)").path)
            if comm.isRoot { printError("predicting with \(weights) on split '\(options.split)' (\(data.samples.count) samples, \(comm.size) rank(s))") }
            var written: [Double]
            if data.samples.classes != nil {
                // Multi-class: every class prompt per image, probability maps and the arg-max label map.
                written = [Double(try Inference.predictClasses(model: model, samples: data.samples, tokenizer: tokenizer,
                                                               imageSize: RunSetup.inputSize(config), normalization: RunSetup.normalization(config),
                                                               resizeFilter: RunSetup.resizeFilter(config),
                                                               outputDirectory: outDir, comm: comm))]
            } else {
                written = [Double(try Inference.predict(model: model, data: data, outputDirectory: outDir, overlays: overlays) { done, total in
                    if comm.isRoot && (done == total || done % 10 == 0) { printError("  batch \(done)/\(total)") }
                })]
            }
            comm.allReduceSum(&written, label: "prediction count")
            if comm.isRoot {
                let layout = data.samples.classes != nil ? "probabilities/<image>/<id>_<class>.png, labels/" : "masks/\(overlays ? ", overlays/" : "")"
                print("wrote \(Int(written[0])) files to \(outDir.path) (\(layout))")
            }
        }
    }
}
