import Foundation
import VLData
import VLDistributed
import VLModels
import VLTensor
import VLTokenizer
import VLTuning

/// Builds everything a run needs from a resolved config: inputs, model, tuning method, loaders.
public enum RunSetup {
    /// A rank's compute settings from the config: `trainer.threads` (0: the machine's cores shared by
    /// the `ranksOnThisMachine`) and `trainer.precision` (bf16 where it cannot run is an error; bf16_if_available falls back to fp32).
    public static func configureCompute(_ config: VLSegConfig, ranksOnThisMachine: Int) throws {
        ComputeThreads.set(
            config.trainer.threads > 0 ? config.trainer.threads : ComputeThreads.defaultCount(for: ranksOnThisMachine))
        try MatmulPrecision.set(
            config.trainer.precision.resolve(bf16Unavailable: MatmulPrecision.bf16Unavailable).precision)
    }

    /// Creates the demo model and dataset when the config asks for them and they are missing.
    /// Rank 0 does the work while the others wait; every rank learns the outcome.
    public static func prepareInputs(_ config: VLSegConfig, comm: Communicator, log: (String) -> Void) throws {
        try comm.rootDecides("input preparation") {
            let modelDir = URL(fileURLWithPath: config.model.path)
            let missing = !ModelWeights.exist(in: modelDir)
            if missing, let preset = config.model.preset.clipsegPreset {
                log("creating the \(preset.rawValue) demo model in \(modelDir.path)")
                let n = try CLIPSegInitializer.write(
                    config: preset.config, seed: UInt64(config.seed), to: modelDir, processorSize: preset.processorSize)
                log("  \(n) parameters")
            } else if missing, let preset = config.model.preset.crisPreset {
                log("creating the \(preset.rawValue) CRIS demo model in \(modelDir.path)")
                let n = try CRISInitializer.write(config: preset.config, seed: UInt64(config.seed), to: modelDir)
                log("  \(n) parameters")
            }
            let root = URL(fileURLWithPath: config.data.root)
            if config.data.isDemo,
                !FileManager.default.fileExists(atPath: root.appendingPathComponent("anns/train.json").path)
            {
                let demo = config.data.demo
                log(
                    "creating the \(demo.kind.rawValue) demo dataset in \(root.path) (\(demo.count) images, \(demo.size) px)"
                )
                let summary = try demo.kind.write(
                    count: demo.count, size: demo.size, seed: UInt64(demo.seed),
                    entriesPerImage: demo.entriesPerImage, to: root)
                log(
                    "  \(summary.entries.map { "\($0.split) \($0.count)" }.joined(separator: ", ")) entries in \(String(format: "%.1f", summary.seconds)) s"
                )
            }
        }
    }

    /// The model at `model.path`: CLIPSeg, or CRIS when its config.json says `model_type: cris`.
    /// The configured input size must suit it.
    public static func loadModel(_ config: VLSegConfig) throws -> SegmentationModel {
        let model = try ModelDirectory.load(URL(fileURLWithPath: config.model.path))
        try model.validateInputSize(try inputSize(config))
        return model
    }

    /// The input side: `model.image_size`, or when it is 0 the size the model directory gives
    /// (`ImagePreprocessing`: a CLIPSeg processor's `size`, 352 for the published checkpoints, else
    /// the vision config's `image_size`; CRIS: `img_size`).
    public static func inputSize(_ config: VLSegConfig) throws -> Int {
        if config.model.imageSize > 0 { return config.model.imageSize }
        return try ImagePreprocessing.of(directory: URL(fileURLWithPath: config.model.path)).size
    }

    /// The pixel normalisation of the model at `model.path` (CRIS: its config's CLIP mean/std;
    /// CLIPSeg: its processor's, else ImageNet's).
    public static func normalization(_ config: VLSegConfig) throws -> Normalization {
        Normalization(try ImagePreprocessing.of(directory: URL(fileURLWithPath: config.model.path)))
    }

    /// The PIL filter of the image resize: `data.resize`, or with `auto` the model's (its processor's
    /// `resample`; bilinear without one). Unused with `cv2_cubic`.
    public static func resizeFilter(_ config: VLSegConfig) throws -> ResizeFilter {
        switch config.data.resize {
        case .auto, .cv2Cubic:
            return ResizeFilter(try ImagePreprocessing.of(directory: URL(fileURLWithPath: config.model.path)))
        case .pilBilinear: return .bilinear
        case .pilBicubic: return .bicubic
        }
    }

    /// The tokenizer shipped in the model directory.
    public static func tokenizer(_ config: VLSegConfig) throws -> CLIPTokenizer {
        try CLIPTokenizer(directory: URL(fileURLWithPath: config.model.path))
    }

    /// The configured tuning method, prepared on `model`; returns it and the trainable names.
    public static func tuning(_ config: VLSegConfig, model: SegmentationModel) throws -> (TuningMethod, [String]) {
        try tuning(config.tuning, seed: UInt64(config.seed), model: model)
    }

    /// The configured method, made by the registry from the section's typed options (the values the
    /// config checked against the method's own declaration; null stands for the default).
    public static func method(_ tuning: TuningConfig, registry: TuningMethodRegistry = .shared) throws -> TuningMethod {
        try registry.make(tuning.method, options: tuning.options)
    }

    public static func tuning(_ tuning: TuningConfig, seed: UInt64, model: SegmentationModel) throws -> (
        TuningMethod, [String]
    ) {
        let method = try method(tuning)
        return (method, try method.prepare(model, seed: seed))
    }

    /// Training and validation loaders for this rank.
    public static func loaders(
        _ config: VLSegConfig, comm: Communicator, batchSize: Int, tokenizer: CLIPTokenizer,
        validationSplit: String? = "val", excluding: [String: Set<Int>] = [:]
    ) throws -> (train: DataLoader, val: DataLoader?) {
        let seed = UInt64(config.seed)
        let train = try samples(config, split: "train", training: true, excluding: excluding["train"] ?? [])
        var trainConfig = DataLoaderConfig(
            imageSize: try inputSize(config), workers: config.data.workers, seed: seed,
            promptChoice: config.data.prompt, textPadding: .longest(max: CLIPTokenizer.contextLength),
            onError: config.data.onError, augmentation: config.data.augmentation)
        trainConfig.normalization = try normalization(config)
        trainConfig.resizeFilter = try resizeFilter(config)
        trainConfig.target = config.data.target
        trainConfig.opencvCubic = config.data.resize == .cv2Cubic
        trainConfig.appendPeriod = config.data.appendPeriod
        let trainLoader = try DataLoader(
            samples: train,
            sampler: try ShardedSampler(
                count: train.count, rank: comm.rank, worldSize: comm.size, batchSize: batchSize, seed: seed,
                mode: .training(config.data.remainder)),
            tokenizer: tokenizer, config: trainConfig)
        guard let split = validationSplit, hasSplit(config, split) else {
            return (trainLoader, nil)
        }
        let val = try evaluationLoader(
            config, comm: comm, split: split, tokenizer: tokenizer, excluding: excluding[split] ?? [])
        return (trainLoader, val)
    }

    /// The samples of a split: one per entry for binary medvlsm datasets, one per (image, class) when the
    /// root holds a `classes.json` (multi-class datasets; negatives only in training), one per mask for
    /// class-directory datasets; a split made of several sources (`data.splits`) has theirs in order.
    /// An empty split is an error naming its file, whatever the command (training, validation, test).
    public static func samples(_ config: VLSegConfig, split: String, training: Bool, excluding: Set<Int> = []) throws
        -> SampleSet
    {
        let splits = config.data.datasetSplits
        var set = try splits.samples(
            split, promptChoice: config.data.prompt,
            multiClass: MultiClassConfig(absentPerImage: training ? config.data.absentPerImage : 0),
            onError: config.data.onError)
        if !excluding.isEmpty {
            set.samples = set.samples.enumerated().filter { !excluding.contains($0.offset) }.map(\.element)
        }
        guard set.count > 0 else {
            throw DataError.emptySplit(file: splits.describe(split), split: split, skipped: set.problems.count)
        }
        return set
    }

    /// Whether the configured dataset has `split` (every source of it present).
    public static func hasSplit(_ config: VLSegConfig, _ split: String) -> Bool {
        config.data.datasetSplits.isAvailable(split)
    }

    /// Checks the files of every sample of `splits` before the run starts, while `meanwhile` runs
    /// (model loading): each rank checks a 1/N share on a background thread, the ranks gather what they
    /// found, and every rank reaches the same verdict. Bad files end the job naming them (the first 10,
    /// then a count), or under `data.on_error: skip` are left out with one warning; the result is then
    /// the positions to exclude per split. Returns `meanwhile`'s value.
    public static func checkingSampleFiles<T>(
        _ config: VLSegConfig, comm: Communicator, splits: [(name: String, training: Bool)],
        log: (String) -> Void, meanwhile: () throws -> T
    ) throws -> (T, [String: Set<Int>]) {
        let sets = try splits.map { ($0.name, try samples(config, split: $0.name, training: $0.training)) }
        let done = DispatchSemaphore(value: 0)
        let found = LockedBox<[BadSample]>([])
        let (rank, size) = (comm.rank, comm.size)
        DispatchQueue.global().async {
            let bad = sets.flatMap { SampleFileCheck.check($0.1, split: $0.0, offset: rank, stride: size) }
            found.set(bad)
            done.signal()
        }
        let value = try meanwhile()
        done.wait()
        let encoded = Array((try? JSONEncoder().encode(found.value)) ?? Data("[]".utf8))
        let everyRank = comm.allGatherVariable(encoded, label: "sample file check")
        var bad = everyRank.flatMap { (try? JSONDecoder().decode([BadSample].self, from: Data($0))) ?? [] }
        let order = Dictionary(uniqueKeysWithValues: splits.enumerated().map { ($0.element.name, $0.offset) })
        bad.sort { (order[$0.split] ?? 0, $0.index) < (order[$1.split] ?? 0, $1.index) }
        guard !bad.isEmpty else { return (value, [:]) }
        let shown = bad.prefix(10).map { "  \($0.message)" }.joined(separator: "\n")
        let more = bad.count > 10 ? "\n  ... and \(bad.count - 10) more" : ""
        guard config.data.onError == .skip else {
            throw AgreedFailure(
                "\(bad.count) sample(s) of \(config.data.root) have unusable files (set data.on_error=skip to leave them out):\n\(shown)\(more)"
            )
        }
        log(
            "vlseg: warning: leaving out \(bad.count) sample(s) with unusable files (data.on_error=skip):\n\(shown)\(more)"
        )
        return (value, Dictionary(grouping: bad, by: \.split).mapValues { Set($0.map(\.index)) })
    }

    /// A loader that covers `split` exactly once across ranks (no augmentation).
    public static func evaluationLoader(
        _ config: VLSegConfig, comm: Communicator, split: String,
        tokenizer: CLIPTokenizer, excluding: Set<Int> = []
    ) throws -> DataLoader {
        let samples = try Self.samples(config, split: split, training: false, excluding: excluding)
        var cfg = DataLoaderConfig(
            imageSize: try inputSize(config), workers: config.data.workers, seed: UInt64(config.seed),
            promptChoice: config.data.prompt, textPadding: .longest(max: CLIPTokenizer.contextLength),
            onError: config.data.onError, augmentation: nil)
        cfg.normalization = try normalization(config)
        cfg.resizeFilter = try resizeFilter(config)
        cfg.target = config.data.target
        cfg.opencvCubic = config.data.resize == .cv2Cubic
        cfg.appendPeriod = config.data.appendPeriod
        return try DataLoader(
            samples: samples,
            sampler: try ShardedSampler(
                count: samples.count, rank: comm.rank, worldSize: comm.size,
                batchSize: config.data.effectiveEvalBatchSize, seed: UInt64(config.seed), mode: .evaluation),
            tokenizer: tokenizer, config: cfg)
    }

    /// The training loop's options from the config.
    public static func trainingOptions(_ resolved: ResolvedConfig, batchSize: Int) -> TrainingOptions {
        let c = resolved.config
        var o = TrainingOptions(runDirectory: URL(fileURLWithPath: c.run.dir))
        o.seed = UInt64(c.seed)
        o.tensorboard = c.run.tensorboard
        o.tensorboardImages = max(0, c.run.tensorboardImages)
        o.maxSteps = c.trainer.maxSteps
        o.maxEpochs = c.trainer.maxEpochs
        o.accumulate = max(1, c.trainer.accumulate)
        o.batchSize = batchSize
        o.lr = Float(c.trainer.lr)
        o.weightDecay = Float(c.trainer.weightDecay)
        o.beta1 = Float(c.trainer.betas.first ?? 0.9)
        o.beta2 = Float(c.trainer.betas.count > 1 ? c.trainer.betas[1] : 0.999)
        o.eps = Float(c.trainer.eps)
        o.clipGradNorm = Float(c.trainer.clipGradNorm)
        o.schedule = LearningRateSchedule.Kind(rawValue: c.trainer.schedule.name.rawValue) ?? .constant
        o.warmupSteps = c.trainer.schedule.warmupSteps
        o.minLR = Float(c.trainer.schedule.minLR)
        o.plateauFactor = Float(c.trainer.schedule.factor)
        o.plateauPatience = c.trainer.schedule.patience
        o.earlyStoppingPatience = c.trainer.earlyStopping.patience
        o.earlyStoppingMinDelta = c.trainer.earlyStopping.minDelta
        o.earlyStoppingMonitor = c.trainer.earlyStopping.monitor
        o.earlyStoppingMode = c.trainer.earlyStopping.mode
        o.minEpochs = c.trainer.minEpochs
        o.weightDecayParams = c.trainer.weightDecayParams
        o.precisionNote = c.trainer.precision.resolve(bf16Unavailable: MatmulPrecision.bf16Unavailable).note
        o.evalEvery = c.trainer.evalEvery
        o.checkpointEvery = c.trainer.checkpointEvery
        o.keepLast = c.trainer.keepLast
        o.stopGraceSeconds = c.trainer.stopGraceS
        o.loss = SegmentationLoss(c.trainer.loss)
        o.logEvery = c.trainer.logEvery
        o.overlap = c.comm.overlap
        o.bucketBytes = Int(c.comm.bucketMB * 1_048_576)
        o.resume = c.resume
        o.cacheBudgetBytes = Int(c.trainer.cacheMB * 1_048_576)
        o.method = c.tuning.method
        o.configYAML = resolved.yaml
        o.configHash = resolved.trainingHash
        return o
    }

    /// The key of a run's frozen features (`FeatureCacheShelf`): a hash of everything they depend on. The
    /// model (its config section, and every file of its directory by name, size and modification time, so
    /// new weights under the same path are a new key), the data section (root, sizes, preprocessing), the
    /// precision, the method, and what decides which samples share a batch (seed, per-rank batch, ranks,
    /// the samples left out), since a sample's features from another batch can differ in the last bit.
    public static func featureCacheKey(
        _ resolved: ResolvedConfig, worldSize: Int, batchSize: Int, excluded: [String: Set<Int>]
    ) -> String {
        var parts = ["model", "data", "trainer.precision", "tuning.method", "seed"].map {
            "\($0)=\(resolved.text(at: $0) ?? "")"
        }
        parts.append("ranks=\(worldSize) batch=\(batchSize)")
        for (split, set) in excluded.sorted(by: { $0.key < $1.key }) {
            parts.append("excluded \(split)=\(set.sorted().map(String.init).joined(separator: ","))")
        }
        let dir = URL(fileURLWithPath: resolved.config.model.path)
        let fm = FileManager.default
        for name in ((try? fm.contentsOfDirectory(atPath: dir.path)) ?? []).sorted() {
            let attributes = (try? fm.attributesOfItem(atPath: dir.appendingPathComponent(name).path)) ?? [:]
            let size = (attributes[.size] as? NSNumber)?.intValue ?? -1
            let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            parts.append("file \(name) \(size) \(modified)")
        }
        return ConfigSHA256.hex(parts.joined(separator: "\n"))
    }

    /// Whether to cache frozen vision features: `auto` when valid, `on` demands it (an error says
    /// why it is not valid), `off` never.
    public static func featureCache(_ config: VLSegConfig, visionFrozen: Bool) throws -> Bool {
        let reason: String?
        if !visionFrozen {
            reason = "tuning '\(config.tuning.method)' trains tensors inside the vision tower"
        } else if config.data.augmentation != nil {
            reason = "augmentation is on (data.augment.enabled), so images change between epochs"
        } else {
            reason = nil
        }
        switch config.trainer.featureCache {
        case "off", "false", "no": return false
        case "auto": return reason == nil
        case "on", "true", "yes":
            if let reason {
                throw SetupError(message: "trainer.feature_cache=on is not valid here: \(reason); use auto or off")
            }
            return true
        default:
            throw SetupError(
                message: "trainer.feature_cache must be auto, on or off, got '\(config.trainer.featureCache)'")
        }
    }

    /// Caches per-prompt text features of frozen text towers (CLIPSeg) unless `trainer.feature_cache`
    /// is off. Text features do not depend on the images, so augmentation does not matter; the model
    /// uses the cache only while nothing trainable acts inside its text tower.
    public static func enableTextCache(_ config: VLSegConfig, model: SegmentationModel) {
        guard let clipseg = model as? CLIPSegModel, !["off", "false", "no"].contains(config.trainer.featureCache) else {
            return
        }
        clipseg.textCache = TextFeatureCache(budgetBytes: min(256 << 20, Int(config.trainer.cacheMB * 1_048_576) / 8))
    }

    /// Trainable parameters grouped by name prefix (up to the first layer index), for summaries.
    public static func parameterGroups(_ names: [String], store: ParameterStore) -> [(
        group: String, count: Int, tensors: Int
    )] {
        var order: [String] = []
        var totals: [String: (Int, Int)] = [:]
        for name in names {
            let parts = name.split(separator: ".")
            let cut = parts.firstIndex { Int($0) != nil } ?? max(parts.count - 1, 1)
            let group = parts.prefix(max(cut, 1)).joined(separator: ".")
            if totals[group] == nil { order.append(group) }
            let c = store[name].count
            totals[group, default: (0, 0)].0 += c
            totals[group, default: (0, 0)].1 += 1
        }
        return order.map { ($0, totals[$0]!.0, totals[$0]!.1) }
    }
}

public struct SetupError: Error, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

extension Normalization {
    /// A model directory's pixel statistics (`ImagePreprocessing`) as the loader's normalisation.
    public init(_ preprocessing: ImagePreprocessing) {
        self.init(
            mean: preprocessing.mean.map(Float.init), std: preprocessing.std.map(Float.init),
            scale: preprocessing.rescaleFactor)
    }
}

extension ResizeFilter {
    /// A model directory's resize filter (`ImagePreprocessing` accepts only the codes VLSeg implements).
    public init(_ preprocessing: ImagePreprocessing) {
        self = ResizeFilter(rawValue: preprocessing.resample) ?? .bilinear
    }
}
