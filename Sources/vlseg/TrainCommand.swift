import ArgumentParser
import Foundation
import VLData
import VLDistributed
import VLModels
import VLTensor
import VLTokenizer
import VLTrain
import VLTuning

/// `vlseg train`: data-parallel training from the composed config.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a tuning method (adapters, prompts, decoder) data-parallel over the job's ranks.",
        discussion: """
            Overrides as in Hydra: group=option (tuning=vlsm_dense_vl, experiment=demo) and a.b.c=value \
            (trainer.max_steps=100). Run under mpirun (or launch/train -n N) for several ranks; alone it is \
            a single process. Rank 0 writes the run directory: config.yaml, metrics.jsonl, metrics.csv and \
            checkpoints/; one job at a time holds it (RUN/.vlseg.lock). resume=auto continues from \
            checkpoints/latest (else the newest valid checkpoint); a fresh run into a directory holding a run \
            refuses unless run.overwrite=true. SIGTERM, SIGINT or SIGUSR1 stop after the current step with a \
            checkpoint (exit 128 + signal). trainer.test.at_end=true then scores the best checkpoint on the \
            test split (RUN/eval-test.json); RUN/training.json records a finished run. trainer.seeds=[41,42,43] \
            trains one run per seed, one after another, in RUN/seed-41, RUN/seed-42, ...; with resume=auto the \
            same command run again keeps finished seeds, continues the interrupted one and starts the rest.
            """)

    @Argument(help: "Config overrides: group=option or a.b.c=value.")
    var overrides: [String] = []

    @Flag(help: "Resolve config, model, data and tuning method, print a summary, and exit without training.")
    var dryRun = false

    @Flag(help: "Print the resolved config and exit.")
    var printConfig = false

    @Option(help: "Directory of the YAML config groups (default: the checkout's configs/).")
    var configDir: String?

    func run() throws {
        try reportingErrors {
            let loader = try ConfigLoader(configDir: configDir)
            let resolved = try loader.load(overrides: overrides)
            let config = resolved.config
            let placement = LaunchPlacement.fromEnvironment()
            if printConfig {
                if placement.rank == 0 { print(resolved.yaml, terminator: resolved.yaml.hasSuffix("\n") ? "" : "\n") }
                return
            }
            let comm = Communicators.make(timeout: config.comm.timeoutS)
            let say: (String) -> Void = { if comm.isRoot { printError($0) } }
            if config.trainer.seeds.isEmpty {
                try trainOne(resolved, comm: comm, say: say)
            } else {
                try trainSeeds(resolved, loader: loader, comm: comm, say: say)
            }
        }
    }

    /// `trainer.seeds`: one run per seed in `<run.dir>/seed-<seed>`, one after another, every rank in
    /// each. Rank 0 holds the parent directory's lock for the whole launch (and each seed's own while it
    /// trains). Under `resume=auto` a seed whose `training.json` says it finished under the same
    /// settings is kept, the one that was interrupted continues from its checkpoint, and the rest start
    /// fresh; so the same command, run again after a crash, completes the launch.
    func trainSeeds(
        _ resolved: ResolvedConfig, loader: ConfigLoader, comm: Communicator, say: @escaping (String) -> Void
    ) throws {
        let config = resolved.config, seeds = config.trainer.seeds
        let parent = URL(fileURLWithPath: config.run.dir)
        func seedConfig(_ seed: Int) throws -> ResolvedConfig {
            let dir = parent.appendingPathComponent("seed-\(seed)").path.replacingOccurrences(of: "'", with: "''")
            return try loader.load(overrides: overrides + ["seed=\(seed)", "run.dir='\(dir)'", "trainer.seeds=[]"])
        }
        if dryRun {
            say(
                "dry run: seeds \(seeds.map(String.init).joined(separator: ", ")) in \(parent.path)/seed-<seed>; the first:"
            )
            try trainOne(try seedConfig(seeds[0]), comm: comm, say: say)
            return
        }
        var parentLock: RunDirectoryLock? = nil
        try comm.rootDecides("multi-seed run directory") {
            parentLock = try RunDirectoryLock.acquire(
                parent, command: CommandLine.arguments.joined(separator: " "), warn: say)
            // A single run at the top would mix with the seeds' runs beside it.
            let single = RunDirectoryState.earlierRun(in: parent)
            if !single.isEmpty {
                guard config.resume == .none, config.run.overwrite else {
                    throw RunDirectoryError.holdsSingleRun(
                        directory: parent.path, contents: single.joined(separator: ", "))
                }
                try RunDirectoryState.prepareFreshRun(parent, overwrite: true)
            }
            // A fresh launch refuses before training anything when any seed's directory holds a run.
            if config.resume == .none && !config.run.overwrite {
                for seed in seeds {
                    let dir = parent.appendingPathComponent("seed-\(seed)")
                    let earlier = RunDirectoryState.earlierRun(in: dir)
                    if !earlier.isEmpty {
                        throw RunDirectoryError.holdsEarlierRun(
                            directory: dir.path, contents: earlier.joined(separator: ", "))
                    }
                }
            }
            let url = parent.appendingPathComponent("config.yaml")
            do {
                try resolved.yaml.write(to: url, atomically: true, encoding: .utf8)
            } catch {
                throw RunDirectoryError.io(path: url.path, reason: "cannot write: \(MetricsLog.reason(error))")
            }
        }
        defer { withExtendedLifetime(parentLock) {} }
        var kept: [Int] = []
        for (k, seed) in seeds.enumerated() {
            let seedResolved = try seedConfig(seed)
            let dir = URL(fileURLWithPath: seedResolved.config.run.dir)
            if seedResolved.config.resume == .auto {
                let done = try comm.rootDecides("seed \(seed) record") { () throws -> Bool in
                    guard let record = try TrainingRecord.read(runDirectory: dir) else { return false }
                    let c = seedResolved.config
                    let tested =
                        !c.trainer.test.atEnd || !Self.hasTestSplit(c)
                        || FileManager.default.fileExists(
                            atPath: dir.appendingPathComponent(EvaluationReport.fileName(split: "test")).path)
                    return record.trainingHash == seedResolved.trainingHash && record.maxSteps == c.trainer.maxSteps
                        && record.maxEpochs == c.trainer.maxEpochs && tested
                }
                if done {
                    say(
                        "seed \(seed) (\(k + 1) of \(seeds.count)): already trained in \(dir.path) (\(TrainingRecord.fileName)): kept"
                    )
                    kept.append(seed)
                    continue
                }
            }
            say("seed \(seed) (\(k + 1) of \(seeds.count)): \(dir.path)")
            try trainOne(seedResolved, comm: comm, say: say)
        }
        if comm.isRoot {
            let keptText = kept.isEmpty ? "" : " (\(kept.count) kept from before)"
            print(
                "seeds \(seeds.map(String.init).joined(separator: ", ")) done\(keptText): \(parent.path)/seed-<seed>; vlseg results \(parent.path) tabulates them"
            )
        }
    }

    static func hasTestSplit(_ config: VLSegConfig) -> Bool {
        RunSetup.hasSplit(config, "test")
    }

    /// One training run in `run.dir`, then (with `trainer.test.at_end`) its test, then `training.json`.
    /// `observers` look into the training loop (a sweep's pruner); `featureCaches` keeps the frozen
    /// features for later runs of the launch (a sweep's trials).
    func trainOne(
        _ resolved: ResolvedConfig, comm: Communicator, say: @escaping (String) -> Void,
        observers: [TrainingObserver] = [], featureCaches: FeatureCacheShelf? = nil
    ) throws {
        let config = resolved.config
        try RunSetup.configureCompute(config, ranksOnThisMachine: comm.localSize)
        try RunSetup.prepareInputs(config, comm: comm, log: say)
        let batch = try config.perRankBatchSize(worldSize: comm.size)
        let hasValidation = RunSetup.hasSplit(config, "val")
        let testAtEnd = config.trainer.test.atEnd && Self.hasTestSplit(config)
        if config.trainer.test.atEnd && !testAtEnd {
            say("vlseg: warning: \(config.data.root) has no test split: trainer.test.at_end skipped")
        }
        // Every sample's files are checked (each rank a share) while the model loads.
        let (loaded, excluded) = try RunSetup.checkingSampleFiles(
            config, comm: comm,
            splits: [("train", true)] + (hasValidation ? [("val", false)] : []) + (testAtEnd ? [("test", false)] : []),
            log: say
        ) { () throws -> (SegmentationModel, TuningMethod, [String], CLIPTokenizer) in
            let model = try RunSetup.loadModel(config)
            let (method, trainable) = try RunSetup.tuning(config, model: model)
            return (model, method, trainable, try RunSetup.tokenizer(config))
        }
        let (model, method, trainable, tokenizer) = loaded
        let (train, val) = try RunSetup.loaders(
            config, comm: comm, batchSize: batch, tokenizer: tokenizer, excluding: excluded)
        var options = RunSetup.trainingOptions(resolved, batchSize: batch)
        options.featureCache = try RunSetup.featureCache(config, visionFrozen: method.visionIsFrozen)
        if options.featureCache, let featureCaches {
            options.featureCacheShelf = featureCaches
            options.featureCacheKey = RunSetup.featureCacheKey(
                resolved, worldSize: comm.size, batchSize: batch, excluded: excluded)
        }
        RunSetup.enableTextCache(config, model: model)
        if dryRun {
            if comm.isRoot {
                printDryRun(
                    resolved: resolved, model: model, methodName: method.name, trainable: trainable,
                    comm: comm, batch: batch, trainBatches: train.sampler.batchesPerEpoch,
                    trainSamples: train.samples.count, valSamples: val?.samples.count,
                    featureCache: options.featureCache)
            }
            return
        }
        // Rank 0 claims the run directory for this job before anything is written there, and a
        // fresh run refuses to mix with an earlier one; every rank learns the outcome.
        let runDir = URL(fileURLWithPath: config.run.dir)
        var runLock: RunDirectoryLock? = nil
        try comm.rootDecides("run directory") {
            runLock = try RunDirectoryLock.acquire(
                runDir, command: CommandLine.arguments.joined(separator: " "), warn: say)
            // One run beside a seeds launch's runs would mix with them.
            let seedRuns = RunDirectoryState.seedRuns(in: runDir)
            if !seedRuns.isEmpty { throw RunDirectoryError.holdsSeedRuns(directory: runDir.path, seeds: seedRuns) }
            if config.resume == .none {
                let removed = try RunDirectoryState.prepareFreshRun(runDir, overwrite: config.run.overwrite)
                if !removed.isEmpty {
                    say(
                        "run.overwrite=true: removed the earlier run's \(removed.joined(separator: ", ")) from \(runDir.path)"
                    )
                }
            }
            do {
                try resolved.yaml.write(
                    to: runDir.appendingPathComponent("config.yaml"), atomically: true, encoding: .utf8)
            } catch {
                throw RunDirectoryError.io(
                    path: runDir.appendingPathComponent("config.yaml").path,
                    reason: "cannot write: \(MetricsLog.reason(error))")
            }
        }
        defer { withExtendedLifetime(runLock) {} }
        let trainer = try Trainer(
            model: model, trainableNames: trainable, trainData: train, valData: val, comm: comm, options: options)
        let rank = comm.rank
        let stopRequest = StopRequest(
            deadline: comm.stopDeadline, log: { message in printError("vlseg: rank \(rank): \(message)") })
        stopRequest.install()
        defer { stopRequest.uninstall() }
        trainer.stopRequest = stopRequest
        trainer.observers.append(contentsOf: observers)
        if let faults = FaultInjection.fromEnvironment(rank: comm.rank), FaultInjection.appliesTo(seed: config.seed) {
            trainer.observers.append(faults)
        }
        let summary = try trainer.run()
        if let signal = summary.interruptedBy {
            if comm.isRoot {
                print(
                    "interrupted by \(StopRequest.name(signal)) after step \(summary.steps): last checkpoint \(summary.lastCheckpoint ?? "-")"
                        + "; run again with resume=auto to continue")
            }
            throw ExitCode(128 + signal)
        }
        var testLine: String? = nil
        if testAtEnd {
            testLine = try test(
                config, model: model, tokenizer: tokenizer, excluded: excluded["test"] ?? [], comm: comm,
                trainer: trainer,
                checkpoint: summary.bestCheckpoint ?? summary.lastCheckpoint)
        }
        try comm.rootDecides("training record") {
            try TrainingRecord(
                method: config.tuning.method, seed: config.seed, steps: summary.steps, epochs: summary.epochs,
                stoppedEarly: summary.stoppedEarly, bestStep: summary.bestStep, bestValidationDice: summary.bestDice,
                trainableParameters: summary.trainableParameters, wallSeconds: summary.wallSeconds, ranks: comm.size,
                trainingHash: resolved.trainingHash, maxSteps: config.trainer.maxSteps,
                maxEpochs: config.trainer.maxEpochs
            )
            .write(runDirectory: runDir)
        }
        if comm.isRoot {
            var lines = [
                "done: \(summary.steps) steps, \(summary.epochs) epoch(s)\(summary.stoppedEarly ? " (stopped early)" : "")"
            ]
            if let dice = summary.bestDice, let step = summary.bestStep {
                lines.append(
                    String(
                        format: "best validation Dice %.4f at step %d: %@", dice, step, summary.bestCheckpoint ?? "-"))
            }
            if let last = summary.lastCheckpoint { lines.append("last checkpoint: \(last)") }
            if let testLine { lines.append(testLine) }
            lines.append(
                "run directory: \(config.run.dir) (metrics.jsonl, metrics.csv, \(TrainingRecord.fileName)\(testLine == nil ? "" : ", eval-test.json"))"
            )
            print(lines.joined(separator: "\n"))
        }
    }

    /// The test after training: `checkpoint`'s weights on the test split, scored as `trainer.test` says;
    /// rank 0 writes `eval-test.json` and a `test` record in the metrics files. Returns the summary line.
    func test(
        _ config: VLSegConfig, model: SegmentationModel, tokenizer: CLIPTokenizer, excluded: Set<Int>,
        comm: Communicator,
        trainer: Trainer, checkpoint: String?
    ) throws -> String {
        if let checkpoint { try Inference.loadTrainable(checkpoint, into: model) }
        guard let threshold = ProbabilityThreshold(probability: config.trainer.test.threshold) else {
            throw SetupError(message: "trainer.test.threshold must be in (0, 1), got \(config.trainer.test.threshold)")
        }
        let resize = config.trainer.test.resize
        let data = try RunSetup.evaluationLoader(
            config, comm: comm, split: "test", tokenizer: tokenizer, excluding: excluded)
        let loss = SegmentationLoss(config.trainer.loss)
        let result = try Inference.evaluate(
            model: model, data: data, loss: loss, comm: comm, originalResolution: true,
            threshold: threshold, resize: resize)
        let report = EvaluationReport(
            split: "test", result: result, threshold: threshold, resize: resize,
            inputSize: try RunSetup.inputSize(config), checkpoint: checkpoint)
        try comm.rootDecides("test result") {
            _ = try report.write(runDirectory: URL(fileURLWithPath: config.run.dir))
            var record: [String: Any] = [
                "kind": "test", "step": trainer.state.step, "images": report.images, "test_loss": report.loss,
                "test_dice": report.dice, "test_iou": report.iou,
                "test_dice_pooled": report.dicePooled, "test_iou_pooled": report.iouPooled,
                "threshold": report.threshold, "resize": report.resize,
            ]
            if let checkpoint { record["checkpoint"] = checkpoint }
            if let d = report.diceOriginal, let i = report.iouOriginal, let dp = report.diceOriginalPooled,
                let ip = report.iouOriginalPooled
            {
                record["test_dice_original"] = d
                record["test_iou_original"] = i
                record["test_dice_original_pooled"] = dp
                record["test_iou_original_pooled"] = ip
            }
            try trainer.logRecord(record)
        }
        var line = String(
            format: "test (%@): Dice %.4f, IoU %.4f, pooled Dice %.4f, IoU %.4f on %d images",
            checkpoint.map { URL(fileURLWithPath: $0).lastPathComponent } ?? "final weights",
            report.dice, report.iou, report.dicePooled, report.iouPooled, report.images)
        if let d = report.diceOriginal, let i = report.iouOriginal, let dp = report.diceOriginalPooled,
            let ip = report.iouOriginalPooled
        {
            line += String(
                format: "; original resolution (%@ resize): %.4f, %.4f, pooled %.4f, %.4f", resize.rawValue, d, i, dp,
                ip)
        }
        return line
    }

    func printDryRun(
        resolved: ResolvedConfig, model: SegmentationModel, methodName: String, trainable: [String],
        comm: Communicator, batch: Int, trainBatches: Int, trainSamples: Int, valSamples: Int?, featureCache: Bool
    ) {
        let config = resolved.config
        let trainableCount = trainable.reduce(0) { $0 + model.parameters[$1].count }
        let total = model.learnableParameterCount
        var out = [
            "dry run: \(config.name)",
            "model: \(model.architectureName) at \(config.model.path) (\(total.grouped) parameters)",
            "input: \((try? RunSetup.inputSize(config)).map { "\($0)x\($0)" } ?? "?") pixels, \((try? RunSetup.normalization(config)).map { "mean \($0.mean), std \($0.std)" } ?? "?")",
            "tuning: \(methodName) (\(config.tuning.method))",
        ]
        out.append("trainable parameters by group:")
        for g in RunSetup.parameterGroups(trainable, store: model.parameters) {
            out.append(
                "  \(g.group.padding(toLength: 44, withPad: " ", startingAt: 0)) \(g.count.grouped) (\(g.tensors) tensors)"
            )
        }
        out.append("trainable parameters: \(trainableCount.grouped)")
        out.append("frozen parameters: \((total - trainableCount).grouped)")
        out.append("all-reduce per optimiser step: \((4 * trainableCount).grouped) bytes")
        let accumulate = max(1, config.trainer.accumulate)
        out.append(
            "batch: \(batch) per rank x \(comm.size) rank(s) x accumulate \(accumulate) = global \(batch * comm.size * accumulate)"
        )
        out.append(
            "data: \(config.data.root): \(trainSamples) training samples, \(valSamples.map(String.init) ?? "no") validation samples"
        )
        out.append("steps per epoch: \(trainBatches / accumulate)")
        out.append(
            "matrix products: \(MatmulPrecision.current == .bf16 ? "bf16 inputs, float32 sums (trainer.precision=\(config.trainer.precision.rawValue))" : "float32")"
        )
        out.append(
            "feature cache: \(featureCache ? "on (frozen vision features reused from the second epoch)" : "off")")
        out.append("run directory: \(config.run.dir)")
        print(out.joined(separator: "\n"))
    }
}
