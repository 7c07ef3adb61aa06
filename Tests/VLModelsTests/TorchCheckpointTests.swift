import Foundation
import VLTensor
import VLTestSupport
import XCTest

@testable import VLModels

// MARK: - A test-only torch.save

/// A Python value, pickled the way `torch.save` (CPython's C pickler, protocol 2) writes it.
indirect enum PyValue {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case tuple([PyValue])
    case list([PyValue])
    case dict([(PyValue, PyValue)])
    /// collections.OrderedDict; torch's state dicts carry `_metadata` as BUILD state.
    case orderedDict([(String, PyValue)], metadata: [(String, PyValue)]?)
    case tensor(TensorSpec)
    /// `module.name(*args)` (REDUCE), then BUILD with `state` when given.
    case call(module: String, name: String, args: [PyValue], state: PyValue?)
    case global(module: String, name: String)
    /// Opcodes written as they are.
    case raw([UInt8])

    static func str(_ s: String) -> PyValue { .string(s) }
}

/// A storage: its key (zip record `data/<key>`), torch class and raw little-endian bytes.
struct StorageSpec {
    var key: String
    var storageClass: String
    var numel: Int
    var bytes: [UInt8]

    static func le<T: FixedWidthInteger>(_ v: [T]) -> [UInt8] {
        v.flatMap { x in withUnsafeBytes(of: x.littleEndian) { Array($0) } }
    }
    static func float32(_ key: String, _ v: [Float]) -> StorageSpec {
        .init(key: key, storageClass: "FloatStorage", numel: v.count, bytes: le(v.map(\.bitPattern)))
    }
    static func float16(_ key: String, _ v: [Float]) -> StorageSpec {
        .init(key: key, storageClass: "HalfStorage", numel: v.count, bytes: le(v.map { Float16($0).bitPattern }))
    }
    static func bfloat16(_ key: String, _ v: [Float]) -> StorageSpec {
        .init(
            key: key, storageClass: "BFloat16Storage", numel: v.count, bytes: le(v.map { UInt16($0.bitPattern >> 16) }))
    }
    static func float64(_ key: String, _ v: [Double]) -> StorageSpec {
        .init(key: key, storageClass: "DoubleStorage", numel: v.count, bytes: le(v.map(\.bitPattern)))
    }
    static func int64(_ key: String, _ v: [Int]) -> StorageSpec {
        .init(key: key, storageClass: "LongStorage", numel: v.count, bytes: le(v.map { Int64($0) }))
    }
    static func int32(_ key: String, _ v: [Int32]) -> StorageSpec {
        .init(key: key, storageClass: "IntStorage", numel: v.count, bytes: le(v))
    }
    static func uint8(_ key: String, _ v: [UInt8]) -> StorageSpec {
        .init(key: key, storageClass: "ByteStorage", numel: v.count, bytes: v)
    }
    static func bool(_ key: String, _ v: [Bool]) -> StorageSpec {
        .init(key: key, storageClass: "BoolStorage", numel: v.count, bytes: v.map { $0 ? 1 : 0 })
    }
    /// torch >= 2 for dtypes without a typed storage class: bytes, the tensor names its dtype.
    static func untyped(_ key: String, _ bytes: [UInt8]) -> StorageSpec {
        .init(key: key, storageClass: "UntypedStorage", numel: bytes.count, bytes: bytes)
    }
}

/// A tensor: a strided view of a storage (`_rebuild_tensor_v2`, or v3 with an explicit dtype).
struct TensorSpec {
    var storage: StorageSpec
    var offset = 0
    var size: [Int]
    var stride: [Int]
    /// nn.Parameter (wrapped in `_rebuild_parameter`).
    var parameter = false
    /// `_rebuild_tensor_v3` with `torch.<v3DType>` (for untyped storages).
    var v3DType: String?

    static func contiguous(_ s: StorageSpec, _ size: [Int], offset: Int = 0) -> TensorSpec {
        var stride = [Int](repeating: 1, count: size.count)
        for i in stride.indices.reversed().dropFirst() { stride[i] = stride[i + 1] * size[i + 1] }
        return TensorSpec(storage: s, offset: offset, size: size, stride: stride)
    }
}

/// CPython's protocol-2 pickler as torch.save drives it: memoised globals and strings (torch's constant
/// strings 'storage', 'cpu' and a shared storage's key are one object, hence BINGET), tuples of up to
/// three items with TUPLE1-3, batched SETITEMS/APPENDS, and storages as persistent ids.
struct TorchPickler {
    var out: [UInt8] = [0x80, 2]
    var memo: [String: Int] = [:]
    var memoCount = 0
    /// Legacy persistent ids carry a sixth item (the view, None here).
    var legacy = false
    var storages: [String: StorageSpec] = [:]

    static func pickle(_ v: PyValue, legacy: Bool = false) -> (bytes: [UInt8], storages: [StorageSpec]) {
        var p = TorchPickler()
        p.legacy = legacy
        p.save(v)
        p.out.append(0x2E)
        return (p.out, p.storages.keys.sorted().map { p.storages[$0]! })
    }

    mutating func u32(_ v: Int) { out += StorageSpec.le([UInt32(v)]) }
    mutating func put() {
        if memoCount < 256 { out += [0x71, UInt8(memoCount)] } else { out.append(0x72); u32(memoCount) }
        memoCount += 1
    }
    mutating func get(_ i: Int) { if i < 256 { out += [0x68, UInt8(i)] } else { out.append(0x6A); u32(i) } }
    mutating func memoized(_ key: String, _ write: (inout TorchPickler) -> Void) {
        if let i = memo[key] { get(i); return }
        write(&self)
        memo[key] = memoCount
        put()
    }
    mutating func global(_ module: String, _ name: String) {
        memoized("g:\(module).\(name)") { $0.out += [0x63] + Array("\(module)\n\(name)\n".utf8) }
    }
    mutating func int(_ v: Int) {
        if v >= 0 && v <= 0xFF {
            out += [0x4B, UInt8(v)]
        } else if v >= 0 && v <= 0xFFFF {
            out += [0x4D] + StorageSpec.le([UInt16(v)])
        } else if v >= Int(Int32.min) && v <= Int(Int32.max) {
            out += [0x4A] + StorageSpec.le([Int32(v)])
        } else {
            var b = StorageSpec.le([Int64(v)])
            while b.count > 1,
                (b[b.count - 1] == 0 && b[b.count - 2] & 0x80 == 0)
                    || (b[b.count - 1] == 0xFF && b[b.count - 2] & 0x80 != 0)
            { b.removeLast() }
            out += [0x8A, UInt8(b.count)] + b
        }
    }
    mutating func tuple(_ items: [PyValue]) {
        if items.isEmpty { out.append(0x29); return }
        if items.count <= 3 {
            for i in items { save(i) }
            out.append(0x84 + UInt8(items.count))
        } else {
            out.append(0x28)
            for i in items { save(i) }
            out.append(0x74)
        }
        put()
    }
    mutating func setItems(_ pairs: [(PyValue, PyValue)]) {
        var i = 0
        while i < pairs.count {
            let batch = pairs[i..<min(i + 1000, pairs.count)]
            if batch.count == 1 {
                save(batch.first!.0); save(batch.first!.1); out.append(0x73)
            } else {
                out.append(0x28)
                for (k, v) in batch { save(k); save(v) }
                out.append(0x75)
            }
            i += 1000
        }
    }
    mutating func persistentID(_ s: StorageSpec) {
        storages[s.key] = s
        var pid: [PyValue] = [
            .string("storage"), .global(module: "torch", name: s.storageClass), .string(s.key), .string("cpu"),
            .int(s.numel),
        ]
        if legacy { pid.append(.none) }
        tuple(pid)
        out.append(0x51)
    }
    mutating func save(_ v: PyValue) {
        switch v {
        case .none: out.append(0x4E)
        case let .bool(b): out.append(b ? 0x88 : 0x89)
        case let .int(i): int(i)
        case let .float(d): out += [0x47] + withUnsafeBytes(of: d.bitPattern.bigEndian) { Array($0) }
        case let .string(s):
            memoized("s:" + s) { p in
                p.out.append(0x58); p.u32(s.utf8.count); p.out += Array(s.utf8)
            }
        case let .tuple(items): tuple(items)
        case let .list(items):
            out.append(0x5D)
            put()
            var i = 0
            while i < items.count {
                let batch = items[i..<min(i + 1000, items.count)]
                if batch.count == 1 {
                    save(batch.first!); out.append(0x61)
                } else {
                    out.append(0x28)
                    for x in batch { save(x) }
                    out.append(0x65)
                }
                i += 1000
            }
        case let .dict(pairs):
            out.append(0x7D)
            put()
            setItems(pairs)
        case let .orderedDict(items, metadata):
            global("collections", "OrderedDict")
            out += [0x29, 0x52]
            put()
            setItems(items.map { (.string($0.0), $0.1) })
            if let metadata {
                save(.dict([(.string("_metadata"), .orderedDict(metadata, metadata: nil))]))
                out.append(0x62)
            }
        case let .tensor(t):
            if t.parameter { global("torch._utils", "_rebuild_parameter") }
            global("torch._utils", t.v3DType == nil ? "_rebuild_tensor_v2" : "_rebuild_tensor_v3")
            out.append(0x28)
            persistentID(t.storage)
            int(t.offset)
            tuple(t.size.map { .int($0) })
            tuple(t.stride.map { .int($0) })
            out.append(0x89)
            save(.orderedDict([], metadata: nil))
            if let d = t.v3DType { global("torch", d) }
            out.append(0x74)
            put()
            out.append(0x52)
            put()
            if t.parameter {
                save(.bool(true))
                save(.orderedDict([], metadata: nil))
                out.append(0x87)
                put()
                out.append(0x52)
                put()
            }
        case let .call(module, name, args, state):
            global(module, name)
            tuple(args)
            out.append(0x52)
            put()
            if let state { save(state); out.append(0x62) }
        case let .global(module, name): global(module, name)
        case let .raw(bytes): out += bytes
        }
    }
}

/// Zip archives laid out like torch's writer (miniz): stored records, each local header padded with
/// an `FB` extra field so the data starts 64-byte aligned; optionally ZIP64 records throughout.
enum TestZip {
    struct Record {
        var name: String
        var data: [UInt8]
        var method: UInt16 = 0
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
        }
        return ~c
    }

    static func build(_ records: [Record], zip64: Bool = false) -> Data {
        var out: [UInt8] = []
        func u16(_ v: Int) -> [UInt8] { StorageSpec.le([UInt16(v)]) }
        func u32(_ v: Int) -> [UInt8] { StorageSpec.le([UInt32(truncatingIfNeeded: v)]) }
        func u64(_ v: Int) -> [UInt8] { StorageSpec.le([UInt64(v)]) }
        var central: [UInt8] = []
        for r in records {
            let offset = out.count
            let name = Array(r.name.utf8)
            let crc = crc32(r.data)
            let start = offset + 30 + name.count + 4
            let pad = (64 - start % 64) % 64
            let extra = Array("FB".utf8) + u16(pad) + [UInt8](repeating: 0x5A, count: pad)
            out +=
                u32(0x0403_4B50) + u16(zip64 ? 45 : 20) + u16(0) + u16(Int(r.method)) + u16(0) + u16(0) + u32(Int(crc))
            out += u32(r.data.count) + u32(r.data.count) + u16(name.count) + u16(extra.count) + name + extra + r.data
            let big = 0xFFFF_FFFF
            let cdExtra = zip64 ? u16(1) + u16(24) + u64(r.data.count) + u64(r.data.count) + u64(offset) : []
            central +=
                u32(0x0201_4B50) + u16(zip64 ? 45 : 20) + u16(zip64 ? 45 : 20) + u16(0) + u16(Int(r.method)) + u16(0)
                + u16(0)
            central += u32(Int(crc)) + u32(zip64 ? big : r.data.count) + u32(zip64 ? big : r.data.count)
            central +=
                u16(name.count) + u16(cdExtra.count) + u16(0) + u16(0) + u16(0) + u32(0) + u32(zip64 ? big : offset)
                + name + cdExtra
        }
        let cdOffset = out.count
        out += central
        if zip64 {
            let record = out.count
            out += u32(0x0606_4B50) + u64(44) + u16(45) + u16(45) + u32(0) + u32(0)
            out += u64(records.count) + u64(records.count) + u64(central.count) + u64(cdOffset)
            out += u32(0x0706_4B50) + u32(0) + u64(record) + u32(1)
            out +=
                u32(0x0605_4B50) + u16(0) + u16(0) + u16(0xFFFF) + u16(0xFFFF) + u32(0xFFFF_FFFF) + u32(0xFFFF_FFFF)
                + u16(0)
        } else {
            out +=
                u32(0x0605_4B50) + u16(0) + u16(0) + u16(records.count) + u16(records.count) + u32(central.count)
                + u32(cdOffset) + u16(0)
        }
        return Data(out)
    }
}

/// What `torch.save(value, f)` writes, in both formats.
enum TorchSave {
    /// The zip format: `<archive>/data.pkl`, `byteorder`, `data/<key>` (sorted as strings), `version`.
    static func zip(
        _ value: PyValue, archive: String = "archive", zip64: Bool = false, deflate: Set<String> = [],
        omitStorages: Set<String> = []
    ) -> Data {
        let (pkl, storages) = TorchPickler.pickle(value)
        var records = [
            TestZip.Record(name: "\(archive)/data.pkl", data: pkl),
            TestZip.Record(name: "\(archive)/byteorder", data: Array("little".utf8)),
        ]
        for s in storages where !omitStorages.contains(s.key) {
            records.append(TestZip.Record(name: "\(archive)/data/\(s.key)", data: s.bytes))
        }
        records.append(TestZip.Record(name: "\(archive)/version", data: Array("3\n".utf8)))
        records.append(
            TestZip.Record(
                name: "\(archive)/.data/serialization_id", data: Array("1234567890123456789012345678901234567890".utf8))
        )
        for i in records.indices where deflate.contains(records[i].name) { records[i].method = 8 }
        return TestZip.build(records, zip64: zip64)
    }

    /// A zip whose data.pkl is `pickle` as given (for hand-made streams).
    static func zip(rawPickle: [UInt8], storages: [StorageSpec] = []) -> Data {
        var records = [TestZip.Record(name: "archive/data.pkl", data: rawPickle)]
        for s in storages { records.append(TestZip.Record(name: "archive/data/\(s.key)", data: s.bytes)) }
        return TestZip.build(records)
    }

    /// The legacy format (torch < 1.6): magic, protocol, system info, object and key-list pickles,
    /// then per storage an int64 element count and the bytes.
    static func legacy(_ value: PyValue) -> Data {
        var out: [UInt8] = [0x80, 2, 0x8A, 10] + TorchCheckpoint.legacyMagic + [0x2E]
        out += TorchPickler.pickle(.int(1001)).bytes
        out +=
            TorchPickler.pickle(
                .dict([
                    (.str("protocol_version"), .int(1001)), (.str("little_endian"), .bool(true)),
                    (
                        .str("type_sizes"),
                        .dict([(.str("short"), .int(2)), (.str("int"), .int(4)), (.str("long"), .int(8))])
                    ),
                ])
            ).bytes
        let (main, storages) = TorchPickler.pickle(value, legacy: true)
        out += main
        out += TorchPickler.pickle(.list(storages.map { .string($0.key) })).bytes
        for s in storages { out += StorageSpec.le([Int64(s.numel)]) + s.bytes }
        return Data(out)
    }
}

// MARK: - Tests

final class TorchCheckpointTests: XCTestCase {
    /// `ref.pth` as CPython's own pickler and zipfile wrote it (Python 3.11), emulating torch.save's
    /// `persistent_id` and `Tensor.__reduce_ex__` with stand-in classes (no torch needed):
    /// an OrderedDict with `_metadata`, float32/float16/int64/float64 storages, a scalar, a transposed
    /// view and a second view at offset 4 of the first storage. The same object as `referenceStateDict`.
    static let cpythonPth: [String] = [
        "UEsDBBQAAAAAAIahdl1ooGWRhwIAAIcCAAAMAAAAcmVmL2RhdGEucGtsgAJjY29sbGVjdGlvbnMKT3JkZXJlZERpY3QKcQApUnEB",
        "KFgLAAAAY29udi53ZWlnaHRxAmN0b3JjaC5fdXRpbHMKX3JlYnVpbGRfdGVuc29yX3YyCnEDKChYBwAAAHN0b3JhZ2VxBGN0b3Jj",
        "aApGbG9hdFN0b3JhZ2UKcQVYAQAAADBxBlgDAAAAY3B1cQdLCHRxCFFLAChLAksBSwJLAnRxCShLBEsESwJLAXRxColoAClScQt0",
        "cQxScQ1YCQAAAGNvbnYuYmlhc3EOaAMoKGgEY3RvcmNoCkhhbGZTdG9yYWdlCnEPWAEAAAAxcRBoB0sCdHERUUsASwKFcRJLAYVx",
        "E4loAClScRR0cRVScRZYFgAAAGJuLm51bV9iYXRjaGVzX3RyYWNrZWRxF2gDKChoBGN0b3JjaApMb25nU3RvcmFnZQpxGFgBAAAA",
        "MnEZaAdLAXRxGlFLACkpiWgAKVJxG3RxHFJxHVgLAAAAZmMud2VpZ2h0X3RxHmgDKChoBGgFWAEAAAAzcR9oB0sGdHEgUUsASwNL",
        "AoZxIUsBSwOGcSKJaAApUnEjdHEkUnElWAgAAABmYy5zbGljZXEmaAMoKGgEaAVoBmgHSwh0cSdRSwRLAoVxKEsBhXEpiWgAKVJx",
        "KnRxK1JxLFgDAAAAZGJscS1oAygoaARjdG9yY2gKRG91YmxlU3RvcmFnZQpxLlgBAAAANHEvaAdLAnRxMFFLAEsChXExSwGFcTKJ",
        "aAApUnEzdHE0UnE1dX1xNlgJAAAAX21ldGFkYXRhcTdoAClScTgoWAAAAABxOX1xOlgHAAAAdmVyc2lvbnE7SwFzWAQAAABjb252",
        "cTx9cT1oO0sBc3VzYi5QSwMEFAAAAAAAhqF2XYU94xkGAAAABgAAAA0AAAByZWYvYnl0ZW9yZGVybGl0dGxlUEsDBBQAAAAAAIah",
        "dl2bu3roIAAAACAAAAAKAAAAcmVmL2RhdGEvMAAAAD8AAKC/AAAAQAAAYEBvEoM6AADgwAAAyEIAAAAAUEsDBBQAAAAAAIahdl0T",
        "YL3DBAAAAAQAAAAKAAAAcmVmL2RhdGEvMQA+ALRQSwMEFAAAAAAAhqF2XW0yw1cIAAAACAAAAAoAAAByZWYvZGF0YS8yOTAAAAAA",
        "AABQSwMEFAAAAAAAhqF2XSTlORkYAAAAGAAAAAoAAAByZWYvZGF0YS8zAACAPwAAAEAAAEBAAACAQAAAoEAAAMBAUEsDBBQAAAAA",
        "AIahdl0ipG/3EAAAABAAAAAKAAAAcmVmL2RhdGEvNBgtRFT7IQlAldYm6Asu8b1QSwMEFAAAAAAAhqF2XdGeZ1UCAAAAAgAAAAsA",
        "AAByZWYvdmVyc2lvbjMKUEsBAhQDFAAAAAAAhqF2XWigZZGHAgAAhwIAAAwAAAAAAAAAAAAAAIABAAAAAHJlZi9kYXRhLnBrbFBL",
        "AQIUAxQAAAAAAIahdl2FPeMZBgAAAAYAAAANAAAAAAAAAAAAAACAAbECAAByZWYvYnl0ZW9yZGVyUEsBAhQDFAAAAAAAhqF2XZu7",
        "euggAAAAIAAAAAoAAAAAAAAAAAAAAIAB4gIAAHJlZi9kYXRhLzBQSwECFAMUAAAAAACGoXZdE2C9wwQAAAAEAAAACgAAAAAAAAAA",
        "AAAAgAEqAwAAcmVmL2RhdGEvMVBLAQIUAxQAAAAAAIahdl1tMsNXCAAAAAgAAAAKAAAAAAAAAAAAAACAAVYDAAByZWYvZGF0YS8y",
        "UEsBAhQDFAAAAAAAhqF2XSTlORkYAAAAGAAAAAoAAAAAAAAAAAAAAIABhgMAAHJlZi9kYXRhLzNQSwECFAMUAAAAAACGoXZdIqRv",
        "9xAAAAAQAAAACgAAAAAAAAAAAAAAgAHGAwAAcmVmL2RhdGEvNFBLAQIUAxQAAAAAAIahdl3RnmdVAgAAAAIAAAALAAAAAAAAAAAA",
        "AACAAf4DAAByZWYvdmVyc2lvblBLBQYAAAAACAAIAMYBAAApBAAAAAA=",
    ]

    static var referenceStateDict: PyValue {
        let s0 = StorageSpec.float32("0", [0.5, -1.25, 2.0, 3.5, 1e-3, -7.0, 100.0, 0.0])
        let s3 = StorageSpec.float32("3", [1, 2, 3, 4, 5, 6])
        return .orderedDict(
            [
                ("conv.weight", .tensor(TensorSpec(storage: s0, size: [2, 1, 2, 2], stride: [4, 4, 2, 1]))),
                ("conv.bias", .tensor(.contiguous(.float16("1", [1.5, -0.25]), [2]))),
                ("bn.num_batches_tracked", .tensor(.contiguous(.int64("2", [12345]), []))),
                ("fc.weight_t", .tensor(TensorSpec(storage: s3, size: [3, 2], stride: [1, 3]))),
                ("fc.slice", .tensor(TensorSpec(storage: s0, offset: 4, size: [2], stride: [1]))),
                ("dbl", .tensor(.contiguous(.float64("4", [3.141592653589793, -2.5e-10]), [2]))),
            ], metadata: [("", .dict([(.str("version"), .int(1))])), ("conv", .dict([(.str("version"), .int(1))]))])
    }

    func read(_ data: Data, name: String = "model.pth", prefix: String? = nil) throws -> TorchStateDict {
        try TorchCheckpoint(data: data, name: name).stateDict(prefix: prefix)
    }

    func floats(_ sd: TorchStateDict, _ name: String, file: StaticString = #filePath, line: UInt = #line) -> [Float] {
        guard let t = sd.tensors.first(where: { $0.name == name })?.tensor.floats else {
            XCTFail("no float tensor '\(name)'", file: file, line: line)
            return []
        }
        return t.scalars
    }

    func error(_ data: Data, name: String = "model.pth", prefix: String? = nil) -> String {
        do {
            _ = try read(data, name: name, prefix: prefix)
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    func testReadsWhatCPythonsPicklerWrites() throws {
        let data = try XCTUnwrap(Data(base64Encoded: Self.cpythonPth.joined()))
        let checkpoint = try TorchCheckpoint(data: data, name: "ref.pth")
        XCTAssertEqual(checkpoint.format, .zip(archive: "ref", version: 3))
        let sd = try checkpoint.stateDict()
        XCTAssertNil(sd.entry)
        XCTAssertEqual(
            sd.tensors.map(\.name),
            ["conv.weight", "conv.bias", "bn.num_batches_tracked", "fc.weight_t", "fc.slice", "dbl"])
        XCTAssertEqual(floats(sd, "conv.weight"), [0.5, -1.25, 2.0, 3.5, 1e-3, -7.0, 100.0, 0.0])
        XCTAssertEqual(sd.tensors[0].tensor.shape, [2, 1, 2, 2])
        XCTAssertEqual(floats(sd, "conv.bias"), [1.5, -0.25])
        XCTAssertEqual(sd.tensors[1].tensor.dtype, .float16)
        XCTAssertEqual(sd.tensors[2].tensor.integers, [12345])
        XCTAssertEqual(sd.tensors[2].tensor.shape, [])
        XCTAssertEqual(floats(sd, "fc.weight_t"), [1, 4, 2, 5, 3, 6])  // [3, 2] with stride [1, 3]
        XCTAssertEqual(floats(sd, "fc.slice"), [1e-3, -7.0])
        XCTAssertEqual(floats(sd, "dbl"), [Float(3.141592653589793), Float(-2.5e-10)])
        XCTAssertEqual(sd.parameterCount, 8 + 2 + 1 + 6 + 2 + 2)

        // The test writer below emits byte for byte what CPython's pickler emitted for the same object,
        // so the writer-based tests exercise exactly the stream torch.save produces.
        let zip = try ZipArchive(data: data, name: "ref.pth")
        let cpython = try zip.data(of: XCTUnwrap(zip.entry(named: "ref/data.pkl")))
        XCTAssertEqual(TorchPickler.pickle(Self.referenceStateDict).bytes, [UInt8](cpython))
    }

    func testRoundTripOfDTypesAndLayouts() throws {
        let base = (0..<12).map { Float($0) * 0.5 - 1 }
        let s0 = StorageSpec.float32("0", base)
        let halves: [Float] = [0, 1, -2, 0.5, 65504, -0.000061035156]
        let brains: [Float] = [1, -2.5, 3.0e38, -1.0e-38]
        let doubles = [1.0 / 3, -1e300, 2.5]
        let longs = [-3, 0, 1 << 40, Int(Int64.min)]
        let items: [(String, PyValue)] = [
            ("a.f32", .tensor(.contiguous(s0, [3, 4]))),
            ("b.transposed", .tensor(TensorSpec(storage: s0, size: [4, 3], stride: [1, 4]))),
            ("c.offset", .tensor(TensorSpec(storage: s0, offset: 5, size: [2, 2], stride: [2, 1]))),
            ("d.shared", .tensor(.contiguous(s0, [12]))),
            ("e.f16", .tensor(.contiguous(.float16("1", halves), [2, 3]))),
            ("f.bf16", .tensor(.contiguous(.bfloat16("2", brains), [4]))),
            ("g.f64", .tensor(.contiguous(.float64("3", doubles), [3]))),
            ("h.i64", .tensor(.contiguous(.int64("4", longs), [2, 2]))),
            ("i.scalar", .tensor(.contiguous(.float32("5", [42.5]), []))),
            ("j.bool", .tensor(.contiguous(.bool("6", [true, false, true]), [3]))),
            ("k.u8", .tensor(.contiguous(.uint8("7", [0, 255, 7]), [3]))),
            ("l.i32", .tensor(.contiguous(.int32("8", [-1, Int32.max]), [2]))),
            ("m.empty", .tensor(TensorSpec(storage: .float32("9", []), size: [0, 3], stride: [3, 1]))),
            ("n.broadcast", .tensor(TensorSpec(storage: s0, offset: 2, size: [2, 3], stride: [0, 1]))),
            ("o.parameter", .tensor(TensorSpec(storage: s0, size: [2], stride: [1], parameter: true))),
            (
                "p.v3",
                .tensor(
                    TensorSpec(
                        storage: .untyped("10", StorageSpec.le([Float(7.25).bitPattern, Float(-1).bitPattern])),
                        size: [2], stride: [1], v3DType: "float32"))
            ),
            (
                "q.v3.u16",
                .tensor(
                    TensorSpec(
                        storage: .untyped("11", StorageSpec.le([UInt16(65535), 3])), size: [2], stride: [1],
                        v3DType: "uint16"))
            ),
        ]
        let sd = try read(TorchSave.zip(.orderedDict(items, metadata: [("", .dict([(.str("version"), .int(1))]))])))
        XCTAssertEqual(sd.tensors.map(\.name), items.map(\.0))
        XCTAssertEqual(floats(sd, "a.f32"), base)
        XCTAssertEqual(floats(sd, "b.transposed"), (0..<4).flatMap { i in (0..<3).map { j in base[i + 4 * j] } })
        XCTAssertEqual(floats(sd, "c.offset"), [base[5], base[6], base[7], base[8]])
        XCTAssertEqual(floats(sd, "d.shared"), base)
        XCTAssertEqual(floats(sd, "e.f16"), halves.map { Float(Float16($0)) })
        XCTAssertEqual(floats(sd, "f.bf16"), brains.map { Float(bitPattern: $0.bitPattern & 0xFFFF_0000) })
        XCTAssertEqual(floats(sd, "g.f64"), doubles.map { Float($0) })
        XCTAssertEqual(sd.tensors[7].tensor.integers, longs)
        XCTAssertEqual(sd.tensors[7].tensor.shape, [2, 2])
        XCTAssertEqual(floats(sd, "i.scalar"), [42.5])
        XCTAssertEqual(sd.tensors[8].tensor.shape, [])
        XCTAssertEqual(sd.tensors[9].tensor.integers, [1, 0, 1])
        XCTAssertEqual(sd.tensors[10].tensor.integers, [0, 255, 7])
        XCTAssertEqual(sd.tensors[11].tensor.integers, [-1, Int(Int32.max)])
        XCTAssertEqual(sd.tensors[12].tensor.shape, [0, 3])
        XCTAssertEqual(floats(sd, "m.empty"), [])
        XCTAssertEqual(floats(sd, "n.broadcast"), [base[2], base[3], base[4], base[2], base[3], base[4]])
        XCTAssertEqual(floats(sd, "o.parameter"), [base[0], base[1]])
        XCTAssertEqual(floats(sd, "p.v3"), [7.25, -1])
        XCTAssertEqual(sd.tensors[16].tensor.integers, [65535, 3])
        XCTAssertEqual(sd.tensors[16].tensor.dtype, .uint16)

        // Exported to safetensors: floats as F32, integer types as I64.
        var writer = SafeTensorsWriter()
        for (name, t) in sd.tensors { writer.add(name, t) }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vlseg-torch-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try writer.write(to: url, sync: false)
        let st = try SafeTensorsFile(url: url)
        XCTAssertEqual(try st.tensor("b.transposed").scalars, floats(sd, "b.transposed"))
        XCTAssertEqual(try st.entry("h.i64").dtype, .i64)
        XCTAssertEqual(try st.integers("h.i64").values, longs)
        XCTAssertEqual(try st.entry("e.f16").dtype, .f32)
    }

    func testZip64AndLegacyFormatsGiveTheSameTensors() throws {
        let value = Self.referenceStateDict
        let plain = try read(TorchSave.zip(value))
        for (label, data) in [("zip64", TorchSave.zip(value, zip64: true)), ("legacy", TorchSave.legacy(value))] {
            let checkpoint = try TorchCheckpoint(data: data, name: label)
            XCTAssertEqual(checkpoint.format, label == "legacy" ? .legacy : .zip(archive: "archive", version: 3), label)
            let other = try checkpoint.stateDict()
            XCTAssertEqual(other.tensors.map(\.name), plain.tensors.map(\.name), label)
            for ((_, a), (name, b)) in zip(plain.tensors, other.tensors) {
                XCTAssertEqual(a.shape, b.shape, "\(label) \(name)")
                XCTAssertEqual(a.floats?.scalars, b.floats?.scalars, "\(label) \(name)")
                XCTAssertEqual(a.integers, b.integers, "\(label) \(name)")
            }
        }
    }

    func testModulePrefixIsStrippedOnlyWhenEveryNameHasIt() throws {
        let s = StorageSpec.float32("0", [1, 2])
        let ddp = try read(
            TorchSave.zip(
                .dict([
                    (
                        .str("state_dict"),
                        .orderedDict(
                            [
                                ("module.backbone.w", .tensor(.contiguous(s, [2]))),
                                ("module.neck.b", .tensor(.contiguous(s, [1]))),
                            ], metadata: nil)
                    )
                ])))
        XCTAssertEqual(ddp.entry, "state_dict")
        XCTAssertEqual(ddp.tensors.map(\.name), ["backbone.w", "neck.b"])
        XCTAssertEqual(ddp.strippedPrefixes, ["module."])

        let mixed = try read(
            TorchSave.zip(
                .orderedDict(
                    [
                        ("module.w", .tensor(.contiguous(s, [2]))), ("b", .tensor(.contiguous(s, [1]))),
                    ], metadata: nil)))
        XCTAssertEqual(mixed.tensors.map(\.name), ["module.w", "b"])
        XCTAssertEqual(mixed.strippedPrefixes, [])
    }

    /// A Lightning checkpoint as the seeds' VLSM-Adapter runs write it: `net.`-prefixed state dict
    /// (the frozen CLIPSeg twice, as `clipseg.clip` and its alias `clip`), optimizer states with integer
    /// keys, and hyper-parameters holding functools.partial optimizer factories.
    func testLightningCheckpointMapsOntoVLSegNames() throws {
        let emb = StorageSpec.float32("0", [1, 2, 3, 4])
        let reduce = StorageSpec.float32("1", [5, 6])
        let fc1 = StorageSpec.float32("2", [0.1, 0.2])
        let step = StorageSpec.float32("3", [120])
        let adamW = PyValue.global(module: "torch.optim.adamw", name: "AdamW")
        let partial = PyValue.call(
            module: "functools", name: "partial", args: [adamW],
            state: .tuple([
                adamW, .tuple([]), .dict([(.str("lr"), .float(3e-4)), (.str("weight_decay"), .float(1e-3))]), .none,
            ]))
        let plateau = PyValue.global(module: "torch.optim.lr_scheduler", name: "ReduceLROnPlateau")
        let scheduler = PyValue.call(
            module: "functools", name: "partial", args: [plateau],
            state: .tuple([plateau, .tuple([]), .dict([(.str("factor"), .float(0.3))]), .none]))
        let state: [(String, PyValue)] = [
            ("net.clipseg.clip.text_model.embeddings.token_embedding.weight", .tensor(.contiguous(emb, [2, 2]))),
            ("net.clipseg.decoder.reduce.weight", .tensor(.contiguous(reduce, [2]))),
            ("net.clip.text_model.embeddings.token_embedding.weight", .tensor(.contiguous(emb, [2, 2]))),
            ("net.v_attn_adapters.0.fc1.weight", .tensor(.contiguous(fc1, [1, 2]))),
            ("net.v_attn_adapters.0.fc1.bias", .tensor(.contiguous(fc1, [1]))),
            ("net.cond_adapter.fc2.bias", .tensor(.contiguous(reduce, [2]))),
            ("net.context_learner.context_vectors", .tensor(.contiguous(fc1, [2]))),
        ]
        let checkpoint: PyValue = .dict([
            (.str("epoch"), .int(3)), (.str("global_step"), .int(120)),
            (.str("pytorch-lightning_version"), .str("2.1.3")),
            (.str("state_dict"), .orderedDict(state, metadata: [("", .dict([(.str("version"), .int(1))]))])),
            (
                .str("loops"),
                .dict([
                    (
                        .str("fit_loop"),
                        .dict([
                            (.str("state_dict"), .dict([])),
                            (.str("epoch_progress"), .dict([(.str("current"), .dict([(.str("ready"), .int(4))]))])),
                        ])
                    )
                ])
            ),
            (
                .str("callbacks"),
                .dict([
                    (
                        .str("ModelCheckpoint{'monitor': 'val/loss', 'mode': 'min'}"),
                        .dict([
                            (.str("best_model_score"), .tensor(.contiguous(step, []))),
                            (.str("best_model_path"), .str("/runs/x/epoch_003.ckpt")),
                        ])
                    )
                ])
            ),
            (
                .str("optimizer_states"),
                .list([
                    .dict([
                        (
                            .str("state"),
                            .dict([
                                (
                                    .int(0),
                                    .dict([
                                        (.str("step"), .tensor(.contiguous(step, []))),
                                        (.str("exp_avg"), .tensor(.contiguous(fc1, [1, 2]))),
                                    ])
                                )
                            ])
                        ),
                        (
                            .str("param_groups"),
                            .list([
                                .dict([
                                    (.str("lr"), .float(3e-4)), (.str("betas"), .tuple([.float(0.9), .float(0.999)])),
                                    (.str("foreach"), .none), (.str("amsgrad"), .bool(false)),
                                    (.str("params"), .list([.int(0), .int(1)])),
                                ])
                            ])
                        ),
                    ])
                ])
            ),
            (.str("lr_schedulers"), .list([.dict([(.str("best"), .float(.infinity)), (.str("mode"), .str("min"))])])),
            (.str("hparams_name"), .str("kwargs")),
            (
                .str("hyper_parameters"),
                .dict([(.str("optimizer"), partial), (.str("scheduler"), scheduler), (.str("threshold"), .float(0.5))])
            ),
        ])
        let ckpt = try TorchCheckpoint(data: TorchSave.zip(checkpoint, archive: "epoch_003"), name: "epoch_003.ckpt")
        XCTAssertEqual(ckpt.topLevelInt("epoch"), 3)
        XCTAssertEqual(ckpt.topLevelInt("global_step"), 120)
        XCTAssertEqual(ckpt.topLevelKeys.first, "epoch")

        let sd = try ckpt.stateDict(prefix: "net.")
        XCTAssertEqual(sd.entry, "state_dict")
        XCTAssertEqual(sd.strippedPrefixes, ["net."])
        XCTAssertEqual(sd.tensors.count, 7)

        XCTAssertEqual(
            sd.tensors.map(\.name),
            [
                "clipseg.clip.text_model.embeddings.token_embedding.weight", "clipseg.decoder.reduce.weight",
                "clip.text_model.embeddings.token_embedding.weight", "v_attn_adapters.0.fc1.weight",
                "v_attn_adapters.0.fc1.bias",
                "cond_adapter.fc2.bias", "context_learner.context_vectors",
            ])
        XCTAssertEqual(sd.tensors[3].tensor.floats?.scalars, [0.1, 0.2])

        // A prefix nobody has is an error that shows what the names look like.
        XCTAssertTrue(
            error(TorchSave.zip(checkpoint), name: "epoch_003.ckpt", prefix: "model.").contains(
                "no tensor name starts with 'model.'"))
        // The same file named .pth gets the strict list: the optimizer factory is refused.
        XCTAssertTrue(
            error(TorchSave.zip(checkpoint), name: "epoch_003.pth").contains(
                "refused: the pickle calls 'functools.partial'"))
    }

    func testCodeExecutingGlobalsAreRefusedByName() {
        let hostile: [(String, String, [PyValue])] = [
            ("os", "system", [.str("touch /tmp/pwned")]), ("posix", "system", [.str("id")]),
            ("builtins", "eval", [.str("__import__('os').system('id')")]),
            ("subprocess", "Popen", [.list([.str("sh")])]),
            ("numpy.core.multiarray", "_reconstruct", []), ("torch", "load", [.str("other.pth")]),
            ("builtins", "getattr", []), ("__builtin__", "exec", []),
        ]
        for (module, name, args) in hostile {
            // Hidden deep inside otherwise valid data (a tensor next to it, inside hyper-parameters).
            let value: PyValue = .dict([
                (
                    .str("state_dict"),
                    .orderedDict([("w", .tensor(.contiguous(.float32("0", [1]), [1])))], metadata: nil)
                ),
                (
                    .str("hyper_parameters"),
                    .dict([(.str("x"), .list([.call(module: module, name: name, args: args, state: nil)]))])
                ),
            ])
            let message = error(TorchSave.zip(value))
            XCTAssertTrue(message.hasPrefix("model.pth: refused: the pickle calls '\(module).\(name)' (byte "), message)
            XCTAssertTrue(
                message.hasSuffix(" of archive/data.pkl; only tensors and dicts of them are allowed)"), message)
            XCTAssertTrue(error(TorchSave.legacy(value)).contains("refused: the pickle calls '\(module).\(name)'"))
        }
        // Protocol 4's STACK_GLOBAL takes the names from the stack.
        func short(_ s: String) -> [UInt8] { [0x8C, UInt8(s.utf8.count)] + Array(s.utf8) }
        let stackGlobal: [UInt8] =
            [0x80, 4] + short("os") + short("system") + [0x93] + short("id") + [0x85, 0x52, 0x2E]
        XCTAssertEqual(
            error(TorchSave.zip(rawPickle: stackGlobal)),
            "model.pth: refused: the pickle calls 'os.system' (byte 14 of archive/data.pkl; only tensors and dicts of them are allowed)"
        )
        // Inert names are data only: a Lightning partial may be named, never applied to anything useful.
        XCTAssertFalse(
            PickleAllowList().isInert(module: "functools", name: "partial"), "model files get the strict list")
        var allow = PickleAllowList.lightningCheckpoint
        XCTAssertTrue(allow.isInert(module: "torch.optim.adamw", name: "AdamW"))
        XCTAssertFalse(allow.isInert(module: "torch.optimizer_hack", name: "x"))
        allow.inertModules = []
        XCTAssertFalse(allow.isInert(module: "torch.optim.adamw", name: "AdamW"))
    }

    func testUnknownOpcodesAndMalformedStreamsAreRefused() {
        let cases: [([UInt8], String)] = [
            (
                [0x80, 2, 0x69] + Array("os\nsystem\n".utf8) + [0x2E],
                "refused: the pickle uses opcode INST (0x69) at byte 2"
            ),
            ([0x80, 2, 0xFF, 0x2E], "opcode <unknown> (0xff) at byte 2"),
            ([0x80, 2, 0x49] + Array("1\n".utf8) + [0x2E], "opcode INT (0x49)"),
            ([0x80, 5, 0x96, 1, 0, 0, 0, 0, 0, 0, 0, 0x41, 0x2E], "opcode BYTEARRAY8"),
            ([0x80, 2, 0x82, 1, 0x2E], "opcode EXT1"),
            ([0x80, 6, 0x4E, 0x2E], "pickle protocol 6 is not supported"),
            ([0x80, 2, 0x52, 0x2E], "at byte 2: stack underflow"),
            ([0x80, 2, 0x68, 7, 0x2E], "memo entry 7 is read before it is written"),
            ([0x80, 2, 0x58, 0xFF, 0xFF, 0, 0, 0x41], "a length of 65535 bytes exceeds"),
            ([0x80, 2, 0x4E], "ends without a STOP"),
            ([0x80, 2, 0x4E, 0x28, 0x4E, 0x4E, 0x75, 0x2E], "SETITEM(S) on None, which is not a dict"),
            ([0x80, 2, 0x4E, 0x4E, 0x52, 0x2E], "the argument of REDUCE is None"),
            (
                [0x80, 2, 0x63] + Array("torch\nFloatStorage\n".utf8) + [0x29, 0x52, 0x2E],
                "'torch.FloatStorage' is called"
            ),
            (
                [0x80, 2, 0x28, 0x58, 6, 0, 0, 0] + Array("module".utf8) + [0x4E, 0x4E, 0x87, 0x51, 0x2E],
                "pickles a whole nn.Module"
            ),
        ]
        for (stream, expected) in cases {
            let message = error(TorchSave.zip(rawPickle: stream))
            XCTAssertTrue(message.hasPrefix("model.pth: "), message)
            XCTAssertTrue(message.contains(expected), "\(message) does not contain \(expected)")
        }
    }

    func testArchiveAndStorageProblemsNameTheRecord() {
        let value = Self.referenceStateDict
        XCTAssertTrue(
            error(TorchSave.zip(value, deflate: ["archive/data/3"])).contains(
                "model.pth: zip entry 'archive/data/3': is deflate-compressed (method 8); only stored (uncompressed) entries can be read"
            ))
        XCTAssertTrue(
            error(TorchSave.zip(value, deflate: ["archive/data.pkl"])).contains(
                "zip entry 'archive/data.pkl': is deflate-compressed"))
        XCTAssertTrue(
            error(TorchSave.zip(value, omitStorages: ["1"])).contains(
                "storage '1': the pickle uses it but the archive has no record archive/data/1"))

        // A flipped data byte: the record's CRC-32 no longer matches.
        var damaged = [UInt8](TorchSave.zip(value))
        let zip = try! ZipArchive(data: Data(damaged), name: "x")
        let record = zip.entry(named: "archive/data/4")!
        func u16(_ o: Int) -> Int { Int(damaged[o]) | Int(damaged[o + 1]) << 8 }
        let h = record.localHeaderOffset
        damaged[h + 30 + u16(h + 26) + u16(h + 28) + 3] ^= 0x10
        XCTAssertTrue(error(Data(damaged)).contains("zip entry 'archive/data/4': CRC-32 mismatch"))
        var options = TorchCheckpoint.Options()
        options.verifyChecksums = false
        XCTAssertNoThrow(try TorchCheckpoint(data: Data(damaged), name: "x", options: options).stateDict())

        // Views that leave their storage, and storages whose record has the wrong size.
        let small = StorageSpec.float32("0", [1, 2, 3, 4])
        XCTAssertTrue(
            error(TorchSave.zip(.orderedDict([("w", .tensor(.contiguous(small, [5])))], metadata: nil))).contains(
                "model.pth: tensor 'w': offset 0, size [5], stride [1] reach past storage '0' (4 x float32)"))
        XCTAssertTrue(
            error(
                TorchSave.zip(
                    .orderedDict(
                        [("w", .tensor(TensorSpec(storage: small, offset: 3, size: [2, 2], stride: [1, 1])))],
                        metadata: nil))
            ).contains("reach past storage '0'"))
        var lying = small
        lying.numel = 5
        XCTAssertTrue(
            error(TorchSave.zip(.orderedDict([("w", .tensor(.contiguous(lying, [4])))], metadata: nil))).contains(
                "storage '0': the pickle declares 5 x float32 (20 bytes), the record archive/data/0 holds 16 bytes"))
        var huge = small
        huge.numel = Int.max / 2
        XCTAssertTrue(
            error(TorchSave.zip(.orderedDict([("w", .tensor(.contiguous(huge, [4])))], metadata: nil))).contains(
                "too many"))
        // A stride-0 view may expand, but only so far.
        let expand = TensorSpec(storage: small, size: [1 << 15, 1 << 15], stride: [0, 0])
        XCTAssertTrue(
            error(TorchSave.zip(.orderedDict([("w", .tensor(expand))], metadata: nil))).contains(
                "exceeds the expansion limit"))

        XCTAssertEqual(error(Data()), "model.pth: not a PyTorch checkpoint: the file is empty")
        XCTAssertTrue(error(Data("hello world, this is text".utf8)).contains("not a PyTorch checkpoint"))
        XCTAssertTrue(
            error(TorchSave.zip(.list([.int(1)]))).contains("no state dict: the file holds a list of 1, not a dict"))
        XCTAssertTrue(error(TorchSave.zip(.dict([(.str("epoch"), .int(1))]))).contains("(top-level keys: epoch)"))
    }

    /// Every truncation of a valid file, and random byte corruptions, must throw or give consistent
    /// tensors: never trap, never hang, never allocate without bound.
    func testTruncationsAndCorruptionsNeverCrash() {
        var items: [(String, PyValue)] = []
        if case let .orderedDict(reference, _) = Self.referenceStateDict { items = reference }
        items.append(
            (
                "p",
                .tensor(TensorSpec(storage: .float32("9", [1, 2, 3]), size: [2, 3], stride: [0, 1], parameter: true))
            ))
        let value: PyValue = .dict([
            (.str("state_dict"), .orderedDict(items, metadata: [("", .dict([(.str("version"), .int(1))]))])),
            (.str("epoch"), .int(1 << 40)), (.str("hp"), .dict([(.str("lr"), .float(0.1))])),
        ])
        var lenient = TorchCheckpoint.Options()
        lenient.verifyChecksums = false
        var outcomes = [0, 0]
        func attempt(_ bytes: Data, _ options: TorchCheckpoint.Options) {
            do {
                let sd = try TorchCheckpoint(data: bytes, name: "fuzz", options: options).stateDict()
                for (_, t) in sd.tensors {
                    let n = t.shape.reduce(1, *)
                    XCTAssertEqual(t.floats?.count ?? t.integers?.count, n)
                }
                outcomes[0] += 1
            } catch {
                XCTAssertFalse("\(error)".isEmpty)
                outcomes[1] += 1
            }
        }
        var rng = SplitMix64(seed: 20240917)
        for data in [TorchSave.zip(value), TorchSave.legacy(value)] {
            for n in 0..<data.count { attempt(data.prefix(n), lenient) }
            for round in 0..<500 {
                var bytes = [UInt8](data)
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    let at = Int(rng.next() % UInt64(bytes.count))
                    bytes[at] =
                        round % 3 == 0
                        ? bytes[at] ^ (1 << UInt8(rng.next() % 8)) : UInt8(truncatingIfNeeded: rng.next())
                }
                attempt(Data(bytes), round % 2 == 0 ? lenient : TorchCheckpoint.Options())
            }
        }
        XCTAssertGreaterThan(outcomes[0], 0)
        XCTAssertGreaterThan(outcomes[1], 0)
    }

    /// Deep nesting and shared references cost nothing: containers are an arena, not a tree.
    func testDeepNestingAndReferenceBombsStayFlat() throws {
        // 200,000 nested one-tuples, then a list referenced 100,000 times.
        var stream: [UInt8] = [0x80, 2, 0x4E] + [UInt8](repeating: 0x85, count: 200_000) + [0x30]
        stream += [0x5D, 0x71, 0]
        for _ in 0..<100_000 { stream += [0x68, 0, 0x85] }
        stream += [0x30, 0x7D, 0x2E]
        XCTAssertTrue(error(TorchSave.zip(rawPickle: stream)).contains("neither the top level nor state_dict"))
    }

    /// The CRIS fixture's weights written as a `.pth` and read back: every tensor bit-exact.
    func testCRISTinyWeightsSurviveTheRoundTripBitExactly() throws {
        let url = try Fixtures.url("cris-tiny/model.safetensors")
        let st = try SafeTensorsFile(url: url)
        var items: [(String, PyValue)] = []
        for (i, name) in st.names.enumerated() {
            let e = try st.entry(name)
            let storage: StorageSpec
            switch e.dtype {
            case .f32: storage = .float32(String(i), try st.tensor(name).scalars)
            case .i64: storage = .int64(String(i), try st.integers(name).values)
            default: XCTFail("unexpected dtype \(e.dtype) for \(name)"); continue
            }
            items.append(("module." + name, .tensor(.contiguous(storage, e.shape))))
        }
        // As CRIS.pytorch saves it: {'state_dict': DDP.state_dict()}, keys with `module.`.
        let data = TorchSave.zip(
            .dict([(.str("state_dict"), .orderedDict(items, metadata: [("", .dict([(.str("version"), .int(1))]))]))]),
            archive: "cris_best")
        let sd = try read(data, name: "cris_best.pth")
        XCTAssertEqual(sd.tensors.count, st.names.count)
        XCTAssertEqual(sd.strippedPrefixes, ["module."])
        for (name, t) in sd.tensors {
            let e = try st.entry(name)
            XCTAssertEqual(t.shape, e.shape, name)
            if e.dtype == .i64 {
                XCTAssertEqual(t.integers, try st.integers(name).values, name)
            } else {
                let expected = try st.tensor(name).scalars.map(\.bitPattern)
                XCTAssertEqual(t.floats?.scalars.map(\.bitPattern), expected, name)
            }
        }
    }
}
