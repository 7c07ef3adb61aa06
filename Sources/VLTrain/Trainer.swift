import Foundation
import VLData
import VLDistributed
import VLModels
import VLTensor

/// What a finished training run reports.
public struct TrainingSummary: Sendable {
    public var steps: Int
    public var epochs: Int
    public var bestDice: Double?
    public var bestStep: Int?
    public var bestCheckpoint: String?
    public var lastCheckpoint: String?
    public var stoppedEarly: Bool
    public var lastValidation: SegmentationMetrics?
    public var resumedFrom: String?
    /// The signal that stopped the run before its end (after a checkpoint of the last step), if any.
    public var interruptedBy: Int32?
    /// Training time summed over resumed segments, up to the last checkpoint.
    public var wallSeconds: Double = 0
    public var trainableParameters: Int = 0
}

/// Data-parallel training of a model's trainable tensors.
///
/// Every rank runs this loop on its shard; the only gradient traffic is the arena all-reduce.
/// Rank 0 alone writes checkpoints and logs; everything that changes what ranks do next (best
/// checkpoint, early stop, learning-rate reduction, save outcome) is decided on rank 0 and
/// broadcast, so every rank enters the same collectives in the same order.
public final class Trainer {
    public let model: SegmentationModel
    public let arena: ParameterArena
    public let comm: Communicator
    public let options: TrainingOptions
    let trainData: DataLoader
    let valData: DataLoader?
    public private(set) var state: TrainerState
    /// The step itself, shared with `vlseg bench step`.
    let step: TrainingStep
    let checkpoints: CheckpointStore
    let metricsLog: MetricsLog?
    let progress: ProgressReporter?
    let stepsPerEpoch: Int
    let totalSteps: Int
    private var resumedFrom: String?
    private var lastCheckpoint: String?
    private var lastValidation: SegmentationMetrics?
    let trainCache: FeatureCache?
    let valCache: FeatureCache?
    /// When set, a signal stops the run at the next step boundary with a checkpoint (`StopRequest`).
    public var stopRequest: StopRequest?
    /// Code that looks in at the loop's documented points (`TrainingObserver`).
    public var observers: [TrainingObserver] = []
    /// The longest checkpoint save so far (all ranks wait for rank 0's save).
    private var slowestSave = 0.0
    /// Set when drawing TensorBoard overlays failed once.
    private var overlaysFailed = false
    /// Training seconds so far, earlier segments included (set when the loop starts).
    private var segmentClock: () -> Double = { 0 }

    public init(
        model: SegmentationModel, trainableNames: [String], trainData: DataLoader, valData: DataLoader?,
        comm: Communicator, options: TrainingOptions
    ) throws {
        guard !trainableNames.isEmpty else {
            throw TrainingError.nothingToTrain(method: options.method)
        }
        self.model = model
        self.comm = comm
        self.options = options
        self.trainData = trainData
        self.valData = valData
        let frozenFingerprint = model.parameters.fingerprint(excluding: Set(trainableNames))
        try comm.verifySame("the frozen model weights", fingerprint: frozenFingerprint)
        arena = ParameterArena(store: model.parameters, names: trainableNames)
        arena.decayedRanges = options.weightDecayParams.decayedRanges(arena)
        try comm.verifySame("the trainable parameter layout", fingerprint: arena.layoutHash)
        stepsPerEpoch = trainData.sampler.batchesPerEpoch / max(options.accumulate, 1)
        guard stepsPerEpoch > 0 else {
            throw TrainingError.emptyEpoch(batches: trainData.sampler.batchesPerEpoch, accumulate: options.accumulate)
        }
        if options.maxSteps > 0 {
            totalSteps = options.maxSteps
        } else if options.maxEpochs > 0 {
            totalSteps = options.maxEpochs * stepsPerEpoch
        } else {
            throw TrainingError.noStoppingRule
        }
        let schedule = LearningRateSchedule(
            kind: options.schedule, baseLR: options.lr, warmupSteps: options.warmupSteps,
            totalSteps: totalSteps, minLR: options.minLR, factor: options.plateauFactor,
            patience: options.plateauPatience)
        state = TrainerState(
            optimizer: AdamW(
                beta1: options.beta1, beta2: options.beta2, eps: options.eps, weightDecay: options.weightDecay),
            schedule: schedule,
            earlyStopping: EarlyStopping(
                patience: options.earlyStoppingPatience, minDelta: options.earlyStoppingMinDelta,
                monitor: options.earlyStoppingMonitor, mode: options.earlyStoppingMode),
            worldSize: comm.size, batchSize: options.batchSize, accumulate: options.accumulate,
            method: options.method, configHash: options.configHash, layoutHash: arena.layoutHash)
        var nodes: [String: GradNode] = [:]
        for name in trainableNames { nodes[name] = model.parameters[name].node }
        let sync = GradientSynchronizer(
            arena: arena, comm: comm, bucketBytes: options.bucketBytes, overlap: options.overlap, nodes: nodes)
        checkpoints = CheckpointStore(runDirectory: options.runDirectory)
        metricsLog =
            comm.isRoot
            ? try MetricsLog(
                runDirectory: options.runDirectory, resuming: options.resume != .none,
                tensorboard: options.tensorboard) : nil
        progress = comm.isRoot ? ProgressReporter(interval: options.progressInterval) : nil
        let cacheDir = options.runDirectory.appendingPathComponent("cache")
        let rank = comm.rank, budget = options.cacheBudgetBytes / 2
        func cache(_ split: String, count: Int) -> FeatureCache {
            let name = "\(split)-rank\(rank)"
            guard let shelf = options.featureCacheShelf else {
                return FeatureCache(count: count, budgetBytes: budget, directory: cacheDir, name: name)
            }
            return shelf.cache(group: options.featureCacheKey, name: "\(name)-\(count)") {
                FeatureCache(count: count, budgetBytes: budget, directory: $0, name: name)
            }
        }
        trainCache = options.featureCache ? cache("train", count: trainData.samples.count) : nil
        valCache = options.featureCache && valData != nil ? cache("val", count: valData!.samples.count) : nil
        step = TrainingStep(
            model: model, arena: arena, sync: sync, loss: options.loss, cache: trainCache,
            clipGradNorm: options.clipGradNorm)
    }

    /// Appends a record to the run's metrics files (rank 0; other ranks have none).
    public func logRecord(_ record: [String: Any]) throws { try metricsLog?.append(record) }

    /// Samples served from the training feature cache so far.
    public var trainCacheHits: Int { trainCache?.hits ?? 0 }

    func say(_ line: String) {
        if comm.isRoot { progress?.line(line) }
    }

    // MARK: - Start-up

    /// Restores a checkpoint on rank 0 (by `options.resume`), then gives every rank rank 0's
    /// trainable values, moments and state, so all ranks start from identical bits.
    func synchronizeStart() throws {
        struct ResumePoint: Codable { var path: String?; var state: TrainerState? }
        let point: ResumePoint
        do {
            point = try comm.rootDecides("resume decision") {
                guard let loaded = try checkpointToResume() else { return ResumePoint() }
                guard loaded.state.method == options.method else {
                    throw CheckpointError.incompatible(
                        path: loaded.url.path,
                        reason: "it was trained with tuning '\(loaded.state.method)', this run uses '\(options.method)'"
                    )
                }
                try loaded.restore(into: arena)
                if loaded.state.configHash != options.configHash { warnAboutChangedSettings(loaded) }
                return ResumePoint(path: loaded.url.path, state: loaded.state)
            }
        } catch let failure as AgreedFailure {
            throw AgreedFailure("cannot resume: \(failure.message)")
        }
        let outcome = point
        for array in [arena.values, arena.firstMoment, arena.secondMoment] where comm.size > 1 {
            array.withUnsafeMutablePointer {
                comm.broadcast(
                    UnsafeMutableRawPointer($0), bytes: arena.count * 4, root: 0, label: "initial trainable values")
            }
        }
        guard let restored = outcome.state, let path = outcome.path else { return }
        let oldGlobal = restored.globalBatch, newGlobal = state.globalBatch
        var s = restored
        s.worldSize = state.worldSize
        s.batchSize = state.batchSize
        s.accumulate = state.accumulate
        s.schedule.totalSteps = state.schedule.totalSteps
        s.configHash = state.configHash
        if restored.schedule.kind == .cosine && restored.schedule.totalSteps != s.schedule.totalSteps {
            // The horizon follows this run's max_steps/max_epochs: say what that does to the rate.
            say(
                String(
                    format:
                        "vlseg: warning: resuming under a new schedule horizon: the cosine decay now spans %d steps instead of %d (trainer.max_steps/max_epochs), so the learning rate of step %d is %.3g instead of %.3g",
                    s.schedule.totalSteps, restored.schedule.totalSteps, s.step + 1,
                    Double(s.schedule.rate(at: s.step)), Double(restored.schedule.rate(at: restored.step))))
        }
        state = s
        resumedFrom = path
        if restored.worldSize != comm.size || oldGlobal != newGlobal {
            say(
                "resumed from \(path) at step \(s.step) (elastic: \(restored.worldSize) rank(s) x batch \(restored.batchSize) x accumulate \(restored.accumulate) -> \(comm.size) x \(options.batchSize) x \(options.accumulate); global batch \(oldGlobal) -> \(newGlobal))"
            )
        } else {
            say("resumed from \(path) at step \(s.step) (epoch \(s.epoch), \(s.samplesIntoEpoch) samples into it)")
        }
    }

    /// The checkpoint this run starts from, by `options.resume` (rank 0 only).
    private func checkpointToResume() throws -> LoadedCheckpoint? {
        switch options.resume {
        case .none: return nil
        case .auto: return try checkpoints.resumable { self.say("vlseg: warning: \($0)") }
        case let .path(p): return try CheckpointStore.load(URL(fileURLWithPath: p))
        }
    }

    /// Resuming under other training settings is allowed (a new learning rate, a longer schedule),
    /// but the run then no longer repeats an uninterrupted one: say which settings changed.
    private func warnAboutChangedSettings(_ loaded: LoadedCheckpoint) {
        let name = loaded.url.lastPathComponent
        guard let changes = try? ResolvedConfig.trainingChanges(from: loaded.configYAML, to: options.configYAML),
            !changes.isEmpty
        else {
            say(
                "vlseg: warning: \(name) was trained under other training settings (config hash \(loaded.state.configHash.prefix(12)), this run \(options.configHash.prefix(12)))"
            )
            return
        }
        let shown = changes.prefix(8).map { "\($0.key) \($0.old ?? "(unset)") -> \($0.new ?? "(unset)")" }
        let more = changes.count > shown.count ? " and \(changes.count - shown.count) more" : ""
        say("vlseg: warning: resuming \(name) under other training settings: \(shown.joined(separator: ", "))\(more)")
    }

    // MARK: - The loop

    public func run() throws -> TrainingSummary {
        comm.stopDeadline.setPatience(seconds: options.stopGraceSeconds)
        try synchronizeStart()
        say(
            "training '\(options.method)': \(arena.count.grouped) trainable parameters in \(arena.slots.count) tensors, \(model.learnableParameterCount.grouped) in the model; \(comm.size) rank(s) x batch \(options.batchSize) x accumulate \(options.accumulate) = global batch \(state.globalBatch); \(stepsPerEpoch) steps per epoch, \(totalSteps) steps"
        )
        if let note = options.precisionNote { say(note) }
        if MatmulPrecision.current == .bf16 {
            say("precision bf16: bfloat16 inputs to the matrix products, float32 sums, weights and optimiser state")
        }
        if trainCache != nil {
            say("feature cache on: frozen vision features are computed once per image and reused in later epochs")
        }
        say(
            "all-reduce per optimiser step: \(arena.bytesPerAllReduce.grouped) bytes (the trainable gradients only; the frozen model is never communicated)"
        )
        let globalSamplesPerStep = comm.size * options.batchSize * options.accumulate
        var window = LogWindow()
        var windowStart = Date()
        var timing = StepTiming()
        var slowest = SlowestPhases()
        let runStart = Date()
        // Time of earlier segments (a resumed run) plus this one's, recorded in each checkpoint.
        let earlierSeconds = state.wallSeconds ?? 0
        segmentClock = { earlierSeconds + Date().timeIntervalSince(runStart) }
        var interruptedBy: Int32? = nil

        while state.step < totalSteps && !state.stopped && interruptedBy == nil {
            let position = state.samplesIntoEpoch / (comm.size * options.batchSize)
            let stream = try trainData.batches(from: SamplerCursor(epoch: state.epoch, position: position))
            defer { stream.close() }
            var stepsLeftInEpoch = stepsPerEpoch - state.samplesIntoEpoch / globalSamplesPerStep
            while stepsLeftInEpoch > 0 && state.step < totalSteps && !state.stopped && interruptedBy == nil {
                for observer in observers { observer.willStartStep(state.step + 1, rank: comm.rank) }
                let lr = state.schedule.rate(at: state.step)
                let epoch = state.epoch  // read here: the step holds `state.optimizer` while it pulls batches
                let outcome = try step.run(accumulate: options.accumulate, optimizer: &state.optimizer, lr: lr) {
                    guard let batch = try stream.next() else { throw TrainingError.dataEnded(epoch: epoch) }
                    return batch
                }
                for micro in outcome.losses { window.add(loss: micro.loss, images: micro.images) }
                let gradNorm = outcome.gradNorm
                timing.add(outcome)
                slowest.step = max(slowest.step, outcome.total)
                state.step += 1
                state.samplesIntoEpoch += globalSamplesPerStep
                stepsLeftInEpoch -= 1

                if state.step % max(options.logEvery, 1) == 0 || state.step == totalSteps {
                    let all = window.summed(over: comm)
                    let seconds = Date().timeIntervalSince(windowStart)
                    let imagesPerSecond = seconds > 0 ? all.images / seconds : 0
                    let meanLoss = all.meanLoss
                    if comm.isRoot {
                        try metricsLog?.append([
                            "kind": "train", "step": state.step, "epoch": state.epoch, "loss": meanLoss,
                            "lr": Double(lr),
                            "images_per_s": imagesPerSecond, "grad_norm": Double(gradNorm),
                            "seconds": Date().timeIntervalSince(runStart),
                        ])
                        progress?.update(
                            step: state.step, total: totalSteps, epoch: state.epoch, loss: meanLoss, lr: lr,
                            imagesPerSecond: imagesPerSecond, elapsed: Date().timeIntervalSince(runStart))
                    }
                    window = LogWindow()
                    windowStart = Date()
                }
                let epochEnds = stepsLeftInEpoch == 0
                if epochEnds {
                    state.epoch += 1
                    state.samplesIntoEpoch = 0
                }
                let evaluateNow = options.evalEvery > 0 ? state.step % options.evalEvery == 0 : epochEnds
                var improved = false
                if evaluateNow, valData != nil {
                    let t4 = DispatchTime.now().uptimeNanoseconds
                    improved = try evaluateAndDecide()
                    slowest.validation = max(slowest.validation, elapsed(since: t4))
                }
                let checkpointNow =
                    (options.checkpointEvery > 0 && state.step % options.checkpointEvery == 0) || improved
                    || state.step >= totalSteps || state.stopped
                if checkpointNow { try saveCheckpoint(markBest: improved) }
                slowest.save = slowestSave
                comm.stopDeadline.setPatience(seconds: min(options.stopGraceSeconds, slowest.patience))
                if let stopRequest, let signal = stopRequest.agreedSignal(comm), state.step < totalSteps, !state.stopped
                {
                    if !checkpointNow { try saveCheckpoint(markBest: false) }
                    interruptedBy = signal
                    say(
                        "stopped by \(StopRequest.name(signal)) after step \(state.step) of \(totalSteps): checkpoint \(lastCheckpoint ?? "-"); resume=auto continues from it"
                    )
                }
            }
        }
        if comm.isRoot && timing.steps > 0 {
            progress?.finish()
            say(timing.summary(imagesPerStep: Double(globalSamplesPerStep)))
            if trainData.skippedCount > 0 {
                say("skipped \(trainData.skippedCount) unusable training sample(s) (data.on_error=skip)")
            }
        }
        let best = checkpoints.pointer("best")
        return TrainingSummary(
            steps: state.step, epochs: state.epoch, bestDice: state.bestDice, bestStep: state.bestStep,
            bestCheckpoint: best.map { checkpoints.directory.appendingPathComponent($0).path },
            lastCheckpoint: lastCheckpoint, stoppedEarly: state.stopped && state.step < totalSteps,
            lastValidation: lastValidation, resumedFrom: resumedFrom, interruptedBy: interruptedBy,
            wallSeconds: state.wallSeconds ?? 0, trainableParameters: arena.count)
    }

    private func elapsed(since t: UInt64) -> Double { Double(DispatchTime.now().uptimeNanoseconds - t) * 1e-9 }

    // MARK: - Evaluation and decisions

    /// Sharded validation reduced to every rank; rank 0 decides best / early stop / plateau and
    /// broadcasts the new state. Returns whether this evaluation is the best so far.
    func evaluateAndDecide() throws -> Bool {
        guard let valData else { return false }
        let metrics = try Evaluator.evaluate(
            model: model, data: valData, loss: options.loss, comm: comm, cache: valCache)
        lastValidation = metrics
        struct Decision: Codable {
            var early: EarlyStopping; var schedule: LearningRateSchedule; var improved: Bool; var stop: Bool;
            var reduced: Bool
        }
        var decision: Decision? = nil
        if comm.isRoot {
            var early = state.earlyStopping, schedule = state.schedule
            // The best checkpoint follows validation Dice (both papers' checkpoint callbacks: strictly
            // higher, no min_delta) whatever early stopping watches; a stop waits for min_epochs.
            let improved = state.bestDice.map { metrics.dice > $0 } ?? true
            let signalled = early.observe(early.value(of: metrics)).shouldStop
            let stop = signalled && state.epoch >= options.minEpochs
            let reduced = schedule.observe(validationLoss: metrics.loss)
            decision = Decision(early: early, schedule: schedule, improved: improved, stop: stop, reduced: reduced)
            try metricsLog?.append([
                "kind": "val", "step": state.step, "epoch": state.epoch, "val_loss": metrics.loss,
                "val_dice": metrics.dice, "val_iou": metrics.iou, "images": metrics.images,
                "val_dice_pooled": metrics.dicePooled, "val_iou_pooled": metrics.iouPooled,
            ])
            progress?.line(
                String(
                    format: "step %d: validation loss %.4f, Dice %.4f, IoU %.4f (pooled %.4f, %.4f) on %d images%@%@%@",
                    state.step,
                    metrics.loss, metrics.dice, metrics.iou, metrics.dicePooled, metrics.iouPooled, metrics.images,
                    improved ? " (best)" : "",
                    reduced ? String(format: ", lr reduced to %.3g", schedule.rate(at: state.step)) : "",
                    stop ? ", early stop" : ""))
        }
        let d = comm.broadcast(decision, label: "validation decision")
        state.earlyStopping = d.early
        state.schedule = d.schedule
        if d.improved {
            state.bestDice = metrics.dice
            state.bestStep = state.step
        }
        if d.stop { state.stopped = true }
        for observer in observers where try observer.didValidate(step: state.step, metrics: metrics) {
            state.stopped = true
        }
        if comm.isRoot, let writer = metricsLog?.tensorboard, options.tensorboardImages > 0, !overlaysFailed {
            do {
                try logOverlays(writer, data: valData)
            } catch {
                // Pictures for a viewer are not worth the run: say why once and stop drawing them.
                overlaysFailed = true
                say("warning: TensorBoard validation overlays are off for this run: \(error)")
            }
        }
        return d.improved
    }

    /// The first validation images with the current prediction drawn over them (at their original
    /// size), as TensorBoard images at this step. Rank 0 alone; the others wait at the next collective.
    func logOverlays(_ writer: TensorBoardWriter, data: DataLoader) throws {
        let count = min(options.tensorboardImages, data.samples.count)
        guard count > 0 else { return }
        for p in try Inference.predictions(model: model, data: data, indices: Array(0..<count), batchSize: count) {
            let overlay = ImageIO.overlay(image: try ImageIO.readImage(p.sample.entry.imageURL), mask: p.mask)
            let name = (p.sample.entry.imageName as NSString).deletingPathExtension
            try writer.image(
                tag: "val/overlay/\(name)", png: Data(try PNGCodec.encode(overlay)), width: overlay.width,
                height: overlay.height, step: state.step)
        }
    }

    /// Rank 0 writes; every rank learns the outcome, so a failed save stops all ranks together.
    func saveCheckpoint(markBest: Bool) throws {
        let start = DispatchTime.now().uptimeNanoseconds
        defer { slowestSave = max(slowestSave, elapsed(since: start)) }
        state.wallSeconds = segmentClock()
        lastCheckpoint = try comm.rootDecides("checkpoint outcome") { () throws -> String in
            let step = state.step
            let url = try checkpoints.save(
                arena: arena, state: state, configYAML: options.configYAML, markBest: markBest,
                keepLast: options.keepLast,
                beforeCommit: observers.isEmpty
                    ? nil
                    : { [observers] in
                        for observer in observers { observer.willCommitCheckpoint(step) }
                    })
            return url.path
        }
    }
}

/// Sharded validation with exact reduction of sums and counts (at the model's resolution).
public enum Evaluator {
    public static func evaluate(
        model: SegmentationModel, data: DataLoader, loss: SegmentationLoss, comm: Communicator,
        cache: FeatureCache? = nil
    ) throws -> SegmentationMetrics {
        try Inference.evaluate(
            model: model, data: data, loss: loss, comm: comm, originalResolution: false, cache: cache
        ).modelResolution
    }
}

public enum TrainingError: Error, CustomStringConvertible {
    case nothingToTrain(method: String)
    case emptyEpoch(batches: Int, accumulate: Int)
    case noStoppingRule
    case dataEnded(epoch: Int)

    public var description: String {
        switch self {
        case let .nothingToTrain(method):
            return "tuning '\(method)' has no trainable tensors (use `vlseg evaluate` for zero-shot)"
        case let .emptyEpoch(batches, accumulate):
            return
                "an epoch has \(batches) batch(es) per rank, fewer than trainer.accumulate=\(accumulate): lower data.batch_size or trainer.accumulate"
        case .noStoppingRule: return "set trainer.max_steps or trainer.max_epochs"
        case let .dataEnded(epoch): return "the data loader ran out of batches in epoch \(epoch)"
        }
    }
}

/// What a rank trained on since the last log line, summed over ranks when the line is written.
struct LogWindow {
    var lossSum = 0.0
    var batches = 0.0
    var images = 0.0

    mutating func add(loss: Double, images count: Int) {
        lossSum += loss
        batches += 1
        images += Double(count)
    }

    /// Every rank's window added up (one small all-reduce, entered by all ranks).
    func summed(over comm: Communicator) -> LogWindow {
        var values = [lossSum, batches, images]
        comm.allReduceSum(&values, label: "training loss")
        return LogWindow(lossSum: values[0], batches: values[1], images: values[2])
    }

    var meanLoss: Double { batches > 0 ? lossSum / batches : .nan }
}

/// The slowest step and validation so far, and with the slowest save, how long a live rank can keep
/// its peers waiting in a collective: once a stop is requested, a wait much longer than that means a
/// dead or stuck peer (`StopDeadline`).
struct SlowestPhases {
    var step = 0.0
    var validation = 0.0
    var save = 0.0

    /// Twice the worst step-plus-validation-plus-save, and never under 5 s (scheduling noise).
    var patience: Double { max(5, 2 * (step + validation + save)) }
}

/// Time split of training steps (rank-local).
struct StepTiming {
    var data = 0.0, forward = 0.0, backward = 0.0, allReduceWait = 0.0, optimizer = 0.0, total = 0.0
    var steps = 0

    mutating func add(_ step: TrainingStep.Outcome) {
        data += step.data
        forward += step.forward
        backward += step.backward
        allReduceWait += step.allReduceWait
        optimizer += step.optimizer
        total += step.total
        steps += 1
    }

    func summary(imagesPerStep: Double) -> String {
        let t = max(total, 1e-9)
        func pct(_ x: Double) -> String { String(format: "%.1f%%", 100 * x / t) }
        return String(
            format:
                "%d steps in %.1f s (%.2f images/s): data %@, forward %@, backward %@, all-reduce wait %@, optimiser %@",
            steps, total, imagesPerStep * Double(steps) / t, pct(data), pct(forward), pct(backward), pct(allReduceWait),
            pct(optimizer))
    }
}
