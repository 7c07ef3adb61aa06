import ArgumentParser
import Foundation
import VLData
import VLDistributed
import VLTensor
import VLModels
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
            checkpoint (exit 128 + signal).
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
            let resolved = try ConfigLoader(configDir: configDir).load(overrides: overrides)
            let config = resolved.config
            let placement = LaunchPlacement.fromEnvironment()
            if printConfig {
                if placement.rank == 0 { print(resolved.yaml, terminator: resolved.yaml.hasSuffix("\n") ? "" : "\n") }
                return
            }
            let comm = Communicators.make(timeout: config.comm.timeoutS)
            let say: (String) -> Void = { if comm.isRoot { printError($0) } }
            try RunSetup.configureCompute(config, ranksOnThisMachine: comm.localSize)
            try RunSetup.prepareInputs(config, comm: comm, log: say)
            let batch = try config.perRankBatchSize(worldSize: comm.size)
            let hasValidation = DatasetIndex.availableSplits(root: URL(fileURLWithPath: config.data.root)).contains("val")
            // Every sample's files are checked (each rank a share) while the model loads.
            let (loaded, excluded) = try RunSetup.checkingSampleFiles(
                config, comm: comm, splits: [("train", true)] + (hasValidation ? [("val", false)] : []), log: say
            ) { () throws -> (SegmentationModel, TuningMethod, [String], CLIPTokenizer) in
                let model = try RunSetup.loadModel(config)
                let (method, trainable) = try RunSetup.tuning(config, model: model)
                return (model, method, trainable, try RunSetup.tokenizer(config))
            }
            let (model, method, trainable, tokenizer) = loaded
            let (train, val) = try RunSetup.loaders(config, comm: comm, batchSize: batch, tokenizer: tokenizer, excluding: excluded)
            var options = RunSetup.trainingOptions(resolved, batchSize: batch)
            options.featureCache = try RunSetup.featureCache(config, visionFrozen: method.visionIsFrozen)
            RunSetup.enableTextCache(config, model: model)
            if dryRun {
                if comm.isRoot { printDryRun(resolved: resolved, model: model, methodName: method.name, trainable: trainable,
                                             comm: comm, batch: batch, trainBatches: train.sampler.batchesPerEpoch,
                                             trainSamples: train.samples.count, valSamples: val?.samples.count,
                                             featureCache: options.featureCache) }
                return
            }
            // Rank 0 claims the run directory for this job before anything is written there, and a
            // fresh run refuses to mix with an earlier one; every rank learns the outcome.
            var runLock: RunDirectoryLock? = nil
            try comm.rootDecides("run directory") {
                let runDir = URL(fileURLWithPath: config.run.dir)
                runLock = try RunDirectoryLock.acquire(runDir, command: CommandLine.arguments.joined(separator: " "), warn: say)
                if config.resume == .none {
                    let removed = try RunDirectoryState.prepareFreshRun(runDir, overwrite: config.run.overwrite)
                    if !removed.isEmpty { say("run.overwrite=true: removed the earlier run's \(removed.joined(separator: ", ")) from \(runDir.path)") }
                }
                do {
                    try resolved.yaml.write(to: runDir.appendingPathComponent("config.yaml"), atomically: true, encoding: .utf8)
                } catch {
                    throw RunDirectoryError.io(path: runDir.appendingPathComponent("config.yaml").path, reason: "cannot write: \(MetricsLog.reason(error))")
                }
            }
            defer { withExtendedLifetime(runLock) {} }
            let trainer = try Trainer(model: model, trainableNames: trainable, trainData: train, valData: val, comm: comm, options: options)
            let rank = comm.rank
            let stopRequest = StopRequest(deadline: comm.stopDeadline, log: { message in printError("vlseg: rank \(rank): \(message)") })
            stopRequest.install()
            defer { stopRequest.uninstall() }
            trainer.stopRequest = stopRequest
            if let faults = FaultInjection.fromEnvironment(rank: comm.rank) { trainer.observers.append(faults) }
            let summary = try trainer.run()
            if let signal = summary.interruptedBy {
                if comm.isRoot {
                    print("interrupted by \(StopRequest.name(signal)) after step \(summary.steps): last checkpoint \(summary.lastCheckpoint ?? "-")"
                          + "; run again with resume=auto to continue")
                }
                throw ExitCode(128 + signal)
            }
            if comm.isRoot {
                var lines = ["done: \(summary.steps) steps, \(summary.epochs) epoch(s)\(summary.stoppedEarly ? " (stopped early)" : "")"]
                if let dice = summary.bestDice, let step = summary.bestStep {
                    lines.append(String(format: "best validation Dice %.4f at step %d: %@", dice, step, summary.bestCheckpoint ?? "-"))
                }
                if let last = summary.lastCheckpoint { lines.append("last checkpoint: \(last)") }
                lines.append("run directory: \(config.run.dir) (metrics.jsonl, metrics.csv)")
                print(lines.joined(separator: "\n"))
            }
        }
    }

    func printDryRun(resolved: ResolvedConfig, model: SegmentationModel, methodName: String, trainable: [String],
                     comm: Communicator, batch: Int, trainBatches: Int, trainSamples: Int, valSamples: Int?, featureCache: Bool) {
        let config = resolved.config
        let trainableCount = trainable.reduce(0) { $0 + model.parameters[$1].count }
        let total = model.learnableParameterCount
        var out = ["dry run: \(config.name)", "model: \(model.architectureName) at \(config.model.path) (\(total.grouped) parameters)",
                   "input: \((try? RunSetup.inputSize(config)).map { "\($0)x\($0)" } ?? "?") pixels, \((try? RunSetup.normalization(config)).map { "mean \($0.mean), std \($0.std)" } ?? "?")",
                   "tuning: \(methodName) (\(config.tuning.method))"]
        out.append("trainable parameters by group:")
        for g in RunSetup.parameterGroups(trainable, store: model.parameters) {
            out.append("  \(g.group.padding(toLength: 44, withPad: " ", startingAt: 0)) \(g.count.grouped) (\(g.tensors) tensors)")
        }
        out.append("trainable parameters: \(trainableCount.grouped)")
        out.append("frozen parameters: \((total - trainableCount).grouped)")
        out.append("all-reduce per optimiser step: \((4 * trainableCount).grouped) bytes")
        let accumulate = max(1, config.trainer.accumulate)
        out.append("batch: \(batch) per rank x \(comm.size) rank(s) x accumulate \(accumulate) = global \(batch * comm.size * accumulate)")
        out.append("data: \(config.data.root): \(trainSamples) training samples, \(valSamples.map(String.init) ?? "no") validation samples")
        out.append("steps per epoch: \(trainBatches / accumulate)")
        out.append("matrix products: \(config.trainer.precision == .bf16 ? "bf16 inputs, float32 sums (trainer.precision=bf16)" : "float32")")
        out.append("feature cache: \(featureCache ? "on (frozen vision features reused from the second epoch)" : "off")")
        out.append("run directory: \(config.run.dir)")
        print(out.joined(separator: "\n"))
    }
}

