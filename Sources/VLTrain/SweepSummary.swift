import Foundation

/// `<sweep>/sweep.json`: what a hyper-parameter sweep (`vlseg sweep`, an Optuna study) tried and
/// found, one entry per trial with the run directory it trained into. The sweep writes it; `vlseg
/// report` reads it. The format is versioned (`vlseg-sweep/1`) so a reader can refuse a file it
/// does not understand instead of misreading it.
public struct SweepSummary: Codable, Sendable, Equatable {
    public static let fileName = "sweep.json"
    public static let currentFormat = "vlseg-sweep/1"

    /// What the study optimises: a metric name of the runs' records and whether lower is better.
    public struct Objective: Codable, Sendable, Equatable {
        public enum Direction: String, Codable, Sendable {
            case minimize, maximize
        }
        public var metric: String
        public var direction: Direction

        public init(metric: String, direction: Direction) {
            self.metric = metric
            self.direction = direction
        }
    }

    /// A trial's state, as Optuna names them.
    public enum TrialState: String, Codable, Sendable, CaseIterable {
        case complete = "COMPLETE", fail = "FAIL", pruned = "PRUNED", running = "RUNNING", waiting = "WAITING"
    }

    /// A parameter value: the sampled number (float or integer) or the chosen category.
    public enum ParameterValue: Codable, Sendable, Equatable, CustomStringConvertible {
        case number(Double)
        case text(String)

        public init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let d = try? c.decode(Double.self) {
                self = .number(d)
            } else {
                self = .text(try c.decode(String.self))
            }
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case let .number(d): try c.encode(d)
            case let .text(s): try c.encode(s)
            }
        }

        public var number: Double? {
            if case let .number(d) = self { return d }
            return nil
        }

        /// Integers without a fraction, other numbers in `%g`, text as it is.
        public var description: String {
            switch self {
            case let .number(d):
                return d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(format: "%.6g", d)
            case let .text(s): return s
            }
        }
    }

    public struct Trial: Codable, Sendable, Equatable {
        public var number: Int
        public var state: TrialState
        /// The objective; set for COMPLETE trials, and possibly the last intermediate value of a PRUNED one.
        public var value: Double?
        public var params: [String: ParameterValue]
        /// The trial's run directory, relative to the sweep directory (or absolute).
        public var runDir: String?
        public var seconds: Double?
        public var error: String?

        enum CodingKeys: String, CodingKey {
            case number, state, value, params, runDir = "run_dir", seconds, error
        }

        public init(
            number: Int, state: TrialState, value: Double?, params: [String: ParameterValue], runDir: String?,
            seconds: Double?, error: String?
        ) {
            self.number = number
            self.state = state
            self.value = value
            self.params = params
            self.runDir = runDir
            self.seconds = seconds
            self.error = error
        }
    }

    public var format: String
    public var study: String
    public var experiment: String?
    public var objective: Objective
    public var trialsTarget: Int?
    public var trials: [Trial]
    /// The number of the best trial so far, nil before any trial completed.
    public var bestTrial: Int?

    enum CodingKeys: String, CodingKey {
        case format, study, experiment, objective, trialsTarget = "trials_target", trials, bestTrial = "best_trial"
    }

    public init(
        study: String, experiment: String?, objective: Objective, trialsTarget: Int?, trials: [Trial],
        bestTrial: Int?
    ) {
        format = Self.currentFormat
        self.study = study
        self.experiment = experiment
        self.objective = objective
        self.trialsTarget = trialsTarget
        self.trials = trials
        self.bestTrial = bestTrial
    }

    /// Reads `<directory>/sweep.json`; a file that does not decode, or of another format, is an error naming it.
    public static func read(directory: URL) throws -> SweepSummary {
        let url = directory.appendingPathComponent(fileName)
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw RunDirectoryError.io(path: url.path, reason: "cannot read the sweep: \(MetricsLog.reason(error))")
        }
        let summary: SweepSummary
        do { summary = try JSONDecoder().decode(SweepSummary.self, from: data) } catch {
            throw RunDirectoryError.io(path: url.path, reason: "not a sweep summary: \(Self.describe(error))")
        }
        guard summary.format == currentFormat else {
            throw RunDirectoryError.io(
                path: url.path, reason: "sweep format '\(summary.format)', this vlseg reads '\(currentFormat)'")
        }
        return summary
    }

    /// Writes the file atomically (temporary file and rename: a reader never sees half of it).
    public func write(directory: URL) throws {
        let url = directory.appendingPathComponent(Self.fileName)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        do {
            try (try encoder.encode(self) + Data("\n".utf8)).write(to: url, options: .atomic)
        } catch {
            throw RunDirectoryError.io(path: url.path, reason: "cannot write the sweep: \(MetricsLog.reason(error))")
        }
    }

    /// The trial's run directory resolved against the sweep directory.
    public func runDirectory(of trial: Trial, in directory: URL) -> URL? {
        guard let dir = trial.runDir, !dir.isEmpty else { return nil }
        return dir.hasPrefix("/") ? URL(fileURLWithPath: dir) : directory.appendingPathComponent(dir)
    }

    /// A decoding error in one line: the key path and what was wrong, not Foundation's debug dump.
    static func describe(_ error: Error) -> String {
        func path(_ keys: [CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        }
        switch error {
        case let DecodingError.keyNotFound(key, context):
            return
                "missing key '\(key.stringValue)' at \(path(context.codingPath).isEmpty ? "top level" : path(context.codingPath))"
        case let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context):
            return "\(path(context.codingPath)): \(context.debugDescription)"
        case let DecodingError.dataCorrupted(context):
            let at = path(context.codingPath)
            return (at.isEmpty ? "" : "\(at): ") + context.debugDescription
        default:
            return "\(error)"
        }
    }
}
