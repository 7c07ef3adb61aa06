import VLTensor

/// The training loss of both papers: w_dice x soft Dice(sigmoid(logits)) + w_bce x BCE-with-logits.
public struct SegmentationLoss: Sendable, Equatable, Codable {
    public var diceWeight: Float
    public var bceWeight: Float

    public init(diceWeight: Float = 1, bceWeight: Float = 1) {
        self.diceWeight = diceWeight
        self.bceWeight = bceWeight
    }

    /// The loss for logits [B, H, W] against binary targets of the same shape.
    public func callAsFunction(_ logits: Tensor, target: Tensor) -> Tensor {
        precondition(logits.shape == target.shape, "loss: logits \(logits.shape) vs target \(target.shape)")
        switch (diceWeight, bceWeight) {
        case (0, _): return binaryCrossEntropyWithLogits(logits, target: target) * bceWeight
        case (_, 0): return softDiceLoss(logits, target: target) * diceWeight
        default:
            return softDiceLoss(logits, target: target) * diceWeight + binaryCrossEntropyWithLogits(logits, target: target) * bceWeight
        }
    }
}

/// Per-image Dice and IoU of thresholded predictions, accumulated as exact sums and counts so
/// that shards evaluated on different ranks reduce to the same totals as one pass.
public struct SegmentationMetrics: Sendable, Equatable, Codable {
    public var diceSum: Double = 0
    public var iouSum: Double = 0
    public var lossSum: Double = 0
    public var images: Int = 0
    /// Images that contributed a loss.
    public var batches: Int = 0

    public init() {}

    public var dice: Double { images == 0 ? 0 : diceSum / Double(images) }
    public var iou: Double { images == 0 ? 0 : iouSum / Double(images) }
    /// Mean loss per image: each batch's mean loss weighted by its size, so the value does not
    /// depend on how images were split into batches or ranks.
    public var loss: Double { batches == 0 ? 0 : lossSum / Double(batches) }

    /// Scores one image: prediction = logit > 0 (sigmoid > 0.5), target > 0.5. An image whose
    /// target and prediction are both empty scores 1 for Dice and IoU.
    public static func score(logits: UnsafePointer<Float>, target: UnsafePointer<Float>, count: Int) -> (dice: Double, iou: Double) {
        var inter = 0, pred = 0, truth = 0
        for i in 0..<count {
            let p = logits[i] > 0, t = target[i] > 0.5
            if p { pred += 1 }
            if t { truth += 1 }
            if p && t { inter += 1 }
        }
        if pred == 0 && truth == 0 { return (1, 1) }
        let dice = 2 * Double(inter) / Double(pred + truth)
        let iou = Double(inter) / Double(pred + truth - inter)
        return (dice, iou)
    }

    /// Adds a batch of logits [B, H, W] and targets, and its mean loss.
    public mutating func add(logits: Tensor, target: Tensor, loss: Double?) {
        precondition(logits.count == target.count && logits.rank >= 1)
        let b = logits.shape[0], per = logits.count / max(b, 1)
        for i in 0..<b {
            let s = Self.score(logits: logits.pointer + i * per, target: target.pointer + i * per, count: per)
            diceSum += s.dice
            iouSum += s.iou
        }
        images += b
        if let loss {
            lossSum += loss * Double(b)
            batches += b
        }
    }

    /// Adds precomputed per-image scores (e.g. at the original resolution).
    public mutating func add(dice: Double, iou: Double) {
        diceSum += dice
        iouSum += iou
        images += 1
    }

    /// The values to all-reduce (sum) across ranks, and their inverse.
    public var reductionVector: [Double] { [diceSum, iouSum, lossSum, Double(images), Double(batches)] }

    public init(reductionVector v: [Double]) {
        diceSum = v[0]
        iouSum = v[1]
        lossSum = v[2]
        images = Int(v[3].rounded())
        batches = Int(v[4].rounded())
    }
}
