import Foundation
import VLTensor

// PyTorch checkpoints (`.pth`, `.pt`, Lightning `.ckpt`) read without running any code.
//
// The published CRIS weights and the seeds' trained adapters exist only as `torch.save` files, whose
// object tree is a pickle. `RestrictedUnpickler` turns that pickle into plain data (refusing anything
// that is not a dict, list, tuple, number, string or tensor reference); this file finds the storages
// the tensors point into, checks every view against its storage, and converts the tensors to VLSeg's
// float32 (integers stay integers). Two layouts are read:
// - the zip format of torch >= 1.6: `<name>/data.pkl`, `<name>/data/<key>` (raw little-endian
//   storages, stored uncompressed), `<name>/version`, `<name>/byteorder`;
// - the legacy stream of torch < 1.6 (and `_use_new_zipfile_serialization=False`): five pickles
//   (magic number, protocol, system info, the object, the storage keys), then each storage as an
//   int64 element count and its raw bytes, in key order.

/// Errors reading a PyTorch checkpoint; each names the file, and the record, key or byte at fault.
public enum TorchCheckpointError: Error, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)
    case notACheckpoint(path: String, reason: String)
    case unsupported(path: String, reason: String)
    case archive(ZipArchiveError)
    /// `record` is the pickle's name: the zip record (`archive/data.pkl`) or the legacy stream's part.
    case pickle(path: String, record: String, PickleError)
    case storage(path: String, key: String, reason: String)
    case tensor(path: String, name: String, reason: String)
    case noStateDict(path: String, reason: String)
    case prefix(path: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason): return "\(path): cannot open: \(reason)"
        case let .notACheckpoint(path, reason): return "\(path): not a PyTorch checkpoint: \(reason)"
        case let .unsupported(path, reason): return "\(path): unsupported checkpoint: \(reason)"
        case let .archive(error): return error.description
        case let .pickle(path, record, error):
            switch error.kind {
            case let .refusedGlobal(name):
                return
                    "\(path): refused: the pickle calls '\(name)' (byte \(error.offset) of \(record); only tensors and dicts of them are allowed)"
            case let .refusedOpcode(name, code):
                return
                    "\(path): refused: the pickle uses opcode \(name) (0x\(String(code, radix: 16))) at byte \(error.offset) of \(record), which a tensor checkpoint never needs"
            case let .malformed(reason):
                return "\(path): malformed pickle \(record) at byte \(error.offset): \(reason)"
            }
        case let .storage(path, key, reason): return "\(path): storage '\(key)': \(reason)"
        case let .tensor(path, name, reason): return "\(path): tensor '\(name)': \(reason)"
        case let .noStateDict(path, reason): return "\(path): no state dict: \(reason)"
        case let .prefix(path, reason): return "\(path): \(reason)"
        }
    }
}

/// One tensor read from a checkpoint: float types as a contiguous float32 `Tensor`, integer and bool
/// types as `Int` values (bool as 0/1).
// @unchecked Sendable: holds a tensor made for it alone and integer values; nothing writes them later.
public struct TorchTensorData: @unchecked Sendable {
    public enum Values {
        case float32(Tensor)
        case integers([Int])
    }

    /// The element type in the file.
    public let dtype: TorchDType
    public let shape: [Int]
    public let values: Values

    public init(dtype: TorchDType, shape: [Int], values: Values) {
        self.dtype = dtype
        self.shape = shape
        self.values = values
    }

    public var elementCount: Int { shape.reduce(1, *) }
    public var floats: Tensor? { if case let .float32(t) = values { return t } else { return nil } }
    public var integers: [Int]? { if case let .integers(v) = values { return v } else { return nil } }
}

/// A state dict read from a checkpoint, after prefix selection.
public struct TorchStateDict {
    /// Tensors in the file's order, under their final names.
    public var tensors: [(name: String, tensor: TorchTensorData)]
    /// The top-level key the dict came from (`state_dict`), or nil for the top level itself.
    public var entry: String?
    /// Prefixes removed from every name, in order (the caller's, then an automatic `module.`).
    public var strippedPrefixes: [String]
    /// Names left out because they lack the caller's prefix.
    public var droppedNames: [String]
    /// Entries of the dict that are not tensors (extra state), by name.
    public var nonTensorNames: [String]

    public var parameterCount: Int { tensors.reduce(0) { $0 + $1.tensor.elementCount } }
}

/// A PyTorch checkpoint, parsed and validated: the object tree, and the storages its tensors use.
// @unchecked Sendable: parsed and validated in init; afterwards only read.
public final class TorchCheckpoint: @unchecked Sendable {
    public enum Format: Equatable, Sendable {
        /// torch >= 1.6: a zip archive whose records live under `archive` (the folder name).
        case zip(archive: String, version: Int?)
        /// torch < 1.6: a stream of pickles followed by raw storages.
        case legacy
    }

    public struct Options: Sendable {
        /// Check each zip record's CRC-32 (the whole file is read once).
        public var verifyChecksums = true
        /// Globals the pickle may name (beyond tensors and dicts) without being refused; nil chooses by
        /// the file's extension: Lightning's `.ckpt` may name its optimizer factories
        /// (`PickleAllowList.lightningCheckpoint`), any other file gets the strict list.
        public var allowList: PickleAllowList? = nil
        /// How many elements views larger than their storage (stride 0, overlapping strides) may add,
        /// in total: such a view is legal but expands on conversion, so a tiny hostile file could
        /// otherwise ask for terabytes.
        public var expansionBudget = 1 << 28

        public init() {}
    }

    public let path: String
    public let format: Format

    /// The globals a file's pickle may name.
    static func allowList(_ options: Options, path: String) -> PickleAllowList {
        options.allowList ?? (path.lowercased().hasSuffix(".ckpt") ? .lightningCheckpoint : PickleAllowList())
    }
    /// The unpickled object (usually a dict).
    public let root: PickleValue
    public let graph: PickleGraph
    private let source: ByteSource
    /// Root storage bytes by key, validated against the declared element count.
    private let storageBytes: [String: ByteWindow]
    private let options: Options

    public convenience init(url: URL, options: Options = Options()) throws {
        let source: ByteSource
        do {
            source = try ByteSource(path: url.path)
        } catch let SafeTensorsError.cannotOpen(_, reason) {
            throw TorchCheckpointError.cannotOpen(path: url.path, reason: reason)
        }
        try self.init(path: url.path, source: source, options: options)
    }

    /// Parses a checkpoint held in memory; `name` is used in error messages.
    public convenience init(data: Data, name: String, options: Options = Options()) throws {
        try self.init(path: name, source: ByteSource(data: data), options: options)
    }

    init(path: String, source: ByteSource, options: Options) throws {
        self.path = path
        self.source = source
        self.options = options
        let b = source.window
        let graph = PickleGraph()
        self.graph = graph
        if b.contains(0, 4), b.u32(0) == ZipArchive.localHeaderSignature || b.u32(0) == ZipArchive.endSignature {
            let parsed = try Self.readZip(path: path, source: source, graph: graph, options: options)
            format = parsed.format
            root = parsed.root
            storageBytes = parsed.storages
        } else if b.contains(0, 1), b.u8(0) == 0x80 {
            let parsed = try Self.readLegacy(path: path, bytes: b, graph: graph, options: options)
            format = .legacy
            root = parsed.root
            storageBytes = parsed.storages
        } else if b.contains(257, 5), b.bytes(257, 5) == Array("ustar".utf8) {
            throw TorchCheckpointError.unsupported(
                path: path, reason: "the tar format of PyTorch < 0.4; load and re-save it with a newer torch")
        } else {
            throw TorchCheckpointError.notACheckpoint(
                path: path,
                reason: b.count == 0 ? "the file is empty" : "it starts with neither a zip header nor a pickle")
        }
    }

    // MARK: Reading the two layouts

    private static func readZip(path: String, source: ByteSource, graph: PickleGraph, options: Options) throws
        -> (format: Format, root: PickleValue, storages: [String: ByteWindow])
    {
        let zip: ZipArchive
        do { zip = try ZipArchive(path: path, source: source) } catch let e as ZipArchiveError {
            throw TorchCheckpointError.archive(e)
        }
        // torch writes every record under one folder (the archive name: the file's stem or "archive").
        let candidates = zip.entries.filter { e in
            e.name.hasSuffix("/data.pkl") && !e.name.dropLast("/data.pkl".count).contains("/")
        }
        guard candidates.count == 1, let pickleEntry = candidates.first else {
            if candidates.count > 1 {
                throw TorchCheckpointError.notACheckpoint(
                    path: path,
                    reason:
                        "the archive holds \(candidates.count) data.pkl records (\(candidates.map(\.name).joined(separator: ", ")))"
                )
            }
            if zip.entries.contains(where: { $0.name.hasSuffix("constants.pkl") || $0.name.contains("/code/") }) {
                throw TorchCheckpointError.unsupported(
                    path: path,
                    reason: "a TorchScript archive (torch.jit.save); save its state_dict() with torch.save instead")
            }
            throw TorchCheckpointError.notACheckpoint(
                path: path, reason: "the zip archive has no <name>/data.pkl record")
        }
        let folder = String(pickleEntry.name.dropLast("data.pkl".count))
        func record(_ name: String) -> ZipArchive.Entry? { zip.entry(named: folder + name) }
        func contents(_ e: ZipArchive.Entry) throws -> ByteWindow {
            do { return try zip.contents(of: e, verifyChecksum: options.verifyChecksums) } catch let err
                as ZipArchiveError
            { throw TorchCheckpointError.archive(err) }
        }

        if record("constants.pkl") != nil {
            throw TorchCheckpointError.unsupported(
                path: path,
                reason: "a TorchScript archive (torch.jit.save); save its state_dict() with torch.save instead")
        }
        if let e = record("byteorder") {
            let order = String(decoding: try contents(e).data, as: UTF8.self)
            guard order == "little" else {
                throw TorchCheckpointError.unsupported(
                    path: path,
                    reason: order == "big"
                        ? "the storages are big-endian" : "unknown byte order '\(order.prefix(16))' in \(e.name)")
            }
        }
        var version: Int?
        if let e = record("version") ?? record(".data/version") {
            let text = String(decoding: try contents(e).data, as: UTF8.self).trimmingCharacters(
                in: .whitespacesAndNewlines)
            version = Int(text)
        }

        var unpickler = RestrictedUnpickler(
            bytes: try contents(pickleEntry), graph: graph, allow: allowList(options, path: path))
        let root: PickleValue
        do { root = try unpickler.load() } catch let e as PickleError {
            throw TorchCheckpointError.pickle(path: path, record: pickleEntry.name, e)
        }

        // Every storage the pickle declares must be a record of exactly the declared size.
        var storages: [String: ByteWindow] = [:]
        for s in graph.storages where storages[s.key] == nil {
            guard let e = record("data/\(s.key)") else {
                throw TorchCheckpointError.storage(
                    path: path, key: s.key,
                    reason: "the pickle uses it but the archive has no record \(folder)data/\(s.key)")
            }
            let window = try contents(e)
            let (bytes, overflow) = s.rootCount.multipliedReportingOverflow(by: s.dtype.byteSize)
            guard !overflow, bytes == window.count else {
                throw TorchCheckpointError.storage(
                    path: path, key: s.key,
                    reason:
                        "the pickle declares \(s.rootCount) x \(s.dtype.rawValue) (\(overflow ? "too many" : String(bytes)) bytes), the record \(e.name) holds \(window.count) bytes"
                )
            }
            storages[s.key] = window
        }
        return (.zip(archive: String(folder.dropLast()), version: version), root, storages)
    }

    /// The legacy magic number 0x1950a86a20f9469cfc6c, as pickle writes it (little-endian bytes).
    static let legacyMagic: [UInt8] = [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]
    static let legacyProtocolVersion = 1001

    private static func readLegacy(path: String, bytes b: ByteWindow, graph: PickleGraph, options: Options) throws
        -> (root: PickleValue, storages: [String: ByteWindow])
    {
        var position = 0
        func next(_ part: String) throws -> PickleValue {
            var u = RestrictedUnpickler(bytes: b, start: position, graph: graph, allow: allowList(options, path: path))
            do {
                let v = try u.load()
                position = u.position
                return v
            } catch let e as PickleError {
                throw TorchCheckpointError.pickle(path: path, record: "(\(part) of the legacy format)", e)
            }
        }
        guard case .bigInt(Self.legacyMagic) = try next("the magic number") else {
            throw TorchCheckpointError.notACheckpoint(path: path, reason: "a pickle, but without torch's magic number")
        }
        guard case .int(Self.legacyProtocolVersion) = try next("the protocol version") else {
            throw TorchCheckpointError.unsupported(
                path: path, reason: "legacy protocol version other than \(Self.legacyProtocolVersion)")
        }
        if case let .dict(d) = try next("the system info"),
            case .bool(false)? = graph.dicts[d].value(forKey: "little_endian")
        {
            throw TorchCheckpointError.unsupported(path: path, reason: "written on a big-endian machine")
        }
        let root = try next("the object")
        let keyList = try next("the storage keys")
        let keys: [PickleValue]
        switch keyList {
        case let .list(l): keys = graph.lists[l]
        case let .tuple(t): keys = graph.tuples[t]
        default:
            throw TorchCheckpointError.notACheckpoint(
                path: path, reason: "the storage key list is \(graph.describe(keyList))")
        }
        var storages: [String: ByteWindow] = [:]
        for k in keys {
            guard case let .string(key) = k else {
                throw TorchCheckpointError.notACheckpoint(path: path, reason: "a storage key is \(graph.describe(k))")
            }
            guard let index = graph.rootStorages[key] else {
                throw TorchCheckpointError.storage(
                    path: path, key: key, reason: "listed with data but never used by the pickle")
            }
            guard storages[key] == nil else {
                throw TorchCheckpointError.storage(path: path, key: key, reason: "listed twice")
            }
            let s = graph.storages[index]
            guard b.contains(position, 8) else {
                throw TorchCheckpointError.storage(
                    path: path, key: key, reason: "the file ends before its element count (offset \(position))")
            }
            let count = Int64(bitPattern: b.u64(position))
            position += 8
            let (bytes, overflow) = s.rootCount.multipliedReportingOverflow(by: s.dtype.byteSize)
            guard count == Int64(s.rootCount), !overflow, b.contains(position, bytes) else {
                throw TorchCheckpointError.storage(
                    path: path, key: key,
                    reason:
                        "declared as \(s.rootCount) x \(s.dtype.rawValue), the data at offset \(position - 8) says \(count) elements or runs past the end of the file (\(b.count) bytes)"
                )
            }
            storages[key] = b.slice(position, bytes)
            position += bytes
        }
        if let missing = graph.storages.first(where: { storages[$0.key] == nil }) {
            throw TorchCheckpointError.storage(
                path: path, key: missing.key, reason: "used by the pickle but the file holds no data for it")
        }
        return (root, storages)
    }

    // MARK: The object tree

    /// The top-level dict, if the object is one.
    public var rootDict: PickleDict? {
        if case let .dict(d) = root { return graph.dicts[d] }
        return nil
    }

    /// The top-level string keys, in order.
    public var topLevelKeys: [String] {
        (rootDict?.keys ?? []).compactMap { if case let .string(s) = $0 { return s } else { return nil } }
    }

    /// Top-level keys tried, in order, for the state dict when the caller names none.
    public static let stateDictKeys = ["state_dict", "model_state_dict", "model", "module", "net"]

    private func containsTensor(_ d: PickleDict) -> Bool {
        d.values.contains { if case .tensor = $0 { return true } else { return false } }
    }

    /// The flat name -> value dict: `entry` of the top level when given, else the first of
    /// `stateDictKeys` holding a dict with tensors, else the top level itself.
    public func stateDictValues(entry: String? = nil) throws -> (entry: String?, dict: PickleDict) {
        guard let top = rootDict else {
            throw TorchCheckpointError.noStateDict(
                path: path, reason: "the file holds \(graph.describe(root)), not a dict")
        }
        let keys = topLevelKeys.prefix(12).joined(separator: ", ")
        if let entry {
            guard let v = top.value(forKey: entry) else {
                throw TorchCheckpointError.noStateDict(
                    path: path, reason: "no top-level key '\(entry)' (keys: \(keys))")
            }
            guard case let .dict(d) = v else {
                throw TorchCheckpointError.noStateDict(
                    path: path, reason: "'\(entry)' holds \(graph.describe(v)), not a dict")
            }
            return (entry, graph.dicts[d])
        }
        for key in Self.stateDictKeys {
            if case let .dict(d)? = top.value(forKey: key), containsTensor(graph.dicts[d]) {
                return (key, graph.dicts[d])
            }
        }
        if containsTensor(top) { return (nil, top) }
        throw TorchCheckpointError.noStateDict(
            path: path,
            reason:
                "neither the top level nor \(Self.stateDictKeys.joined(separator: "/")) is a dict of tensors (top-level keys: \(keys))"
        )
    }

    /// The state dict's tensors, converted. `prefix` (e.g. `net.`) selects the names that carry it and
    /// strips it; then, when every remaining name starts with `module.` (DataParallel / DDP), that is
    /// stripped too (`stripModule`).
    public func stateDict(entry: String? = nil, prefix: String? = nil, stripModule: Bool = true) throws
        -> TorchStateDict
    {
        let (entryKey, dict) = try stateDictValues(entry: entry)
        var refs: [(name: String, ref: Int)] = []
        var nonTensor: [String] = []
        for (k, v) in zip(dict.keys, dict.values) {
            let name: String
            switch k {
            case let .string(s): name = s
            default: nonTensor.append(graph.describe(k)); continue
            }
            if case let .tensor(t) = v { refs.append((name, t)) } else { nonTensor.append(name) }
        }
        var stripped: [String] = [], dropped: [String] = []
        if let prefix, !prefix.isEmpty {
            let kept = refs.filter { $0.name.hasPrefix(prefix) }
            guard !kept.isEmpty else {
                let sample = refs.prefix(4).map(\.name).joined(separator: ", ")
                throw TorchCheckpointError.prefix(
                    path: path,
                    reason: "no tensor name starts with '\(prefix)' (\(refs.count) tensors, names like \(sample))")
            }
            dropped = refs.filter { !$0.name.hasPrefix(prefix) }.map(\.name)
            refs = kept.map { (String($0.name.dropFirst(prefix.count)), $0.ref) }
            stripped.append(prefix)
        }
        if stripModule, !refs.isEmpty, refs.allSatisfy({ $0.name.hasPrefix("module.") }) {
            refs = refs.map { (String($0.name.dropFirst("module.".count)), $0.ref) }
            stripped.append("module.")
        }
        var budget = options.expansionBudget
        var tensors: [(name: String, tensor: TorchTensorData)] = []
        tensors.reserveCapacity(refs.count)
        for (name, ref) in refs {
            tensors.append((name, try tensorData(graph.tensors[ref], name: name, budget: &budget)))
        }
        return TorchStateDict(
            tensors: tensors, entry: entryKey, strippedPrefixes: stripped, droppedNames: dropped,
            nonTensorNames: nonTensor)
    }

    /// Reads the state dict of the checkpoint at `url` (see `stateDict(entry:prefix:stripModule:)`).
    public static func readTensors(from url: URL, prefix: String? = nil) throws -> [(
        name: String, tensor: TorchTensorData
    )] {
        try TorchCheckpoint(url: url).stateDict(prefix: prefix).tensors
    }

    /// An integer at the top level (a Lightning checkpoint's `epoch`, `global_step`).
    public func topLevelInt(_ key: String) -> Int? {
        if case let .int(i)? = rootDict?.value(forKey: key) { return i }
        return nil
    }

    // MARK: Tensors

    /// Converts one tensor, after checking that its strided view lies inside its storage.
    public func tensorData(_ ref: TorchTensorRef, name: String) throws -> TorchTensorData {
        var budget = options.expansionBudget
        return try tensorData(ref, name: name, budget: &budget)
    }

    private func tensorData(_ ref: TorchTensorRef, name: String, budget: inout Int) throws -> TorchTensorData {
        func bad(_ reason: String) -> TorchCheckpointError { .tensor(path: path, name: name, reason: reason) }
        guard ref.storage >= 0, ref.storage < graph.storages.count else { throw bad("refers to no storage") }
        let s = graph.storages[ref.storage]
        let dtype = ref.dtype
        guard dtype.isFloatingPoint || dtype.isInteger else {
            throw bad("has dtype torch.\(dtype.rawValue), which cannot be converted (float and integer types can)")
        }
        guard ref.shape.count <= 64 else { throw bad("has \(ref.shape.count) dimensions") }
        var count = 1
        for d in ref.shape {
            let (p, o) = count.multipliedReportingOverflow(by: d)
            guard !o, p <= Int(Int32.max) * 64 else { throw bad("shape \(ref.shape) is too large") }
            count = p
        }
        guard let window = storageBytes[s.key] else { throw bad("its storage '\(s.key)' has no data") }
        if count == 0 {
            return TorchTensorData(
                dtype: dtype, shape: ref.shape,
                values: dtype.isFloatingPoint ? .float32(Tensor(zeros: ref.shape)) : .integers([]))
        }
        // The view's extent: the last element it touches, in elements of `dtype` from the view start.
        var last = ref.offset
        for (d, st) in zip(ref.shape, ref.stride) {
            let (step, o1) = (d - 1).multipliedReportingOverflow(by: st)
            let (sum, o2) = last.addingReportingOverflow(step)
            guard !o1, !o2 else { throw bad("size \(ref.shape) with stride \(ref.stride) overflows") }
            last = sum
        }
        let viewStart = s.viewOffset * s.dtype.byteSize  // bytes into the root storage
        let viewBytes = s.count * s.dtype.byteSize
        let (end, o3) = (last + 1).multipliedReportingOverflow(by: dtype.byteSize)
        guard !o3, end <= viewBytes, viewStart + viewBytes <= window.count else {
            throw bad(
                "offset \(ref.offset), size \(ref.shape), stride \(ref.stride) reach past storage '\(s.key)' (\(viewBytes / dtype.byteSize) x \(dtype.rawValue))"
            )
        }
        let available = viewBytes / dtype.byteSize
        if count > available {
            budget -= count - available
            guard budget >= 0 else {
                throw bad(
                    "a view of \(count) elements over a storage of \(available) (stride 0 or overlapping strides) exceeds the expansion limit of \(options.expansionBudget) elements"
                )
            }
        }
        let runs = Self.runs(shape: ref.shape, stride: ref.stride, offset: ref.offset)
        return try window.withUnsafeBytes { bytes in
            // Not empty: the view has elements and lies inside the window (checked above).
            guard let start = bytes.baseAddress else { throw bad("its storage '\(s.key)' has no data") }
            let src = start + viewStart
            if dtype.isFloatingPoint {
                let out = Tensor(uninitialized: ref.shape)
                out.withUnsafeMutablePointer { o in
                    for run in runs.list { Self.convertFloats(src, dtype, run, into: o) }
                    runs.odometer { run in Self.convertFloats(src, dtype, run, into: o) }
                }
                return TorchTensorData(dtype: dtype, shape: ref.shape, values: .float32(out))
            }
            var values = [Int](repeating: 0, count: count)
            var failure: String?
            values.withUnsafeMutableBufferPointer { buffer in
                guard let o = buffer.baseAddress else { return }
                for run in runs.list { if let f = Self.convertIntegers(src, dtype, run, into: o) { failure = f } }
                runs.odometer { run in if let f = Self.convertIntegers(src, dtype, run, into: o) { failure = f } }
            }
            if let failure { throw bad(failure) }
            return TorchTensorData(dtype: dtype, shape: ref.shape, values: .integers(values))
        }
    }

    /// A stretch of elements: `count` outputs from `out`, read from storage element `source`
    /// onwards, `step` elements apart.
    struct Run {
        var out: Int, source: Int, count: Int, step: Int
    }

    /// The runs of a strided view: one run when it is contiguous, else one per position of the outer
    /// dimensions (the innermost dimension is the run), produced by an odometer so nothing grows with
    /// the tensor.
    struct Runs {
        var list: [Run] = []
        var shape: [Int] = [], stride: [Int] = [], offset = 0

        func odometer(_ body: (Run) -> Void) {
            guard list.isEmpty, let inner = shape.last else { return }
            let outer = Array(shape.dropLast()), outerStride = Array(stride.dropLast())
            var index = [Int](repeating: 0, count: outer.count)
            var source = offset, out = 0
            let innerStride = stride.last!
            while true {
                body(Run(out: out, source: source, count: inner, step: innerStride))
                out += inner
                var d = outer.count - 1
                while d >= 0 {
                    index[d] += 1
                    source += outerStride[d]
                    if index[d] < outer[d] { break }
                    source -= outerStride[d] * outer[d]
                    index[d] = 0
                    d -= 1
                }
                if d < 0 { return }
            }
        }
    }

    static func runs(shape: [Int], stride: [Int], offset: Int) -> Runs {
        var contiguous = true
        var expected = 1
        for (d, s) in zip(shape, stride).reversed() {
            if d != 1 && s != expected { contiguous = false; break }
            expected *= d
        }
        if contiguous || shape.isEmpty {
            return Runs(list: [Run(out: 0, source: offset, count: shape.reduce(1, *), step: 1)])
        }
        return Runs(list: [], shape: shape, stride: stride, offset: offset)
    }

    private static func convertFloats(
        _ src: UnsafeRawPointer, _ dtype: TorchDType, _ r: Run, into o: UnsafeMutablePointer<Float>
    ) {
        switch dtype {
        case .float32:
            #if _endian(little)
                if r.step == 1 {
                    UnsafeMutableRawPointer(o + r.out).copyMemory(from: src + 4 * r.source, byteCount: 4 * r.count)
                    return
                }
            #endif
            for i in 0..<r.count {
                o[r.out + i] = Float(
                    bitPattern: UInt32(
                        littleEndian: src.loadUnaligned(fromByteOffset: 4 * (r.source + i * r.step), as: UInt32.self)))
            }
        case .float64:
            for i in 0..<r.count {
                o[r.out + i] = Float(
                    Double(
                        bitPattern: UInt64(
                            littleEndian: src.loadUnaligned(
                                fromByteOffset: 8 * (r.source + i * r.step), as: UInt64.self))))
            }
        case .float16:
            for i in 0..<r.count {
                o[r.out + i] = halfToFloat(
                    UInt16(
                        littleEndian: src.loadUnaligned(fromByteOffset: 2 * (r.source + i * r.step), as: UInt16.self)))
            }
        case .bfloat16:
            for i in 0..<r.count {
                o[r.out + i] = Float(
                    bitPattern: UInt32(
                        UInt16(
                            littleEndian: src.loadUnaligned(
                                fromByteOffset: 2 * (r.source + i * r.step), as: UInt16.self))) << 16)
            }
        default: break
        }
    }

    /// Returns a failure message for values that do not fit an Int (uint64 above Int.max).
    private static func convertIntegers(
        _ src: UnsafeRawPointer, _ dtype: TorchDType, _ r: Run, into o: UnsafeMutablePointer<Int>
    ) -> String? {
        func at(_ i: Int, _ size: Int) -> Int { size * (r.source + i * r.step) }
        switch dtype {
        case .int64:
            for i in 0..<r.count {
                o[r.out + i] = Int(Int64(littleEndian: src.loadUnaligned(fromByteOffset: at(i, 8), as: Int64.self)))
            }
        case .int32:
            for i in 0..<r.count {
                o[r.out + i] = Int(Int32(littleEndian: src.loadUnaligned(fromByteOffset: at(i, 4), as: Int32.self)))
            }
        case .int16:
            for i in 0..<r.count {
                o[r.out + i] = Int(Int16(littleEndian: src.loadUnaligned(fromByteOffset: at(i, 2), as: Int16.self)))
            }
        case .int8: for i in 0..<r.count { o[r.out + i] = Int(src.load(fromByteOffset: at(i, 1), as: Int8.self)) }
        case .uint8: for i in 0..<r.count { o[r.out + i] = Int(src.load(fromByteOffset: at(i, 1), as: UInt8.self)) }
        case .bool:
            for i in 0..<r.count { o[r.out + i] = src.load(fromByteOffset: at(i, 1), as: UInt8.self) != 0 ? 1 : 0 }
        case .uint16:
            for i in 0..<r.count {
                o[r.out + i] = Int(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: at(i, 2), as: UInt16.self)))
            }
        case .uint32:
            for i in 0..<r.count {
                o[r.out + i] = Int(UInt32(littleEndian: src.loadUnaligned(fromByteOffset: at(i, 4), as: UInt32.self)))
            }
        case .uint64:
            for i in 0..<r.count {
                let v = UInt64(littleEndian: src.loadUnaligned(fromByteOffset: at(i, 8), as: UInt64.self))
                guard v <= UInt64(Int.max) else { return "holds the uint64 value \(v), beyond Int64" }
                o[r.out + i] = Int(v)
            }
        default: break
        }
        return nil
    }
}

extension SafeTensorsWriter {
    /// Adds a converted checkpoint tensor: float types as F32, integer and bool types as I64.
    public mutating func add(_ name: String, _ data: TorchTensorData) {
        switch data.values {
        case let .float32(t): add(name, t)
        case let .integers(v): add(name, int64: v, shape: data.shape)
        }
    }
}
