import Foundation
import VLTuning

/// What `vlseg sweep` searches and how: the search space (config keys and their distributions), the
/// objective, the trial count, Optuna's sampler and pruner, the storage and the study's name.
///
/// It lives in its own config group, `configs/sweep/<space>.yaml`, chosen with `sweep=<space>` and changed
/// with `sweep.<key>=<value>` on the command line. It is not part of `VLSegConfig`: a trial's run is an
/// ordinary training run whose config holds the sampled values, not the search around it.
public struct SweepConfig: Sendable, Equatable {
    /// The space's name (`coop`) or the file it was read from.
    public var space: String
    public var trials = 20
    public var objective = SweepObjective(metric: "val_loss", direction: .minimize)
    public var sampler = SamplerSettings()
    public var pruner = PrunerSettings()
    /// Optuna storage URL; nil: `sqlite:///<sweep dir>/optuna.db`.
    public var storage: String?
    /// A file holding the storage password (first line), kept out of the URL, the configs and the logs.
    public var storagePasswordFile: String?
    /// The study's name; nil: the experiment's `name`.
    public var study: String?
    /// The sweep directory; nil: `<run.dir>-sweep`.
    public var dir: String?
    public var parameters: [SweepParameter] = []

    public static let group = "sweep"
    /// The metrics a validation record holds (`metrics.jsonl`, kind `val`).
    public static let metrics = ["val_loss", "val_dice", "val_iou", "val_dice_pooled", "val_iou_pooled"]

    public init(space: String) { self.space = space }
}

public struct SweepObjective: Sendable, Equatable, Codable {
    public enum Direction: String, Sendable, Codable { case minimize, maximize }
    public var metric: String
    public var direction: Direction

    public init(metric: String, direction: Direction) {
        self.metric = metric
        self.direction = direction
    }

    /// Whether `a` is better than `b` in this direction.
    public func better(_ a: Double, than b: Double) -> Bool { direction == .minimize ? a < b : a > b }
}

/// Optuna's TPESampler settings (the papers' sampler).
public struct SamplerSettings: Sendable, Equatable, Codable {
    public var seed = 12345
    public var multivariate = true
    public var startupTrials = 10

    enum CodingKeys: String, CodingKey { case seed, multivariate, startupTrials = "n_startup_trials" }
}

/// Optuna's pruner: none, or MedianPruner.
public struct PrunerSettings: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable { case none, median }
    public var kind = Kind.none
    public var startupTrials = 2
    public var warmupSteps = 0

    enum CodingKeys: String, CodingKey { case kind, startupTrials = "n_startup_trials", warmupSteps = "n_warmup_steps" }
}

/// One searched key and the distribution Optuna samples it from.
public struct SweepParameter: Sendable, Equatable {
    public var key: String
    public var distribution: SweepDistribution
    public var source: ConfigSource

    public init(key: String, distribution: SweepDistribution, source: ConfigSource) {
        self.key = key
        self.distribution = distribution
        self.source = source
    }
}

/// Optuna's distributions: FloatDistribution, IntDistribution, CategoricalDistribution.
public enum SweepDistribution: Sendable, Equatable {
    case float(low: Double, high: Double, log: Bool, step: Double?)
    case int(low: Int, high: Int, log: Bool, step: Int)
    case categorical([ConfigValue])

    /// The values the validation resolves the config with: both ends of a range, every choice.
    public var probes: [ConfigValue] {
        switch self {
        case let .float(low, high, _, _): return [.double(low), .double(high)]
        case let .int(low, high, _, _): return [.int(low), .int(high)]
        case let .categorical(choices): return choices
        }
    }

    /// As the driver script reads it (JSON).
    public var json: [String: Any] {
        switch self {
        case let .float(low, high, log, step):
            var d: [String: Any] = ["type": "float", "low": low, "high": high, "log": log]
            if let step { d["step"] = step }
            return d
        case let .int(low, high, log, step):
            return ["type": "int", "low": low, "high": high, "log": log, "step": step]
        case let .categorical(choices):
            return ["type": "categorical", "choices": choices.map(\.jsonObject)]
        }
    }

    public var summary: String {
        switch self {
        case let .float(low, high, log, step):
            return "float [\(ConfigValue.format(low)), \(ConfigValue.format(high))]\(log ? " log" : "")"
                + (step.map { " step \(ConfigValue.format($0))" } ?? "")
        case let .int(low, high, log, step):
            return "int [\(low), \(high)]\(log ? " log" : "")\(step == 1 ? "" : " step \(step)")"
        case let .categorical(choices): return "one of [\(choices.map(\.description).joined(separator: ", "))]"
        }
    }
}

extension ConfigValue {
    /// The value as `JSONSerialization` takes it.
    public var jsonObject: Any {
        switch self {
        case let .string(s): return s
        case let .int(i): return i
        case let .double(d): return d
        case let .bool(b): return b
        case let .list(items): return items.map(\.jsonObject)
        case .null: return NSNull()
        }
    }

    /// A value Optuna returned, typed by the distribution it was sampled from (JSON does not say
    /// whether `3.0` was a float).
    public func typed(by distribution: SweepDistribution) -> ConfigValue {
        switch distribution {
        case .float: return doubleValue.map { .double($0) } ?? self
        case .int: return doubleValue.map { .int(Int($0.rounded())) } ?? self
        case .categorical: return self
        }
    }

    /// The value as the text of a command-line override (`trainer.lr=0.00123`, `tuning.init='a b'`).
    public var overrideText: String {
        switch self {
        case let .double(d):
            // Shortest text that reads back as the same double, and always reads as a number.
            let t = "\(d)"
            return t.contains(".") || t.contains("e") || t.contains("n") ? t : t + ".0"
        case let .string(s):
            return ConfigYAMLWriter.quoteIfNeeded(s, isString: true)
        default: return description
        }
    }
}
