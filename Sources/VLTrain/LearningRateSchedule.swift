import Foundation

/// Learning-rate schedules; their state is Codable so a checkpoint resumes them exactly.
public struct LearningRateSchedule: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable { case constant, cosine, plateau }

    public var kind: Kind
    public var baseLR: Float
    public var warmupSteps: Int
    public var totalSteps: Int
    public var minLR: Float
    /// ReduceLROnPlateau (PyTorch semantics, mode "min", threshold 1e-4 relative).
    public var factor: Float
    public var patience: Int
    public var threshold: Double = 1e-4

    // Plateau state.
    public private(set) var plateauLR: Float
    public private(set) var bestMonitored: Double? = nil
    public private(set) var badEvaluations: Int = 0

    public init(
        kind: Kind, baseLR: Float, warmupSteps: Int = 0, totalSteps: Int = 1, minLR: Float = 0,
        factor: Float = 0.1, patience: Int = 10
    ) {
        self.kind = kind
        self.baseLR = baseLR
        self.warmupSteps = warmupSteps
        self.totalSteps = max(totalSteps, 1)
        self.minLR = minLR
        self.factor = factor
        self.patience = patience
        plateauLR = baseLR
    }

    /// The rate for optimiser step `step` (0-based).
    public func rate(at step: Int) -> Float {
        let warm: Float = warmupSteps > 0 && step < warmupSteps ? Float(step + 1) / Float(warmupSteps) : 1
        switch kind {
        case .constant:
            return baseLR * warm
        case .plateau:
            return plateauLR * warm
        case .cosine:
            if step < warmupSteps { return baseLR * warm }
            let span = max(totalSteps - warmupSteps, 1)
            let progress = min(Double(step - warmupSteps) / Double(span), 1)
            return minLR + (baseLR - minLR) * Float(0.5 * (1 + cos(Double.pi * progress)))
        }
    }

    /// Feeds a validation loss to ReduceLROnPlateau; returns true when the rate was reduced.
    @discardableResult
    public mutating func observe(validationLoss: Double) -> Bool {
        guard kind == .plateau else { return false }
        if bestMonitored.map({ validationLoss < $0 * (1 - threshold) }) ?? true {
            bestMonitored = validationLoss
            badEvaluations = 0
            return false
        }
        badEvaluations += 1
        if badEvaluations > patience {
            let reduced = max(plateauLR * factor, minLR)
            badEvaluations = 0
            if plateauLR - reduced > 1e-12 {
                plateauLR = reduced
                return true
            }
        }
        return false
    }
}
