import Foundation
import VLDistributed
import VLTuning

/// One trial as rank 0 decided it, broadcast to every rank.
public struct SweepTrialPlan: Codable, Sendable, Equatable {
    public var number: Int
    public var params: [String: ConfigValue]
    /// Absolute path of the trial's run directory.
    public var runDirectory: String
    /// True when the trial was interrupted earlier and continues from its checkpoint.
    public var resumed: Bool
}

/// Rank 0's side of a sweep: the Optuna study (through `OptunaDriver`), the claim on the trial it runs,
/// `sweep.json`, the progress lines, the final table and `best.yaml`.
public final class SweepStudy {
    public let plan: SweepPlan
    let driver: OptunaDriver
    /// The claim on the running trial's directory (released when its outcome is recorded).
    private var claim: RunDirectoryLock?
    private let command = CommandLine.arguments.joined(separator: " ")

    init(plan: SweepPlan, driver: OptunaDriver) {
        self.plan = plan
        self.driver = driver
    }

    /// Creates the sweep directory and the study (or opens both) and writes `sweep.json`.
    public static func open(_ plan: SweepPlan) throws -> SweepStudy {
        do { try FileManager.default.createDirectory(at: plan.directory, withIntermediateDirectories: true) } catch {
            throw SweepError.io(path: plan.directory.path, reason: "cannot create: \(MetricsLog.reason(error))")
        }
        let driver = try OptunaDriver(sweepDirectory: plan.directory, storage: plan.storage, study: plan.study)
        let study = SweepStudy(plan: plan, driver: driver)
        try study.writeSummary(try driver.open(objective: plan.sweep.objective))
        return study
    }

    // MARK: Choosing the next trial

    /// The interrupted trial this directory holds (RUNNING in the study, its run directory here, no launch
    /// holding it), else a new trial from Optuna, else nil when the study holds `sweep.trials` trials.
    /// Serialised with every launch sharing the directory (`SweepAskLock`).
    public func next() throws -> SweepTrialPlan? {
        let lock = try SweepAskLock.acquire(sweepDirectory: plan.directory)
        defer { withExtendedLifetime(lock) {} }
        for trial in try driver.trials() where trial.state == "RUNNING" {
            let dir = runDirectory(trial.number)
            guard let record = TrialRecord.read(dir), record.study == plan.study, record.number == trial.number,
                let claim = try? RunDirectoryLock.acquire(
                    dir, lockFile: SweepFiles.trialLockName, command: command, warn: { _ in })
            else { continue }
            self.claim = claim
            return SweepTrialPlan(
                number: trial.number, params: typed(trial.params), runDirectory: dir.path, resumed: true)
        }
        guard
            let asked = try driver.ask(
                space: plan.sweep.parameters, target: plan.sweep.trials, sampler: plan.sweep.sampler,
                attributes: ["vlseg_host": ProcessIdentity.hostName, "vlseg_directory": plan.directory.path])
        else { return nil }
        let dir = runDirectory(asked.number)
        do {
            claim = try RunDirectoryLock.acquire(
                dir, lockFile: SweepFiles.trialLockName, command: command, warn: { _ in })
            try TrialRecord(study: plan.study, number: asked.number, params: asked.params).write(dir)
        } catch {
            try? driver.tell(asked.number, .fail, error: "\(error)")
            throw error
        }
        try writeSummary(try driver.trials())
        return SweepTrialPlan(number: asked.number, params: asked.params, runDirectory: dir.path, resumed: false)
    }

    func runDirectory(_ number: Int) -> URL {
        plan.directory.appendingPathComponent(SweepFiles.trialDirectoryName(number))
    }

    /// Optuna's params typed by the space's distributions (JSON alone loses 3.0 versus 3).
    func typed(_ params: [String: ConfigValue]) -> [String: ConfigValue] {
        var out: [String: ConfigValue] = [:]
        for p in plan.sweep.parameters { if let v = params[p.key] { out[p.key] = v.typed(by: p.distribution) } }
        return out
    }

    // MARK: Outcomes

    public enum Outcome: Equatable, Sendable {
        case complete(Double)
        case failed(String)
        case pruned(step: Int)
    }

    /// The outcome of a trial whose training ended (`failure`: the error every rank agreed on; `pruned`:
    /// the step at which the pruner stopped it), from its run directory's validations.
    public func outcome(_ trial: SweepTrialPlan, failure: String?, prunedAt: Int?) -> Outcome {
        if let failure { return .failed(failure) }
        if let prunedAt { return .pruned(step: prunedAt) }
        let metric = plan.sweep.objective.metric
        switch TrialObjective.read(
            runDirectory: URL(fileURLWithPath: trial.runDirectory), objective: plan.sweep.objective)
        {
        case let .value(v, _): return .complete(v)
        case .noValidation:
            return .failed(
                "no validation recorded \(metric) in \(trial.runDirectory)/metrics.jsonl (no val split, or trainer.eval_every beyond the steps)"
            )
        case let .diverged(step): return .failed("diverged: \(metric) is not a finite number at step \(step)")
        }
    }

    /// Tells the study, rewrites `sweep.json`, prints the trial's line, releases the claim.
    public func record(_ trial: SweepTrialPlan, failure: String?, prunedAt: Int? = nil) throws {
        defer { claim = nil }
        let outcome = outcome(trial, failure: failure, prunedAt: prunedAt)
        switch outcome {
        case let .complete(v): try driver.tell(trial.number, .complete, value: v)
        case let .failed(message): try driver.tell(trial.number, .fail, error: message)
        case .pruned: try driver.tell(trial.number, .pruned)
        }
        let trials = try driver.trials()
        try writeSummary(trials)
        print(resultLine(trial, outcome: outcome, trials: trials))
        fflush(nil)  // the line reaches a pipe now, not at exit
    }

    /// Reports a validation value for pruning; true when Optuna's pruner says to stop the trial.
    public func report(_ trial: SweepTrialPlan, step: Int, value: Double) throws -> Bool {
        try driver.report(trial.number, step: step, value: value, pruner: plan.sweep.pruner)
    }

    /// Rewrites `sweep.json` (`SweepSummary`, the report's input) from the study's trials.
    @discardableResult
    func writeSummary(_ trials: [OptunaTrial]) throws -> SweepSummary {
        let objective = plan.sweep.objective
        let summary = SweepSummary(
            study: plan.study, experiment: plan.experiment,
            objective: SweepSummary.Objective(
                metric: objective.metric, direction: objective.direction == .minimize ? .minimize : .maximize),
            trialsTarget: plan.sweep.trials,
            trials: trials.sorted { $0.number < $1.number }.map { t in
                SweepSummary.Trial(
                    number: t.number, state: SweepSummary.TrialState(rawValue: t.state) ?? .fail, value: t.value,
                    params: typed(t.params).mapValues(Self.parameterValue),
                    runDir: SweepFiles.trialDirectoryName(t.number), seconds: t.seconds,
                    error: t.userAttrs["error"]?.stringValue.map(plan.storage.mask))
            },
            bestTrial: best(trials)?.number)
        try summary.write(directory: plan.directory)
        return summary
    }

    /// A sampled value as `sweep.json` holds it: numbers as numbers, anything else as its text.
    static func parameterValue(_ value: ConfigValue) -> SweepSummary.ParameterValue {
        value.doubleValue.map { .number($0) } ?? .text(value.description)
    }

    /// The complete trial with the best value (the lowest number among equals).
    func best(_ trials: [OptunaTrial]) -> OptunaTrial? {
        var best: OptunaTrial? = nil
        for t in trials.sorted(by: { $0.number < $1.number }) where t.state == "COMPLETE" {
            guard let v = t.value else { continue }
            if let b = best, let bv = b.value, !plan.sweep.objective.better(v, than: bv) { continue }
            best = t
        }
        return best
    }

    // MARK: Lines and files for the user

    func paramsText(_ params: [String: ConfigValue]) -> String {
        plan.sweep.parameters.compactMap { p in params[p.key].map { "\(p.key)=\($0.overrideText)" } }
            .joined(separator: " ")
    }

    public func startLine(_ trial: SweepTrialPlan) -> String {
        "trial \(trial.number + 1)/\(plan.sweep.trials)\(trial.resumed ? " (resumed from its checkpoint)" : ""): \(paramsText(trial.params))"
    }

    func resultLine(_ trial: SweepTrialPlan, outcome: Outcome, trials: [OptunaTrial]) -> String {
        let metric = plan.sweep.objective.metric
        var line = "trial \(trial.number + 1)/\(plan.sweep.trials): "
        switch outcome {
        case let .complete(v): line += "\(metric) \(Self.format(v))"
        case let .failed(message): line += "FAIL: \(message)"
        case let .pruned(step): line += "PRUNED at step \(step)"
        }
        if let best = best(trials), let v = best.value {
            line += "; best so far \(Self.format(v)) (trial \(best.number + 1))"
        }
        return line
    }

    static func format(_ v: Double) -> String { String(format: "%.6g", v) }

    /// The end of a launch: the table of every trial in the study, `best.yaml`, how to retrain it.
    public func finish(ranHere: Int) throws {
        let trials = try driver.trials().sorted { $0.number < $1.number }
        try writeSummary(trials)
        print(table(trials))
        let done = trials.filter { $0.state != "RUNNING" && $0.state != "WAITING" }.count
        print(
            "sweep: \(trials.count) of \(plan.sweep.trials) trials in the study (\(done) finished, \(ranHere) run by this launch): \(plan.directory.path)/\(SweepSummary.fileName)"
        )
        guard let best = best(trials), let value = best.value else {
            print("sweep: no trial completed: no best trial yet")
            return
        }
        let url = plan.directory.appendingPathComponent(SweepFiles.bestName)
        try SweepFiles.writeAtomically(Data(bestYAML(best, value: value).utf8), to: url)
        print(
            "best: trial \(best.number + 1), \(plan.sweep.objective.metric) \(Self.format(value)): \(paramsText(typed(best.params)))"
        )
        print("retrain: vlseg train experiment=\(plan.experiment) +sweep_best=\(url.path) [trainer.seeds=[...]]")
    }

    func table(_ trials: [OptunaTrial]) -> String {
        let keys = plan.sweep.parameters.map(\.key)
        var rows = [["trial", "state", plan.sweep.objective.metric, "seconds"] + keys]
        for t in trials {
            let params = typed(t.params)
            rows.append(
                [
                    "\(t.number + 1)", t.state, t.value.map(Self.format) ?? "-",
                    t.seconds.map { String(format: "%.1f", $0) } ?? "-",
                ] + keys.map { params[$0]?.overrideText ?? "-" })
        }
        let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max() ?? 0 }
        return rows.map { row in
            zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
                .trimmingCharacters(in: .whitespaces)
        }.joined(separator: "\n")
    }

    /// Overrides that only place or steer the launch, left out of `best.yaml`: the retrain names its own.
    static let launchOnlyKeys: Set<String> = ["experiment", "run.dir", "run.overwrite", "resume", "trainer.threads"]

    /// The best trial's overrides as a mapping `vlseg train ... +sweep_best=FILE` reads: the sweep's own
    /// training overrides (so the retrain runs the trial's settings), then the trial's sampled values.
    func bestYAML(_ best: OptunaTrial, value: Double) -> String {
        var lines = [
            "# vlseg sweep: the best trial (\(best.number + 1) of study \(plan.study), \(plan.sweep.objective.metric) \(Self.format(value)), \(plan.sweep.objective.direction.rawValue))",
            "# vlseg train experiment=\(plan.experiment) +sweep_best=THIS_FILE [trainer.seeds=[...]]",
        ]
        let searched = Set(plan.sweep.parameters.map(\.key))
        for raw in plan.training {
            let text = String(raw.drop { $0 == "+" })
            guard let eq = text.firstIndex(of: "=") else { continue }
            let key = String(text[..<eq]).trimmingCharacters(in: .whitespaces)
            guard !Self.launchOnlyKeys.contains(key), !searched.contains(key), key != ConfigLoader.sweepBestKey
            else { continue }
            let value = String(text[text.index(after: eq)...]).trimmingCharacters(in: .whitespaces)
            lines.append("\(key): \(value.isEmpty ? "null" : value)")
        }
        let params = typed(best.params)
        for p in plan.sweep.parameters {
            if let v = params[p.key] { lines.append("\(p.key): \(v.overrideText)") }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
