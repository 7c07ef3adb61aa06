import Foundation
import VLTuning

/// Reads `configs/sweep/<space>.yaml` (or a YAML file named by path) and the `sweep.<key>=<value>`
/// overrides into a `SweepConfig`. Every mistake is a `ConfigError` naming the key and the file line
/// or override it came from.
public enum SweepConfigReader {
    /// Splits a command line into the sweep's own arguments (`sweep=<space>`, `sweep.<key>=<value>`)
    /// and the training overrides.
    public static func split(_ arguments: [String]) -> (sweep: [String], training: [String]) {
        var sweep: [String] = [], training: [String] = []
        for raw in arguments {
            let text = raw.drop { $0 == "+" }
            if text.hasPrefix("\(SweepConfig.group)=") || text.hasPrefix("\(SweepConfig.group).") {
                sweep.append(raw)
            } else {
                training.append(raw)
            }
        }
        return (sweep, training)
    }

    /// The sweep config: the space chosen by `sweep=<space>` among `arguments` (else `defaultSpace`),
    /// with the `sweep.<key>=<value>` overrides applied.
    public static func read(configDir: URL, arguments: [String], defaultSpace: String) throws -> SweepConfig {
        var space = defaultSpace
        var spaceSource = ConfigSource.builtin
        var values: [(path: [String], value: ConfigNode, text: String)] = []
        for raw in arguments {
            let text = String(raw.drop { $0 == "+" })
            guard let eq = text.firstIndex(of: "=") else { continue }
            let key = String(text[..<eq]), valueText = String(text[text.index(after: eq)...])
            if key == SweepConfig.group {
                space = valueText.trimmingCharacters(in: .whitespaces)
                spaceSource = .override(raw)
            } else {
                let path = key.split(separator: ".", omittingEmptySubsequences: false).dropFirst().map(String.init)
                guard !path.isEmpty, path.allSatisfy({ !$0.isEmpty }) else {
                    throw ConfigError(.badOverride, message: "override '\(raw)': '\(key)' is not a key path")
                }
                values.append((path, ConfigYAML.parseValue(valueText, source: .override(raw)), raw))
            }
        }
        let url = try file(for: space, configDir: configDir, source: spaceSource)
        let display = displayPath(url, configDir: configDir)
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ConfigError(.missingFile, message: "cannot read the sweep space \(display)", source: spaceSource)
        }
        var tree = try ConfigYAML.parse(String(decoding: data, as: UTF8.self), source: .file(display))
        if tree.isNull { tree = .map(source: .file(display)) }
        guard tree.isMap else {
            throw ConfigError(.parse, message: "expected a mapping at the top of the sweep space", source: tree.source)
        }
        for v in values {
            // `pruner: median` is short for `pruner: {kind: median}`: a key under it opens the section.
            if v.path.count > 1, v.path[0] == "pruner", let pruner = tree["pruner"], !pruner.isMap {
                var section = ConfigNode.map(source: pruner.source)
                if !pruner.isNull { section.set("kind", pruner) }
                tree.set("pruner", section)
            }
            try ConfigLoader.set(v.path, v.value, in: &tree, text: v.text)
        }
        return try decode(tree, space: space)
    }

    /// `configs/sweep/<name>.yaml`, or `name` itself when it is a path to a YAML file.
    static func file(for space: String, configDir: URL, source: ConfigSource) throws -> URL {
        if space.hasSuffix(".yaml") || space.hasSuffix(".yml") || space.contains("/") {
            let url = URL(fileURLWithPath: VLSegConfig.expandHome(space))
            if FileManager.default.fileExists(atPath: url.path) { return url }
        }
        let dir = configDir.appendingPathComponent(SweepConfig.group)
        let url = dir.appendingPathComponent(space + ".yaml")
        guard !space.contains(".."), FileManager.default.fileExists(atPath: url.path) else {
            let available =
                ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? [])
                .filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.sorted()
            throw ConfigError(
                .unknownGroupOption,
                message:
                    "no sweep space '\(space)' (configs/sweep/\(space).yaml); available: \(available.joined(separator: ", ")); choose one with sweep=NAME",
                source: source, suggestion: ConfigSuggest.nearest(space, in: available))
        }
        return url
    }

    static func displayPath(_ url: URL, configDir: URL) -> String {
        let base = configDir.deletingLastPathComponent().path
        let p = url.standardizedFileURL.path
        return p.hasPrefix(base + "/") ? String(p.dropFirst(base.count + 1)) : p
    }

    static let knownKeys = [
        "trials", "objective", "sampler", "pruner", "storage", "storage_password_file", "study", "dir", "params",
    ]

    static func decode(_ tree: ConfigNode, space: String) throws -> SweepConfig {
        var c = SweepConfig(space: space)
        for (key, node) in tree.pairs ?? [] {
            let path = "sweep.\(key)"
            switch key {
            case "trials": c.trials = try int(node, path, minimum: 1)
            case "objective":
                for (k, n) in try map(node, path) {
                    switch k {
                    case "metric":
                        let m = try string(n, "\(path).metric")
                        guard SweepConfig.metrics.contains(m) else {
                            throw ConfigError(
                                .invalidValue, path: "\(path).metric",
                                message:
                                    "'\(m)' is not a validation metric (\(SweepConfig.metrics.joined(separator: ", ")))",
                                source: n.source, suggestion: ConfigSuggest.nearest(m, in: SweepConfig.metrics))
                        }
                        c.objective.metric = m
                    case "direction":
                        let d = try string(n, "\(path).direction")
                        guard let dir = SweepObjective.Direction(rawValue: d) else {
                            throw ConfigError(
                                .invalidValue, path: "\(path).direction",
                                message: "expected minimize or maximize, found '\(d)'", source: n.source)
                        }
                        c.objective.direction = dir
                    default: throw unknown(k, in: path, known: ["metric", "direction"], source: n.source)
                    }
                }
            case "sampler":
                for (k, n) in try map(node, path) {
                    switch k {
                    case "seed": c.sampler.seed = try int(n, "\(path).seed", minimum: 0)
                    case "multivariate": c.sampler.multivariate = try bool(n, "\(path).multivariate")
                    case "n_startup_trials":
                        c.sampler.startupTrials = try int(n, "\(path).n_startup_trials", minimum: 0)
                    default:
                        throw unknown(
                            k, in: path, known: ["seed", "multivariate", "n_startup_trials"], source: n.source)
                    }
                }
            case "pruner":
                // `sweep.pruner=median` or a section with `kind` and MedianPruner's settings.
                if let text = node.scalarText {
                    c.pruner.kind = try pruner(text, path, node.source)
                } else if !node.isNull {
                    for (k, n) in try map(node, path) {
                        switch k {
                        case "kind": c.pruner.kind = try pruner(try string(n, "\(path).kind"), "\(path).kind", n.source)
                        case "n_startup_trials":
                            c.pruner.startupTrials = try int(n, "\(path).n_startup_trials", minimum: 0)
                        case "n_warmup_steps": c.pruner.warmupSteps = try int(n, "\(path).n_warmup_steps", minimum: 0)
                        default:
                            throw unknown(
                                k, in: path, known: ["kind", "n_startup_trials", "n_warmup_steps"], source: n.source)
                        }
                    }
                }
            case "storage": c.storage = try optionalString(node, path)
            case "storage_password_file": c.storagePasswordFile = try optionalString(node, path)
            case "study": c.study = try optionalString(node, path)
            case "dir": c.dir = try optionalString(node, path)
            case "params":
                for (k, n) in try map(node, path) { c.parameters.append(try parameter(k, n)) }
            default: throw unknown(key, in: "sweep", known: knownKeys, source: node.source)
            }
        }
        guard !c.parameters.isEmpty else {
            throw ConfigError(
                .invalidValue, path: "sweep.params", message: "the search space names no key to search",
                source: tree.source)
        }
        return c
    }

    /// `trainer.lr: {type: float, low: 1.0e-5, high: 5.0e-3, log: true}`, `{type: int, low: 1, high: 10}`,
    /// `{type: categorical, choices: [32, 64]}`.
    static func parameter(_ key: String, _ node: ConfigNode) throws -> SweepParameter {
        let path = "sweep.params.\(key)"
        let fields = Dictionary(try map(node, path).map { ($0.key, $0.node) }, uniquingKeysWith: { a, _ in a })
        guard let typeNode = fields["type"] else {
            throw ConfigError(
                .invalidValue, path: key, message: "give its type: float, int or categorical", source: node.source)
        }
        let type = try string(typeNode, "\(path).type")
        let allowed: [String]
        let distribution: SweepDistribution
        func number(_ name: String) throws -> Double {
            guard let n = fields[name] else {
                throw ConfigError(
                    .invalidValue, path: key, message: "a \(type) range needs \(name)", source: node.source)
            }
            guard let text = n.scalarText, let x = Double(text), x.isFinite else {
                throw ConfigError(
                    .typeMismatch, path: key, message: "\(name) must be a number, found \(ConfigYAMLWriter.inline(n))",
                    source: n.source)
            }
            return x
        }
        func integer(_ name: String) throws -> Int {
            let x = try number(name)
            guard x == x.rounded(), x.magnitude < 1e15 else {
                throw ConfigError(
                    .typeMismatch, path: key, message: "\(name) of an int range must be an integer, found \(x)",
                    source: fields[name]?.source ?? node.source)
            }
            return Int(x)
        }
        let log = try fields["log"].map { try bool($0, "\(path).log") } ?? false
        switch type {
        case "float":
            allowed = ["type", "low", "high", "log", "step"]
            let low = try number("low"), high = try number("high")
            let step = try fields["step"].map { _ in try number("step") }
            guard low <= high else {
                throw ConfigError(
                    .invalidValue, path: key, message: "low \(low) is above high \(high)", source: node.source)
            }
            if log, low <= 0 {
                throw ConfigError(
                    .invalidValue, path: key,
                    message: "a log range needs a positive low bound, found \(ConfigValue.format(low))",
                    source: fields["low"]?.source ?? node.source)
            }
            if let step, step <= 0 || log {
                throw ConfigError(
                    .invalidValue, path: key,
                    message: log ? "a log range takes no step" : "step must be positive, found \(step)",
                    source: node.source)
            }
            distribution = .float(low: low, high: high, log: log, step: step)
        case "int":
            allowed = ["type", "low", "high", "log", "step"]
            let low = try integer("low"), high = try integer("high")
            let step = fields["step"] == nil ? 1 : try integer("step")
            guard low <= high else {
                throw ConfigError(
                    .invalidValue, path: key, message: "low \(low) is above high \(high)", source: node.source)
            }
            if log, low < 1 {
                throw ConfigError(
                    .invalidValue, path: key, message: "a log range needs a low bound of at least 1, found \(low)",
                    source: fields["low"]?.source ?? node.source)
            }
            guard step >= 1, !(log && step != 1) else {
                throw ConfigError(
                    .invalidValue, path: key,
                    message: log ? "a log range takes no step" : "step must be at least 1, found \(step)",
                    source: node.source)
            }
            distribution = .int(low: low, high: high, log: log, step: step)
        case "categorical":
            allowed = ["type", "choices"]
            guard let choicesNode = fields["choices"], case let .list(items) = choicesNode.value, !items.isEmpty else {
                throw ConfigError(
                    .invalidValue, path: key, message: "a categorical needs a non-empty list: choices: [a, b]",
                    source: node.source)
            }
            distribution = .categorical(try items.map { try scalarValue($0, key: key) })
        default:
            throw ConfigError(
                .invalidValue, path: key, message: "type must be float, int or categorical, found '\(type)'",
                source: typeNode.source)
        }
        if let extra = fields.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw unknown(extra, in: path, known: allowed, source: fields[extra]?.source ?? node.source)
        }
        return SweepParameter(key: key, distribution: distribution, source: node.source)
    }

    /// A categorical choice: a number, a boolean or a string (Optuna's choices are scalars).
    static func scalarValue(_ node: ConfigNode, key: String) throws -> ConfigValue {
        guard case let .scalar(text, isString) = node.value else {
            throw ConfigError(
                .typeMismatch, path: key,
                message: "categorical choices are numbers, booleans or strings, found \(ConfigYAMLWriter.inline(node))",
                source: node.source)
        }
        if isString { return .string(text) }
        if let i = Int(text) { return .int(i) }
        if let d = Double(text) { return .double(d) }
        if ["true", "True", "TRUE"].contains(text) { return .bool(true) }
        if ["false", "False", "FALSE"].contains(text) { return .bool(false) }
        return .string(text)
    }

    static func map(_ node: ConfigNode, _ path: String) throws -> [(key: String, node: ConfigNode)] {
        guard let pairs = node.pairs else {
            throw ConfigError(
                .typeMismatch, path: path, message: "expected a section, found \(ConfigYAMLWriter.inline(node))",
                source: node.source)
        }
        return pairs
    }

    static func string(_ node: ConfigNode, _ path: String) throws -> String {
        guard let text = node.scalarText else {
            throw ConfigError(
                .typeMismatch, path: path, message: "expected a string, found \(ConfigYAMLWriter.inline(node))",
                source: node.source)
        }
        return text
    }

    static func optionalString(_ node: ConfigNode, _ path: String) throws -> String? {
        node.isNull ? nil : try string(node, path)
    }

    static func int(_ node: ConfigNode, _ path: String, minimum: Int) throws -> Int {
        guard let text = node.scalarText, let i = Int(text) else {
            throw ConfigError(
                .typeMismatch, path: path, message: "expected an integer, found \(ConfigYAMLWriter.inline(node))",
                source: node.source)
        }
        guard i >= minimum else {
            throw ConfigError(
                .invalidValue, path: path, message: "must be at least \(minimum), found \(i)", source: node.source)
        }
        return i
    }

    static func bool(_ node: ConfigNode, _ path: String) throws -> Bool {
        switch node.scalarText?.lowercased() {
        case "true": return true
        case "false": return false
        default:
            throw ConfigError(
                .typeMismatch, path: path, message: "expected true or false, found \(ConfigYAMLWriter.inline(node))",
                source: node.source)
        }
    }

    static func pruner(_ text: String, _ path: String, _ source: ConfigSource) throws -> PrunerSettings.Kind {
        guard let kind = PrunerSettings.Kind(rawValue: text) else {
            throw ConfigError(
                .invalidValue, path: path, message: "expected none or median, found '\(text)'", source: source)
        }
        return kind
    }

    static func unknown(_ key: String, in path: String, known: [String], source: ConfigSource) -> ConfigError {
        ConfigError(
            .unknownKey, path: "\(path).\(key)", message: "unknown key (known: \(known.joined(separator: ", ")))",
            source: source, suggestion: ConfigSuggest.nearest(key, in: known).map { "\(path).\($0)" })
    }
}
