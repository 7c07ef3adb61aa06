import Foundation
import VLTuning

// Codable over `ConfigNode`: the decoder converts scalars by the type the field asks for (so `1e-3`,
// `0.001` and `1` all read as a Double), and every failure is a `ConfigError` naming the key path and
// the file or override that set the value. The encoder turns typed values back into a tree for printing
// and hashing.

// MARK: - Decoder

/// Options for string-typed choices: decoding checks the value against `allowedValues` and suggests the
/// nearest one.
public protocol ConfigChoice: RawRepresentable, CaseIterable, Codable where RawValue == String {}

extension ConfigChoice {
    public static var allowedValues: [String] { allCases.map(\.rawValue) }
}

struct ConfigNodeDecoder: Decoder {
    let node: ConfigNode
    let codingPath: [CodingKey]
    let userInfo: [CodingUserInfoKey: Any]

    var pathString: String { ConfigNodeDecoder.render(codingPath) }

    static func render(_ path: [CodingKey]) -> String {
        var s = ""
        for k in path {
            if let i = k.intValue { s += "[\(i)]" } else { s += s.isEmpty ? k.stringValue : ".\(k.stringValue)" }
        }
        return s
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard let pairs = node.pairs else {
            throw mismatch("a mapping")
        }
        return KeyedDecodingContainer(KeyedContainer<Key>(decoder: self, pairs: pairs))
    }

    func unkeyedContainer() throws -> UnkeyedDecodingContainer {
        switch node.value {
        case let .list(items): return UnkeyedContainer(decoder: self, items: items)
        case .null: return UnkeyedContainer(decoder: self, items: [])
        case .scalar, .map: throw mismatch("a list")
        }
    }

    func singleValueContainer() throws -> SingleValueDecodingContainer { SingleContainer(decoder: self) }

    func child(_ node: ConfigNode, key: CodingKey) -> ConfigNodeDecoder {
        ConfigNodeDecoder(node: node, codingPath: codingPath + [key], userInfo: userInfo)
    }

    func mismatch(_ expected: String) -> ConfigError {
        ConfigError(
            .typeMismatch, path: pathString, message: "expected \(expected), found \(ConfigNodeDecoder.describe(node))",
            source: node.source)
    }

    static func describe(_ node: ConfigNode) -> String {
        switch node.value {
        case .null: return "null"
        case let .scalar(t, isString): return isString ? "the string \"\(t)\"" : "'\(t)'"
        case .list: return "a list \(ConfigYAMLWriter.inline(node))"
        case .map: return "a mapping"
        }
    }

    /// Decodes `T`, turning any non-config error thrown inside into one that names this key and source.
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        if let choice = T.self as? any ConfigChoice.Type {
            guard let text = node.scalarText ?? (node.isNull ? "" : nil) else {
                throw mismatch("one of \(list(choice.allowedValues))")
            }
            let allowed = choice.allowedValues
            guard allowed.contains(text) else {
                throw ConfigError(
                    .invalidValue, path: pathString,
                    message: "'\(text)' is not one of \(list(allowed))", source: node.source,
                    suggestion: ConfigSuggest.nearest(text, in: allowed.filter { !$0.isEmpty }))
            }
        }
        do {
            return try T(from: self)
        } catch let error as ConfigError {
            throw error
        } catch let error as DecodingError {
            throw ConfigError(
                .invalidValue, path: pathString, message: ConfigNodeDecoder.summary(error), source: node.source)
        } catch {
            throw ConfigError(.invalidValue, path: pathString, message: "\(error)", source: node.source)
        }
    }

    private func list(_ values: [String]) -> String {
        values.map { $0.isEmpty ? "\"\"" : $0 }.joined(separator: ", ")
    }

    static func summary(_ error: DecodingError) -> String {
        switch error {
        case let .dataCorrupted(c), let .typeMismatch(_, c), let .valueNotFound(_, c), let .keyNotFound(_, c):
            return c.debugDescription
        @unknown default:
            return "\(error)"
        }
    }

    // Scalar conversions by the requested type.

    func scalar(_ expected: String) throws -> (text: String, isString: Bool) {
        guard case let .scalar(t, s) = node.value else { throw mismatch(expected) }
        return (t, s)
    }

    func bool() throws -> Bool {
        let (t, s) = try scalar("true or false")
        if !s {
            switch t.lowercased() {
            case "true", "yes", "on": return true
            case "false", "no", "off": return false
            default: break
            }
        }
        throw mismatch("true or false")
    }

    func integer<I: FixedWidthInteger>(_: I.Type) throws -> I {
        let (t, s) = try scalar("an integer")
        if !s, let v = I(t.replacingOccurrences(of: "_", with: "")) { return v }
        if !s, let d = Double(t), d.rounded() == d, d.magnitude < 9e15, let v = I(exactly: d),
            t.lowercased().contains("e")
        {
            return v
        }
        throw mismatch("an integer")
    }

    func floating() throws -> Double {
        let (t, s) = try scalar("a number")
        if !s, let v = Double(t.replacingOccurrences(of: "_", with: "")), v.isFinite { return v }
        throw mismatch("a number")
    }

    func string() throws -> String {
        switch node.value {
        case let .scalar(t, _): return t
        case .null: return ""
        default: throw mismatch("a string")
        }
    }
}

private struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let decoder: ConfigNodeDecoder
    let pairs: [(key: String, node: ConfigNode)]

    var codingPath: [CodingKey] { decoder.codingPath }
    var allKeys: [Key] { pairs.compactMap { Key(stringValue: $0.key) } }

    func contains(_ key: Key) -> Bool { pairs.contains { $0.key == key.stringValue } }

    private func node(_ key: Key) throws -> ConfigNode {
        guard let n = pairs.first(where: { $0.key == key.stringValue })?.node else {
            let path = ConfigNodeDecoder.render(codingPath + [key])
            throw ConfigError(.typeMismatch, path: path, message: "missing", source: decoder.node.source)
        }
        return n
    }

    func decodeNil(forKey key: Key) throws -> Bool { try node(key).isNull }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try decoder.child(try node(key), key: key).decode(T.self)
    }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try decoder.child(try node(key), key: key).bool() }
    func decode(_ type: String.Type, forKey key: Key) throws -> String {
        try decoder.child(try node(key), key: key).string()
    }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double {
        try decoder.child(try node(key), key: key).floating()
    }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float {
        Float(try decoder.child(try node(key), key: key).floating())
    }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int {
        try decoder.child(try node(key), key: key).integer(Int.self)
    }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 {
        try decoder.child(try node(key), key: key).integer(UInt64.self)
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        try decoder.child(try node(key), key: key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> UnkeyedDecodingContainer {
        try decoder.child(try node(key), key: key).unkeyedContainer()
    }

    func superDecoder() throws -> Decoder { decoder }
    func superDecoder(forKey key: Key) throws -> Decoder { decoder.child(try node(key), key: key) }
}

private struct IndexKey: CodingKey {
    var intValue: Int?
    var stringValue: String { "\(intValue ?? 0)" }
    init(_ i: Int) { intValue = i }
    init?(stringValue: String) { return nil }
    init?(intValue: Int) { self.intValue = intValue }
}

private struct UnkeyedContainer: UnkeyedDecodingContainer {
    let decoder: ConfigNodeDecoder
    let items: [ConfigNode]
    var currentIndex = 0

    init(decoder: ConfigNodeDecoder, items: [ConfigNode]) {
        self.decoder = decoder
        self.items = items
    }

    var codingPath: [CodingKey] { decoder.codingPath }
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    private mutating func next() throws -> ConfigNodeDecoder {
        guard !isAtEnd else { throw decoder.mismatch("more list elements") }
        defer { currentIndex += 1 }
        return decoder.child(items[currentIndex], key: IndexKey(currentIndex))
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else { return false }
        if items[currentIndex].isNull { currentIndex += 1; return true }
        return false
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next().decode(T.self) }
    mutating func decode(_ type: Bool.Type) throws -> Bool { try next().bool() }
    mutating func decode(_ type: String.Type) throws -> String { try next().string() }
    mutating func decode(_ type: Double.Type) throws -> Double { try next().floating() }
    mutating func decode(_ type: Float.Type) throws -> Float { Float(try next().floating()) }
    mutating func decode(_ type: Int.Type) throws -> Int { try next().integer(Int.self) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<
        NestedKey
    > {
        try next().container(keyedBy: type)
    }
    mutating func nestedUnkeyedContainer() throws -> UnkeyedDecodingContainer { try next().unkeyedContainer() }
    mutating func superDecoder() throws -> Decoder { try next() }
}

private struct SingleContainer: SingleValueDecodingContainer {
    let decoder: ConfigNodeDecoder
    var codingPath: [CodingKey] { decoder.codingPath }

    func decodeNil() -> Bool { decoder.node.isNull }
    func decode(_ type: Bool.Type) throws -> Bool { try decoder.bool() }
    func decode(_ type: String.Type) throws -> String { try decoder.string() }
    func decode(_ type: Double.Type) throws -> Double { try decoder.floating() }
    func decode(_ type: Float.Type) throws -> Float { Float(try decoder.floating()) }
    func decode(_ type: Int.Type) throws -> Int { try decoder.integer(Int.self) }
    func decode(_ type: Int64.Type) throws -> Int64 { try decoder.integer(Int64.self) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try decoder.integer(UInt64.self) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try decoder.integer(UInt32.self) }
    func decode(_ type: Int32.Type) throws -> Int32 { try decoder.integer(Int32.self) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decoder.decode(T.self) }
}

// MARK: - Encoder

private final class Slot {
    enum Built {
        case scalar(String, isString: Bool)
        case null
        case list(ListBox)
        case map(MapBox)
    }
    var built: Built?

    func finish(source: ConfigSource) -> ConfigNode {
        switch built {
        case nil, .null?: return ConfigNode(.null, source: source)
        case let .scalar(t, s)?: return ConfigNode(.scalar(t, isString: s), source: source)
        case let .list(box)?: return ConfigNode(.list(box.items.map { $0.finish(source: source) }), source: source)
        case let .map(box)?:
            return ConfigNode(
                .map(box.keys.map { (key: $0, node: box.values[$0]!.finish(source: source)) }), source: source)
        }
    }
}

private final class ListBox { var items: [Slot] = [] }
private final class MapBox {
    var keys: [String] = []
    var values: [String: Slot] = [:]
    func slot(_ key: String) -> Slot {
        if let s = values[key] { return s }
        let s = Slot()
        keys.append(key)
        values[key] = s
        return s
    }
}

/// Encodes a value into a `ConfigNode` tree (keys in encoding order).
public enum ConfigNodeEncoding {
    public static func encode<T: Encodable>(_ value: T, source: ConfigSource = .builtin) throws -> ConfigNode {
        let slot = Slot()
        try value.encode(to: NodeEncoder(slot: slot, codingPath: []))
        return slot.finish(source: source)
    }

    static func format(_ d: Double) -> String { ConfigValue.format(d) }
}

private struct NodeEncoder: Encoder {
    let slot: Slot
    let codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let box: MapBox
        if case let .map(b)? = slot.built { box = b } else { box = MapBox(); slot.built = .map(box) }
        return KeyedEncodingContainer(KeyedEnc<Key>(box: box, codingPath: codingPath))
    }

    func unkeyedContainer() -> UnkeyedEncodingContainer {
        let box: ListBox
        if case let .list(b)? = slot.built { box = b } else { box = ListBox(); slot.built = .list(box) }
        return UnkeyedEnc(box: box, codingPath: codingPath)
    }

    func singleValueContainer() -> SingleValueEncodingContainer { SingleEnc(slot: slot, codingPath: codingPath) }
}

private func store(_ slot: Slot, _ value: some Encodable, path: [CodingKey]) throws {
    switch value {
    case let v as String: slot.built = .scalar(v, isString: true)
    case let v as Bool: slot.built = .scalar(v ? "true" : "false", isString: false)
    case let v as Double: slot.built = .scalar(ConfigNodeEncoding.format(v), isString: false)
    case let v as Float: slot.built = .scalar(ConfigNodeEncoding.format(Double(v)), isString: false)
    case let v as any BinaryInteger: slot.built = .scalar("\(v)", isString: false)
    default: try value.encode(to: NodeEncoder(slot: slot, codingPath: path))
    }
}

private struct KeyedEnc<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let box: MapBox
    let codingPath: [CodingKey]

    mutating func encodeNil(forKey key: Key) throws { box.slot(key.stringValue).built = .null }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try store(box.slot(key.stringValue), value, path: codingPath + [key])
    }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
        -> KeyedEncodingContainer<NestedKey>
    {
        NodeEncoder(slot: box.slot(key.stringValue), codingPath: codingPath + [key]).container(keyedBy: keyType)
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
        NodeEncoder(slot: box.slot(key.stringValue), codingPath: codingPath + [key]).unkeyedContainer()
    }
    mutating func superEncoder() -> Encoder { NodeEncoder(slot: box.slot("super"), codingPath: codingPath) }
    mutating func superEncoder(forKey key: Key) -> Encoder {
        NodeEncoder(slot: box.slot(key.stringValue), codingPath: codingPath + [key])
    }
}

private struct UnkeyedEnc: UnkeyedEncodingContainer {
    let box: ListBox
    let codingPath: [CodingKey]
    var count: Int { box.items.count }

    private func newSlot() -> Slot { let s = Slot(); box.items.append(s); return s }

    mutating func encodeNil() throws { newSlot().built = .null }
    mutating func encode<T: Encodable>(_ value: T) throws { try store(newSlot(), value, path: codingPath) }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<
        NestedKey
    > {
        NodeEncoder(slot: newSlot(), codingPath: codingPath).container(keyedBy: keyType)
    }
    mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer {
        NodeEncoder(slot: newSlot(), codingPath: codingPath).unkeyedContainer()
    }
    mutating func superEncoder() -> Encoder { NodeEncoder(slot: newSlot(), codingPath: codingPath) }
}

private struct SingleEnc: SingleValueEncodingContainer {
    let slot: Slot
    let codingPath: [CodingKey]
    mutating func encodeNil() throws { slot.built = .null }
    mutating func encode<T: Encodable>(_ value: T) throws { try store(slot, value, path: codingPath) }
}
