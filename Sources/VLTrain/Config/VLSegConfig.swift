import Foundation
import VLData
import VLModels
import VLTensor

/// The resolved configuration of a run: what `ConfigLoader` builds from `configs/` and the command line.
///
/// Every field has a default (the value when no file sets it); YAML keys are the snake_case names in
/// the `CodingKeys`. The canonical keys scripts and tests rely on: `seed`, `run.dir`, `model.path`,
/// `tuning` (`tuning.method` + options), `data.root`, `data.prompt`, `data.batch_size` (per rank),
/// `data.workers`, `trainer.max_steps`, `trainer.max_epochs`, `trainer.accumulate`, `trainer.lr`,
/// `trainer.weight_decay`, `trainer.clip_grad_norm`, `trainer.eval_every`, `trainer.checkpoint_every`,
/// `trainer.keep_last`, `trainer.threads`, `resume`, `comm.overlap`, `comm.timeout_s`.
public struct VLSegConfig: Codable, Equatable, Sendable {
    /// Name of the experiment (names the default run directory).
    public var name = "default"
    /// Seed of every random stream (sampling, augmentation, prompt choice, initialisation).
    public var seed = 42
    /// `none`, `auto` (the newest complete checkpoint in `run.dir`, if any) or a checkpoint path.
    public var resume = ResumeSetting.none
    /// The folder holding the datasets, one sub-folder each under medvlsm's names (`kvasir_polyp`, `busi`,
    /// ...); the data configs' roots are relative to it, so one override points every dataset elsewhere.
    public var dataRoot = "data"
    public var run = RunSettings()
    public var model = ModelSettings()
    public var tuning = TuningConfig(method: "decoder")
    public var data = DataSettings()
    public var trainer = TrainerSettings()
    public var comm = CommSettings()

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, seed, resume, dataRoot = "data_root", run, model, tuning, data, trainer, comm
    }

    // MARK: Sections

    public struct RunSettings: Codable, Equatable, Sendable {
        /// The run directory: checkpoints, metrics, the resolved config (`config.yaml`).
        public var dir = "runs/default"
        /// Where auto-created inputs (the demo model and data) are kept; `~` is the home directory.
        public var cacheDir = "~/.cache/vlseg"
        /// A fresh run (`resume: none`) into a directory that holds an earlier run's checkpoints or
        /// metrics deletes them first; without it the run refuses to start (nothing is mixed).
        public var overwrite = false
        /// Rank 0 also writes TensorBoard event files in `RUN/tensorboard/` (the metrics as scalars).
        public var tensorboard = true
        /// Validation images drawn with their current prediction into the event file at each evaluation.
        public var tensorboardImages = 4
        public init() {}
        enum CodingKeys: String, CodingKey {
            case dir, cacheDir = "cache_dir", overwrite, tensorboard, tensorboardImages = "tensorboard_images"
        }
    }

    public enum ModelPreset: String, ConfigChoice, Sendable {
        /// A real model directory (downloaded from Hugging Face).
        case none = ""
        case tiny, small, base, scene
        case crisTiny = "cris-tiny", crisBase = "cris-base"

        /// The architecture `vlseg init-model` creates for this preset.
        public var clipsegPreset: CLIPSegPreset? { CLIPSegPreset(rawValue: rawValue) }
        public var crisPreset: CRISPreset? { CRISPreset(rawValue: rawValue) }
    }

    public struct ModelSettings: Codable, Equatable, Sendable {
        /// Short name of the model (for logs and run names).
        public var name = "clipseg_rd64_refined"
        /// A Hugging Face CLIPSeg directory (`config.json`, `model.safetensors`, `vocab.json`, `merges.txt`,
        /// optionally `preprocessor_config.json`).
        public var path = "models/clipseg-rd64-refined"
        /// When set, a missing `path` is created with `vlseg init-model --preset` (demo and tests).
        public var preset = ModelPreset.none
        /// Input side in pixels (images and masks are resized to image_size x image_size); 0 takes the
        /// model directory's (`ImagePreprocessing`: a CLIPSeg processor's size, else its vision
        /// image_size; CRIS: its img_size), see `RunSetup.inputSize`.
        public var imageSize = 0
        public init() {}
        enum CodingKeys: String, CodingKey { case name, path, preset, imageSize = "image_size" }
    }

    public enum AugmentPreset: String, ConfigChoice, Sendable {
        /// TuneVLSeg's training augmentations (`AugmentationConfig.tuneVLSeg`).
        case tunevlseg
    }

    public struct AugmentSettings: Codable, Equatable, Sendable {
        public var enabled = false
        public var preset = AugmentPreset.tunevlseg
        public init() {}
    }

    public struct DemoDataSettings: Codable, Equatable, Sendable {
        /// The generator (see `DemoDataKind`).
        public var kind = DemoDataKind.blobs
        /// Images of the synthetic dataset (blobs split 70/15/15, scenes 80/10/10, medical 60/15/25).
        public var count = 200
        /// Image side in pixels.
        public var size = 224
        public var seed = 0
        /// Scenes: entries (a mask and its prompts) per image.
        public var entriesPerImage = 2
        public init() {}
        enum CodingKeys: String, CodingKey { case kind, count, size, seed, entriesPerImage = "entries_per_image" }
    }

    public struct DataSettings: Codable, Equatable, Sendable {
        /// Dataset name; `demo` (or `demo_...`) means built-in synthetic data (`demo.kind` says which),
        /// created at `root` on first use.
        public var name = "kvasir"
        /// Dataset root in the medvlsm layout (`anns/{train,val,test}.json`, `images/`, `masks/`).
        public var root = "data/kvasir"
        /// Split -> the annotation files (or split folders) it is made of, `[SUB/FOLDERS/]NAME` relative to
        /// `root` (see `DatasetSplits`); a split not listed is the root's own file of that name.
        public var splits: [String: [String]] = [:]
        /// Which prompt of each entry: a key (`p1`), `random`, or a list of keys (`[p1, p2]`).
        public var prompt = PromptChoice.random
        /// Training batch per rank (see `trainer.global_batch_size`).
        public var batchSize = 32
        /// Evaluation batch per rank; 0 means `batch_size`.
        public var evalBatchSize = 0
        /// Loader threads per rank (0 = prepare batches on the training thread).
        public var workers = 2
        public var augment = AugmentSettings()
        /// An unusable entry (missing or corrupt file): `fail` stops with its name, `skip` leaves it out.
        public var onError = OnErrorPolicy.fail
        /// The last partial global batch of an epoch: `drop` it or `wrap` around to fill it.
        public var remainder = RemainderPolicy.wrap
        /// The synthetic dataset's shape when `name` is `demo`.
        public var demo = DemoDataSettings()
        /// Multi-class datasets (a `classes.json` in the root): negative samples per image, a class the
        /// image lacks with an all-background target, drawn per epoch.
        public var absentPerImage = 0
        /// Training and validation targets: `binary` (foreground where the mask's first channel is above
        /// 127) or `soft` (its grey level / 255, as both papers' loaders feed the loss). Metrics always
        /// count a target pixel as foreground above 0.5, which is the same pixel set.
        public var target = MaskTarget.binary
        /// Appends "." to every prompt that does not already end with one (TuneVLSeg's
        /// `insert_stop_at_last`), in training, evaluation and prediction alike.
        public var appendPeriod = false
        /// How images are resized to the model's input: `auto` (the model processor's PIL filter),
        /// `pil_bilinear`, `pil_bicubic` (Pillow's, antialiased when shrinking; VLSM-Adapter's torchvision
        /// Resize is `pil_bilinear`) or `cv2_cubic` (OpenCV's INTER_CUBIC, TuneVLSeg's albumentations Resize).
        public var resize = ImageResizeSetting.auto
        public init() {}
        enum CodingKeys: String, CodingKey {
            case name, root, splits, prompt, batchSize = "batch_size", evalBatchSize = "eval_batch_size", workers,
                augment
            case onError = "on_error", remainder, demo, absentPerImage = "absent_per_image", target
            case appendPeriod = "append_period", resize
        }

        /// The splits as configured: `root` with `splits`.
        public var datasetSplits: DatasetSplits { DatasetSplits(root: URL(fileURLWithPath: root), mapping: splits) }

        /// Generated data (`demo`, or `demo_<something>` for the other generators' datasets).
        public var isDemo: Bool { name == "demo" || name.hasPrefix("demo_") }
        public var effectiveEvalBatchSize: Int { evalBatchSize > 0 ? evalBatchSize : batchSize }
        /// The loader's augmentation, or nil when off.
        public var augmentation: AugmentationConfig? {
            guard augment.enabled else { return nil }
            switch augment.preset {
            case .tunevlseg: return .tuneVLSeg
            }
        }
    }

    public enum ScheduleName: String, ConfigChoice, Sendable {
        /// The same learning rate throughout (after warm-up).
        case constant
        /// Cosine decay from `lr` to `min_lr` over the run (after warm-up).
        case cosine
        /// ReduceLROnPlateau on validation loss: multiply by `factor` after `patience` evaluations without improvement.
        case plateau
    }

    public struct ScheduleSettings: Codable, Equatable, Sendable {
        public var name = ScheduleName.constant
        public var warmupSteps = 0
        public var factor = 0.3
        public var patience = 5
        public var minLR = 0.0
        public init() {}
        enum CodingKeys: String, CodingKey {
            case name, warmupSteps = "warmup_steps", factor, patience, minLR = "min_lr"
        }
    }

    public struct EarlyStoppingSettings: Codable, Equatable, Sendable {
        /// Evaluations without an improvement of the monitored value before training stops; 0 = never stop early.
        public var patience = 0
        /// The smallest change towards `mode` that counts as an improvement.
        public var minDelta = 0.0
        /// The validation value watched: `val_dice` (mean per-image Dice) or `val_loss`.
        public var monitor = EarlyStopping.Monitor.valDice
        /// `max`: higher is better; `min`: lower is better.
        public var mode = EarlyStopping.Mode.max
        public init() {}
        enum CodingKeys: String, CodingKey { case patience, minDelta = "min_delta", monitor, mode }
    }

    public struct LossSettings: Codable, Equatable, Sendable {
        public var diceWeight = 1.0
        public var bceWeight = 1.0
        /// Added to the Dice numerator and denominator (MONAI's smooth_nr = smooth_dr; both papers 1e-5).
        public var diceSmooth = 1.0
        /// VLSM-Adapter's BCE term as its code computes it: BCE-with-logits of sigmoid(logits), i.e. the
        /// sigmoid applied twice (see `SegmentationLoss`); false is the intended BCE-with-logits of the logits.
        public var compatDoubleSigmoid = false
        public init() {}
        enum CodingKeys: String, CodingKey {
            case diceWeight = "dice_weight", bceWeight = "bce_weight", diceSmooth = "dice_smooth"
            case compatDoubleSigmoid = "compat_double_sigmoid"
        }
    }

    /// The test after training (`trainer.test`) and the defaults of `vlseg evaluate` / `predict`.
    public struct TestSettings: Codable, Equatable, Sendable {
        /// Evaluate the best checkpoint (else the last) on the test split when training ends, writing
        /// `<run>/eval-test.json` and a `test` record in the metrics files (what `vlseg results` reads).
        public var atEnd = false
        /// Foreground where the sigmoid probability exceeds this (validation during training keeps 0.5).
        public var threshold = 0.5
        /// How predictions reach the images' own resolution: `bilinear` (VLSeg), `nearest` (VLSM-Adapter),
        /// `bicubic` (TuneVLSeg); see `MaskResize`.
        public var resize = MaskResize.bilinear
        public init() {}
        enum CodingKeys: String, CodingKey { case atEnd = "at_end", threshold, resize }
    }

    public struct TrainerSettings: Codable, Equatable, Sendable {
        /// Optimiser steps to run; 0 = no step limit (then `max_epochs` bounds the run).
        public var maxSteps = 0
        /// Epochs to run; 0 = no epoch limit (then `max_steps` bounds the run).
        public var maxEpochs = 100
        /// Early stopping cannot end the run before this many epochs are complete (Lightning's
        /// `min_epochs`); 0 = no minimum.
        public var minEpochs = 0
        /// Micro-batches accumulated per optimiser step.
        public var accumulate = 1
        /// When > 0: the batch of one optimiser step over all ranks and accumulation steps. The per-rank batch
        /// is then global / (ranks x accumulate), so a paper's batch holds at any world size.
        public var globalBatchSize = 0
        /// AdamW.
        public var lr = 1e-3
        public var weightDecay = 1e-3
        /// Which trainable tensors weight decay applies to: `all`, or `linear_conv` (only the weights of
        /// linear and convolution layers: biases, norms, embeddings and learned prompt vectors exempt).
        public var weightDecayParams = WeightDecayParams.all
        public var betas = [0.9, 0.999]
        public var eps = 1e-8
        /// Global gradient-norm clip after the all-reduce; 0 = off.
        public var clipGradNorm = 0.5
        public var schedule = ScheduleSettings()
        public var earlyStopping = EarlyStoppingSettings()
        public var loss = LossSettings()
        /// Evaluate every N optimiser steps; 0 = at the end of every epoch.
        public var evalEvery = 0
        /// Save a checkpoint every N optimiser steps; 0 = after every evaluation.
        public var checkpointEvery = 0
        /// Checkpoints kept besides `best`.
        public var keepLast = 3
        /// Compute threads per rank; 0 = the machine's cores / ranks on the machine.
        public var threads = 0
        /// Input format of the matrix products (linear layers, the decoder MLP, wide attention heads,
        /// convolutions):
        /// `fp32`, or `bf16` (bfloat16 inputs, float32 sums, on CPUs with AVX512_BF16: about 1.7x the
        /// steps per second of the ViT-B models, see the README's Performance section), or
        /// `bf16_if_available` (bf16 where the CPU has it, else fp32, said once in the log).
        public var precision = PrecisionSetting.fp32
        /// Log training loss, learning rate and throughput every N steps.
        public var logEvery = 10
        /// Reuse frozen vision features across epochs: `auto` (when valid), `on` (error when not valid), `off`.
        public var featureCache = "auto"
        /// Feature-cache memory budget in MiB; above it the cache is a memory-mapped file in the run directory.
        public var cacheMB = 4096.0
        /// Seconds a stop (SIGTERM, SIGINT, SIGUSR1) may take to finish the step and save its
        /// checkpoint; `launch/train` sets mpirun's kill delay to it, and ranks that wait longer
        /// for a peer after a stop request abort (the peer is dead or stuck).
        public var stopGraceS = 60.0
        /// When not empty, `vlseg train` trains one run per seed, one after another under the same launch,
        /// in `<run.dir>/seed-<seed>` (each with `seed` set to it); empty: one run with `seed`.
        public var seeds: [Int] = []
        public var test = TestSettings()
        public init() {}
        enum CodingKeys: String, CodingKey {
            case maxSteps = "max_steps", maxEpochs = "max_epochs", minEpochs = "min_epochs", accumulate
            case globalBatchSize = "global_batch_size"
            case lr, weightDecay = "weight_decay", weightDecayParams = "weight_decay_params", betas, eps, clipGradNorm =
                "clip_grad_norm", schedule
            case earlyStopping = "early_stopping", loss, evalEvery = "eval_every", checkpointEvery = "checkpoint_every"
            case keepLast = "keep_last", threads, precision, logEvery = "log_every", featureCache = "feature_cache",
                cacheMB = "cache_mb"
            case stopGraceS = "stop_grace_s", seeds, test
        }
    }

    public struct CommSettings: Codable, Equatable, Sendable {
        /// Launch gradient all-reduce buckets during backward (false: one all-reduce after backward).
        public var overlap = true
        /// A collective that does not complete within this many seconds aborts the job (watchdog).
        public var timeoutS = 300.0
        /// Gradient bucket size in MiB.
        public var bucketMB = 25.0
        public init() {}
        enum CodingKeys: String, CodingKey { case overlap, timeoutS = "timeout_s", bucketMB = "bucket_mb" }
    }
}

/// `resume`: start fresh, continue from the newest complete checkpoint of the run directory, or load one.
public enum ResumeSetting: Codable, Equatable, Sendable, CustomStringConvertible {
    case none
    case auto
    case path(String)

    public init(_ text: String) {
        switch text {
        case "", "none", "false", "no", "off": self = .none
        case "auto": self = .auto
        default: self = .path(text)
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .none; return }
        if let b = try? c.decode(Bool.self), !b { self = .none; return }
        self = ResumeSetting(try c.decode(String.self))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }

    public var description: String {
        switch self {
        case .none: return "none"
        case .auto: return "auto"
        case let .path(p): return p
        }
    }
}

extension OnErrorPolicy: ConfigChoice {}
extension DemoDataKind: ConfigChoice {}
extension RemainderPolicy: ConfigChoice {}
extension MatmulPrecision: ConfigChoice {}
extension PrecisionSetting: ConfigChoice {}
extension MaskTarget: ConfigChoice {}
extension ImageResizeSetting: ConfigChoice {}
extension WeightDecayParams: ConfigChoice {}
extension EarlyStopping.Monitor: ConfigChoice {}
extension EarlyStopping.Mode: ConfigChoice {}

// MARK: - Derived values and checks

extension VLSegConfig {
    /// The per-rank training batch at this world size: `data.batch_size`, or, when
    /// `trainer.global_batch_size` is set, global / (ranks x accumulate), which must divide exactly.
    public func perRankBatchSize(worldSize: Int) throws -> Int {
        let global = trainer.globalBatchSize
        guard global > 0 else { return data.batchSize }
        let parts = max(1, worldSize) * trainer.accumulate
        guard global % parts == 0, global >= parts else {
            throw ConfigError(
                .invalidValue, path: "trainer.global_batch_size",
                message:
                    "\(global) does not divide into \(worldSize) rank(s) x \(trainer.accumulate) accumulation step(s); choose a multiple of \(parts) or set trainer.global_batch_size=0 and data.batch_size"
            )
        }
        return global / parts
    }

    /// The global batch of one optimiser step at this world size.
    public func globalBatchSize(worldSize: Int) throws -> Int {
        try perRankBatchSize(worldSize: worldSize) * max(1, worldSize) * trainer.accumulate
    }

    /// Value problems that the types alone cannot catch, as (key path, message).
    public func problems() -> [(path: String, message: String)] {
        var p: [(String, String)] = []
        func need(_ ok: Bool, _ path: String, _ message: String) { if !ok { p.append((path, message)) } }
        need(seed >= 0, "seed", "must be >= 0")
        need(!run.dir.isEmpty, "run.dir", "must not be empty")
        need(!model.path.isEmpty, "model.path", "must not be empty")
        need(
            model.imageSize == 0 || (model.imageSize >= 16 && model.imageSize <= 4096), "model.image_size",
            "must be 0 (the model's own) or in 16...4096")
        need(!data.root.isEmpty, "data.root", "must not be empty")
        need(data.batchSize >= 1, "data.batch_size", "must be >= 1")
        need(data.evalBatchSize >= 0, "data.eval_batch_size", "must be >= 0 (0 = data.batch_size)")
        need(data.workers >= 0, "data.workers", "must be >= 0")
        need(data.demo.count >= 1, "data.demo.count", "must be >= 1")
        need(data.demo.size >= 32 && data.demo.size <= 8192, "data.demo.size", "must be in 32...8192")
        need(data.demo.seed >= 0, "data.demo.seed", "must be >= 0")
        need(
            data.demo.entriesPerImage >= 1 && data.demo.entriesPerImage <= 16, "data.demo.entries_per_image",
            "must be in 1...16")
        need(trainer.maxSteps >= 0, "trainer.max_steps", "must be >= 0 (0 = no step limit)")
        need(trainer.maxEpochs >= 0, "trainer.max_epochs", "must be >= 0 (0 = no epoch limit)")
        need(trainer.minEpochs >= 0, "trainer.min_epochs", "must be >= 0 (0 = no minimum)")
        need(
            trainer.maxEpochs == 0 || trainer.minEpochs <= trainer.maxEpochs, "trainer.min_epochs",
            "must not exceed trainer.max_epochs")
        need(
            trainer.maxSteps > 0 || trainer.maxEpochs > 0, "trainer.max_steps",
            "trainer.max_steps and trainer.max_epochs are both 0: set one of them")
        need(trainer.accumulate >= 1, "trainer.accumulate", "must be >= 1")
        need(trainer.globalBatchSize >= 0, "trainer.global_batch_size", "must be >= 0 (0 = data.batch_size per rank)")
        need(trainer.lr > 0, "trainer.lr", "must be > 0")
        need(trainer.weightDecay >= 0, "trainer.weight_decay", "must be >= 0")
        need(
            trainer.betas.count == 2 && trainer.betas.allSatisfy { $0 >= 0 && $0 < 1 }, "trainer.betas",
            "must be two numbers in [0, 1), e.g. [0.9, 0.999]")
        need(trainer.eps > 0, "trainer.eps", "must be > 0")
        need(trainer.clipGradNorm >= 0, "trainer.clip_grad_norm", "must be >= 0 (0 = no clipping)")
        need(trainer.schedule.warmupSteps >= 0, "trainer.schedule.warmup_steps", "must be >= 0")
        need(trainer.schedule.factor > 0 && trainer.schedule.factor < 1, "trainer.schedule.factor", "must be in (0, 1)")
        need(trainer.schedule.patience >= 0, "trainer.schedule.patience", "must be >= 0")
        need(
            trainer.schedule.minLR >= 0 && trainer.schedule.minLR <= trainer.lr, "trainer.schedule.min_lr",
            "must be in [0, trainer.lr]")
        need(trainer.earlyStopping.patience >= 0, "trainer.early_stopping.patience", "must be >= 0 (0 = off)")
        need(trainer.earlyStopping.minDelta >= 0, "trainer.early_stopping.min_delta", "must be >= 0")
        need(trainer.loss.diceWeight >= 0, "trainer.loss.dice_weight", "must be >= 0")
        need(trainer.loss.bceWeight >= 0, "trainer.loss.bce_weight", "must be >= 0")
        need(
            trainer.loss.diceSmooth > 0 && trainer.loss.diceSmooth.isFinite, "trainer.loss.dice_smooth",
            "must be a number > 0 (both papers: 1e-5)")
        need(
            trainer.loss.diceWeight + trainer.loss.bceWeight > 0, "trainer.loss.dice_weight",
            "dice_weight and bce_weight are both 0")
        need(trainer.evalEvery >= 0, "trainer.eval_every", "must be >= 0 (0 = every epoch)")
        need(trainer.checkpointEvery >= 0, "trainer.checkpoint_every", "must be >= 0 (0 = after every evaluation)")
        need(trainer.keepLast >= 1, "trainer.keep_last", "must be >= 1")
        need(trainer.threads >= 0, "trainer.threads", "must be >= 0 (0 = cores / ranks on the machine)")
        need(trainer.logEvery >= 1, "trainer.log_every", "must be >= 1")
        need(trainer.stopGraceS > 0, "trainer.stop_grace_s", "must be > 0")
        need(trainer.seeds.allSatisfy { $0 >= 0 }, "trainer.seeds", "every seed must be >= 0")
        need(Set(trainer.seeds).count == trainer.seeds.count, "trainer.seeds", "lists a seed twice")
        if !trainer.seeds.isEmpty, case .path = resume {
            p.append(("resume", "a checkpoint path cannot resume several seeds (trainer.seeds): use resume=auto"))
        }
        need(
            trainer.test.threshold > 0 && trainer.test.threshold < 1, "trainer.test.threshold",
            "must be in (0, 1) (a probability)")
        need(comm.timeoutS > 0, "comm.timeout_s", "must be > 0")
        need(comm.bucketMB > 0, "comm.bucket_mb", "must be > 0")
        return p
    }

    /// `~` and `~/...` in path settings, expanded to the home directory (`$HOME` by default).
    public func expandingHome(_ home: String? = nil) -> VLSegConfig {
        var c = self
        c.run.dir = VLSegConfig.expandHome(c.run.dir, home: home)
        c.run.cacheDir = VLSegConfig.expandHome(c.run.cacheDir, home: home)
        c.model.path = VLSegConfig.expandHome(c.model.path, home: home)
        c.data.root = VLSegConfig.expandHome(c.data.root, home: home)
        if case let .path(p) = c.resume { c.resume = .path(VLSegConfig.expandHome(p, home: home)) }
        return c
    }

    static func expandHome(_ path: String, home: String? = nil) -> String {
        guard path == "~" || path.hasPrefix("~/") else { return path }
        let dir =
            home ?? ProcessInfo.processInfo.environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return dir + path.dropFirst()
    }
}
