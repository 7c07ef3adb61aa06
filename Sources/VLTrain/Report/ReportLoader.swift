import Foundation

/// Reads what `vlseg report` shows from a run or sweep directory. It only reads files; the per-image
/// scores that need a model are computed by the command (`WorstImages`) and added to the result.
public enum ReportLoader {
    public enum Kind: Equatable {
        case run, sweep
    }

    /// A sweep when `sweep.json` is there; a run when it holds a config, metrics or checkpoints.
    public static func kind(of directory: URL) throws -> Kind {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: directory.path, isDirectory: &isDir), isDir.boolValue else {
            throw ReportError.notFound(path: directory.path)
        }
        if fm.fileExists(atPath: directory.appendingPathComponent(SweepSummary.fileName).path) { return .sweep }
        for name in [CheckpointStore.configFile, "metrics.jsonl", "checkpoints"]
        where fm.fileExists(atPath: directory.appendingPathComponent(name).path) {
            return .run
        }
        throw ReportError.notARunOrSweep(directory: directory.path)
    }

    /// Everything of a run that is in its files; parts that are absent are noted in `missing`, a
    /// file that is there but unreadable is an error naming it.
    public static func loadRun(_ directory: URL, split: String = "test") throws -> RunReportData {
        let fm = FileManager.default
        var data = RunReportData(directory: directory.path)

        let configURL = directory.appendingPathComponent(CheckpointStore.configFile)
        if fm.fileExists(atPath: configURL.path) {
            do { data.configText = try String(contentsOf: configURL, encoding: .utf8) } catch {
                throw ReportError.corrupt(path: configURL.path, reason: "cannot read the config as UTF-8 text")
            }
        } else {
            data.missing["config"] = "no \(CheckpointStore.configFile) in the run directory"
        }

        let metricsURL = directory.appendingPathComponent("metrics.jsonl")
        if fm.fileExists(atPath: metricsURL.path) {
            data.records = try readMetrics(metricsURL)
            if data.records.isEmpty { data.missing["metrics"] = "metrics.jsonl holds no record yet" }
        } else {
            data.missing["metrics"] = "no metrics.jsonl in the run directory"
        }

        let trainingURL = directory.appendingPathComponent(TrainingRecord.fileName)
        if fm.fileExists(atPath: trainingURL.path) {
            data.training = try decode(TrainingRecord.self, trainingURL, what: "a training record")
        }

        let store = CheckpointStore(runDirectory: directory)
        data.bestCheckpoint = store.pointer("best")
        data.latestCheckpoint = store.pointer("latest")
        data.checkpoints = store.stepDirectories().map(\.lastPathComponent).sorted()
        if data.checkpoints.isEmpty { data.missing["checkpoints"] = "the run saved no checkpoint" }

        let evalURL = directory.appendingPathComponent(EvaluationReport.fileName(split: split))
        if fm.fileExists(atPath: evalURL.path) {
            data.evaluation = try decode(EvaluationReport.self, evalURL, what: "an evaluation report")
        } else {
            data.missing["test"] =
                "no \(evalURL.lastPathComponent): the run was not tested (trainer.test.at_end=true, or `vlseg evaluate --run RUN`)"
        }
        return data
    }

    /// `metrics.jsonl`: one JSON object per line with `kind` and `step`. A crash may leave the last
    /// line half-written (the log flushes per record); only that line is forgiven.
    public static func readMetrics(_ url: URL) throws -> [MetricsRecord] {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw ReportError.corrupt(path: url.path, reason: "cannot read as UTF-8 text: \(MetricsLog.reason(error))")
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        var records: [MetricsRecord] = []
        for (n, line) in lines.enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            let isUnfinishedLast = n == lines.count - 1 && !text.hasSuffix("\n")
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                if isUnfinishedLast { break }
                throw ReportError.corrupt(path: url.path, reason: "line \(n + 1) is not a JSON object")
            }
            guard let kind = object["kind"] as? String, let step = (object["step"] as? NSNumber)?.intValue else {
                throw ReportError.corrupt(path: url.path, reason: "line \(n + 1) has no \"kind\" and \"step\"")
            }
            var values: [String: Double] = [:]
            for (key, value) in object where key != "kind" && key != "step" {
                // Booleans are NSNumbers too; only real numbers are metrics.
                if let number = value as? NSNumber, String(cString: number.objCType) != "c" {
                    values[key] = number.doubleValue
                }
            }
            records.append(MetricsRecord(kind: kind, step: step, values: values))
        }
        return records
    }

    /// A sweep's summary and its best trial's run (when the trial names a run directory that can be read).
    public static func loadSweep(_ directory: URL) throws -> SweepReportData {
        let summary: SweepSummary
        do { summary = try SweepSummary.read(directory: directory) } catch let RunDirectoryError.io(path, reason) {
            throw ReportError.corrupt(path: path, reason: reason)
        }
        guard let best = summary.bestTrial else {
            return SweepReportData(
                directory: directory.path, summary: summary, bestRun: nil, bestRunMissing: "no trial has completed yet")
        }
        guard let trial = summary.trials.first(where: { $0.number == best }) else {
            throw ReportError.corrupt(
                path: directory.appendingPathComponent(SweepSummary.fileName).path,
                reason: "best_trial \(best) is not among its trials")
        }
        guard let runURL = summary.runDirectory(of: trial, in: directory) else {
            return SweepReportData(
                directory: directory.path, summary: summary, bestRun: nil,
                bestRunMissing: "trial \(best) names no run directory")
        }
        guard (try? kind(of: runURL)) == .run else {
            return SweepReportData(
                directory: directory.path, summary: summary, bestRun: nil,
                bestRunMissing: "trial \(best)'s run directory \(runURL.path) holds no run")
        }
        return SweepReportData(
            directory: directory.path, summary: summary, bestRun: try loadRun(runURL), bestRunMissing: nil)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ url: URL, what: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(contentsOf: url))
        } catch {
            throw ReportError.corrupt(path: url.path, reason: "not \(what): \(SweepSummary.describe(error))")
        }
    }
}
