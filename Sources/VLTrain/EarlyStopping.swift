import Foundation

/// Early stopping on one validation value, as PyTorch Lightning's `EarlyStopping` callback decides it:
/// an evaluation improves when the value beats the best so far by more than `minDelta` in the direction
/// of `mode`; after `patience` evaluations in a row without an improvement the run should stop.
///
/// Both papers use it with different settings (VLSM-Adapter: validation Dice, max; TuneVLSeg: validation
/// loss, min), so the watched value and its direction are settings, not code. Which checkpoint is the
/// best is decided separately (always validation Dice, as both papers' checkpoint callbacks).
public struct EarlyStopping: Sendable, Codable, Equatable {
    /// The validation value watched (`trainer.early_stopping.monitor`).
    public enum Monitor: String, Sendable, Codable, CaseIterable {
        case valDice = "val_dice"
        case valLoss = "val_loss"
    }

    /// Whether larger (`max`) or smaller (`min`) values are better (`trainer.early_stopping.mode`).
    public enum Mode: String, Sendable, Codable, CaseIterable {
        case max, min
    }

    public var patience: Int
    public var minDelta: Double
    public var monitor: Monitor
    public var mode: Mode
    public private(set) var best: Double? = nil
    public private(set) var evaluationsWithoutImprovement = 0
    /// Set once patience ran out, and kept: Lightning ORs each check into `trainer.should_stop`, so a
    /// stop signalled before `min_epochs` ends the run at the first check after it, even if the value
    /// improved in between.
    public private(set) var signalled = false

    public init(patience: Int, minDelta: Double = 0, monitor: Monitor = .valDice, mode: Mode = .max) {
        self.patience = patience
        self.minDelta = minDelta
        self.monitor = monitor
        self.mode = mode
    }

    /// The monitored value of one validation.
    public func value(of metrics: SegmentationMetrics) -> Double {
        switch monitor {
        case .valDice: return metrics.dice
        case .valLoss: return metrics.loss
        }
    }

    /// Records a validation value; returns (improved, shouldStop), where shouldStop stays true once
    /// signalled. Patience 0 disables stopping.
    public mutating func observe(_ value: Double) -> (improved: Bool, shouldStop: Bool) {
        let better: Bool
        if let best {
            better = mode == .max ? value > best + minDelta : value < best - minDelta
        } else {
            better = true
        }
        if better {
            best = value
            evaluationsWithoutImprovement = 0
            return (true, signalled)
        }
        evaluationsWithoutImprovement += 1
        if patience > 0 && evaluationsWithoutImprovement >= patience { signalled = true }
        return (false, signalled)
    }

    /// Records a validation Dice (monitor `val_dice`, mode `max`).
    public mutating func observe(dice: Double) -> (improved: Bool, shouldStop: Bool) { observe(dice) }

    enum CodingKeys: String, CodingKey {
        case patience, minDelta, monitor, mode, best, evaluationsWithoutImprovement, signalled
    }

    /// Checkpoints written before `monitor` and `mode` existed watched validation Dice, higher better.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        patience = try c.decode(Int.self, forKey: .patience)
        minDelta = try c.decode(Double.self, forKey: .minDelta)
        monitor = try c.decodeIfPresent(Monitor.self, forKey: .monitor) ?? .valDice
        mode = try c.decodeIfPresent(Mode.self, forKey: .mode) ?? .max
        best = try c.decodeIfPresent(Double.self, forKey: .best)
        evaluationsWithoutImprovement = try c.decode(Int.self, forKey: .evaluationsWithoutImprovement)
        signalled = try c.decodeIfPresent(Bool.self, forKey: .signalled) ?? false
    }
}
