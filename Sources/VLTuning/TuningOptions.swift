import Foundation
import VLModels

// What a tuning method declares about its options (`tuning.KEY`): their names, types, defaults, bounds
// and help, in the method's own file. The config layer (VLTrain) reads YAML into these types and checks
// them here; the method reads the checked values, typed, from `TuningOptionValues`. One declaration,
// so the config, the method, `vlseg config list` and the docs cannot disagree.

/// A tuning-method option value (`tuning.KEY`).
public enum ConfigValue: Sendable, Equatable, Hashable, Codable, CustomStringConvertible,
    ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral
{
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([ConfigValue])

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: ConfigValue...) { self = .list(elements) }

    public var description: String {
        switch self {
        case .null: return "null"
        case let .bool(b): return b ? "true" : "false"
        case let .int(i): return "\(i)"
        case let .double(d): return ConfigValue.format(d)
        case let .string(s): return s
        case let .list(l): return "[" + l.map(\.description).joined(separator: ", ") + "]"
        }
    }

    /// A number as the configs print it: whole numbers keep a `.0` so they read back as numbers, not integers.
    public static func format(_ d: Double) -> String {
        if d == d.rounded(), d.magnitude < 1e15 { return String(format: "%.1f", d) }
        return "\(d)"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? c.decode(Int.self) {
            self = .int(i)
        } else if let x = try? c.decode(Double.self) {
            self = .double(x)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else {
            self = .list(try c.decode([ConfigValue].self))
        }
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

    // Typed views, nil when the value is of another type (an integer is also a number).
    public var intValue: Int? { if case let .int(i) = self { return i } else { return nil } }
    public var doubleValue: Double? {
        switch self {
        case let .int(i): return Double(i)
        case let .double(d): return d
        default: return nil
        }
    }
    public var boolValue: Bool? { if case let .bool(b) = self { return b } else { return nil } }
    public var stringValue: String? { if case let .string(s) = self { return s } else { return nil } }
    public var stringsValue: [String]? {
        guard case let .list(items) = self else { return nil }
        let strings = items.compactMap(\.stringValue)
        return strings.count == items.count ? strings : nil
    }
    public var intsValue: [Int]? {
        guard case let .list(items) = self else { return nil }
        let ints = items.compactMap(\.intValue)
        return ints.count == items.count ? ints : nil
    }
}

/// One option of a tuning method: `tuning.<name>`, its type, default, bounds and help.
public struct TuningOption: Sendable {
    public enum Kind: String, Sendable {
        case int = "integer", double = "number", bool = "boolean", string, stringList = "list of strings", intList =
            "list of integers"
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

    public init(
        _ name: String, _ kind: Kind, default defaultValue: ConfigValue, help: String, allowed: [String]? = nil,
        minimum: Double? = nil, check: (@Sendable (ConfigValue) -> String?)? = nil
    ) {
        self.name = name
        self.kind = kind
        self.defaultValue = defaultValue
        self.help = help
        self.allowed = allowed
        self.minimum = minimum
        self.check = check
    }

    /// The smallest accepted value as the option's type prints it (`1` for an integer, `0.0` for a number).
    public var minimumText: String? {
        minimum.map {
            kind == .int || kind == .intList ? ConfigValue.int(Int($0)).description : ConfigValue.double($0).description
        }
    }

    /// `value` as the method reads it, or the reason it is refused: of the declared type (an integer where a
    /// number is expected becomes a number, one item where a list is expected a one-item list), finite,
    /// within the bounds, one of the allowed values, and passing the option's own check. `.null` passes
    /// unchanged: it stands for the default.
    public func validated(_ value: ConfigValue, method: String) throws -> ConfigValue {
        if value == .null { return .null }
        func refuse(_ reason: String) -> TuningError { .invalidOption(method: method, key: name, reason: reason) }
        func expected(_ what: String) -> TuningError { refuse("expected \(what), found \(value)") }
        let typed: ConfigValue
        switch kind {
        case .int:
            guard let i = value.intValue else { throw expected("an integer") }
            typed = .int(i)
        case .double:
            guard let x = value.doubleValue else { throw expected("a number") }
            guard x.isFinite else { throw expected("a finite number") }
            typed = .double(x)
        case .bool:
            guard let b = value.boolValue else { throw expected("true or false") }
            typed = .bool(b)
        case .string:
            guard let s = value.stringValue else { throw expected("a string") }
            typed = .string(s)
        case .stringList:
            if let s = value.stringValue {
                typed = .list([.string(s)])
            } else if value.stringsValue != nil {
                typed = value
            } else {
                throw expected("a list of strings")
            }
        case .intList:
            if let i = value.intValue {
                typed = .list([.int(i)])
            } else if value.intsValue != nil {
                typed = value
            } else {
                throw expected("a list of integers")
            }
        }
        if let allowed {
            let strings = typed.stringValue.map { [$0] } ?? typed.stringsValue ?? []
            if let bad = strings.first(where: { !allowed.contains($0) }) {
                throw TuningError.notAllowed(method: method, key: name, value: bad, allowed: allowed)
            }
        }
        if let minimum, let minimumText {
            let numbers: [Double] = typed.doubleValue.map { [$0] } ?? typed.intsValue?.map(Double.init) ?? []
            if numbers.contains(where: { $0 < minimum }) {
                throw refuse("must be at least \(minimumText), found \(typed)")
            }
        }
        if let check, let message = check(typed) { throw refuse(message) }
        return typed
    }
}

/// A model family a tuning method can run on.
public enum TuningArchitecture: String, Sendable, CaseIterable {
    case clipseg = "CLIPSeg"
    case cris = "CRIS"

    /// The architecture of a loaded model (nil for a model no method knows).
    public init?(_ model: SegmentationModel) {
        if model is CLIPSegModel { self = .clipseg } else if model is CRISModel { self = .cris } else { return nil }
    }
}

/// A named set of option values of a family (`vlsm_dense_vl` is `vlsm_dense` with `parts: vl`): its own
/// `tuning=NAME`, whose defaults are the family's with these values in place. Every option stays settable.
public struct TuningPreset: Sendable {
    public var name: String
    public var summary: String
    public var values: [String: ConfigValue]

    public init(_ name: String, summary: String, values: [String: ConfigValue]) {
        self.name = name
        self.summary = summary
        self.values = values
    }
}

/// What a method's file registers: its name, what it is, where it runs, its options and presets, and how
/// to make it from checked option values. The registry derives everything else (the config's checks,
/// `vlseg config list`, the docs' tables, which methods a CRIS model supports) from this.
public struct TuningMethodFamily: Sendable {
    public typealias Factory = @Sendable (TuningOptionValues) throws -> TuningMethod

    public var name: String
    public var summary: String
    public var architectures: [TuningArchitecture]
    public var options: [TuningOption]
    public var presets: [TuningPreset]
    public var make: Factory

    public init(
        name: String, summary: String, architectures: [TuningArchitecture], options: [TuningOption] = [],
        presets: [TuningPreset] = [], make: @escaping Factory
    ) {
        self.name = name
        self.summary = summary
        self.architectures = architectures
        self.options = options
        self.presets = presets
        self.make = make
    }

    /// The family itself and each preset as a selectable method.
    var schemas: [TuningMethodSchema] {
        [TuningMethodSchema(family: self, preset: nil)] + presets.map { TuningMethodSchema(family: self, preset: $0) }
    }
}

/// What `tuning=NAME` may hold: a family or one of its presets, with the options it accepts and their
/// defaults (a preset's values in place of the family's). Any other key under `tuning` is an error.
public struct TuningMethodSchema: Sendable {
    /// As written in `tuning.method`.
    public let name: String
    /// The family implementing it; equals `name` unless it is a preset.
    public let family: String
    public let summary: String
    public let architectures: [TuningArchitecture]
    /// The options in their declared order, each default in the type the method reads.
    public let options: [TuningOption]
    /// The values that define a preset (empty for a family).
    public let presetValues: [String: ConfigValue]
    let make: TuningMethodFamily.Factory

    init(family: TuningMethodFamily, preset: TuningPreset?) {
        name = preset?.name ?? family.name
        self.family = family.name
        summary = preset?.summary ?? family.summary
        architectures = family.architectures
        presetValues = preset?.values ?? [:]
        options = family.options.map { option in
            var o = option
            let value = preset?.values[option.name] ?? option.defaultValue
            // A default that fails its own option is kept as written; the registry's tests refuse it.
            o.defaultValue = (try? option.validated(value, method: family.name)) ?? value
            return o
        }
        make = family.make
    }

    public var isPreset: Bool { name != family }

    public func option(_ key: String) -> TuningOption? { options.first { $0.name == key } }

    /// The error for a key this method does not have (its message lists the options it does have).
    public func unknownOption(_ key: String) -> TuningError {
        .unknownOption(method: name, key: key, options: options.map(\.name))
    }

    /// Checks `given` (every key one of the options, every value valid) and completes it with the defaults;
    /// `.null` stands for the default. The result is what the method is made from.
    public func values(_ given: [String: ConfigValue]) throws -> TuningOptionValues {
        for key in given.keys.sorted() where option(key) == nil { throw unknownOption(key) }
        var values: [String: ConfigValue] = [:]
        for option in options {
            let value = try option.validated(given[option.name] ?? .null, method: name)
            values[option.name] = value == .null ? option.defaultValue : value
        }
        return TuningOptionValues(method: name, family: family, values: values)
    }
}

/// A method's checked options, every one present with its value or default, read by type. Only a schema
/// makes one, so a method never sees an unchecked value; reading an option the method did not declare, or
/// as another type, is an error naming the key.
public struct TuningOptionValues: Sendable, Equatable {
    /// The name selected (`tuning.method`: a family or a preset).
    public let method: String
    public let family: String
    public let values: [String: ConfigValue]

    public subscript(key: String) -> ConfigValue? { values[key] }

    public func int(_ key: String) throws -> Int { try read(key, "an integer", \.intValue) }
    public func double(_ key: String) throws -> Double { try read(key, "a number", \.doubleValue) }
    public func bool(_ key: String) throws -> Bool { try read(key, "true or false", \.boolValue) }
    public func string(_ key: String) throws -> String { try read(key, "a string", \.stringValue) }
    public func strings(_ key: String) throws -> [String] { try read(key, "a list of strings", \.stringsValue) }
    public func ints(_ key: String) throws -> [Int] { try read(key, "a list of integers", \.intsValue) }

    private func read<T>(_ key: String, _ expected: String, _ view: (ConfigValue) -> T?) throws -> T {
        guard let value = values[key] else {
            throw TuningError.unknownOption(method: method, key: key, options: values.keys.sorted())
        }
        guard let typed = view(value) else {
            throw TuningError.invalidOption(method: method, key: key, reason: "expected \(expected), found \(value)")
        }
        return typed
    }
}
