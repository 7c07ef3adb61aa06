import ArgumentParser
import Foundation
import VLData
import VLDistributed
import VLTrain
import VLTuning

/// `vlseg sweep`: an Optuna hyper-parameter search, each trial a full training run on every rank.
struct SweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Search hyper-parameters with Optuna: each trial is a full training run on all ranks.",
        discussion: """
            vlseg sweep experiment=X [sweep=SPACE] [sweep.trials=20] [sweep.KEY=VALUE] [overrides...]. The \
            search space is configs/sweep/SPACE.yaml (default: the tuning method's name): config keys with \
            float (log or linear), int or categorical distributions, the objective (sweep.objective.metric: \
            val_loss, val_dice, ...; direction minimize or maximize: the best validation value of each trial), \
            the trial count, Optuna's TPE sampler and pruner (sweep.pruner=median stops trials whose \
            validation is worse than the median of earlier trials at the same step). A key the config lacks, \
            a bad range or one outside a tuning option's declared bounds is refused before the first trial. \
            Trials run in SWEEP_DIR/trial-NNNN (sweep.dir, default <run.dir>-sweep); the study is in \
            SWEEP_DIR/optuna.db unless sweep.storage names a database URL (postgresql://USER@HOST/DB: several \
            launches on several machines then share the study; the password comes from \
            VLSEG_SWEEP_STORAGE_PASSWORD or sweep.storage_password_file and is never printed). Run the same \
            command again after a crash or a stop: finished trials are kept, the interrupted one continues \
            from its checkpoint, and new ones are asked until the study holds sweep.trials. A trial that fails \
            (an error every rank agrees on, a diverged run) is recorded as FAIL and the sweep goes on. \
            SWEEP_DIR/sweep.json lists the trials after every change; at the end a table of all trials is \
            printed and the best trial's overrides are written to SWEEP_DIR/best.yaml \
            (vlseg train experiment=X +sweep_best=SWEEP_DIR/best.yaml retrains it). Needs python3 with \
            \(OptunaDriver.optunaRequirement) (launch/sweep installs it; VLSEG_PYTHON picks the interpreter).
            """)

    @Argument(help: "sweep=SPACE, sweep.KEY=VALUE and config overrides (group=option, a.b.c=value).")
    var overrides: [String] = []

    @Flag(help: "Check the search space against the config, print the plan and exit without a trial.")
    var dryRun = false

    @Option(help: "Directory of the YAML config groups (default: the checkout's configs/).")
    var configDir: String?

    func run() throws {
        try reportingErrors {
            let loader = try ConfigLoader(configDir: configDir)
            let (sweepArguments, training) = SweepConfigReader.split(overrides)
            let timeout = (try? loader.load(overrides: training))?.config.comm.timeoutS ?? 300
            let comm = Communicators.make(timeout: timeout)
            // Rank 0 checks everything once and every rank learns the verdict: one line for a mistake.
            try comm.rootDecides("sweep configuration") {
                _ = try Self.plan(loader: loader, sweepArguments: sweepArguments, training: training)
            }
            let plan = try Self.plan(loader: loader, sweepArguments: sweepArguments, training: training)
            if dryRun {
                if comm.isRoot { print(plan.description) }
                return
            }
            let caches = FeatureCacheShelf(
                directory: plan.directory.appendingPathComponent(".vlseg/feature-cache-rank\(comm.rank)"))
            try SweepRunner(plan: plan, loader: loader, comm: comm, featureCaches: caches).run()
        }
    }

    /// The resolved experiment, the sweep settings, the space checked against the config.
    static func plan(loader: ConfigLoader, sweepArguments: [String], training: [String]) throws -> SweepPlan {
        let resolved = try loader.load(overrides: training)
        let sweep = try SweepConfigReader.read(
            configDir: loader.configDir, arguments: sweepArguments, defaultSpace: resolved.config.tuning.method)
        guard resolved.config.trainer.seeds.isEmpty else {
            throw ConfigError(
                .invalidValue, path: "trainer.seeds",
                message:
                    "a sweep trains one run per trial; retrain the best trial with seeds afterwards (vlseg train ... +sweep_best=FILE trainer.seeds=[...])",
                source: resolved.sources["trainer.seeds.0"])
        }
        guard
            DatasetIndex.availableSplits(root: URL(fileURLWithPath: resolved.config.data.root)).contains("val")
                || resolved.config.data.isDemo
        else {
            throw ConfigError(
                .invalidValue, path: "data.root",
                message:
                    "\(resolved.config.data.root) has no val split: a sweep's objective (\(sweep.objective.metric)) is a validation metric"
            )
        }
        try SweepSpaceCheck.check(sweep, resolved: resolved, loader: loader, overrides: training)
        let dir = SweepPlan.directory(sweep, runDirectory: resolved.config.run.dir)
        let storage = try SweepStorage.resolve(sweep, sweepDirectory: dir)
        return SweepPlan(
            resolved: resolved, sweep: sweep, training: training, directory: dir, storage: storage,
            study: sweep.study ?? resolved.config.name,
            experiment: resolved.choices["experiment"] ?? resolved.config.name)
    }
}
