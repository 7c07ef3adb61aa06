import Foundation

/// How a prediction at the model's resolution is brought to the image's own size before it is scored
/// there (and written by `predict`). Each paper's scripts do it differently, and at the boundary of
/// thin structures the choice moves Dice by a few points, so a reproduction has to pick the paper's.
public enum MaskResize: String, ConfigChoice, Sendable {
    /// VLSeg's own: logits resized bilinearly, then thresholded.
    case bilinear
    /// VLSM-Adapter: thresholded at the model's resolution, then the binary mask resized with
    /// nearest-exact (torchvision `NEAREST_EXACT`) before its masks are written and scored.
    case nearest
    /// TuneVLSeg: sigmoid probabilities resized bicubically (no antialiasing), written as 8-bit PNG
    /// and read back as foreground above 127, that is probability >= the threshold.
    case bicubic
}

/// What one evaluation of a run found: `vlseg evaluate` and the end-of-training test write it as
/// `<run>/eval-<split>.json`, and `vlseg results` reads it. Both forms of each score are kept
/// (mean over images and pooled over the split) at the model's and at the images' own resolution.
public struct EvaluationReport: Codable, Sendable, Equatable {
    public var split: String
    public var images: Int
    public var loss: Double
    public var dice: Double
    public var iou: Double
    public var dicePooled: Double
    public var iouPooled: Double
    public var diceOriginal: Double?
    public var iouOriginal: Double?
    public var diceOriginalPooled: Double?
    public var iouOriginalPooled: Double?
    /// On the sigmoid probability.
    public var threshold: Double
    public var resize: String
    public var inputSize: Int
    /// The weights evaluated (a checkpoint directory), or nil for the base model alone.
    public var checkpoint: String?

    enum CodingKeys: String, CodingKey {
        case split, images, loss, dice, iou, dicePooled = "dice_pooled", iouPooled = "iou_pooled"
        case diceOriginal = "dice_original", iouOriginal = "iou_original"
        case diceOriginalPooled = "dice_original_pooled", iouOriginalPooled = "iou_original_pooled"
        case threshold, resize, inputSize = "input_size", checkpoint
    }

    public init(
        split: String, result: Inference.EvaluationResult, threshold: ProbabilityThreshold, resize: MaskResize,
        inputSize: Int, checkpoint: String?
    ) {
        let m = result.modelResolution
        self.split = split
        images = m.images
        loss = m.loss
        dice = m.dice
        iou = m.iou
        dicePooled = m.dicePooled
        iouPooled = m.iouPooled
        if let o = result.originalResolution {
            diceOriginal = o.dice
            iouOriginal = o.iou
            diceOriginalPooled = o.dicePooled
            iouOriginalPooled = o.iouPooled
        }
        self.threshold = threshold.probability
        self.resize = resize.rawValue
        self.inputSize = inputSize
        self.checkpoint = checkpoint
    }

    public static func fileName(split: String) -> String { "eval-\(split).json" }

    /// One line of JSON, keys sorted (`evaluate --json`, the file's content).
    public func jsonLine() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// Writes `<run>/eval-<split>.json` (temporary file and rename: a reader never sees half of it).
    public func write(runDirectory: URL) throws -> URL {
        let url = runDirectory.appendingPathComponent(Self.fileName(split: split))
        do {
            try Data((try jsonLine() + "\n").utf8).write(to: url, options: .atomic)
        } catch {
            throw RunDirectoryError.io(
                path: url.path, reason: "cannot write the evaluation: \(MetricsLog.reason(error))")
        }
        return url
    }
}

/// `<run>/training.json`, written by rank 0 when a run has finished (after its end-of-training test, if
/// any): what `vlseg results` reports beside the scores, and what tells a multi-seed launch under
/// `resume=auto` that this seed is done.
public struct TrainingRecord: Codable, Sendable, Equatable {
    public var method: String
    public var seed: Int
    public var steps: Int
    public var epochs: Int
    public var stoppedEarly: Bool
    public var bestStep: Int?
    public var bestValidationDice: Double?
    public var trainableParameters: Int
    /// Training time summed over the segments of a resumed run, each up to its last checkpoint.
    public var wallSeconds: Double
    public var ranks: Int
    /// `ResolvedConfig.trainingHash` and the step budget: a seed is done only under the same settings.
    public var trainingHash: String
    public var maxSteps: Int
    public var maxEpochs: Int

    public static let fileName = "training.json"

    enum CodingKeys: String, CodingKey {
        case method, seed, steps, epochs, stoppedEarly = "stopped_early", bestStep = "best_step"
        case bestValidationDice = "best_validation_dice", trainableParameters = "trainable_parameters"
        case wallSeconds = "wall_seconds", ranks, trainingHash = "training_hash", maxSteps = "max_steps", maxEpochs =
            "max_epochs"
    }

    public init(
        method: String, seed: Int, steps: Int, epochs: Int, stoppedEarly: Bool, bestStep: Int?,
        bestValidationDice: Double?,
        trainableParameters: Int, wallSeconds: Double, ranks: Int, trainingHash: String, maxSteps: Int, maxEpochs: Int
    ) {
        self.method = method
        self.seed = seed
        self.steps = steps
        self.epochs = epochs
        self.stoppedEarly = stoppedEarly
        self.bestStep = bestStep
        self.bestValidationDice = bestValidationDice
        self.trainableParameters = trainableParameters
        self.wallSeconds = wallSeconds
        self.ranks = ranks
        self.trainingHash = trainingHash
        self.maxSteps = maxSteps
        self.maxEpochs = maxEpochs
    }

    public func write(runDirectory: URL) throws {
        let url = runDirectory.appendingPathComponent(Self.fileName)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        do {
            try (try encoder.encode(self) + Data("\n".utf8)).write(to: url, options: .atomic)
        } catch {
            throw RunDirectoryError.io(
                path: url.path, reason: "cannot write the training record: \(MetricsLog.reason(error))")
        }
    }

    /// The record of `runDirectory`, nil when there is none; a file that does not decode is an error naming it.
    public static func read(runDirectory: URL) throws -> TrainingRecord? {
        let url = runDirectory.appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        do {
            return try JSONDecoder().decode(TrainingRecord.self, from: Data(contentsOf: url))
        } catch {
            throw RunDirectoryError.io(path: url.path, reason: "not a training record: \(error.localizedDescription)")
        }
    }
}
