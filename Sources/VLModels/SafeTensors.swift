import Foundation
import VLTensor

/// Errors reading or writing safetensors files; each names the file (and tensor) at fault.
public enum SafeTensorsError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, reason: String)
    case invalidHeader(path: String, reason: String)
    case invalidEntry(path: String, tensor: String, reason: String)
    case missingTensor(path: String, tensor: String)
    case wrongDType(path: String, tensor: String, dtype: String, expected: String)
    case cannotWrite(path: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason): return "\(path): cannot open safetensors file: \(reason)"
        case let .invalidHeader(path, reason): return "\(path): invalid safetensors header: \(reason)"
        case let .invalidEntry(path, tensor, reason): return "\(path): tensor '\(tensor)': \(reason)"
        case let .missingTensor(path, tensor): return "\(path): no tensor named '\(tensor)'"
        case let .wrongDType(path, tensor, dtype, expected):
            return "\(path): tensor '\(tensor)' is \(dtype), expected \(expected)"
        case let .cannotWrite(path, reason): return "\(path): cannot write safetensors file: \(reason)"
        }
    }
}

/// Element types of the safetensors format.
public enum SafeTensorsDType: String, Sendable, CaseIterable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"
    case u16 = "U16", u32 = "U32", u64 = "U64"

    public var byteSize: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool: return 1
        }
    }

    var isFloatingPoint: Bool { self == .f64 || self == .f32 || self == .f16 || self == .bf16 }
}

/// A read-only memory mapping of a whole file, unmapped when the last user is gone.
// @unchecked Sendable: immutable after init; the mapping is read-only and unmapped only in deinit.
final class MappedFile: @unchecked Sendable {
    let base: UnsafeMutableRawPointer?
    let length: Int

    init(path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw SafeTensorsError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw SafeTensorsError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw SafeTensorsError.cannotOpen(path: path, reason: "not a regular file")
        }
        length = Int(st.st_size)
        if length == 0 {
            base = nil
            return
        }
        // Read-only, shared: ranks on one machine map the same page-cache pages.
        let p = mmap(nil, length, PROT_READ, MAP_SHARED, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw SafeTensorsError.cannotOpen(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        base = p
    }

    deinit {
        if let base { munmap(base, length) }
    }
}

/// One tensor's entry in a safetensors header.
public struct SafeTensorsEntry: Sendable, Equatable {
    public let name: String
    public let dtype: SafeTensorsDType
    public let shape: [Int]
    /// Byte range within the data section.
    public let begin: Int
    public let end: Int
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A safetensors file, memory-mapped and validated before any tensor data is touched.
///
/// float32 tensors are borrowed straight from the mapping (read-only, zero copy), so frozen
/// weights cost no private memory and are shared by every process that maps the same file.
/// Other float types are converted to float32 on access.
// @unchecked Sendable: immutable after the header is parsed in init; reads only.
public final class SafeTensorsFile: @unchecked Sendable {
    public let path: String
    public let entries: [String: SafeTensorsEntry]
    /// Tensor names in file order (by data offset).
    public let names: [String]
    public let metadata: [String: String]
    private let file: MappedFile
    private let dataStart: Int

    /// Largest header accepted (the format's own reference limit is 100 MB).
    public static let maxHeaderBytes = 100_000_000

    public convenience init(url: URL) throws { try self.init(path: url.path) }

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        guard file.length >= 8, let base = file.base else {
            throw SafeTensorsError.invalidHeader(
                path: path, reason: "file is \(file.length) bytes, shorter than the 8-byte header length")
        }
        let headerLength = UInt64(littleEndian: base.loadUnaligned(as: UInt64.self))
        guard headerLength <= UInt64(Self.maxHeaderBytes), Int(headerLength) <= file.length - 8 else {
            throw SafeTensorsError.invalidHeader(
                path: path, reason: "header length \(headerLength) exceeds the file (\(file.length) bytes)")
        }
        let n = Int(headerLength)
        dataStart = 8 + n
        let headerData = Data(bytes: base + 8, count: n)
        let object: [String: HeaderJSON]
        do {
            object = try JSONDecoder().decode([String: HeaderJSON].self, from: headerData)
        } catch DecodingError.typeMismatch {
            throw SafeTensorsError.invalidHeader(path: path, reason: "header is not a JSON object")
        } catch {
            throw SafeTensorsError.invalidHeader(path: path, reason: "header is not valid JSON")
        }
        let dataSize = file.length - dataStart
        var entries: [String: SafeTensorsEntry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in object {
            if name == "__metadata__" {
                guard case let .object(m) = value else {
                    throw SafeTensorsError.invalidHeader(path: path, reason: "__metadata__ is not an object")
                }
                for (k, v) in m {
                    guard case let .string(s) = v else {
                        throw SafeTensorsError.invalidHeader(
                            path: path, reason: "__metadata__ value for '\(k)' is not a string")
                    }
                    metadata[k] = s
                }
                continue
            }
            entries[name] = try Self.parseEntry(name: name, value: value, dataSize: dataSize, path: path)
        }
        // Ranges must not overlap.
        let sorted = entries.values.sorted { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.begin < a.end {
            throw SafeTensorsError.invalidEntry(
                path: path, tensor: b.name,
                reason: "byte range \(b.begin)..<\(b.end) overlaps '\(a.name)' (\(a.begin)..<\(a.end))")
        }
        self.entries = entries
        names = sorted.map(\.name)
        self.metadata = metadata
    }

    static func parseEntry(name: String, value: HeaderJSON, dataSize: Int, path: String) throws -> SafeTensorsEntry {
        func bad(_ reason: String) -> SafeTensorsError { .invalidEntry(path: path, tensor: name, reason: reason) }
        guard case let .object(dict) = value else { throw bad("entry is not an object") }
        guard case let .string(dtypeName)? = dict["dtype"] else { throw bad("missing dtype") }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else { throw bad("unknown dtype '\(dtypeName)'") }
        guard case let .array(shapeValues)? = dict["shape"] else { throw bad("missing or malformed shape") }
        var shape: [Int] = []
        var elements = 1
        for v in shapeValues {
            guard case let .integer(d) = v else { throw bad("shape has a non-integer dimension") }
            guard d >= 0 else { throw bad("shape has a negative dimension (\(d))") }
            shape.append(d)
            let (product, overflow) = elements.multipliedReportingOverflow(by: d)
            guard !overflow, product <= Int(Int32.max) * 64 else { throw bad("shape \(shape) is too large") }
            elements = product
        }
        guard case let .array(offsets)? = dict["data_offsets"], offsets.count == 2,
            case let .integer(begin) = offsets[0], case let .integer(end) = offsets[1], begin >= 0, end >= 0
        else {
            throw bad("missing or malformed data_offsets")
        }
        guard begin <= end else { throw bad("data_offsets [\(begin), \(end)] are reversed") }
        guard end <= dataSize else {
            throw bad("data_offsets [\(begin), \(end)] run past the data section (\(dataSize) bytes)")
        }
        guard end - begin == elements * dtype.byteSize else {
            throw bad(
                "shape \(shape) of \(dtype.rawValue) needs \(elements * dtype.byteSize) bytes, data_offsets give \(end - begin)"
            )
        }
        return SafeTensorsEntry(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
    }

    public func contains(_ name: String) -> Bool { entries[name] != nil }

    public func entry(_ name: String) throws -> SafeTensorsEntry {
        guard let e = entries[name] else { throw SafeTensorsError.missingTensor(path: path, tensor: name) }
        return e
    }

    private func bytes(of e: SafeTensorsEntry) -> UnsafeRawPointer {
        UnsafeRawPointer(file.base!) + dataStart + e.begin
    }

    /// A float tensor as float32: borrowed from the mapping when it is float32 and aligned,
    /// converted (F16, BF16, F64) or copied (unaligned F32) otherwise.
    public func tensor(_ name: String) throws -> Tensor {
        let e = try entry(name)
        guard e.dtype.isFloatingPoint else {
            throw SafeTensorsError.wrongDType(
                path: path, tensor: name, dtype: e.dtype.rawValue, expected: "a float type")
        }
        let n = e.elementCount
        if n == 0 { return Tensor(zeros: e.shape) }
        let src = bytes(of: e)
        if e.dtype == .f32, Int(bitPattern: src) % MemoryLayout<Float>.alignment == 0 {
            let p = UnsafeMutablePointer(mutating: src.assumingMemoryBound(to: Float.self))
            return Tensor(storage: TensorStorage(borrowing: p, count: n, owner: file, readOnly: true), shape: e.shape)
        }
        let out = Tensor(uninitialized: e.shape)
        out.withUnsafeMutablePointer { o in
            switch e.dtype {
            case .f32:
                for i in 0..<n {
                    o[i] = Float(
                        bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                }
            case .f64:
                for i in 0..<n {
                    o[i] = Float(
                        Double(
                            bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))
                    )
                }
            case .f16:
                for i in 0..<n {
                    o[i] = halfToFloat(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                }
            case .bf16:
                for i in 0..<n {
                    o[i] = Float(
                        bitPattern: UInt32(
                            UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16)
                }
            default: break
            }
        }
        return out
    }

    /// A float tensor as float64 (exact for F64 entries; for float64 reference checks).
    public func doubles(_ name: String) throws -> (shape: [Int], values: [Double]) {
        let e = try entry(name)
        if e.dtype == .f64 {
            let src = bytes(of: e)
            let values = (0..<e.elementCount).map {
                Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)))
            }
            return (e.shape, values)
        }
        let t = try tensor(name)
        return (t.shape, t.scalars.map(Double.init))
    }

    /// An integer tensor (I64, I32, I16, I8, U8, BOOL) as Int values.
    public func integers(_ name: String) throws -> (shape: [Int], values: [Int]) {
        let e = try entry(name)
        let src = bytes(of: e), n = e.elementCount
        let values: [Int]
        switch e.dtype {
        case .i64:
            values = (0..<n).map { Int(Int64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))) }
        case .i32:
            values = (0..<n).map { Int(Int32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
        case .i16:
            values = (0..<n).map { Int(Int16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * $0, as: Int16.self))) }
        case .i8: values = (0..<n).map { Int(src.load(fromByteOffset: $0, as: Int8.self)) }
        case .u8, .bool: values = (0..<n).map { Int(src.load(fromByteOffset: $0, as: UInt8.self)) }
        default:
            throw SafeTensorsError.wrongDType(
                path: path, tensor: name, dtype: e.dtype.rawValue, expected: "an integer type")
        }
        return (e.shape, values)
    }
}

/// The JSON values a safetensors header may hold, decoded strictly (integers stay integers).
enum HeaderJSON: Decodable {
    case integer(Int), number(Double), string(String), bool(Bool), null
    case array([HeaderJSON]), object([String: HeaderJSON])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null; return }
        if let b = try? c.decode(Bool.self) { self = .bool(b); return }
        if let i = try? c.decode(Int.self) { self = .integer(i); return }
        if let d = try? c.decode(Double.self) { self = .number(d); return }
        if let s = try? c.decode(String.self) { self = .string(s); return }
        if let a = try? c.decode([HeaderJSON].self) { self = .array(a); return }
        self = .object(try c.decode([String: HeaderJSON].self))
    }
}

/// IEEE 754 half to single precision.
@inline(__always)
func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = Int((h >> 10) & 0x1F)
    let mantissa = UInt32(h & 0x3FF)
    if exponent == 0 {
        if mantissa == 0 { return Float(bitPattern: sign) }
        let value = Float(mantissa) * 0x1p-24  // subnormal
        return sign != 0 ? -value : value
    }
    if exponent == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13)) }
    return Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | (mantissa << 13))
}

/// Writes safetensors files: float32 tensors and int64 arrays, in the order given.
public struct SafeTensorsWriter {
    public enum Payload {
        case float32(Tensor)
        case int64(shape: [Int], values: [Int])
        case float64(shape: [Int], values: [Double])
    }

    public private(set) var items: [(name: String, payload: Payload)] = []
    public var metadata: [String: String] = [:]

    public init() {}

    public mutating func add(_ name: String, _ tensor: Tensor) { items.append((name, .float32(tensor))) }
    public mutating func add(_ name: String, int64 values: [Int], shape: [Int]) {
        items.append((name, .int64(shape: shape, values: values)))
    }
    public mutating func add(_ name: String, float64 values: [Double], shape: [Int]) {
        items.append((name, .float64(shape: shape, values: values)))
    }

    /// The complete file contents.
    public func serialized() throws -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        var seen = Set<String>()
        for (name, payload) in items {
            guard seen.insert(name).inserted else {
                throw SafeTensorsError.cannotWrite(path: name, reason: "duplicate tensor name '\(name)'")
            }
            let (dtype, shape, bytes): (String, [Int], Int)
            switch payload {
            case let .float32(t): (dtype, shape, bytes) = ("F32", t.shape, t.count * 4)
            case let .int64(s, v): (dtype, shape, bytes) = ("I64", s, v.count * 8)
            case let .float64(s, v): (dtype, shape, bytes) = ("F64", s, v.count * 8)
            }
            header[name] = ["dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes]] as [String: Any]
            offset += bytes
        }
        var headerBytes = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad with spaces so the data section starts 8-byte aligned (float32 tensors can be borrowed).
        while (8 + headerBytes.count) % 8 != 0 { headerBytes.append(0x20) }
        var out = Data(capacity: 8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(headerBytes)
        for (_, payload) in items {
            switch payload {
            case let .float32(t):
                t.withUnsafeBufferPointer { out.append($0) }
            case let .int64(_, v):
                let ints = v.map { Int64($0).littleEndian }
                ints.withUnsafeBufferPointer { out.append($0) }
            case let .float64(_, v):
                v.withUnsafeBufferPointer { out.append($0) }
            }
        }
        return out
    }

    /// Writes the file, flushed to disk (fsync) before returning when `sync` is set.
    public func write(to url: URL, sync: Bool = true) throws {
        let data = try serialized()
        let path = url.path
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw SafeTensorsError.cannotWrite(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        try data.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SafeTensorsError.cannotWrite(path: path, reason: String(cString: strerror(errno)))
                }
                done += n
            }
        }
        if sync, fsync(fd) != 0 {
            throw SafeTensorsError.cannotWrite(path: path, reason: "fsync: \(String(cString: strerror(errno)))")
        }
    }
}
