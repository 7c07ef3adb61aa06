import Foundation

/// A tuning-method option value (`tuning.KEY`).
public enum ConfigValue: Sendable, Equatable, Hashable, Codable, CustomStringConvertible {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([ConfigValue])

    public var description: String {
        switch self {
        case .null: return "null"
        case let .bool(b): return b ? "true" : "false"
        case let .int(i): return "\(i)"
        case let .double(d): return ConfigNodeEncoding.format(d)
        case let .string(s): return s
        case let .list(l): return "[" + l.map(\.description).joined(separator: ", ") + "]"
        }
    }

    public init(from decoder: Decoder) throws {
        if let d = decoder as? ConfigNodeDecoder {
            self = ConfigValue.infer(d.node)
            return
        }
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int.self) { self = .int(i) }
        else if let x = try? c.decode(Double.self) { self = .double(x) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else { self = .list(try c.decode([ConfigValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case let .bool(b): try c.encode(b)
        case let .int(i): try c.encode(i)
        case let .double(d): try c.encode(d)
        case let .string(s): try c.encode(s)
        case let .list(l): try c.encode(l)
        }
    }

    /// YAML-style inference for a node without a declared type.
    static func infer(_ node: ConfigNode) -> ConfigValue {
        switch node.value {
        case .null: return .null
        case let .list(items): return .list(items.map(infer))
        case .map: return .string(ConfigYAMLWriter.inline(node))
        case let .scalar(t, isString):
            if isString { return .string(t) }
            switch t.lowercased() {
            case "true", "yes", "on": return .bool(true)
            case "false", "no", "off": return .bool(false)
            default: break
            }
            if let i = Int(t) { return .int(i) }
            if let d = Double(t) { return .double(d) }
            return .string(t)
        }
    }
}

/// One option of a tuning method: `tuning.<name>`, its type, default and help.
public struct TuningOption: Sendable {
    public enum Kind: String, Sendable {
        case int, double, bool, string, stringList = "list of strings", intList = "list of integers"
    }

    public var name: String
    public var kind: Kind
    /// The value when the config does not set it (`.null` means "derived from the model by the method").
    public var defaultValue: ConfigValue
    public var help: String
    /// For strings and lists of strings: the values accepted (nil: any).
    public var allowed: [String]?
    /// For numbers: the smallest value accepted.
    public var minimum: Double?
    /// Extra check: returns a message when the value is not acceptable.
    public var check: (@Sendable (ConfigValue) -> String?)?

    public init(_ name: String, _ kind: Kind, default defaultValue: ConfigValue, help: String, allowed: [String]? = nil,
                minimum: Double? = nil, check: (@Sendable (ConfigValue) -> String?)? = nil) {
        self.name = name
        self.kind = kind
        self.defaultValue = defaultValue
        self.help = help
        self.allowed = allowed
        self.minimum = minimum
        self.check = check
    }
}

/// What `tuning=NAME` may hold: the method's name (as written in `tuning.method`), the family that
/// implements it (presets share one: `vlsm_dense_vl` is `vlsm_dense` with `parts: vl`), and its options.
/// Any other key under `tuning` is an error.
public struct TuningMethodSchema: Sendable {
    public var name: String
    public var family: String
    public var summary: String
    public var options: [TuningOption]

    public init(name: String, family: String? = nil, summary: String, options: [TuningOption] = []) {
        self.name = name
        self.family = family ?? name
        self.summary = summary
        self.options = options
    }

    public func option(_ key: String) -> TuningOption? { options.first { $0.name == key } }
}

/// The tuning methods the config accepts, by name. The built-in schemas cover every method of the
/// VLSM-Adapter and TuneVLSeg issues; an implementation can replace a schema (same name) or add one with
/// `register`, before configs are loaded.
// @unchecked Sendable: every access to `schemas` holds `lock`.
public final class TuningMethodRegistry: @unchecked Sendable {
    private let lock = NSLock()
    private var schemas: [String: TuningMethodSchema] = [:]

    /// The registry the loader uses by default, holding the built-in schemas.
    public static let shared = TuningMethodRegistry(builtins: true)

    public init(builtins: Bool = true) {
        if builtins { for s in TuningMethodRegistry.builtinSchemas { schemas[s.name] = s } }
    }

    /// Adds a method, or replaces the one with the same name.
    public func register(_ schema: TuningMethodSchema) {
        lock.lock(); defer { lock.unlock() }
        schemas[schema.name] = schema
    }

    public func schema(named name: String) -> TuningMethodSchema? {
        lock.lock(); defer { lock.unlock() }
        return schemas[name]
    }

    /// Registered names, sorted.
    public var names: [String] {
        lock.lock(); defer { lock.unlock() }
        return schemas.keys.sorted()
    }

    // MARK: Built-in schemas

    static let partsCheck: @Sendable (ConfigValue) -> String? = { v in
        guard case let .string(s) = v else { return "expected a string of v, l, c" }
        let chars = Array(s)
        if chars.isEmpty { return "must name at least one part (v, l, c)" }
        if let bad = chars.first(where: { !"vlc".contains($0) }) { return "unknown part '\(bad)'; parts are v (vision), l (language), c (conditional embedding)" }
        if Set(chars).count != chars.count { return "repeats a part" }
        return nil
    }

    static func adapterOptions(parts: String, bottleneck: Int) -> [TuningOption] {
        [
            TuningOption("parts", .string, default: .string(parts),
                         help: "where adapters go: any of v (vision), l (language), c (conditional embedding), e.g. vl, vlc, vc",
                         check: partsCheck),
            TuningOption("bottleneck", .int, default: .int(bottleneck), help: "adapter bottleneck width", minimum: 1),
            TuningOption("cond_bottleneck", .int, default: .int(256),
                         help: "bottleneck of the conditional-embedding adapter (part c)", minimum: 1),
        ]
    }

    static func promptOptions(depth: Int, initPhrase phrase: String?) -> [TuningOption] {
        var o = [
            TuningOption("depth", .int, default: .int(depth), help: "prompt depth D: layers 0..D-1 get prompts (1 = shallow)", minimum: 1),
            TuningOption("n_ctx", .int, default: .int(4), help: "prompt (context) tokens per layer", minimum: 1),
        ]
        if let phrase {
            o.append(TuningOption("init", .string, default: .string(phrase),
                                  help: "text context initialised from this phrase's token embeddings (its token count sets n_ctx), or none for N(0, 0.02)"))
        }
        return o
    }

    /// CRIS only: TuneVLSeg's deep-prompt indexing (block j+1 gets context row j) instead of the intended one.
    static let crisCompatIndexing = TuningOption("cris_compat_indexing", .bool, default: .bool(false),
                                                 help: "CRIS only: deep prompts as TuneVLSeg indexes them (its published numbers), not the intended rows")

    public static let builtinSchemas: [TuningMethodSchema] = {
        var s: [TuningMethodSchema] = [
            TuningMethodSchema(name: "decoder", summary: "only the decoder side trains (CLIPSeg's decoder; CRIS's neck, decoder and projector)"),
            TuningMethodSchema(name: "full", summary: "every weight trains (the upper bound; the all-reduce carries the whole model)"),
            TuningMethodSchema(name: "zero_shot", summary: "nothing trains: evaluate the pretrained model as it is"),
            TuningMethodSchema(name: "vlsm_shallow", summary: "VLSM-Adapter shallow adapters (on the decoder's taps), parts chosen by tuning.parts",
                               options: adapterOptions(parts: "v", bottleneck: 512)),
            TuningMethodSchema(name: "vlsm_dense", summary: "VLSM-Adapter dense adapters (inside encoder blocks), parts chosen by tuning.parts",
                               options: adapterOptions(parts: "v", bottleneck: 64)),
            TuningMethodSchema(name: "lora", summary: "low-rank updates on chosen linear layers of the towers",
                               options: [
                                   TuningOption("rank", .int, default: .int(8), help: "rank r of the update B A", minimum: 1),
                                   TuningOption("alpha", .double, default: .double(16), help: "scale alpha (the update is multiplied by alpha / rank)", minimum: 0),
                                   TuningOption("targets", .stringList, default: .list([.string("q_proj"), .string("v_proj")]),
                                                help: "linear layers to adapt in each block",
                                                allowed: ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]),
                                   TuningOption("towers", .stringList, default: .list([.string("vision"), .string("text")]),
                                                help: "towers whose blocks get updates", allowed: ["vision", "text"]),
                               ]),
            TuningMethodSchema(name: "coop", summary: "CoOp: learnable text context after BOS (CLIPSeg and CRIS)",
                               options: promptOptions(depth: 1, initPhrase: "none") + [crisCompatIndexing]),
            TuningMethodSchema(name: "cocoop", summary: "CoCoOp: CoOp plus an image-conditioned meta-net per depth (CLIPSeg and CRIS)",
                               options: promptOptions(depth: 1, initPhrase: "none") + [
                                   TuningOption("hidden", .int, default: .int(64), help: "meta-net hidden width", minimum: 1),
                                   crisCompatIndexing,
                               ]),
            TuningMethodSchema(name: "vpt", summary: "VPT: learnable vision prompt tokens after the patch tokens",
                               options: promptOptions(depth: 1, initPhrase: nil)),
            TuningMethodSchema(name: "maple", summary: "MaPLe: text prompts, and vision prompts coupled from them per depth",
                               options: promptOptions(depth: 1, initPhrase: "a photo of a") + [
                                   TuningOption("hidden", .int, default: .int(64), help: "coupling function hidden width", minimum: 1),
                               ]),
            TuningMethodSchema(name: "shared_separate", summary: "one shared low-dimensional prompt projected to text and vision per depth",
                               options: promptOptions(depth: 1, initPhrase: nil) + [
                                   TuningOption("shared_dim", .int, default: .int(64), help: "width of the shared prompt", minimum: 1),
                               ]),
            TuningMethodSchema(name: "shared_attention", summary: "one joint text+vision prompt through a transformer layer across prompt tokens",
                               options: promptOptions(depth: 1, initPhrase: nil) + [
                                   TuningOption("heads", .int, default: .int(16), help: "attention heads of the prompt transformer layer", minimum: 1),
                                   TuningOption("ffn", .int, default: .int(1536), help: "feed-forward width of the prompt transformer layer", minimum: 1),
                               ]),
        ]
        // The papers' presets: same family, fixed defaults.
        for (family, parts, bottleneck) in [("vlsm_shallow", ["v", "vl", "vlc"], 512), ("vlsm_dense", ["v", "vl", "vlc"], 64)] {
            for p in parts {
                s.append(TuningMethodSchema(name: "\(family)_\(p)", family: family,
                                            summary: "VLSM-Adapter \(family == "vlsm_shallow" ? "shallow" : "dense") adapter, parts \(p.uppercased())",
                                            options: adapterOptions(parts: p, bottleneck: bottleneck)))
            }
        }
        s.append(TuningMethodSchema(name: "vpt_shallow", family: "vpt", summary: "VPT with prompts at the input only (depth 1)",
                                    options: promptOptions(depth: 1, initPhrase: nil)))
        s.append(TuningMethodSchema(name: "vpt_deep", family: "vpt", summary: "VPT with deep prompts (depth 10)",
                                    options: promptOptions(depth: 10, initPhrase: nil)))
        return s
    }()
}

/// The resolved `tuning` section: the method and its options (every option of the method's schema,
/// defaults filled in), validated against the registry.
public struct TuningConfig: Sendable, Equatable, Codable {
    /// `tuning.method` as written (a preset name such as `vlsm_dense_vl`, or a family name).
    public var method: String
    /// The family implementing the method (`vlsm_dense` for `vlsm_dense_vl`); equals `method` when the
    /// method is not a preset or is not registered.
    public var family: String
    public var options: [String: ConfigValue]

    public init(method: String, family: String? = nil, options: [String: ConfigValue] = [:]) {
        self.method = method
        self.family = family ?? method
        self.options = options
    }

    public subscript(key: String) -> ConfigValue? { options[key] }

    /// `tuning.KEY` as an integer (nil when the option is null, i.e. derived from the model).
    public func int(_ key: String) throws -> Int? {
        switch try value(key) {
        case .null: return nil
        case let .int(i): return i
        case let v: throw wrongType(key, "an integer", v)
        }
    }

    public func double(_ key: String) throws -> Double? {
        switch try value(key) {
        case .null: return nil
        case let .int(i): return Double(i)
        case let .double(d): return d
        case let v: throw wrongType(key, "a number", v)
        }
    }

    public func bool(_ key: String) throws -> Bool? {
        switch try value(key) {
        case .null: return nil
        case let .bool(b): return b
        case let v: throw wrongType(key, "true or false", v)
        }
    }

    public func string(_ key: String) throws -> String? {
        switch try value(key) {
        case .null: return nil
        case let .string(s): return s
        case let v: throw wrongType(key, "a string", v)
        }
    }

    public func strings(_ key: String) throws -> [String]? {
        switch try value(key) {
        case .null: return nil
        case let .list(l):
            return try l.map { item -> String in
                if case let .string(s) = item { return s }
                throw wrongType(key, "a list of strings", .list(l))
            }
        case let v: throw wrongType(key, "a list of strings", v)
        }
    }

    public func ints(_ key: String) throws -> [Int]? {
        switch try value(key) {
        case .null: return nil
        case let .list(l):
            return try l.map { item -> Int in
                if case let .int(i) = item { return i }
                throw wrongType(key, "a list of integers", .list(l))
            }
        case let v: throw wrongType(key, "a list of integers", v)
        }
    }

    private func value(_ key: String) throws -> ConfigValue {
        guard let v = options[key] else {
            throw ConfigError(.unknownKey, path: "tuning.\(key)", message: "method \(method) has no option '\(key)'",
                              suggestion: ConfigSuggest.nearest(key, in: Array(options.keys)).map { "tuning.\($0)" })
        }
        return v
    }

    private func wrongType(_ key: String, _ expected: String, _ v: ConfigValue) -> ConfigError {
        ConfigError(.typeMismatch, path: "tuning.\(key)", message: "expected \(expected), found \(v)")
    }

    // MARK: Coding (method first, then options in sorted order)

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { return nil }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(method, forKey: Key("method"))
        for k in options.keys.sorted() {
            try c.encode(options[k]!, forKey: Key(k))
        }
    }

    public init(from decoder: Decoder) throws {
        if let d = decoder as? ConfigNodeDecoder {
            let registry = d.userInfo[TuningConfig.registryKey] as? TuningMethodRegistry ?? .shared
            self = try TuningConfig.validated(d.node, registry: registry)
            return
        }
        let c = try decoder.container(keyedBy: Key.self)
        method = try c.decode(String.self, forKey: Key("method"))
        let schema = TuningMethodRegistry.shared.schema(named: method)
        family = schema?.family ?? method
        options = [:]
        for k in c.allKeys where k.stringValue != "method" {
            options[k.stringValue] = try c.decode(ConfigValue.self, forKey: k)
        }
    }

    static let registryKey = CodingUserInfoKey(rawValue: "vlseg.tuningRegistry")!

    /// Checks a `tuning` node against the method's schema: the method must be registered, every key must
    /// be one of its options with the right type, and absent options take their defaults.
    static func validated(_ node: ConfigNode, registry: TuningMethodRegistry) throws -> TuningConfig {
        guard let pairs = node.pairs else {
            throw ConfigError(.typeMismatch, path: "tuning", message: "expected a mapping with 'method' and the method's options (select one with tuning=NAME)",
                              source: node.source)
        }
        guard let methodNode = node["method"] else {
            throw ConfigError(.invalidValue, path: "tuning.method", message: "missing: select a method with tuning=NAME", source: node.source)
        }
        guard let method = methodNode.scalarText, !method.isEmpty else {
            throw ConfigError(.typeMismatch, path: "tuning.method", message: "expected a method name, found \(ConfigNodeDecoder.describe(methodNode))",
                              source: methodNode.source)
        }
        guard let schema = registry.schema(named: method) else {
            throw ConfigError(.unknownMethod, path: "tuning.method",
                              message: "unknown tuning method '\(method)'; registered: \(registry.names.joined(separator: ", "))",
                              source: methodNode.source, suggestion: ConfigSuggest.nearest(method, in: registry.names))
        }
        var options: [String: ConfigValue] = [:]
        for (key, child) in pairs where key != "method" {
            guard let option = schema.option(key) else {
                let names = schema.options.map(\.name)
                let known = names.isEmpty ? "it has no options" : "its options: \(names.joined(separator: ", "))"
                throw ConfigError(.unknownKey, path: "tuning.\(key)", message: "unknown option of tuning method \(method) (\(known))",
                                  source: child.source, suggestion: ConfigSuggest.nearest(key, in: names).map { "tuning.\($0)" })
            }
            options[key] = try coerce(child, option, path: "tuning.\(key)")
        }
        for option in schema.options where options[option.name] == nil {
            options[option.name] = option.defaultValue
        }
        return TuningConfig(method: method, family: schema.family, options: options)
    }

    static func coerce(_ node: ConfigNode, _ option: TuningOption, path: String) throws -> ConfigValue {
        if node.isNull { return .null }
        let d = ConfigNodeDecoder(node: node, codingPath: [], userInfo: [:])
        func fail(_ message: String) -> ConfigError {
            ConfigError(.typeMismatch, path: path, message: message, source: node.source)
        }
        func expected(_ what: String) -> ConfigError { fail("expected \(what), found \(ConfigNodeDecoder.describe(node))") }
        let value: ConfigValue
        switch option.kind {
        case .int:
            guard let i = try? d.integer(Int.self) else { throw expected("an integer") }
            value = .int(i)
        case .double:
            guard let x = try? d.floating() else { throw expected("a number") }
            value = .double(x)
        case .bool:
            guard let b = try? d.bool() else { throw expected("true or false") }
            value = .bool(b)
        case .string:
            guard let s = node.scalarText else { throw expected("a string") }
            value = .string(s)
        case .stringList, .intList:
            let items: [ConfigNode]
            switch node.value {
            case let .list(l): items = l
            case .scalar: items = [node]  // `tuning.targets=q_proj` means [q_proj]
            default: throw expected("a \(option.kind.rawValue)")
            }
            value = .list(try items.map { item in
                let di = ConfigNodeDecoder(node: item, codingPath: [], userInfo: [:])
                if option.kind == .intList {
                    guard let i = try? di.integer(Int.self) else { throw expected("a list of integers") }
                    return .int(i)
                }
                guard let s = item.scalarText else { throw expected("a list of strings") }
                return .string(s)
            })
        }
        if let allowed = option.allowed {
            let strings: [String]
            switch value {
            case let .string(s): strings = [s]
            case let .list(l): strings = l.compactMap { if case let .string(s) = $0 { return s } else { return nil } }
            default: strings = []
            }
            for s in strings where !allowed.contains(s) {
                throw ConfigError(.invalidValue, path: path, message: "'\(s)' is not one of \(allowed.joined(separator: ", "))",
                                  source: node.source, suggestion: ConfigSuggest.nearest(s, in: allowed))
            }
        }
        if let minimum = option.minimum {
            let number: Double?
            switch value {
            case let .int(i): number = Double(i)
            case let .double(x): number = x
            default: number = nil
            }
            if let number, number < minimum {
                throw ConfigError(.invalidValue, path: path, message: "must be at least \(ConfigValue.double(minimum)), found \(value)", source: node.source)
            }
        }
        if let check = option.check, let message = check(value) {
            throw ConfigError(.invalidValue, path: path, message: message, source: node.source)
        }
        return value
    }
}
