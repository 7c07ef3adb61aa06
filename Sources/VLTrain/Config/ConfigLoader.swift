import Foundation
import VLTuning

/// The outcome of resolving a configuration: the typed config, its canonical YAML, where every value came
/// from, and a stable hash.
public struct ResolvedConfig: Sendable {
    /// The typed configuration (paths with `~` expanded).
    public var config: VLSegConfig
    /// The canonical YAML of `config` (what `--print-config` prints and the run directory keeps).
    public var yaml: String
    /// Source of every leaf, by dotted key path (`trainer.lr` -> `configs/trainer/vlsm_adapter.yaml:7`).
    public var sources: [String: ConfigSource]
    /// The option chosen in each config group (`tuning` -> `vlsm_dense_vl`).
    public var choices: [String: String]
    /// The canonical tree of `config`, every leaf carrying its source.
    public var tree: ConfigNode

    /// SHA-256 (hex) of the canonical YAML: equal configs hash equal, whatever files, order, number
    /// spelling (`1e-3` or `0.001`) or overrides produced them.
    public var configHash: String { ConfigSHA256.hex(yaml) }

    /// Keys that change how a run executes but not what it computes: left out of `trainingHash`.
    public static let runtimeOnlyKeys = [
        "name", "run", "resume", "data.workers", "data.eval_batch_size", "trainer.threads", "trainer.log_every",
        "trainer.max_steps", "trainer.max_epochs", "trainer.keep_last", "trainer.checkpoint_every",
        "trainer.stop_grace_s", "comm",
        "trainer.seeds", "trainer.test",
    ]

    /// Hash of the settings that determine the training trajectory (everything but `runtimeOnlyKeys`):
    /// a checkpoint resumed under a different `trainingHash` continues a different experiment.
    public var trainingHash: String { hash(excluding: ResolvedConfig.runtimeOnlyKeys) }

    /// SHA-256 (hex) of the canonical YAML without the given keys (dotted paths; a section removes all of it).
    public func hash(excluding paths: [String]) -> String {
        var t = tree
        for p in paths { t = ResolvedConfig.removing(p.split(separator: ".").map(String.init), from: t) }
        return ConfigSHA256.hex(ConfigYAMLWriter.write(t))
    }

    /// The canonical YAML with each value's source as a trailing comment.
    public var annotatedYAML: String { ConfigYAMLWriter.write(tree, annotate: true) }

    /// The resolved value at a dotted key path (`model.path`) as text: a scalar as written, `null`, or
    /// a section as YAML; nil when the key does not exist. For scripts (`vlseg config show --key`).
    public func text(at key: String) -> String? {
        guard let node = tree.node(at: key.split(separator: ".").map(String.init)) else { return nil }
        if let text = node.scalarText { return text }
        if node.isNull { return "null" }
        // A list prints in flow style, as inside `config show` (the block writer only writes maps).
        if case .list = node.value { return ConfigYAMLWriter.inline(node) }
        return ConfigYAMLWriter.write(node)
    }

    /// One setting that differs between two configurations, as canonical YAML text (nil: absent).
    public struct Change: Equatable, Sendable {
        public var key: String
        public var old: String?
        public var new: String?
    }

    /// The training settings (all but `runtimeOnlyKeys`) that differ from `old` YAML (a checkpoint's
    /// `config.yaml`) to `new`, by dotted key in `new`'s order, then keys only `old` has.
    public static func trainingChanges(from old: String, to new: String) throws -> [Change] {
        func leaves(_ yaml: String, _ name: String) throws -> [(path: String, text: String)] {
            var tree = try ConfigYAML.parse(yaml, source: .file(name))
            for p in runtimeOnlyKeys { tree = removing(p.split(separator: ".").map(String.init), from: tree) }
            return tree.leaves().map { ($0.path, ConfigYAMLWriter.inline($0.node)) }
        }
        let before = try leaves(old, "the checkpoint's config.yaml"),
            after = try leaves(new, "this run's configuration")
        let oldByKey = Dictionary(before, uniquingKeysWith: { a, _ in a })
        let newKeys = Set(after.map(\.path))
        var changes: [Change] = []
        for (key, text) in after where oldByKey[key] != text {
            changes.append(Change(key: key, old: oldByKey[key], new: text))
        }
        for (key, text) in before where !newKeys.contains(key) { changes.append(Change(key: key, old: text, new: nil)) }
        return changes
    }

    private static func removing(_ path: [String], from node: ConfigNode) -> ConfigNode {
        guard let first = path.first else { return node }
        var n = node
        if path.count == 1 {
            n.remove(first)
        } else if let child = n[first] {
            n.set(first, removing(Array(path.dropFirst()), from: child))
        }
        return n
    }
}

/// Composes `configs/` Hydra-style and applies command-line overrides.
///
/// - `configs/config.yaml` holds a `defaults:` list (`- model: clipseg_rd64_refined`, `- tuning: decoder`,
///   ..., `- experiment: null`, `- _self_`) and top-level values. Each entry names an option of a group: the
///   file `configs/<group>/<option>.yaml`, whose content goes under the group's key (`model:`), except for
///   `experiment`, whose content is global. `_self_` marks where the file's own values merge (at the end
///   when absent).
/// - An experiment file may have its own `defaults:` list that changes the other groups' options
///   (`- tuning: vlsm_dense_vl`, Hydra's `- override /tuning: vlsm_dense_vl` also works); its values
///   merge after the groups, so it can override any of them.
/// - A group file may name a base option of its own group in its `defaults:` (`- vlsm_dense`).
/// - Overrides: `group=option` (`tuning=coop`, `experiment=demo`) changes a choice and wins over
///   the experiment's; `a.b.c=value` (`trainer.lr=3e-4`, `data.prompt=[p1,p2]`) sets one value after
///   composition. Values are YAML (`[a, b]` is a list, `null` is null).
/// - `${a.b}` in a string is replaced by that key's value; `${oc.env:NAME,default}` by an environment
///   variable.
/// - The result is checked against `VLSegConfig`: an unknown key or a wrong type is an error naming the key,
///   the file or override it came from, and the nearest valid key.
public struct ConfigLoader: Sendable {
    public let configDir: URL
    public let registry: TuningMethodRegistry
    /// Environment for `${oc.env:...}` (the process environment by default).
    public var environment: [String: String]

    public static let primaryName = "config.yaml"
    /// The group whose options are global (their keys are not put under the group's name).
    public static let globalGroups: Set<String> = ["experiment"]

    public init(
        configDir: URL, registry: TuningMethodRegistry = .shared,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        self.configDir = configDir.standardizedFileURL
        self.registry = registry
        self.environment = environment
    }

    /// A loader for `--config-dir` when given, else the `configs/` directory found by `findConfigDirectory`.
    public init(configDir path: String?, registry: TuningMethodRegistry = .shared) throws {
        self.init(configDir: try ConfigLoader.findConfigDirectory(explicit: path), registry: registry)
    }

    // MARK: Finding configs/

    /// `explicit` if given (it must hold `config.yaml`); else `$VLSEG_CONFIG_DIR`; else the first
    /// `configs/config.yaml` found walking up from the current directory, then from the executable's
    /// directory (a binary in `.build/release/` finds its checkout's `configs/`).
    public static func findConfigDirectory(
        explicit: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        currentDirectory: String = FileManager.default.currentDirectoryPath,
        executable: URL? = Bundle.main.executableURL
    ) throws -> URL {
        let fm = FileManager.default
        if let explicit, !explicit.isEmpty {
            let url = URL(fileURLWithPath: VLSegConfig.expandHome(explicit))
            guard fm.fileExists(atPath: url.appendingPathComponent(primaryName).path) else {
                throw ConfigError(.noConfigDirectory, message: "--config-dir \(explicit): no \(primaryName) there")
            }
            return url
        }
        if let env = environment["VLSEG_CONFIG_DIR"], !env.isEmpty {
            let url = URL(fileURLWithPath: env)
            guard fm.fileExists(atPath: url.appendingPathComponent(primaryName).path) else {
                throw ConfigError(.noConfigDirectory, message: "VLSEG_CONFIG_DIR=\(env): no \(primaryName) there")
            }
            return url
        }
        var starts = [URL(fileURLWithPath: currentDirectory)]
        if let exe = executable?.resolvingSymlinksInPath() { starts.append(exe.deletingLastPathComponent()) }
        for start in starts {
            var dir = start.standardizedFileURL
            while true {
                let candidate = dir.appendingPathComponent("configs")
                if fm.fileExists(atPath: candidate.appendingPathComponent(primaryName).path) { return candidate }
                let parent = dir.deletingLastPathComponent()
                if parent.path == dir.path { break }
                dir = parent
            }
        }
        throw ConfigError(
            .noConfigDirectory,
            message:
                "no configs/\(primaryName) found above \(currentDirectory) or the vlseg executable; pass --config-dir DIR"
        )
    }

    // MARK: Groups

    /// Sub-directories of `configs/` that are not part of a run's config: `sweep/` holds search spaces,
    /// read by `vlseg sweep` (`SweepConfigReader`).
    public static let separateGroups: Set<String> = ["sweep"]

    /// Config groups: the sub-directories of `configs/` that hold YAML files.
    public func groups() -> [String] {
        let fm = FileManager.default
        let items = (try? fm.contentsOfDirectory(atPath: configDir.path)) ?? []
        return items.filter { name in
            var isDir: ObjCBool = false
            return fm.fileExists(atPath: configDir.appendingPathComponent(name).path, isDirectory: &isDir)
                && isDir.boolValue
                && !name.hasPrefix(".") && !ConfigLoader.separateGroups.contains(name)
        }.sorted()
    }

    /// The options of a group (file names without `.yaml`, sub-directories as `dir/name`), sorted.
    public func options(of group: String) -> [String] {
        let root = configDir.appendingPathComponent(group)
        guard let e = FileManager.default.enumerator(atPath: root.path) else { return [] }
        var out: [String] = []
        while let rel = e.nextObject() as? String {
            if rel.hasSuffix(".yaml") { out.append(String(rel.dropLast(5))) }
        }
        return out.sorted()
    }

    // MARK: Loading

    /// Composes the configuration with these overrides, checks it and returns it typed.
    public func load(overrides: [String] = []) throws -> ResolvedConfig {
        let parsed = try parseOverrides(overrides)
        var (tree, choices) = try compose(choiceOverrides: parsed.choices)
        for o in parsed.values {
            try ConfigLoader.set(o.path, o.value, in: &tree, text: o.text)
        }
        return try resolve(tree, choices: choices)
    }

    /// Reads a resolved config written earlier (a run's `config.yaml`): no composition, the same checks.
    public static func decode(
        yaml text: String, source: String, registry: TuningMethodRegistry = .shared,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> ResolvedConfig {
        let tree = try ConfigYAML.parse(text, source: .file(source))
        let loader = ConfigLoader(configDir: URL(fileURLWithPath: "/"), registry: registry, environment: environment)
        return try loader.resolve(tree, choices: [:])
    }

    /// Overlays a composed tree on the built-in defaults, resolves interpolations, decodes and checks.
    func resolve(_ composed: ConfigNode, choices: [String: String]) throws -> ResolvedConfig {
        let defaults = try ConfigNodeEncoding.encode(VLSegConfig())
        var tree = try ConfigLoader.overlay(defaults, composed, path: [])
        tree = try Interpolator(root: tree, environment: environment).resolveAll()
        let decoder = ConfigNodeDecoder(node: tree, codingPath: [], userInfo: [TuningConfig.registryKey: registry])
        let config = try decoder.decode(VLSegConfig.self).expandingHome(
            environment["HOME"].flatMap { $0.isEmpty ? nil : $0 })
        var sources: [String: ConfigSource] = [:]
        for leaf in tree.leaves() { sources[leaf.path] = leaf.node.source }
        if let problem = config.problems().first {
            throw ConfigError(
                .invalidValue, path: problem.path, message: problem.message, source: sources[problem.path])
        }
        var canonical = try ConfigNodeEncoding.encode(config)
        canonical = ConfigLoader.attachSources(canonical, sources: sources, path: "")
        let yaml = ConfigYAMLWriter.write(canonical)
        return ResolvedConfig(config: config, yaml: yaml, sources: sources, choices: choices, tree: canonical)
    }

    private static func attachSources(_ node: ConfigNode, sources: [String: ConfigSource], path: String) -> ConfigNode {
        var n = node
        n.source =
            sources[path]
            ?? (path.hasPrefix("tuning.") ? ConfigSource(.interpolated("the tuning method's defaults")) : .builtin)
        if case let .map(pairs) = node.value {
            n.value = .map(
                pairs.map {
                    (
                        key: $0.key,
                        node: attachSources(
                            $0.node, sources: sources, path: path.isEmpty ? $0.key : "\(path).\($0.key)")
                    )
                })
        }
        return n
    }

    // MARK: Overrides

    struct ValueOverride {
        var path: [String]
        var value: ConfigNode
        var text: String
    }

    struct ChoiceOverride {
        var group: String
        var option: String?
        var text: String
    }

    /// `sweep_best=FILE` stands for the overrides a sweep wrote for its best trial (`best.yaml`: a
    /// mapping of override keys to values), expanded in place so later overrides still win.
    public static let sweepBestKey = "sweep_best"

    func expandingSweepBest(_ args: [String]) throws -> [String] {
        var out: [String] = []
        for raw in args {
            let text = String(raw.drop { $0 == "+" })
            guard text.hasPrefix(ConfigLoader.sweepBestKey + "=") else {
                out.append(raw)
                continue
            }
            let path = VLSegConfig.expandHome(String(text.dropFirst(ConfigLoader.sweepBestKey.count + 1)))
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ConfigError(.missingFile, message: "override '\(raw)': cannot read \(path)")
            }
            let node = try ConfigYAML.parse(String(decoding: data, as: UTF8.self), source: .file(path))
            guard let pairs = node.pairs else {
                throw ConfigError(
                    .parse, message: "a sweep's best-trial file is a mapping of override keys to values",
                    source: node.source)
            }
            for (key, value) in pairs { out.append("\(key)=\(ConfigYAMLWriter.inline(value))") }
        }
        return out
    }

    func parseOverrides(_ givenArgs: [String]) throws -> (choices: [ChoiceOverride], values: [ValueOverride]) {
        var choices: [ChoiceOverride] = [], values: [ValueOverride] = []
        let groups = Set(self.groups())
        let args = try expandingSweepBest(givenArgs)
        for raw in args {
            var text = raw
            while text.hasPrefix("+") { text.removeFirst() }
            guard let eq = text.firstIndex(of: "=") else {
                throw ConfigError(
                    .badOverride,
                    message: "override '\(raw)': expected key=value (trainer.lr=3e-4) or group=option (tuning=coop)")
            }
            let key = String(text[..<eq]).trimmingCharacters(in: .whitespaces)
            let valueText = String(text[text.index(after: eq)...])
            let source = ConfigSource.override(raw)
            let path = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard !key.isEmpty,
                path.allSatisfy({
                    !$0.isEmpty && $0.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }
                })
            else {
                throw ConfigError(
                    .badOverride,
                    message:
                        "override '\(raw)': '\(key)' is not a key path (letters, digits, _ and - separated by dots)")
            }
            if path.count == 1, groups.contains(key) {
                let option = valueText.trimmingCharacters(in: .whitespaces)
                choices.append(
                    ChoiceOverride(group: key, option: ConfigYAML.isNullLiteral(option) ? nil : option, text: raw))
            } else {
                values.append(
                    ValueOverride(path: path, value: ConfigYAML.parseValue(valueText, source: source), text: raw))
            }
        }
        return (choices, values)
    }

    static func set(_ path: [String], _ value: ConfigNode, in tree: inout ConfigNode, text: String) throws {
        guard let first = path.first else { return }
        if path.count == 1 {
            tree.set(first, value)
            return
        }
        var child = tree[first] ?? .map(source: value.source)
        if child.isNull { child = .map(source: value.source) }
        guard child.isMap else {
            throw ConfigError(
                .badOverride,
                message: "override '\(text)': \(first) holds a value, not a section, so it has no key \(path[1])",
                source: child.source)
        }
        try set(Array(path.dropFirst()), value, in: &child, text: text)
        tree.set(first, child)
    }

    // MARK: Composition

    enum DefaultsEntry: Equatable {
        case selfEntry
        case group(String)
    }

    struct Choice {
        var option: String?
        var source: ConfigSource
    }

    func readFile(_ url: URL) throws -> ConfigNode {
        let display = displayPath(url)
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ConfigError(.missingFile, message: "cannot read \(display)")
        }
        let text = String(decoding: data, as: UTF8.self)
        let node = try ConfigYAML.parse(text, source: .file(display))
        guard node.isMap || node.isNull else {
            throw ConfigError(.parse, message: "expected a mapping at the top of the file", source: node.source)
        }
        return node.isNull ? .map(source: node.source) : node
    }

    /// `configs/...` relative to the config directory's parent, so messages stay short and stable.
    func displayPath(_ url: URL) -> String {
        let base = configDir.deletingLastPathComponent().path
        let p = url.standardizedFileURL.path
        if p.hasPrefix(base + "/") { return String(p.dropFirst(base.count + 1)) }
        return p
    }

    /// Splits a file into its `defaults:` entries and the rest.
    func splitDefaults(_ node: ConfigNode) throws -> (
        defaults: [(entry: ConfigNode, key: String?, value: ConfigNode?)], body: ConfigNode
    ) {
        var body = node
        guard let d = node["defaults"] else { return ([], body) }
        body.remove("defaults")
        guard case let .list(items) = d.value else {
            throw ConfigError(
                .composition, path: "defaults",
                message: "expected a list (- model: clipseg_rd64_refined, - _self_, ...)", source: d.source)
        }
        var out: [(ConfigNode, String?, ConfigNode?)] = []
        for item in items {
            switch item.value {
            case .scalar: out.append((item, nil, nil))
            case let .map(pairs) where pairs.count == 1: out.append((item, pairs[0].key, pairs[0].node))
            default:
                throw ConfigError(
                    .composition, path: "defaults",
                    message: "each entry is '_self_' or 'group: option', found \(ConfigYAMLWriter.inline(item))",
                    source: item.source)
            }
        }
        return (out, body)
    }

    /// `override /model`, `/model`, `optional model` -> `model`.
    static func groupName(_ key: String) -> String {
        var k = key.trimmingCharacters(in: .whitespaces)
        for prefix in ["override ", "optional "] where k.hasPrefix(prefix) {
            k = String(k.dropFirst(prefix.count)).trimmingCharacters(in: .whitespaces)
        }
        while k.hasPrefix("/") { k.removeFirst() }
        return k
    }

    func optionNotFound(_ group: String, _ option: String, source: ConfigSource) -> ConfigError {
        let available = options(of: group)
        // Options in sub-directories are listed for the directory asked for, else summarised as `dir/...`.
        var listed: [String] = []
        let dir = option.contains("/") ? String(option[..<option.lastIndex(of: "/")!]) + "/" : nil
        if let dir, available.contains(where: { $0.hasPrefix(dir) }) {
            listed = available.filter { $0.hasPrefix(dir) }
        } else {
            for o in available {
                let entry = o.contains("/") ? String(o[..<o.firstIndex(of: "/")!]) + "/..." : o
                if !listed.contains(entry) { listed.append(entry) }
            }
        }
        return ConfigError(
            .unknownGroupOption,
            message:
                "no option '\(option)' in config group '\(group)' (configs/\(group)/); available: \(listed.joined(separator: ", "))",
            source: source, suggestion: ConfigSuggest.nearest(option, in: available))
    }

    func groupFile(_ group: String, _ option: String, source: ConfigSource) throws -> URL {
        let groups = self.groups()
        guard groups.contains(group) else {
            throw ConfigError(
                .unknownGroup, message: "no config group '\(group)'; groups: \(groups.joined(separator: ", "))",
                source: source, suggestion: ConfigSuggest.nearest(group, in: groups))
        }
        guard !option.contains(".."), !option.hasPrefix("/") else {
            throw optionNotFound(group, option, source: source)
        }
        let url = configDir.appendingPathComponent(group).appendingPathComponent(option + ".yaml")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw optionNotFound(group, option, source: source)
        }
        return url
    }

    /// A group option's content, with the bases named in its own `defaults:` merged first.
    func loadGroupOption(_ group: String, _ option: String, source: ConfigSource, chain: [String] = []) throws -> (
        body: ConfigNode, global: Bool
    ) {
        guard !chain.contains(option) else {
            throw ConfigError(
                .composition,
                message:
                    "config group '\(group)': options include each other in a cycle: \((chain + [option]).joined(separator: " -> "))",
                source: source)
        }
        let url = try groupFile(group, option, source: source)
        let text = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
        let global = text.split(separator: "\n").prefix(5).contains {
            $0.replacingOccurrences(of: " ", with: "") == "#@package_global_"
        }
        let (defaults, body) = try splitDefaults(try readFile(url))
        var result = ConfigNode.map(source: body.source)
        var selfMerged = false
        for (entry, key, _) in defaults {
            if key != nil {
                throw ConfigError(
                    .composition, path: "defaults",
                    message:
                        "a \(group) option may only name other \(group) options as bases; set other groups in configs/config.yaml or an experiment",
                    source: entry.source)
            }
            let name = entry.scalarText ?? ""
            if name == "_self_" {
                result = result.merged(with: body)
                selfMerged = true
            } else {
                let base = try loadGroupOption(group, name, source: entry.source, chain: chain + [option])
                result = result.merged(with: base.body)
            }
        }
        if !selfMerged { result = result.merged(with: body) }
        if group == "tuning", result["method"] == nil {
            result.set("method", ConfigNode(.scalar(option, isString: true), source: .file(displayPath(url))))
        }
        return (result, global || ConfigLoader.globalGroups.contains(group))
    }

    func compose(choiceOverrides: [ChoiceOverride]) throws -> (tree: ConfigNode, choices: [String: String]) {
        let primaryURL = configDir.appendingPathComponent(ConfigLoader.primaryName)
        let (primaryDefaults, primaryBody) = try splitDefaults(try readFile(primaryURL))

        var entries: [DefaultsEntry] = []
        var choices: [String: Choice] = [:]
        for (entry, key, value) in primaryDefaults {
            if let key {
                let group = ConfigLoader.groupName(key)
                guard !entries.contains(.group(group)) else {
                    throw ConfigError(
                        .composition, path: "defaults", message: "group '\(group)' is listed twice",
                        source: entry.source)
                }
                entries.append(.group(group))
                let option: String? = value.flatMap { $0.isNull ? nil : $0.scalarText }
                choices[group] = Choice(option: option, source: value?.source ?? entry.source)
            } else if entry.scalarText == "_self_" {
                entries.append(.selfEntry)
            } else {
                throw ConfigError(
                    .composition, path: "defaults",
                    message:
                        "entries of the primary config are '_self_' or 'group: option', found '\(entry.scalarText ?? "")'",
                    source: entry.source)
            }
        }
        if !entries.contains(.selfEntry) { entries.append(.selfEntry) }

        func addGroupEntry(_ group: String) {
            guard !entries.contains(.group(group)) else { return }
            if let i = entries.firstIndex(of: .group("experiment")) {
                entries.insert(.group(group), at: i)
            } else {
                entries.append(.group(group))
            }
        }

        // Command-line choices first (they win over the experiment's).
        var fromCommandLine = Set<String>()
        for c in choiceOverrides {
            _ = try c.option.map { try groupFile(c.group, $0, source: .override(c.text)) }
            choices[c.group] = Choice(option: c.option, source: .override(c.text))
            fromCommandLine.insert(c.group)
            addGroupEntry(c.group)
        }

        // The experiment may change the other groups' choices.
        var experimentBody: ConfigNode?
        if let exp = choices["experiment"], let option = exp.option {
            let url = try groupFile("experiment", option, source: exp.source)
            let (expDefaults, body) = try splitDefaults(try readFile(url))
            experimentBody = body
            for (entry, key, value) in expDefaults {
                guard let key else {
                    if entry.scalarText == "_self_" { continue }
                    throw ConfigError(
                        .composition, path: "defaults",
                        message: "entries of an experiment are '_self_' or 'group: option'",
                        source: entry.source)
                }
                let group = ConfigLoader.groupName(key)
                guard group != "experiment" else {
                    throw ConfigError(
                        .composition, path: "defaults", message: "an experiment cannot select another experiment",
                        source: entry.source)
                }
                let option: String? = value.flatMap { $0.isNull ? nil : $0.scalarText }
                if let option { _ = try groupFile(group, option, source: value?.source ?? entry.source) }
                if fromCommandLine.contains(group) { continue }
                choices[group] = Choice(option: option, source: value?.source ?? entry.source)
                addGroupEntry(group)
            }
        }

        var tree = ConfigNode.map(source: primaryBody.source)
        for entry in entries {
            switch entry {
            case .selfEntry:
                tree = tree.merged(with: primaryBody)
            case let .group(group):
                guard let choice = choices[group], let option = choice.option else { continue }
                if group == "experiment" {
                    if let experimentBody { tree = tree.merged(with: experimentBody) }
                    continue
                }
                let (body, global) = try loadGroupOption(group, option, source: choice.source)
                if global {
                    tree = tree.merged(with: body)
                } else {
                    var wrapper = ConfigNode.map(source: body.source)
                    wrapper.set(group, body)
                    tree = tree.merged(with: wrapper)
                }
            }
        }
        var chosen: [String: String] = [:]
        for (g, c) in choices { if let o = c.option { chosen[g] = o } }
        return (tree, chosen)
    }

    // MARK: Overlay on the typed defaults (unknown keys)

    /// Sections whose keys are the user's to choose: the method's options (checked against its schema
    /// later) and `data.splits` (split names). Their values are still type-checked when decoded.
    static let freeFormSections: [[String]] = [["tuning"], ["data", "splits"]]

    /// Puts `user` over `base` (the built-in defaults), refusing keys that `base` does not have.
    static func overlay(_ base: ConfigNode, _ user: ConfigNode, path: [String]) throws -> ConfigNode {
        if freeFormSections.contains(path) { return user }
        guard case let .map(basePairs) = base.value, case let .map(userPairs) = user.value else { return user }
        var result = base
        for (key, child) in userPairs {
            if let existing = basePairs.first(where: { $0.key == key })?.node {
                result.set(key, try overlay(existing, child, path: path + [key]))
            } else {
                throw unknownKey(key, at: path, source: child.source, root: base, siblings: basePairs.map(\.key))
            }
        }
        return result
    }

    private static func unknownKey(
        _ key: String, at path: [String], source: ConfigSource, root: ConfigNode, siblings: [String]
    ) -> ConfigError {
        let full = (path + [key]).joined(separator: ".")
        let prefix = path.isEmpty ? "" : path.joined(separator: ".") + "."
        var suggestion = ConfigSuggest.nearest(key, in: siblings).map { prefix + $0 }
        if suggestion == nil {
            // The key exists in another section (`lr` at the top level -> `trainer.lr`).
            let defaults = (try? ConfigNodeEncoding.encode(VLSegConfig())) ?? root
            let elsewhere = defaults.allPaths().filter { $0.split(separator: ".").last.map(String.init) == key }
            suggestion = elsewhere.first
        }
        let where_ = path.isEmpty ? "at the top level" : "in section \(path.joined(separator: "."))"
        let known = siblings.joined(separator: ", ")
        return ConfigError(
            .unknownKey, path: full, message: "unknown key \(where_) (known: \(known))", source: source,
            suggestion: suggestion)
    }
}

// MARK: - Interpolation

/// Resolves `${a.b}` (another key's value) and `${oc.env:NAME,default}` (an environment variable) in
/// string values. A value that is exactly one `${a.b}` takes the referenced value whole (a list stays a list).
struct Interpolator {
    let root: ConfigNode
    let environment: [String: String]

    func resolveAll() throws -> ConfigNode {
        try resolve(root, path: [], stack: [])
    }

    private func resolve(_ node: ConfigNode, path: [String], stack: [String]) throws -> ConfigNode {
        switch node.value {
        case let .scalar(text, isString) where text.contains("${"):
            let here = path.joined(separator: ".")
            guard !stack.contains(here) else {
                throw ConfigError(
                    .interpolation, path: here,
                    message: "interpolation cycle: \((stack + [here]).joined(separator: " -> "))",
                    source: node.source)
            }
            let parts = try parse(text, path: here, source: node.source)
            if parts.count == 1, case let .ref(expr) = parts[0] {
                var n = try lookup(expr, path: here, source: node.source, stack: stack + [here])
                n.source = node.source
                return n
            }
            var out = ""
            for part in parts {
                switch part {
                case let .literal(s): out += s
                case let .ref(expr):
                    let n = try lookup(expr, path: here, source: node.source, stack: stack + [here])
                    switch n.value {
                    case let .scalar(t, _): out += t
                    case .null: out += "null"
                    default:
                        throw ConfigError(
                            .interpolation, path: here,
                            message: "${\(expr)} is a list or section and cannot be part of a string",
                            source: node.source)
                    }
                }
            }
            return ConfigNode(.scalar(out, isString: isString), source: node.source)
        case let .list(items):
            var n = node
            n.value = .list(
                try items.enumerated().map { try resolve($0.element, path: path + ["\($0.offset)"], stack: stack) })
            return n
        case let .map(pairs):
            var n = node
            n.value = .map(
                try pairs.map { (key: $0.key, node: try resolve($0.node, path: path + [$0.key], stack: stack)) })
            return n
        default:
            return node
        }
    }

    private enum Part { case literal(String), ref(String) }

    private func parse(_ text: String, path: String, source: ConfigSource) throws -> [Part] {
        var parts: [Part] = []
        var rest = Substring(text)
        while let start = rest.range(of: "${") {
            if start.lowerBound > rest.startIndex { parts.append(.literal(String(rest[..<start.lowerBound]))) }
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                throw ConfigError(.interpolation, path: path, message: "unclosed ${ in '\(text)'", source: source)
            }
            parts.append(.ref(String(rest[start.upperBound..<end]).trimmingCharacters(in: .whitespaces)))
            rest = rest[rest.index(after: end)...]
        }
        if !rest.isEmpty { parts.append(.literal(String(rest))) }
        return parts
    }

    private func lookup(_ expr: String, path: String, source: ConfigSource, stack: [String]) throws -> ConfigNode {
        for prefix in ["oc.env:", "env:"] where expr.hasPrefix(prefix) {
            let spec = expr.dropFirst(prefix.count)
            let name: String, fallback: String?
            if let comma = spec.firstIndex(of: ",") {
                name = String(spec[..<comma]).trimmingCharacters(in: .whitespaces)
                fallback = String(spec[spec.index(after: comma)...]).trimmingCharacters(in: .whitespaces)
            } else {
                name = String(spec).trimmingCharacters(in: .whitespaces)
                fallback = nil
            }
            if let v = environment[name], !v.isEmpty { return ConfigNode(.scalar(v, isString: true), source: source) }
            if let fallback {
                let stripped = fallback.trimmingCharacters(in: CharacterSet(charactersIn: "'\""))
                let inner = ConfigNode(.scalar(stripped, isString: true), source: source)
                return try resolve(inner, path: path.split(separator: ".").map(String.init), stack: stack)
            }
            throw ConfigError(
                .interpolation, path: path,
                message: "environment variable \(name) is not set (give a default: ${oc.env:\(name),VALUE})",
                source: source)
        }
        let target = expr.split(separator: ".").map(String.init)
        guard let node = root.node(at: target) else {
            let candidates = root.allPaths()
            throw ConfigError(
                .interpolation, path: path, message: "${\(expr)} names no key", source: source,
                suggestion: ConfigSuggest.nearest(expr, in: candidates))
        }
        return try resolve(node, path: target, stack: stack)
    }
}
