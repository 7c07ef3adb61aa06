import Foundation

/// Everything the training loop needs, as plain values (filled from the resolved config).
public struct TrainingOptions: Sendable {
    public var runDirectory: URL
    public var seed: UInt64 = 0
    public var maxSteps: Int = 0
    public var maxEpochs: Int = 0
    public var accumulate: Int = 1
    public var batchSize: Int = 4
    public var lr: Float = 1e-3
    public var weightDecay: Float = 0
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var eps: Float = 1e-8
    public var clipGradNorm: Float = 0
    public var schedule: LearningRateSchedule.Kind = .constant
    public var warmupSteps: Int = 0
    public var minLR: Float = 0
    public var plateauFactor: Float = 0.1
    public var plateauPatience: Int = 10
    public var earlyStoppingPatience: Int = 0
    public var earlyStoppingMinDelta: Double = 0
    public var earlyStoppingMonitor: EarlyStopping.Monitor = .valDice
    public var earlyStoppingMode: EarlyStopping.Mode = .max
    /// Early stopping cannot end the run before this many complete epochs.
    public var minEpochs: Int = 0
    /// Which arena slots weight decay applies to (`trainer.weight_decay_params`).
    public var weightDecayParams: WeightDecayParams = .all
    /// Said once at the start of training when `trainer.precision` fell back (bf16_if_available on a
    /// CPU without bf16 products).
    public var precisionNote: String? = nil
    /// Validate every N optimiser steps; 0 = at the end of every epoch.
    public var evalEvery: Int = 0
    /// Checkpoint every N optimiser steps; 0 = only at evaluations and at the end.
    public var checkpointEvery: Int = 0
    public var keepLast: Int = 3
    public var loss = SegmentationLoss()
    public var logEvery: Int = 10
    public var overlap: Bool = true
    public var bucketBytes: Int = 4 << 20
    public var resume: ResumeSetting = .none
    /// TensorBoard event files beside the metrics files (rank 0).
    public var tensorboard = true
    /// Validation images drawn with their prediction into the event file at each evaluation.
    public var tensorboardImages = 4
    public var method: String = "decoder"
    public var configYAML: String = ""
    public var configHash: String = ""
    /// Reuse frozen vision features across epochs (only valid when nothing trainable touches the
    /// vision tower before the taps and augmentation is off; `RunSetup` decides).
    public var featureCache: Bool = false
    /// Caches that outlive this run (a sweep's trials share them); nil: the run's own.
    public var featureCacheShelf: FeatureCacheShelf?
    /// What the cached features depend on (`RunSetup.featureCacheKey`): the shelf's key.
    public var featureCacheKey = ""
    /// Above this size the feature cache lives in a memory-mapped file in the run directory.
    public var cacheBudgetBytes: Int = 4 << 30
    /// The longest a stop may take (`trainer.stop_grace_s`): it caps how long a rank waits for a peer
    /// once a stop was requested.
    public var stopGraceSeconds: Double = 60
    /// Seconds between progress refreshes on a terminal.
    public var progressInterval: Double = 0.5

    public init(runDirectory: URL) { self.runDirectory = runDirectory }
}
