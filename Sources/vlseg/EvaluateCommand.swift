import ArgumentParser
import Foundation
import VLData
import VLDistributed
import VLModels
import VLTensor
import VLTokenizer
import VLTrain

extension MaskResize: ExpressibleByArgument {}

/// Options shared by `evaluate` and `predict`: the run's config plus which weights and split.
struct InferenceOptions: ParsableArguments {
    @Argument(help: "Config overrides (the same as for training the checkpoint).")
    var overrides: [String] = []

    @Option(
        help:
            "Checkpoint directory or trainable.safetensors; 'best' or 'latest' of the run directory; 'none' for the base model alone (zero-shot) (default: best, else latest, else the base model alone)."
    )
    var checkpoint: String?

    @Option(help: "Dataset split to use.")
    var split: String = "test"

    @Option(help: "Directory of the YAML config groups (default: the checkout's configs/).")
    var configDir: String?

    @Option(
        help: ArgumentHelp(
            "A run directory: use its own config.yaml (instead of composing one from overrides) and its checkpoints.",
            valueName: "dir"))
    var run: String?

    @Option(
        help: ArgumentHelp(
            "Foreground where the sigmoid probability exceeds this (default: trainer.test.threshold, 0.5).",
            valueName: "p"))
    var threshold: Double?

    @Option(
        help: ArgumentHelp(
            "How predictions reach each image's own size: bilinear (VLSeg: logits bilinear, then threshold), "
                + "nearest (VLSM-Adapter: threshold, then nearest-exact), bicubic (TuneVLSeg: probabilities bicubic, then >= threshold) "
                + "(default: trainer.test.resize, bilinear).", valueName: "mode"))
    var resize: MaskResize?

    /// The threshold and resize mode to use: the options, else the config's `trainer.test`.
    func scoring(_ config: VLSegConfig) throws -> (ProbabilityThreshold, MaskResize) {
        let p = threshold ?? config.trainer.test.threshold
        guard let t = ProbabilityThreshold(probability: p) else {
            throw ValidationError("--threshold must be a probability strictly between 0 and 1, got \(p)")
        }
        return (t, resize ?? config.trainer.test.resize)
    }

    /// The resolved config: the run directory's own (`--run`), else composed from the overrides.
    func resolvedConfig() throws -> ResolvedConfig {
        guard let run else {
            let resolved = try ConfigLoader(configDir: configDir).load(overrides: overrides)
            if let first = resolved.config.trainer.seeds.first {
                throw SetupError(
                    message:
                        "trainer.seeds is set: evaluate one seed's run, e.g. --run \(resolved.config.run.dir)/seed-\(first)"
                )
            }
            return resolved
        }
        guard overrides.isEmpty else {
            throw ValidationError(
                "--run takes the run's own config.yaml; give no overrides with it (got \(overrides.joined(separator: " ")))"
            )
        }
        let url = URL(fileURLWithPath: run).appendingPathComponent("config.yaml")
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw SetupError(message: "\(url.path): cannot read the run's config (is \(run) a run directory?)")
        }
        var resolved = try ConfigLoader.decode(yaml: text, source: url.path)
        guard resolved.config.trainer.seeds.isEmpty else {
            throw SetupError(
                message:
                    "\(run) holds a multi-seed launch (trainer.seeds \(resolved.config.trainer.seeds)): evaluate each of its seed-N runs"
            )
        }
        // The directory as given wins over the path recorded in it (the run may have been moved).
        resolved.config.run.dir = run
        return resolved
    }

    /// Resolves the config, the communicator, the model with its tuning method and weights, and a
    /// loader over `split` sharded across ranks. `ownCheckpoint` is set when the weights are the run
    /// directory's own (best or latest), so the result describes that run.
    func setUp() throws -> (
        config: VLSegConfig, comm: Communicator, model: SegmentationModel, data: DataLoader, weights: String,
        tokenizer: CLIPTokenizer, ownCheckpoint: String?
    ) {
        let resolved = try resolvedConfig()
        let config = resolved.config
        _ = try scoring(config)
        let comm = Communicators.make(timeout: config.comm.timeoutS)
        try RunSetup.configureCompute(config, ranksOnThisMachine: comm.localSize)
        try RunSetup.prepareInputs(config, comm: comm, log: { if comm.isRoot { printError($0) } })
        let model = try RunSetup.loadModel(config)
        _ = try RunSetup.tuning(config, model: model)
        RunSetup.enableTextCache(config, model: model)
        let store = CheckpointStore(runDirectory: URL(fileURLWithPath: config.run.dir))
        var weights = "the base model (no checkpoint)"
        var path: String? = nil
        var own: String? = nil
        switch checkpoint {
        case "none"?:
            path = nil
        case let pointer? where pointer == "best" || pointer == "latest":
            guard let name = store.pointer(pointer) else {
                throw CheckpointError.notFound(path: store.directory.appendingPathComponent(pointer).path)
            }
            path = store.directory.appendingPathComponent(name).path
            own = path
        case let p?:
            path = p
        case nil:
            path = (store.pointer("best") ?? store.pointer("latest")).map {
                store.directory.appendingPathComponent($0).path
            }
            own = path
        }
        if let path {
            let n = try Inference.loadTrainable(path, into: model)
            weights = "\(path) (\(n) trained tensors)"
        }
        let tokenizer = try RunSetup.tokenizer(config)
        let splits = config.data.datasetSplits
        guard splits.isAvailable(split) else {
            throw SetupError(
                message:
                    "\(splits.describe(split)): no split '\(split)' (available: \(splits.availableSplits().joined(separator: ", ")))"
            )
        }
        let (_, excluded) = try RunSetup.checkingSampleFiles(
            config, comm: comm, splits: [(split, false)],
            log: { if comm.isRoot { printError($0) } }
        ) {}
        let data = try RunSetup.evaluationLoader(
            config, comm: comm, split: split, tokenizer: tokenizer, excluding: excluded[split] ?? [])
        return (config, comm, model, data, weights, tokenizer, own)
    }
}

/// `vlseg evaluate`: Dice and IoU of a checkpoint on a split, sharded over the job's ranks.
struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract:
            "Evaluate a checkpoint (or the base model) on a dataset split: Dice and IoU at model and original resolution.",
        discussion: """
            Each score comes in two forms: the mean over images of each image's Dice/IoU (VLSM-Adapter; \
            TuneVLSeg's Dice), and pooled over the split, from the summed intersections and unions of all its \
            pixels (TuneVLSeg's IoU, torchmetrics' JaccardIndex). Empty masks: an image whose prediction and \
            target are both empty scores Dice 1 and IoU 1; exactly one of them empty scores 0 (both papers' \
            convention); the pooled scores are 1 only when the whole split has no predicted and no target pixel. \
            Pixels count as foreground where the target is > 0.5 and the sigmoid probability > --threshold. \
            When the weights are the run's own (best or latest checkpoint), the result is also written to \
            <run.dir>/eval-<split>.json, which `vlseg results` reads.
            """)

    @OptionGroup var options: InferenceOptions

    @Flag(help: "Print one JSON object as the last line.")
    var json = false

    @Option(
        name: .customLong("per-image"),
        help: ArgumentHelp(
            "Also write every sample's scores to this CSV file.",
            discussion:
                "Columns: index, image, mask, prompt, class, dice, iou (model resolution), dice_original, iou_original."
        ),
        completion: .file(extensions: ["csv"]))
    var perImage: String?

    func run() throws {
        try reportingErrors {
            let (config, comm, model, data, weights, _, own) = try options.setUp()
            let (threshold, resize) = try options.scoring(config)
            if comm.isRoot {
                printError(
                    "evaluating \(weights) on \(config.data.root) split '\(options.split)' (\(data.samples.count) samples, \(comm.size) rank(s))"
                )
            }
            let loss = SegmentationLoss(config.trainer.loss)
            let result = try Inference.evaluate(
                model: model, data: data, loss: loss, comm: comm, originalResolution: true,
                perImage: perImage != nil, threshold: threshold, resize: resize
            ) { done, total in
                if comm.isRoot && (done == total || done % 10 == 0) { printError("  batch \(done)/\(total)") }
            }
            guard comm.isRoot else { return }
            let m = result.modelResolution, size = try RunSetup.inputSize(config)
            print(
                String(
                    format: "split %@: %d images; loss %.4f; Dice %.4f, IoU %.4f at %dx%d%@", options.split, m.images,
                    m.loss, m.dice, m.iou,
                    size, size, MatmulPrecision.current == .bf16 ? " (bf16 products)" : ""))
            print(
                String(
                    format: "pooled over the split: Dice %.4f, IoU %.4f at %dx%d", m.dicePooled, m.iouPooled, size, size
                ))
            if let o = result.originalResolution {
                print(
                    String(
                        format:
                            "original resolution (%@ resize, threshold %g): Dice %.4f, IoU %.4f; pooled Dice %.4f, IoU %.4f",
                        resize.rawValue, threshold.probability, o.dice, o.iou, o.dicePooled, o.iouPooled))
            }
            if !result.perClass.isEmpty {
                let names = Dictionary(
                    uniqueKeysWithValues: (data.samples.classes?.classes ?? []).map { ($0.id, $0.name) })
                for (id, cm) in result.perClass.sorted(by: { $0.key < $1.key }) {
                    print(
                        String(
                            format: "  class %d (%@): Dice %.4f, IoU %.4f on %d images", id, names[id] ?? "?", cm.dice,
                            cm.iou, cm.images))
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
                    throw SetupError(
                        message: "\(url.path): cannot write the per-image scores: \(error.localizedDescription)")
                }
                let worst = result.perImage.sorted { ($0.dice, $0.sampleIndex) < ($1.dice, $1.sampleIndex) }.prefix(3)
                print(
                    "per-image scores: \(url.path) (\(result.perImage.count) rows); lowest Dice: "
                        + worst.map { String(format: "%@ %.4f", $0.image, $0.dice) }.joined(separator: ", "))
            }
            let report = EvaluationReport(
                split: options.split, result: result, threshold: threshold, resize: resize, inputSize: size,
                checkpoint: own ?? (weights.hasPrefix("the base model") ? nil : weights))
            if own != nil {
                // The scores are already printed; a run directory that cannot be written (another user's) only loses the file.
                do {
                    printError("wrote \(try report.write(runDirectory: URL(fileURLWithPath: config.run.dir)).path)")
                } catch {
                    printError("vlseg: warning: \(error)")
                }
            }
            if json { print(try report.jsonLine()) }
        }
    }
}

/// `vlseg predict`: predicted masks (PNG, original resolution) for a split.
struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract:
            "Write predicted masks (0/255 PNG at the original resolution) and optional overlays for a dataset split.")

    @OptionGroup var options: InferenceOptions

    @Option(help: "Output directory (default: <run.dir>/predictions/<split>).")
    var out: String?

    @Flag(help: "Also write the image with the predicted mask overlaid.")
    var overlays = false

    func run() throws {
        try reportingErrors {
            let (config, comm, model, data, weights, tokenizer, _) = try options.setUp()
            let (threshold, resize) = try options.scoring(config)
            let outDir = URL(
                fileURLWithPath: out
                    ?? URL(fileURLWithPath: config.run.dir).appendingPathComponent("predictions/\(options.split)").path)
            if comm.isRoot {
                printError(
                    "predicting with \(weights) on split '\(options.split)' (\(data.samples.count) samples, \(comm.size) rank(s))"
                )
            }
            var written: [Double]
            if data.samples.classes != nil {
                // Multi-class: every class prompt per image, probability maps and the arg-max label map.
                written = [
                    Double(
                        try Inference.predictClasses(
                            model: model, samples: data.samples, tokenizer: tokenizer,
                            imageSize: RunSetup.inputSize(config), normalization: RunSetup.normalization(config),
                            resizeFilter: RunSetup.resizeFilter(config),
                            outputDirectory: outDir, comm: comm))
                ]
            } else {
                written = [
                    Double(
                        try Inference.predict(
                            model: model, data: data, outputDirectory: outDir, overlays: overlays,
                            threshold: threshold, resize: resize
                        ) { done, total in
                            if comm.isRoot && (done == total || done % 10 == 0) {
                                printError("  batch \(done)/\(total)")
                            }
                        })
                ]
            }
            comm.allReduceSum(&written, label: "prediction count")
            if comm.isRoot {
                let layout =
                    data.samples.classes != nil
                    ? "probabilities/<image>/<id>_<class>.png, labels/" : "masks/\(overlays ? ", overlays/" : "")"
                print("wrote \(Int(written[0])) files to \(outDir.path) (\(layout))")
            }
        }
    }
}
