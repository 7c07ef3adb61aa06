import Foundation
import VLTensor

/// Errors matching a checkpoint against a model's expected parameters.
public enum ModelLoadError: Error, CustomStringConvertible {
    case missingKeys(file: String, keys: [String])
    case unexpectedKeys(file: String, keys: [String])
    case shapeMismatch(file: String, key: String, expected: [Int], found: [Int])
    case invalidConfig(file: String, key: String, reason: String)
    case missingFile(path: String)
    case unsupportedInputSize(size: Int, reason: String)
    /// A model directory without weights in any of the published forms.
    case missingWeights(directory: String, lookedFor: [String])
    case invalidShardIndex(file: String, reason: String)

    public var description: String {
        func list(_ keys: [String]) -> String {
            keys.count <= 8
                ? keys.joined(separator: ", ") : keys.prefix(8).joined(separator: ", ") + ", ... (\(keys.count) in all)"
        }
        switch self {
        case let .missingKeys(file, keys): return "\(file): missing \(keys.count) weight(s): \(list(keys))"
        case let .unexpectedKeys(file, keys): return "\(file): \(keys.count) unexpected weight(s): \(list(keys))"
        case let .shapeMismatch(file, key, expected, found):
            return "\(file): weight '\(key)' has shape \(found), the config implies \(expected)"
        case let .invalidConfig(file, key, reason): return "\(file): '\(key)': \(reason)"
        case let .missingFile(path): return "\(path): file not found"
        case let .unsupportedInputSize(size, reason): return "input size \(size)x\(size) (model.image_size): \(reason)"
        case let .missingWeights(directory, names):
            return "\(directory): no model weights (looked for \(names.joined(separator: ", ")))"
        case let .invalidShardIndex(file, reason): return "\(file): invalid shard index: \(reason)"
        }
    }
}

extension ModelLoadError {
    /// Decodes a model's config.json; a missing or mistyped key is an error naming the key path.
    ///
    /// Sizes are read as `Int` (`decodeWholeNumber`): a number written as a float decodes when it is
    /// a whole number (`1e12` is 1000000000000, then judged by `validate` and the memory check); one
    /// that is not (`4.5`) or does not fit in 64 bits (`1e30`) is refused here, naming its key.
    static func decodeConfig<T: Decodable>(_ type: T.Type, from url: URL) throws -> T {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ModelLoadError.missingFile(path: url.path)
        }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let DecodingError.keyNotFound(key, ctx) {
            throw ModelLoadError.invalidConfig(
                file: url.path, key: ConfigCheck.keyPath(ctx.codingPath + [key]), reason: "missing")
        } catch let DecodingError.typeMismatch(type, ctx) {
            throw ModelLoadError.invalidConfig(
                file: url.path, key: ConfigCheck.keyPath(ctx.codingPath), reason: "wrong type (expected \(type))")
        } catch let DecodingError.valueNotFound(type, ctx) {
            throw ModelLoadError.invalidConfig(
                file: url.path, key: ConfigCheck.keyPath(ctx.codingPath), reason: "null where \(type) is expected")
        } catch let DecodingError.dataCorrupted(ctx) where !ctx.codingPath.isEmpty {
            // A value of the right JSON type that the field cannot hold: a size that is not a whole
            // number, or one beyond 64 bits.
            throw ModelLoadError.invalidConfig(
                file: url.path, key: ConfigCheck.keyPath(ctx.codingPath), reason: ctx.debugDescription)
        } catch {
            throw ModelLoadError.invalidConfig(file: url.path, key: "(file)", reason: "not a valid JSON config")
        }
    }
}

/// A model's config.json: decoded with errors naming the key at fault, then checked by the
/// architecture's own rules (`validate`).
public protocol ModelConfigFile: Decodable {
    /// Checks the relations between sizes the architecture relies on; errors name `file` and the key.
    func validate(file: String) throws
}

extension ModelConfigFile {
    /// Reads and validates a config.json.
    public static func load(from url: URL) throws -> Self {
        let config = try ModelLoadError.decodeConfig(Self.self, from: url)
        try config.validate(file: url.path)
        return config
    }
}

/// A model's weights by their checkpoint names.
///
/// Names are the checkpoint's own (Hugging Face names for CLIPSeg), so loading, saving trainable
/// tensors and addressing a parameter from a tuning method all use one vocabulary. Frozen weights
/// stay borrowed from the memory-mapped file; marking a tensor trainable replaces it by a
/// gradient-requiring leaf with its own writable storage.
// @unchecked Sendable: changed only while a model is set up (loading, a method's `prepare`), on
// one thread; afterwards the names and tensors are only read, and the trainable tensors' values
// change only in the optimiser step, on the thread that runs the loop.
public final class ParameterStore: @unchecked Sendable {
    public private(set) var tensors: [String: Tensor] = [:]
    /// Insertion order: deterministic and identical on every rank.
    public private(set) var names: [String] = []
    public private(set) var trainableNames: Set<String> = []

    public init() {}

    public subscript(name: String) -> Tensor {
        guard let t = tensors[name] else { preconditionFailure("no parameter named '\(name)'") }
        return t
    }

    public func contains(_ name: String) -> Bool { tensors[name] != nil }

    /// Adds or replaces a tensor.
    public func set(_ name: String, _ tensor: Tensor) {
        if tensors[name] == nil { names.append(name) }
        tensors[name] = tensor
    }

    /// Makes `name` trainable: a writable copy that requires a gradient.
    public func markTrainable(_ name: String) {
        let t = self[name]
        if trainableNames.contains(name) { return }
        tensors[name] = t.copy().requiringGrad(name: name)
        trainableNames.insert(name)
    }

    /// Registers `tensor` (a gradient-requiring leaf, e.g. a view into the trainer's arena) as the
    /// trainable value of `name`.
    public func setTrainable(_ name: String, _ tensor: Tensor) {
        precondition(tensor.requiresGrad, "trainable tensor '\(name)' must require a gradient")
        set(name, tensor)
        trainableNames.insert(name)
    }

    /// Trainable tensors in store order.
    public var trainable: [(name: String, tensor: Tensor)] {
        names.filter(trainableNames.contains).map { ($0, tensors[$0]!) }
    }

    public var parameterCount: Int { tensors.values.reduce(0) { $0 + $1.count } }
    public var trainableParameterCount: Int { trainable.reduce(0) { $0 + $1.tensor.count } }

    /// A fingerprint of the names, shapes and bytes of every tensor not in `excluded` (the frozen
    /// weights): ranks compare it at start-up to prove they hold the same model.
    public func fingerprint(excluding excluded: Set<String> = []) -> String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        func mix(_ x: UInt64) {
            h = (h ^ x) &* 0x100_0000_01B3
            h ^= h >> 29
        }
        var total = 0
        for name in names where !excluded.contains(name) {
            let t = tensors[name]!
            for b in name.utf8 { mix(UInt64(b)) }
            for d in t.shape { mix(UInt64(d)) }
            // Word-wise: two floats per step keeps hashing a 600 MB model well under a second.
            t.withUnsafePointer { floats in
                floats.withMemoryRebound(to: UInt32.self, capacity: t.count) { p in
                    var i = 0
                    while i + 1 < t.count {
                        mix(UInt64(p[i]) | UInt64(p[i + 1]) << 32)
                        i += 2
                    }
                    if i < t.count { mix(UInt64(p[i])) }
                }
            }
            total += t.count
        }
        return String(format: "%016llx/%d", h, total)
    }

    /// A new store sharing this one's tensors (frozen weights stay borrowed; nothing is trainable).
    public static func copy(of other: ParameterStore) -> ParameterStore {
        let store = ParameterStore()
        for name in other.names { store.set(name, other.tensors[name]!.detached()) }
        return store
    }

    /// Loads a model directory's weights in any published form (`ModelWeights`; see
    /// `load(from:expected:ignoring:)`).
    public static func load(
        directory: URL, expected: [(name: String, shape: [Int])],
        ignoring ignorable: (String) -> Bool = { _ in false }
    ) throws -> ParameterStore {
        try load(from: ModelWeights.open(directory: directory), expected: expected, ignoring: ignorable)
    }

    /// Loads exactly the `expected` names and shapes, borrowing float32 data from memory-mapped
    /// files. Missing, unexpected and mis-shaped keys are reported together, by name.
    public static func load(
        from file: WeightSource, expected: [(name: String, shape: [Int])],
        ignoring ignorable: (String) -> Bool = { _ in false }
    ) throws -> ParameterStore {
        let expectedNames = Set(expected.map(\.name))
        let missing = expected.map(\.name).filter { !file.contains($0) }
        if !missing.isEmpty { throw ModelLoadError.missingKeys(file: file.path, keys: missing) }
        let unexpected = file.names.filter { !expectedNames.contains($0) && !ignorable($0) }
        if !unexpected.isEmpty { throw ModelLoadError.unexpectedKeys(file: file.path, keys: unexpected.sorted()) }
        let store = ParameterStore()
        for (name, shape) in expected {
            let found = try file.shape(of: name)
            guard found == shape else {
                throw ModelLoadError.shapeMismatch(file: file.path, key: name, expected: shape, found: found)
            }
            store.set(name, try file.tensor(name))
        }
        return store
    }
}
