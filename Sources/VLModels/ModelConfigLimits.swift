import Foundation

// Limits a model config must respect before anything is built from it.
//
// A config.json is input: `num_hidden_layers: 1e12` or `hidden_size: 4e6` decode as valid
// integers, and building the model they describe would try to allocate petabytes (a trap inside the
// allocator, with a backtrace) or run the machine out of memory. So a config is read in three
// steps, each before anything it guards: decoding names the key of a value that is not a whole
// number; `validate` checks each size on its own (positive, or non-negative where 0 means
// something) and that the sizes derived from it fit in 64 bits; then the bytes of the parameters are
// counted from the config alone, with overflow-checked arithmetic and without listing repeated
// layers one by one, and compared with the machine's memory.

/// The memory a model's parameters may take: the machine's physical memory.
public enum MachineMemory {
    /// Physical memory in bytes (`ProcessInfo.physicalMemory`: MemTotal on Linux).
    public static var physical: UInt64 { ProcessInfo.processInfo.physicalMemory }

    /// A byte count for messages, in decimal units with one decimal ("24.6 GB"); counts beyond the
    /// largest unit in scientific notation.
    public static func format(bytes: Double) -> String {
        let units = ["B", "KB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
        var value = bytes
        var unit = 0
        while value >= 1000 && unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        if value >= 1000 { return String(format: "%.1e B", bytes) }
        return unit == 0 ? "\(Int(value)) B" : String(format: "%.1f", value) + " " + units[unit]
    }
}

/// Part of an architecture's weights: `repeats` copies of a block whose copies differ only in their
/// names (the layers of a tower, say). The parts, in order, are the one description of the weights
/// that both the full listing (`expectedParameters`) and the byte count use, so the count is exact
/// by construction; counting multiplies one copy by `repeats` instead of listing every copy, so a
/// config with 10^12 layers is refused in microseconds.
struct ParameterPart {
    let repeats: Int
    /// The tensors of copy `index` (0..<repeats), in checkpoint order.
    let shapes: (_ index: Int) -> [ParameterShape]

    init(repeats: Int, _ shapes: @escaping (_ index: Int) -> [ParameterShape]) {
        self.repeats = repeats
        self.shapes = shapes
    }

    /// A part that occurs once.
    static func once(_ shapes: [ParameterShape]) -> ParameterPart { ParameterPart(repeats: 1) { _ in shapes } }
}

/// The float32 elements of a list of parts: exact when they fit in `Int`, and as a `Double` always
/// (for messages about counts too large for 64 bits).
struct ParameterTally {
    /// Elements, nil when the count (or its bytes) overflows `Int`.
    var exact: Int? = 0
    var approximate: Double = 0

    init(_ parts: [ParameterPart]) {
        for part in parts where part.repeats > 0 {
            var one: Int? = 0
            var oneApproximate = 0.0
            for (_, shape) in part.shapes(0) {
                var elements: Int? = 1
                var elementsApproximate = 1.0
                for d in shape {
                    elements = elements.flatMap { Self.multiply($0, d) }
                    elementsApproximate *= Double(d)
                }
                one = Self.add(one, elements)
                oneApproximate += elementsApproximate
            }
            exact = Self.add(exact, one.flatMap { Self.multiply($0, part.repeats) })
            approximate += oneApproximate * Double(part.repeats)
        }
    }

    /// Bytes as float32, nil when they overflow `Int`.
    var bytes: Int? { exact.flatMap { Self.multiply($0, MemoryLayout<Float>.size) } }
    var approximateBytes: Double { approximate * Double(MemoryLayout<Float>.size) }

    static func multiply(_ a: Int, _ b: Int) -> Int? {
        let (r, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? nil : r
    }

    static func add(_ a: Int?, _ b: Int?) -> Int? {
        guard let a, let b else { return nil }
        let (r, overflow) = a.addingReportingOverflow(b)
        return overflow ? nil : r
    }
}

/// A config whose weights can be counted from its sizes alone.
protocol ParameterCounting: ModelConfigFile {
    /// The weights, as parts in checkpoint order. Only for a validated config: the shapes are
    /// computed with plain arithmetic, which `validate` has proven cannot overflow.
    var parameterParts: [ParameterPart] { get }
    /// The size keys that weights grow with, each with a way to set it to its smallest value. Used
    /// only to say which key contributes the most to a model that does not fit; every change must
    /// only shrink sizes, so a validated config stays free of overflow.
    static var shrinkableKeys: [(key: String, value: (Self) -> String, shrink: (inout Self) -> Void)] { get }
}

extension ParameterCounting {
    /// See `CLIPSegConfig.parameterBytes()`.
    func countParameterBytes() throws -> Int? {
        try validate(file: "config.json")
        return ParameterTally(parameterParts).bytes
    }

    /// See `CLIPSegConfig.checkParameterMemory(file:memoryLimit:)`.
    func checkParameterBytes(file: String, memoryLimit: UInt64) throws {
        // Validation first (again, on the load paths: it is cheap): the parts are listed with
        // plain arithmetic that only a validated config keeps from overflowing.
        try validate(file: file)
        let tally = ParameterTally(parameterParts)
        if let bytes = tally.bytes, let b = UInt64(exactly: bytes), b <= memoryLimit { return }
        let needed = tally.bytes.map { Double($0) } ?? tally.approximateBytes
        // The key whose reduction to its smallest value removes the most bytes.
        var best: (key: String, value: String, saved: Double)?
        for (key, value, shrink) in Self.shrinkableKeys {
            var smaller = self
            shrink(&smaller)
            let saved = needed - ParameterTally(smaller.parameterParts).approximateBytes
            if saved > (best?.saved ?? 0) { best = (key, value(self), saved) }
        }
        let limit =
            tally.bytes == nil && tally.approximateBytes <= Double(memoryLimit)
            ? "more than 64-bit sizes can count"
            : "more than this machine's \(MachineMemory.format(bytes: Double(memoryLimit))) of memory"
        var reason = "the model needs \(MachineMemory.format(bytes: needed)) for its parameters (float32), \(limit)"
        if let best {
            reason += "; this key's value \(best.value) accounts for \(MachineMemory.format(bytes: best.saved)) of it"
        }
        throw ModelLoadError.invalidConfig(file: file, key: best?.key ?? "(file)", reason: reason)
    }
}

// The public face of the check, on each config type (the protocol is internal: its parts are).
extension CLIPSegConfig {
    /// Bytes of the float32 weights the config describes, counted without building or listing the
    /// model (exactly 4 x the parameter count); nil when the count overflows 64 bits. The config is
    /// validated first: an invalid one throws, naming the key.
    public func parameterBytes() throws -> Int? { try countParameterBytes() }

    /// Validates the config, then refuses it when its weights would not fit in `memoryLimit` bytes
    /// (default: this machine's memory) or their count overflows 64 bits, naming `file`, the byte
    /// figure and the key that contributes the most. Runs in microseconds whatever the sizes and
    /// allocates nothing: call it before building anything from a config.
    public func checkParameterMemory(file: String, memoryLimit: UInt64 = MachineMemory.physical) throws {
        try checkParameterBytes(file: file, memoryLimit: memoryLimit)
    }
}

extension CRISConfig {
    /// Bytes of the float32 weights and batch-norm statistics the config describes (see
    /// `CLIPSegConfig.parameterBytes()`).
    public func parameterBytes() throws -> Int? { try countParameterBytes() }

    /// See `CLIPSegConfig.checkParameterMemory(file:memoryLimit:)`.
    public func checkParameterMemory(file: String, memoryLimit: UInt64 = MachineMemory.physical) throws {
        try checkParameterBytes(file: file, memoryLimit: memoryLimit)
    }
}

/// Checks of single config values, with errors naming the key.
enum ConfigCheck {
    /// A size that must be at least 1.
    static func positive(_ value: Int?, _ key: String, file: String) throws {
        guard let value else { throw ModelLoadError.invalidConfig(file: file, key: key, reason: "missing") }
        if value < 1 {
            throw ModelLoadError.invalidConfig(
                file: file, key: key, reason: "must be a positive whole number, got \(value)")
        }
    }

    /// An index or count where 0 means something.
    static func nonNegative(_ value: Int, _ key: String, file: String) throws {
        if value < 0 {
            throw ModelLoadError.invalidConfig(
                file: file, key: key, reason: "must be a non-negative whole number, got \(value)")
        }
    }

    /// `value` when it is a whole number, else an error naming the key: a size derived from config
    /// values (`what` says how) that overflows 64 bits.
    static func fits(_ value: Int?, _ key: String, _ what: String, file: String) throws -> Int {
        guard let value else {
            throw ModelLoadError.invalidConfig(file: file, key: key, reason: "\(what) overflows 64-bit sizes")
        }
        return value
    }

    static func product(_ factors: Int...) -> Int? {
        factors.reduce(Int?(1)) { partial, factor in partial.flatMap { ParameterTally.multiply($0, factor) } }
    }

    static func sum(_ terms: Int?...) -> Int? { terms.reduce(Int?(0)) { ParameterTally.add($0, $1) } }

    /// A coding path as the config writes it: `text_config.hidden_size`, `extract_layers[1]`.
    static func keyPath(_ path: [CodingKey]) -> String {
        var out = ""
        for key in path {
            if let index = key.intValue, key.stringValue.hasPrefix("Index") || key.stringValue == "\(index)" {
                out += "[\(index)]"
            } else {
                out += (out.isEmpty ? "" : ".") + key.stringValue
            }
        }
        return out
    }
}

/// The coding key of an array element (`extract_layers[1]` in messages).
struct IndexCodingKey: CodingKey {
    let intValue: Int?
    var stringValue: String { "Index \(intValue ?? 0)" }
    init(intValue: Int) { self.intValue = intValue }
    init?(stringValue: String) { nil }
}

// Whole numbers in a config, read so that a refusal names the key.
//
// Foundation's JSONDecoder reads `1e12` into an `Int` (it is a whole number), but refuses `4.5` or
// `1e30` with an error that has lost its coding path ("The given data was not valid JSON"); these
// read the number where the key is still known and rethrow with it.
extension KeyedDecodingContainer {
    /// A whole number within 64 bits; missing, null or mistyped values throw the decoder's own
    /// errors (which carry the path).
    func decodeWholeNumber(forKey key: Key) throws -> Int {
        do {
            return try decode(Int.self, forKey: key)
        } catch let error as DecodingError {
            throw error
        } catch {
            let shown = (try? decode(Double.self, forKey: key)).map { "\($0)" } ?? "a number"
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: codingPath + [key],
                    debugDescription: "must be a whole number within 64 bits, got \(shown)",
                    underlyingError: error))
        }
    }

    /// As `decodeWholeNumber`, nil when the key is absent or null.
    func decodeWholeNumberIfPresent(forKey key: Key) throws -> Int? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        return try decodeWholeNumber(forKey: key)
    }

    /// An array of whole numbers; a bad element is named by its index.
    func decodeWholeNumbers(forKey key: Key) throws -> [Int] {
        var elements = try nestedUnkeyedContainer(forKey: key)
        var out: [Int] = []
        while !elements.isAtEnd {
            let index = elements.currentIndex
            do {
                out.append(try elements.decode(Int.self))
            } catch let error as DecodingError {
                throw error
            } catch {
                let shown = (try? elements.decode(Double.self)).map { "\($0)" } ?? "a number"
                throw DecodingError.dataCorrupted(
                    .init(
                        codingPath: codingPath + [key, IndexCodingKey(intValue: index)],
                        debugDescription: "must be a whole number within 64 bits, got \(shown)",
                        underlyingError: error))
            }
        }
        return out
    }

    /// As `decodeWholeNumbers`, nil when the key is absent or null.
    func decodeWholeNumbersIfPresent(forKey key: Key) throws -> [Int]? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        return try decodeWholeNumbers(forKey: key)
    }
}
