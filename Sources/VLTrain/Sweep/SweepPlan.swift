import Foundation

/// Everything a sweep launch needs, the same on every rank.
public struct SweepPlan: CustomStringConvertible, Sendable {
    public var resolved: ResolvedConfig
    public var sweep: SweepConfig
    /// The training overrides of the command line (without the sweep's own).
    public var training: [String]
    public var directory: URL
    public var storage: SweepStorage
    public var study: String
    public var experiment: String

    public init(
        resolved: ResolvedConfig, sweep: SweepConfig, training: [String], directory: URL, storage: SweepStorage,
        study: String, experiment: String
    ) {
        self.resolved = resolved
        self.sweep = sweep
        self.training = training
        self.directory = directory
        self.storage = storage
        self.study = study
        self.experiment = experiment
    }

    public var description: String {
        var lines = [
            "sweep: study \(study) (experiment \(experiment)), space \(sweep.space): \(sweep.trials) trials",
            "objective: \(sweep.objective.direction.rawValue) \(sweep.objective.metric) (the best validation of each trial)",
            "sampler: TPE, seed \(sweep.sampler.seed), multivariate \(sweep.sampler.multivariate), \(sweep.sampler.startupTrials) start-up trials; pruner: \(sweep.pruner.kind.rawValue)",
            "storage: \(storage.masked)",
            "directory: \(directory.path)",
            "search space:",
        ]
        for p in sweep.parameters { lines.append("  \(p.key): \(p.distribution.summary)") }
        return lines.joined(separator: "\n")
    }
}

extension SweepPlan {
    /// `sweep.dir`, else `<run.dir>-sweep` beside the run directory the experiment names (`~` expanded).
    public static func directory(_ sweep: SweepConfig, runDirectory: String) -> URL {
        URL(fileURLWithPath: VLSegConfig.expandHome(sweep.dir ?? runDirectory + "-sweep")).standardizedFileURL
    }
}
