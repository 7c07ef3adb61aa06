import Foundation
import VLTuning

/// The resolved `tuning` section: the method and its options (every option of the method's schema,
/// defaults filled in), validated against the tuning-method registry (`VLTuning.TuningMethodRegistry`,
/// where each method declares its options).
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
    public func int(_ key: String) throws -> Int? { try read(key, "an integer", \.intValue) }
    public func double(_ key: String) throws -> Double? { try read(key, "a number", \.doubleValue) }
    public func bool(_ key: String) throws -> Bool? { try read(key, "true or false", \.boolValue) }
    public func string(_ key: String) throws -> String? { try read(key, "a string", \.stringValue) }
    public func strings(_ key: String) throws -> [String]? { try read(key, "a list of strings", \.stringsValue) }
    public func ints(_ key: String) throws -> [Int]? { try read(key, "a list of integers", \.intsValue) }

    private func read<T>(_ key: String, _ expected: String, _ view: (ConfigValue) -> T?) throws -> T? {
        guard let v = options[key] else {
            throw ConfigError(
                .unknownKey, path: "tuning.\(key)", message: "method \(method) has no option '\(key)'",
                suggestion: ConfigSuggest.nearest(key, in: Array(options.keys)).map { "tuning.\($0)" })
        }
        if v == .null { return nil }
        guard let typed = view(v) else {
            throw ConfigError(.typeMismatch, path: "tuning.\(key)", message: "expected \(expected), found \(v)")
        }
        return typed
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
        for (k, v) in options.sorted(by: { $0.key < $1.key }) {
            try c.encode(v, forKey: Key(k))
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
    /// be one of its options with the right type and an accepted value, and absent options take their
    /// defaults. The YAML is read here; what a value may be is the method's declaration.
    static func validated(_ node: ConfigNode, registry: TuningMethodRegistry) throws -> TuningConfig {
        guard let pairs = node.pairs else {
            throw ConfigError(
                .typeMismatch, path: "tuning",
                message: "expected a mapping with 'method' and the method's options (select one with tuning=NAME)",
                source: node.source)
        }
        guard let methodNode = node["method"] else {
            throw ConfigError(
                .invalidValue, path: "tuning.method", message: "missing: select a method with tuning=NAME",
                source: node.source)
        }
        guard let method = methodNode.scalarText, !method.isEmpty else {
            throw ConfigError(
                .typeMismatch, path: "tuning.method",
                message: "expected a method name, found \(ConfigNodeDecoder.describe(methodNode))",
                source: methodNode.source)
        }
        guard let schema = registry.schema(named: method) else {
            throw ConfigError(
                .unknownMethod, path: "tuning.method",
                message: "unknown tuning method '\(method)'; registered: \(registry.names.joined(separator: ", "))",
                source: methodNode.source, suggestion: ConfigSuggest.nearest(method, in: registry.names))
        }
        var options: [String: ConfigValue] = [:]
        for (key, child) in pairs where key != "method" {
            guard let option = schema.option(key) else {
                throw ConfigError(
                    .unknownKey, path: "tuning.\(key)", message: schema.unknownOption(key).reason, source: child.source,
                    suggestion: ConfigSuggest.nearest(key, in: schema.options.map(\.name)).map { "tuning.\($0)" })
            }
            options[key] = try checked(child, option, method: method)
        }
        for option in schema.options where options[option.name] == nil {
            options[option.name] = option.defaultValue
        }
        return TuningConfig(method: method, family: schema.family, options: options)
    }

    /// A node read as the option's type, then checked by the option's own declaration.
    static func checked(_ node: ConfigNode, _ option: TuningOption, method: String) throws -> ConfigValue {
        let path = "tuning.\(option.name)"
        let value = try coerce(node, option, path: path)
        do {
            return try option.validated(value, method: method)
        } catch let error as TuningError {
            var suggestion: String? = nil
            if case let .notAllowed(_, _, bad, allowed) = error { suggestion = ConfigSuggest.nearest(bad, in: allowed) }
            throw ConfigError(
                .invalidValue, path: path, message: error.reason, source: node.source, suggestion: suggestion)
        }
    }

    /// The YAML node as a value of the option's type (a type mismatch names the key and the node's source).
    static func coerce(_ node: ConfigNode, _ option: TuningOption, path: String) throws -> ConfigValue {
        if node.isNull { return .null }
        let d = ConfigNodeDecoder(node: node, codingPath: [], userInfo: [:])
        func expected(_ what: String) -> ConfigError {
            ConfigError(
                .typeMismatch, path: path, message: "expected \(what), found \(ConfigNodeDecoder.describe(node))",
                source: node.source)
        }
        switch option.kind {
        case .int:
            guard let i = try? d.integer(Int.self) else { throw expected("an integer") }
            return .int(i)
        case .double:
            guard let x = try? d.floating() else { throw expected("a number") }
            return .double(x)
        case .bool:
            guard let b = try? d.bool() else { throw expected("true or false") }
            return .bool(b)
        case .string:
            guard let s = node.scalarText else { throw expected("a string") }
            return .string(s)
        case .stringList, .intList:
            let items: [ConfigNode]
            switch node.value {
            case let .list(l): items = l
            case .scalar: items = [node]  // `tuning.targets=q_proj` means [q_proj]
            default: throw expected("a \(option.kind.rawValue)")
            }
            return .list(
                try items.map { item in
                    if option.kind == .intList {
                        guard
                            let i = try? ConfigNodeDecoder(node: item, codingPath: [], userInfo: [:]).integer(Int.self)
                        else {
                            throw expected("a list of integers")
                        }
                        return .int(i)
                    }
                    guard let s = item.scalarText else { throw expected("a list of strings") }
                    return .string(s)
                })
        }
    }
}
