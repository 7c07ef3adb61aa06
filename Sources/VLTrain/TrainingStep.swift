import Foundation
import VLData
import VLModels
import VLTensor

/// One optimiser step of data-parallel training: the micro-batches' forward and backward (the
/// gradient all-reduce overlapping the last backward), gradient clipping, AdamW, zeroed gradients.
///
/// The trainer and `vlseg bench step` both run this, so the bench times exactly the step users train
/// with; neither knows which model or method is behind the trainable tensors.
public struct TrainingStep {
    public let model: SegmentationModel
    public let arena: ParameterArena
    public let sync: GradientSynchronizer
    public let loss: SegmentationLoss
    /// Frozen vision features reused across epochs, when the method leaves the vision tower frozen.
    public let cache: FeatureCache?
    public let clipGradNorm: Float

    public init(
        model: SegmentationModel, arena: ParameterArena, sync: GradientSynchronizer, loss: SegmentationLoss,
        cache: FeatureCache?, clipGradNorm: Float
    ) {
        self.model = model
        self.arena = arena
        self.sync = sync
        self.loss = loss
        self.cache = cache
        self.clipGradNorm = clipGradNorm
    }

    /// What one step did and where its time went (this rank's seconds).
    public struct Outcome: Sendable {
        /// The global gradient norm before clipping.
        public var gradNorm: Float = 0
        /// One entry per non-empty micro-batch.
        public var losses: [MicroBatchLoss] = []
        public var data = 0.0, forward = 0.0, backward = 0.0, allReduceWait = 0.0, optimizer = 0.0
        /// Wall time of the whole step.
        public var total = 0.0
    }

    /// A micro-batch's mean loss and how many images it held.
    public struct MicroBatchLoss: Sendable {
        public var loss: Double
        public var images: Int
    }

    /// Logits of a batch, reusing cached frozen vision features when the cache is on.
    public static func logits(_ model: SegmentationModel, _ batch: Batch, cache: FeatureCache?) throws -> Tensor {
        let text = TextPrompts(inputIDs: batch.inputIDs, attentionMask: batch.attentionMask)
        guard let cache else { return model.segmentationLogits(pixels: batch.pixelValues, text: text) }
        let features = try cache.features(samples: batch.sampleIndices) {
            model.frozenFeatures(pixels: batch.pixelValues)
        }
        return model.segmentationLogits(features: features, pixels: batch.pixelValues, text: text)
    }

    /// Runs `accumulate` micro-batches from `nextBatch` and one update at rate `lr`.
    ///
    /// An empty micro-batch (every sample skipped under `data.on_error=skip`) still takes part in the
    /// all-reduce with a zero gradient, so every rank enters the same collectives.
    public func run(accumulate: Int, optimizer: inout AdamW, lr: Float, nextBatch: () throws -> Batch) throws -> Outcome
    {
        var outcome = Outcome()
        // One clock read per phase boundary, so the phases add up to the step's total exactly.
        let start = DispatchTime.now().uptimeNanoseconds
        var mark = start
        func lap() -> Double {
            let now = DispatchTime.now().uptimeNanoseconds
            defer { mark = now }
            return Double(now - mark) * 1e-9
        }
        for micro in 0..<accumulate {
            let batch = try nextBatch()
            outcome.data += lap()
            let final = micro == accumulate - 1
            if final { sync.beginFinalBackward() }
            guard !batch.isEmpty else { continue }
            let logits = try Self.logits(model, batch, cache: cache)
            let value = loss(logits, target: batch.masks)
            outcome.forward += lap()
            value.backward(onLeafReady: final ? { [sync] in sync.leafReady($0) } : nil)
            outcome.backward += lap()
            outcome.losses.append(MicroBatchLoss(loss: Double(value.item), images: batch.count))
        }
        sync.finish(microSteps: accumulate)
        outcome.allReduceWait = sync.lastWaitSeconds
        outcome.gradNorm = clipGradientNorm(arena, maxNorm: clipGradNorm)
        optimizer.update(arena, lr: lr)
        arena.zeroGradients()
        outcome.optimizer = lap() - sync.lastWaitSeconds
        outcome.total = Double(mark - start) * 1e-9
        return outcome
    }
}
