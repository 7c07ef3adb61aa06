import ArgumentParser
import Foundation
import VLDistributed
import VLTrain
import VLTuning

/// The trial loop of `vlseg sweep`, on every rank: rank 0 talks to Optuna (through `SweepStudy`) and
/// broadcasts each trial's plan; all ranks train it together, as `vlseg train` would; rank 0 reports
/// the outcome to the study and rewrites `sweep.json`.
struct SweepRunner {
    let plan: SweepPlan
    let loader: ConfigLoader
    let comm: Communicator
    /// The frozen features every trial of this launch shares (on each rank, its own shards').
    let featureCaches: FeatureCacheShelf

    func run() throws {
        let say: (String) -> Void = { if comm.isRoot { printError($0) } }
        // Rank 0 alone talks to Optuna; opening can fail (storage, Optuna missing): every rank learns it.
        var study: SweepStudy? = nil
        try comm.rootDecides("sweep study") { study = try SweepStudy.open(plan) }
        say("sweep: study \(plan.study) in \(plan.storage.masked); trials in \(plan.directory.path)/trial-NNNN")
        var ran = 0
        var ranTrials: [SweepTrialPlan] = []
        while true {
            // Optional inside a struct: rootDecides reads a bare nil as "rank 0 sent nothing".
            struct Next: Codable { var trial: SweepTrialPlan? }
            let next = try comm.rootDecides("sweep: next trial") { () throws -> Next in
                Next(trial: try study?.next())
            }
            guard let trial = next.trial else { break }
            ran += 1
            ranTrials.append(trial)
            try runTrial(trial, study: study)
        }
        try comm.rootDecides("sweep results") { try study?.finish(ranHere: ran) }
        if comm.isRoot, let first = ranTrials.first, featureCaches.misses > 0, ran > 1 {
            // What sharing the frozen features saved: the first trial paid for them, the others reused them.
            let seconds = ranTrials.compactMap { trainingSeconds($0) }
            if let paid = trainingSeconds(first), seconds.count == ran {
                print(
                    String(
                        format:
                            "sweep: training time of the %d trials %.1f s with one frozen-feature cache; %d x the first trial's (%.1f s, features computed) = %.1f s",
                        ran, seconds.reduce(0, +), ran, paid, Double(ran) * paid))
            }
        }
    }

    /// A finished trial's training time (`training.json`: steps, validations and saves, without start-up).
    func trainingSeconds(_ trial: SweepTrialPlan) -> Double? {
        (try? TrainingRecord.read(runDirectory: URL(fileURLWithPath: trial.runDirectory)))??.wallSeconds
    }

    /// Trains one trial on every rank and reports its outcome (rank 0).
    func runTrial(_ trial: SweepTrialPlan, study: SweepStudy?) throws {
        let dir = trial.runDirectory.replacingOccurrences(of: "'", with: "''")
        let paramOverrides = plan.sweep.parameters.compactMap { p in
            trial.params[p.key].map { "\(p.key)=\($0.overrideText)" }
        }
        let overrides = plan.training + paramOverrides + ["run.dir='\(dir)'", "resume=auto", "trainer.seeds=[]"]
        if comm.isRoot, let study {
            print(study.startLine(trial))
            fflush(nil)  // the line reaches a pipe now, not at exit
        }
        var failure: String? = nil
        let pruning =
            plan.sweep.pruner.kind == .none
            ? nil : SweepPruning(comm: comm, study: study, trial: trial, metric: plan.sweep.objective.metric)
        let (hitsBefore, missesBefore) = (featureCaches.hits, featureCaches.misses)
        FaultInjection.currentTrial = trial.number
        defer { FaultInjection.currentTrial = nil }
        do {
            if let fault = SweepFaults.failingTrial(), fault == trial.number {
                throw AgreedFailure("fault injection: trial \(trial.number) fails (VLSEG_FAULT_SWEEP_FAIL_TRIAL)")
            }
            let resolved = try loader.load(overrides: overrides)
            // The trial trains as `vlseg train` would (its run directory, lock, records, test at the end).
            let train = try TrainCommand.parse([])
            try train.trainOne(
                resolved, comm: comm, say: { if comm.isRoot { printError($0) } },
                observers: pruning.map { [$0] } ?? [], featureCaches: featureCaches)
        } catch let error as AgreedFailure {
            // Raised on every rank together: the trial failed, the launch goes on.
            failure = error.message
        } catch let error as ConfigError {
            // The same config on every rank fails the same way before any collective.
            failure = "\(error)"
        }
        if comm.isRoot, failure == nil, featureCaches.hits + featureCaches.misses > hitsBefore + missesBefore {
            printError(
                "sweep: trial \(trial.number + 1): frozen features of \(featureCaches.misses - missesBefore) sample(s) computed, \(featureCaches.hits - hitsBefore) reused from the sweep's feature cache (rank 0)"
            )
        }
        try comm.rootDecides("sweep: trial \(trial.number) outcome") {
            guard let study else { return }
            try study.record(trial, failure: failure, prunedAt: pruning?.prunedAt)
        }
    }
}

/// The sweep's fault injection for the tests, read from the environment like `FaultInjection`:
/// `VLSEG_FAULT_SWEEP_FAIL_TRIAL=N` makes trial N fail on every rank before it trains.
enum SweepFaults {
    static func failingTrial(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Int? {
        environment["VLSEG_FAULT_SWEEP_FAIL_TRIAL"].flatMap { Int($0) }
    }
}

/// `sweep.pruner=median`: after each validation of a trial, rank 0 reports the objective's metric to
/// the study and asks Optuna's pruner; every rank learns the answer, and a pruned trial stops after this
/// step (its checkpoint saved) to be recorded as PRUNED.
final class SweepPruning: TrainingObserver {
    let comm: Communicator
    let study: SweepStudy?
    let trial: SweepTrialPlan
    let metric: String
    private(set) var prunedAt: Int? = nil

    init(comm: Communicator, study: SweepStudy?, trial: SweepTrialPlan, metric: String) {
        self.comm = comm
        self.study = study
        self.trial = trial
        self.metric = metric
    }

    func didValidate(step: Int, metrics: SegmentationMetrics) throws -> Bool {
        let value: Double
        switch metric {
        case "val_dice": value = metrics.dice
        case "val_iou": value = metrics.iou
        case "val_dice_pooled": value = metrics.dicePooled
        case "val_iou_pooled": value = metrics.iouPooled
        default: value = metrics.loss
        }
        let prune = try comm.rootDecides("sweep: pruning at step \(step)") { () throws -> Bool in
            // A value that is not finite is no evidence for the pruner: the run's outcome will say it diverged.
            guard let study, value.isFinite else { return false }
            return try study.report(trial, step: step, value: value)
        }
        if prune {
            prunedAt = step
            if comm.isRoot {
                printError("sweep: trial \(trial.number + 1) pruned at step \(step) (\(metric) \(value))")
            }
        }
        return prune
    }
}
