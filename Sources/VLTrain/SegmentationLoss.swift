import Foundation
import VLTensor

/// The training loss of both papers: w_dice x soft Dice(sigmoid(logits)) + w_bce x BCE-with-logits, MONAI's
/// `DiceCELoss` for one channel (Dice per image with `smooth` added to numerator and denominator, then the
/// batch mean).
///
/// `compatDoubleSigmoid` reproduces VLSM-Adapter's code: it applies the sigmoid before calling
/// `DiceCELoss(sigmoid=False)`, whose one-channel cross-entropy is BCE-with-logits, so its BCE term is
/// BCE(sigmoid(sigmoid(x)), t) while its Dice term sees sigmoid(x) as intended. Its published numbers were
/// trained that way; off, the BCE term is the intended BCE-with-logits of x.
public struct SegmentationLoss: Sendable, Equatable, Codable {
    public var diceWeight: Float
    public var bceWeight: Float
    public var diceSmooth: Float
    public var compatDoubleSigmoid: Bool

    public init(diceWeight: Float = 1, bceWeight: Float = 1, diceSmooth: Float = 1, compatDoubleSigmoid: Bool = false) {
        self.diceWeight = diceWeight
        self.bceWeight = bceWeight
        self.diceSmooth = diceSmooth
        self.compatDoubleSigmoid = compatDoubleSigmoid
    }

    /// The loss for logits [B, H, W] against targets in [0, 1] of the same shape (binary or soft).
    public func callAsFunction(_ logits: Tensor, target: Tensor) -> Tensor {
        precondition(logits.shape == target.shape, "loss: logits \(logits.shape) vs target \(target.shape)")
        func bce() -> Tensor {
            binaryCrossEntropyWithLogits(compatDoubleSigmoid ? logits.sigmoid() : logits, target: target) * bceWeight
        }
        func dice() -> Tensor { softDiceLoss(logits, target: target, smooth: diceSmooth) * diceWeight }
        switch (diceWeight, bceWeight) {
        case (0, _): return bce()
        case (_, 0): return dice()
        default: return dice() + bce()
        }
    }
}

extension SegmentationLoss {
    /// The loss a config asks for (`trainer.loss.*`).
    public init(_ settings: VLSegConfig.LossSettings) {
        self.init(
            diceWeight: Float(settings.diceWeight), bceWeight: Float(settings.bceWeight),
            diceSmooth: Float(settings.diceSmooth), compatDoubleSigmoid: settings.compatDoubleSigmoid)
    }
}

/// One image's pixel counts after thresholding: what both the per-image scores and the pooled
/// (whole-split) scores are made of.
public struct PixelCounts: Sendable, Equatable, Codable {
    public var intersection: Int
    public var predicted: Int
    public var truth: Int

    public init(intersection: Int = 0, predicted: Int = 0, truth: Int = 0) {
        self.intersection = intersection
        self.predicted = predicted
        self.truth = truth
    }

    /// The empty-mask convention of both papers (MONAI's `ignore_empty=False`, torchmetrics'
    /// `zero_division=1`): prediction and target both empty score 1; exactly one of them empty scores 0
    /// (nothing intersects a non-empty mask).
    public var dice: Double { predicted + truth == 0 ? 1 : 2 * Double(intersection) / Double(predicted + truth) }
    public var iou: Double {
        predicted + truth == 0 ? 1 : Double(intersection) / Double(predicted + truth - intersection)
    }

    /// Counts of `prediction[i]` against `target[i] > 0.5`.
    public static func count(_ count: Int, predicted: (Int) -> Bool, target: UnsafePointer<Float>) -> PixelCounts {
        var inter = 0, pred = 0, truth = 0
        for i in 0..<count {
            let p = predicted(i), t = target[i] > 0.5
            if p { pred += 1 }
            if t { truth += 1 }
            if p && t { inter += 1 }
        }
        return PixelCounts(intersection: inter, predicted: pred, truth: truth)
    }
}

/// The decision threshold on the sigmoid probability, applied to logits: `sigmoid(x) > p` is
/// `x > log(p / (1 - p))`, which avoids computing the sigmoid per pixel and keeps 0.5 exactly at logit 0.
public struct ProbabilityThreshold: Sendable, Equatable, Codable {
    public let probability: Double
    public let logit: Float

    public static let half = ProbabilityThreshold(uncheckedProbability: 0.5)

    /// Nil unless 0 < p < 1 (0 and 1 would make every pixel positive or none).
    public init?(probability p: Double) {
        guard p > 0, p < 1, p.isFinite else { return nil }
        self.init(uncheckedProbability: p)
    }

    private init(uncheckedProbability p: Double) {
        probability = p
        logit = p == 0.5 ? 0 : Float(log(p / (1 - p)))
    }
}

/// Dice and IoU of thresholded predictions in both forms the papers report, accumulated as exact sums
/// and counts so that shards evaluated on different ranks reduce to the same totals as one pass:
/// the mean over images of each image's score (VLSM-Adapter; TuneVLSeg's Dice with `average="samples"`)
/// and the pooled score of the whole split, from its summed intersections and unions (TuneVLSeg's IoU,
/// torchmetrics' `BinaryJaccardIndex`; the Dice analogue beside it).
public struct SegmentationMetrics: Sendable, Equatable, Codable {
    public var diceSum: Double = 0
    public var iouSum: Double = 0
    public var lossSum: Double = 0
    public var images: Int = 0
    /// Images that contributed a loss.
    public var batches: Int = 0
    /// Pixels summed over every image: predicted and target foreground, and their intersection.
    public var intersection: Double = 0
    public var predicted: Double = 0
    public var truth: Double = 0

    public init() {}

    /// Mean over images of each image's Dice / IoU.
    public var dice: Double { images == 0 ? 0 : diceSum / Double(images) }
    public var iou: Double { images == 0 ? 0 : iouSum / Double(images) }
    /// The whole split's Dice / IoU from summed pixel counts; 1 when no image has a predicted or a
    /// target pixel (torchmetrics' `zero_division=1`).
    public var dicePooled: Double { predicted + truth == 0 ? 1 : 2 * intersection / (predicted + truth) }
    public var iouPooled: Double { predicted + truth == 0 ? 1 : intersection / (predicted + truth - intersection) }
    /// Mean loss per image: each batch's mean loss weighted by its size, so the value does not
    /// depend on how images were split into batches or ranks.
    public var loss: Double { batches == 0 ? 0 : lossSum / Double(batches) }

    /// Counts of one image: prediction = logit above the threshold's logit (sigmoid > probability),
    /// target > 0.5.
    public static func counts(
        logits: UnsafePointer<Float>, target: UnsafePointer<Float>, count: Int,
        threshold: ProbabilityThreshold = .half
    ) -> PixelCounts {
        let cut = threshold.logit
        return PixelCounts.count(count, predicted: { logits[$0] > cut }, target: target)
    }

    /// One image's Dice and IoU (see `PixelCounts` for empty masks).
    public static func score(
        logits: UnsafePointer<Float>, target: UnsafePointer<Float>, count: Int,
        threshold: ProbabilityThreshold = .half
    ) -> (dice: Double, iou: Double) {
        let c = counts(logits: logits, target: target, count: count, threshold: threshold)
        return (c.dice, c.iou)
    }

    /// Adds a batch of logits [B, H, W] and targets, and its mean loss.
    public mutating func add(logits: Tensor, target: Tensor, loss: Double?, threshold: ProbabilityThreshold = .half) {
        precondition(logits.count == target.count && logits.rank >= 1)
        let b = logits.shape[0], per = logits.count / max(b, 1)
        withTensorPointers(reading: logits, target) { pl, pt in
            for i in 0..<b {
                add(Self.counts(logits: pl + i * per, target: pt + i * per, count: per, threshold: threshold))
            }
        }
        if let loss {
            lossSum += loss * Double(b)
            batches += b
        }
    }

    /// Adds one image's counts (e.g. at the original resolution).
    public mutating func add(_ c: PixelCounts) {
        diceSum += c.dice
        iouSum += c.iou
        images += 1
        intersection += Double(c.intersection)
        predicted += Double(c.predicted)
        truth += Double(c.truth)
    }

    /// The values to all-reduce (sum) across ranks, and their inverse: sums of scores and of pixel
    /// counts, never ratios, so the pooled scores are the whole split's whatever the sharding.
    public var reductionVector: [Double] {
        [diceSum, iouSum, lossSum, Double(images), Double(batches), intersection, predicted, truth]
    }
    public static let reductionWidth = 8

    public init(reductionVector v: [Double]) {
        precondition(v.count == Self.reductionWidth)
        diceSum = v[0]
        iouSum = v[1]
        lossSum = v[2]
        images = Int(v[3].rounded())
        batches = Int(v[4].rounded())
        intersection = v[5]
        predicted = v[6]
        truth = v[7]
    }
}
