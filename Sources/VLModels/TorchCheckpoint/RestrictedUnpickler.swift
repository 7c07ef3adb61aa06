import Foundation

// A pickle interpreter that can only build data.
//
// `torch.load` runs Python's unpickler, which imports and calls whatever the file names: loading an
// untrusted `.pth` can execute arbitrary code. A state dict, though, needs very little of pickle:
// dicts, lists, tuples, numbers, strings, and tensors described as "storage S, offset, size, stride".
// This interpreter implements only those opcodes and an allow-list of globals, and "calls" an allowed
// global by interpreting it (an OrderedDict becomes a dict, `_rebuild_tensor_v2(...)` becomes a tensor
// reference); it never runs, imports or looks up anything. Any other global, any other opcode and any
// malformed stream is an error naming what was refused and where.
//
// Memory is bounded by construction: every opcode consumes at least one input byte and pushes at most
// one value, lengths are checked against the bytes that remain before anything is allocated, and
// containers live in a flat arena (`PickleGraph`) and refer to each other by index. That makes deep
// nesting, shared references and even cycles harmless: nothing is recursive, neither building nor
// freeing (a tree of nested Swift values a million levels deep would overflow the stack when freed).

/// Element types of PyTorch tensors (the names are torch's).
public enum TorchDType: String, Sendable, CaseIterable {
    case float32, float64, float16, bfloat16
    case int64, int32, int16, int8, uint8, bool
    case uint16, uint32, uint64
    case complex64, complex128
    case float8E4M3FN = "float8_e4m3fn", float8E5M2 = "float8_e5m2"
    case float8E4M3FNUZ = "float8_e4m3fnuz", float8E5M2FNUZ = "float8_e5m2fnuz"
    case qint8, quint8, qint32, quint4x2, quint2x4

    public var byteSize: Int {
        switch self {
        case .float64, .int64, .uint64, .complex64: return 8
        case .complex128: return 16
        case .float32, .int32, .uint32, .qint32: return 4
        case .float16, .bfloat16, .int16, .uint16: return 2
        case .int8, .uint8, .bool, .float8E4M3FN, .float8E5M2, .float8E4M3FNUZ, .float8E5M2FNUZ,
            .qint8, .quint8, .quint4x2, .quint2x4:
            return 1
        }
    }

    /// Converted to float32 on reading.
    public var isFloatingPoint: Bool { self == .float32 || self == .float64 || self == .float16 || self == .bfloat16 }
    /// Read as integers (bool as 0/1).
    public var isInteger: Bool {
        switch self {
        case .int64, .int32, .int16, .int8, .uint8, .bool, .uint16, .uint32, .uint64: return true
        default: return false
        }
    }

    /// The element type of a storage class of the pickle (`FloatStorage`, `UntypedStorage`, ...).
    /// Untyped storages count bytes; the tensor then carries its own dtype (`_rebuild_tensor_v3`).
    public init?(storageClass name: String) {
        let table: [String: TorchDType] = [
            "FloatStorage": .float32, "DoubleStorage": .float64, "HalfStorage": .float16, "BFloat16Storage": .bfloat16,
            "LongStorage": .int64, "IntStorage": .int32, "ShortStorage": .int16, "CharStorage": .int8,
            "ByteStorage": .uint8, "BoolStorage": .bool, "UntypedStorage": .uint8,
            "ComplexFloatStorage": .complex64, "ComplexDoubleStorage": .complex128,
            "QInt8Storage": .qint8, "QUInt8Storage": .quint8, "QInt32Storage": .qint32,
            "QUInt4x2Storage": .quint4x2, "QUInt2x4Storage": .quint2x4,
        ]
        guard let d = table[name] else { return nil }
        self = d
    }

    /// A `torch.<name>` dtype object, under any of its aliases (`float`, `half`, `long`, ...).
    public init?(dtypeName name: String) {
        let aliases: [String: TorchDType] = [
            "float": .float32, "double": .float64, "half": .float16, "long": .int64, "int": .int32,
            "short": .int16, "cfloat": .complex64, "cdouble": .complex128,
        ]
        if let d = aliases[name] ?? TorchDType(rawValue: name) { self = d } else { return nil }
    }
}

/// A storage named by a persistent id: `('storage', torch.FloatStorage, key, location, numel)`.
/// Legacy files may name a view into a root storage (offset and count in elements).
public struct TorchStorageRef: Sendable, Equatable {
    /// The root storage's key: zip record `data/<key>`, or the legacy file's storage key.
    public let key: String
    public let dtype: TorchDType
    public let location: String
    /// Elements of `dtype` in the root storage.
    public let rootCount: Int
    /// The visible part: elements [viewOffset, viewOffset + count) of the root.
    public let viewOffset: Int
    public let count: Int
}

/// A tensor as `_rebuild_tensor_v2/v3` describes it: a strided view of a storage.
public struct TorchTensorRef: Sendable, Equatable {
    /// Index into `PickleGraph.storages`.
    public let storage: Int
    public let dtype: TorchDType
    /// In elements of `dtype`, from the start of the storage's visible part.
    public let offset: Int
    public let shape: [Int]
    public let stride: [Int]
    public let requiresGrad: Bool
}

/// A value built by the unpickler. Containers, tensors and storages are indices into the
/// `PickleGraph` that owns them.
public enum PickleValue: Sendable, Equatable {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer beyond 64 bits, as its little-endian two's-complement bytes.
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple(Int)
    case list(Int)
    case dict(Int)
    case tensor(Int)
    case storage(Int)
    /// An allowed global that has not been "called" (`torch.FloatStorage`, `collections.OrderedDict`).
    case global(String)
    case dtype(TorchDType)
    /// An inert global or the result of applying one: its name only, nothing to run.
    case opaque(String)
}

/// A dict of the pickle, in insertion order; string and integer keys are indexed.
public struct PickleDict: Sendable {
    public private(set) var keys: [PickleValue] = []
    public private(set) var values: [PickleValue] = []
    private var stringSlots: [String: Int] = [:]
    private var intSlots: [Int: Int] = [:]

    public var count: Int { keys.count }

    /// Python semantics: setting an existing key replaces its value in place.
    mutating func set(_ key: PickleValue, _ value: PickleValue) {
        var slot: Int?
        switch key {
        case let .string(s): slot = stringSlots[s]
        case let .int(i): slot = intSlots[i]
        default: slot = nil
        }
        if let slot {
            values[slot] = value
            return
        }
        switch key {
        case let .string(s): stringSlots[s] = keys.count
        case let .int(i): intSlots[i] = keys.count
        default: break
        }
        keys.append(key)
        values.append(value)
    }

    public func value(forKey key: String) -> PickleValue? { stringSlots[key].map { values[$0] } }
    public func value(forKey key: Int) -> PickleValue? { intSlots[key].map { values[$0] } }
}

/// Everything one or more pickles built: containers, storages and tensors, by index.
// @unchecked Sendable: built by one reader on one thread, then only read.
public final class PickleGraph: @unchecked Sendable {
    public internal(set) var tuples: [[PickleValue]] = []
    public internal(set) var lists: [[PickleValue]] = []
    public internal(set) var dicts: [PickleDict] = []
    public internal(set) var storages: [TorchStorageRef] = []
    public internal(set) var tensors: [TorchTensorRef] = []
    /// Root storages by key (the first declaration fixes dtype and size).
    var rootStorages: [String: Int] = [:]
    var viewStorages: [String: Int] = [:]

    public init() {}

    func add(tuple items: [PickleValue]) -> PickleValue {
        tuples.append(items)
        return .tuple(tuples.count - 1)
    }

    /// A short description of a value for error messages.
    public func describe(_ v: PickleValue) -> String {
        switch v {
        case .none: return "None"
        case let .bool(b): return b ? "True" : "False"
        case let .int(i): return "the integer \(i)"
        case .bigInt: return "a large integer"
        case let .float(d): return "the number \(d)"
        case let .string(s): return "the string '\(s.count > 40 ? String(s.prefix(40)) + "..." : s)'"
        case let .bytes(b): return "\(b.count) bytes"
        case let .tuple(i): return "a tuple of \(tuples[i].count)"
        case let .list(i): return "a list of \(lists[i].count)"
        case let .dict(i): return "a dict of \(dicts[i].count)"
        case .tensor: return "a tensor"
        case .storage: return "a storage"
        case let .global(g): return "'\(g)'"
        case let .dtype(d): return "torch.\(d.rawValue)"
        case let .opaque(g): return "an object of '\(g)'"
        }
    }
}

/// What went wrong in a pickle stream, and at which byte offset of it.
public struct PickleError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        /// A global outside the allow-list (`module.name`).
        case refusedGlobal(String)
        /// An opcode this interpreter does not implement.
        case refusedOpcode(name: String, code: UInt8)
        /// A stream that cannot be a valid pickle (underflow, bad lengths, wrong argument types).
        case malformed(String)
    }

    public let kind: Kind
    public let offset: Int

    public var description: String {
        switch kind {
        case let .refusedGlobal(g):
            return "refused: the pickle calls '\(g)' at byte \(offset) (only tensors and dicts of them are allowed)"
        case let .refusedOpcode(name, code):
            return
                "refused: the pickle uses opcode \(name) (0x\(String(code, radix: 16, uppercase: false))) at byte \(offset), which a tensor checkpoint never needs"
        case let .malformed(reason):
            return "malformed pickle at byte \(offset): \(reason)"
        }
    }
}

/// Which globals may appear, and how each is interpreted.
public struct PickleAllowList: Sendable {
    /// Globals accepted as inert names: recorded, never applied to anything. None by default: a
    /// model file holds tensors and dicts of them, and anything else is refused.
    public var inertGlobals: Set<String> = []
    /// Module prefixes whose globals are inert in the same way.
    public var inertModules: [String] = []

    public init() {}

    /// For Lightning checkpoints: they store the optimizer and scheduler factories of
    /// `save_hyperparameters()` in `hyper_parameters` (the seeds' configs use
    /// `functools.partial(torch.optim.AdamW, ...)` and `torch.optim.lr_scheduler.ReduceLROnPlateau`);
    /// refusing them would refuse every such file, and reading their names runs nothing.
    public static var lightningCheckpoint: PickleAllowList {
        var list = PickleAllowList()
        list.inertGlobals = ["functools.partial"]
        list.inertModules = ["torch.optim"]
        return list
    }

    func isInert(module: String, name: String) -> Bool {
        inertGlobals.contains("\(module).\(name)")
            || inertModules.contains { module == $0 || module.hasPrefix($0 + ".") }
    }

    /// The interpreted functions and classes (module.name).
    static let functions: Set<String> = [
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
        "torch.Size", "_codecs.encode",
    ]
    /// Modules whose `*Storage` classes name a storage's element type.
    static let storageModules: Set<String> = ["torch", "torch.storage", "torch.cuda"]
}

/// Interprets one pickle stream (protocols 2 to 5) into a `PickleGraph`.
struct RestrictedUnpickler {
    let bytes: ByteWindow
    private(set) var position: Int
    let graph: PickleGraph
    let allow: PickleAllowList
    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]
    private var opcodeOffset = 0

    /// Longest module or name line of a GLOBAL opcode.
    static let maxGlobalLine = 1024

    init(bytes: ByteWindow, start: Int = 0, graph: PickleGraph, allow: PickleAllowList = PickleAllowList()) {
        self.bytes = bytes
        position = start
        self.graph = graph
        self.allow = allow
    }

    // MARK: Errors and reading

    private func malformed(_ reason: String) -> PickleError {
        PickleError(kind: .malformed(reason), offset: opcodeOffset)
    }

    /// Reserves `n` bytes and returns their offset; throws when fewer remain.
    private mutating func take(_ n: Int) throws -> Int {
        guard bytes.contains(position, n) else {
            throw malformed("the opcode needs \(n) more bytes, \(max(0, bytes.count - position)) remain (truncated?)")
        }
        defer { position += n }
        return position
    }

    /// A length read from the stream, checked against what remains before anything is allocated.
    private func length(_ raw: UInt64) throws -> Int {
        let remaining = bytes.count - position
        guard raw <= UInt64(remaining) else {
            throw malformed("a length of \(raw) bytes exceeds the \(remaining) bytes that remain")
        }
        return Int(raw)
    }

    private mutating func readString(_ n: Int) throws -> String {
        let at = try take(n)
        guard let s = String(bytes: bytes.bytes(at, n), encoding: .utf8) else {
            throw malformed("a string is not valid UTF-8")
        }
        return s
    }

    private mutating func readLine() throws -> String {
        let start = position
        var end = start
        while end < bytes.count, bytes.u8(end) != 0x0A {
            end += 1
            if end - start > Self.maxGlobalLine {
                throw malformed("a GLOBAL name is longer than \(Self.maxGlobalLine) bytes")
            }
        }
        guard end < bytes.count else { throw malformed("a GLOBAL name is not terminated (truncated?)") }
        position = end + 1
        guard let s = String(bytes: bytes.bytes(start, end - start), encoding: .utf8) else {
            throw malformed("a GLOBAL name is not valid UTF-8")
        }
        return s
    }

    /// Little-endian two's complement of any length: Int when it fits, else `.bigInt`.
    private func integer(_ raw: [UInt8]) -> PickleValue {
        guard let last = raw.last else { return .int(0) }
        let negative = last & 0x80 != 0
        if raw.count > 8 {
            // Fits when every byte above the 8th only repeats the sign of the 8th.
            let fill: UInt8 = negative ? 0xFF : 0
            guard raw[8...].allSatisfy({ $0 == fill }), (raw[7] & 0x80 != 0) == negative else { return .bigInt(raw) }
        }
        var v: UInt64 = negative ? ~0 : 0
        for (i, b) in raw.prefix(8).enumerated() {
            v &= ~(UInt64(0xFF) << (8 * UInt64(i)))
            v |= UInt64(b) << (8 * UInt64(i))
        }
        return .int(Int(Int64(bitPattern: v)))
    }

    // MARK: The stack

    private var frameBase: Int { marks.last ?? 0 }

    private mutating func push(_ v: PickleValue) { stack.append(v) }

    private mutating func pop() throws -> PickleValue {
        guard stack.count > frameBase else { throw malformed("stack underflow") }
        return stack.removeLast()
    }

    private func top() throws -> PickleValue {
        guard stack.count > frameBase, let v = stack.last else { throw malformed("stack underflow") }
        return v
    }

    private mutating func popToMark() throws -> [PickleValue] {
        guard let m = marks.popLast() else { throw malformed("no MARK to pop to") }
        let items = Array(stack[m...])
        stack.removeSubrange(m...)
        return items
    }

    private func tupleItems(_ v: PickleValue, _ what: String) throws -> [PickleValue] {
        guard case let .tuple(i) = v else { throw malformed("\(what) is \(graph.describe(v)), expected a tuple") }
        return graph.tuples[i]
    }

    // MARK: The interpreter

    /// Runs the stream from the current position to its STOP and returns the value it built.
    mutating func load() throws -> PickleValue {
        while true {
            opcodeOffset = position
            guard position < bytes.count else {
                throw malformed(
                    position == 0 ? "the pickle is empty" : "the pickle ends without a STOP opcode (truncated?)")
            }
            let op = bytes.u8(position)
            position += 1
            switch op {
            case 0x80:  // PROTO
                let v = bytes.u8(try take(1))
                guard (2...5).contains(v) else { throw malformed("pickle protocol \(v) is not supported (2 to 5 are)") }
            case 0x95:  // FRAME: a length hint only
                _ = try length(bytes.u64(try take(8)))
            case 0x2E:  // STOP
                let v = try pop()
                return v
            case 0x28: marks.append(stack.count)  // MARK
            case 0x30:  // POP
                if let m = marks.last, m == stack.count { marks.removeLast() } else { _ = try pop() }
            case 0x31: _ = try popToMark()  // POP_MARK
            case 0x7D:  // EMPTY_DICT
                graph.dicts.append(PickleDict())
                push(.dict(graph.dicts.count - 1))
            case 0x5D:  // EMPTY_LIST
                graph.lists.append([])
                push(.list(graph.lists.count - 1))
            case 0x29: push(graph.add(tuple: []))  // EMPTY_TUPLE
            case 0x74: push(graph.add(tuple: try popToMark()))  // TUPLE
            case 0x85, 0x86, 0x87:  // TUPLE1, TUPLE2, TUPLE3
                var items = [PickleValue](repeating: .none, count: Int(op - 0x84))
                for i in items.indices.reversed() { items[i] = try pop() }
                push(graph.add(tuple: items))
            case 0x4A: push(.int(Int(Int32(bitPattern: bytes.u32(try take(4))))))  // BININT
            case 0x4B: push(.int(Int(bytes.u8(try take(1)))))  // BININT1
            case 0x4D: push(.int(Int(bytes.u16(try take(2)))))  // BININT2
            case 0x8A:  // LONG1
                let n = Int(bytes.u8(try take(1)))
                push(integer(bytes.bytes(try take(n), n)))
            case 0x8B:  // LONG4
                let raw = Int32(bitPattern: bytes.u32(try take(4)))
                guard raw >= 0 else { throw malformed("LONG4 has a negative length") }
                let n = try length(UInt64(raw))
                push(integer(bytes.bytes(try take(n), n)))
            case 0x47:  // BINFLOAT: big-endian
                push(.float(Double(bitPattern: bytes.u64(try take(8)).byteSwapped)))
            case 0x4E: push(.none)
            case 0x88: push(.bool(true))
            case 0x89: push(.bool(false))
            case 0x58: push(.string(try readString(try length(UInt64(bytes.u32(try take(4)))))))  // BINUNICODE
            case 0x8C: push(.string(try readString(Int(bytes.u8(try take(1))))))  // SHORT_BINUNICODE
            case 0x8D: push(.string(try readString(try length(bytes.u64(try take(8))))))  // BINUNICODE8
            case 0x54:  // BINSTRING (Python 2 str; torch.load decodes it as UTF-8)
                let raw = Int32(bitPattern: bytes.u32(try take(4)))
                guard raw >= 0 else { throw malformed("BINSTRING has a negative length") }
                push(.string(try readString(try length(UInt64(raw)))))
            case 0x55: push(.string(try readString(Int(bytes.u8(try take(1))))))  // SHORT_BINSTRING
            case 0x42, 0x43, 0x8E:  // BINBYTES, SHORT_BINBYTES, BINBYTES8
                let n: Int
                switch op {
                case 0x42: n = try length(UInt64(bytes.u32(try take(4))))
                case 0x43: n = Int(bytes.u8(try take(1)))
                default: n = try length(bytes.u64(try take(8)))
                }
                push(.bytes(bytes.bytes(try take(n), n)))
            case 0x71: memo[Int(bytes.u8(try take(1)))] = try top()  // BINPUT
            case 0x72: memo[Int(bytes.u32(try take(4)))] = try top()  // LONG_BINPUT
            case 0x94: memo[memo.count] = try top()  // MEMOIZE
            case 0x68, 0x6A:  // BINGET, LONG_BINGET
                let key: Int
                if op == 0x68 { key = Int(bytes.u8(try take(1))) } else { key = Int(bytes.u32(try take(4))) }
                guard let v = memo[key] else { throw malformed("memo entry \(key) is read before it is written") }
                push(v)
            case 0x73:  // SETITEM
                let value = try pop(), key = try pop()
                try setItems(target: try top(), [key, value])
            case 0x75:  // SETITEMS
                let items = try popToMark()
                try setItems(target: try top(), items)
            case 0x61:  // APPEND
                let value = try pop()
                try append(target: try top(), [value])
            case 0x65:  // APPENDS
                let items = try popToMark()
                try append(target: try top(), items)
            case 0x63:  // GLOBAL
                let module = try readLine(), name = try readLine()
                push(try resolve(module: module, name: name))
            case 0x93:  // STACK_GLOBAL
                let name = try pop(), module = try pop()
                guard case let .string(n) = name, case let .string(m) = module else {
                    throw malformed(
                        "STACK_GLOBAL needs two strings, found \(graph.describe(module)) and \(graph.describe(name))")
                }
                push(try resolve(module: m, name: n))
            case 0x52:  // REDUCE
                let args = try pop(), callable = try pop()
                push(try apply(callable, try tupleItems(args, "the argument of REDUCE")))
            case 0x81:  // NEWOBJ
                let args = try pop(), cls = try pop()
                push(try construct(cls, try tupleItems(args, "the argument of NEWOBJ")))
            case 0x92:  // NEWOBJ_EX
                _ = try pop()  // keyword arguments
                let args = try pop(), cls = try pop()
                push(try construct(cls, try tupleItems(args, "the argument of NEWOBJ_EX")))
            case 0x62:  // BUILD
                let state = try pop()
                try build(target: try top(), state: state)
            case 0x51:  // BINPERSID
                push(try persistentLoad(try pop()))
            default:
                throw PickleError(
                    kind: .refusedOpcode(name: Self.opcodeNames[op] ?? "<unknown>", code: op), offset: opcodeOffset)
            }
        }
    }

    // MARK: Containers

    private mutating func setItems(target: PickleValue, _ items: [PickleValue]) throws {
        guard items.count % 2 == 0 else { throw malformed("SETITEMS has an odd number of items (\(items.count))") }
        switch target {
        case let .dict(d):
            var i = 0
            while i < items.count {
                graph.dicts[d].set(items[i], items[i + 1])
                i += 2
            }
        case .opaque: break
        default: throw malformed("SETITEM(S) on \(graph.describe(target)), which is not a dict")
        }
    }

    private mutating func append(target: PickleValue, _ items: [PickleValue]) throws {
        switch target {
        case let .list(l): graph.lists[l].append(contentsOf: items)
        case .opaque: break
        default: throw malformed("APPEND(S) on \(graph.describe(target)), which is not a list")
        }
    }

    /// BUILD sets an object's state. State dicts carry `_metadata` (module versions) this way;
    /// attributes are not data we need, so they are accepted and dropped.
    private func build(target: PickleValue, state: PickleValue) throws {
        switch target {
        case .dict, .opaque, .tensor: return
        default: throw malformed("BUILD on \(graph.describe(target))")
        }
    }

    // MARK: Globals

    private func resolve(module: String, name: String) throws -> PickleValue {
        let full = "\(module).\(name)"
        if PickleAllowList.functions.contains(full) { return .global(full) }
        if PickleAllowList.storageModules.contains(module), TorchDType(storageClass: name) != nil {
            return .global(full)
        }
        if module == "torch", let d = TorchDType(dtypeName: name) { return .dtype(d) }
        if allow.isInert(module: module, name: name) { return .opaque(full) }
        throw PickleError(kind: .refusedGlobal(full), offset: opcodeOffset)
    }

    /// REDUCE: the interpretation of an allowed callable applied to `args`.
    private mutating func apply(_ callable: PickleValue, _ args: [PickleValue]) throws -> PickleValue {
        switch callable {
        case .opaque(let name):
            return .opaque(name)
        case .global("collections.OrderedDict"):
            return try orderedDict(args)
        case .global("torch._utils._rebuild_tensor"):
            guard args.count == 4 else { throw malformed("_rebuild_tensor takes 4 arguments, got \(args.count)") }
            return try rebuildTensor(args, dtype: nil, function: "_rebuild_tensor")
        case .global("torch._utils._rebuild_tensor_v2"):
            guard args.count == 6 || args.count == 7 else {
                throw malformed("_rebuild_tensor_v2 takes 6 or 7 arguments, got \(args.count)")
            }
            return try rebuildTensor(args, dtype: nil, function: "_rebuild_tensor_v2")
        case .global("torch._utils._rebuild_tensor_v3"):
            guard args.count == 7 || args.count == 8 else {
                throw malformed("_rebuild_tensor_v3 takes 7 or 8 arguments, got \(args.count)")
            }
            guard case let .dtype(d) = args[6] else {
                throw malformed("_rebuild_tensor_v3: argument 7 is \(graph.describe(args[6])), expected a dtype")
            }
            return try rebuildTensor(args, dtype: d, function: "_rebuild_tensor_v3")
        case .global("torch._utils._rebuild_parameter"), .global("torch._utils._rebuild_parameter_with_state"):
            guard args.count >= 3, args.count <= 4, case .tensor = args[0] else {
                throw malformed(
                    "a parameter is rebuilt from \(args.first.map(graph.describe) ?? "nothing"), expected a tensor")
            }
            return args[0]  // a Parameter is its tensor; requires_grad and hooks do not matter here
        case .global("torch.Size"):
            guard args.count == 1 else { throw malformed("torch.Size takes one argument") }
            switch args[0] {
            case let .tuple(t): return .tuple(t)
            case let .list(l): return graph.add(tuple: graph.lists[l])
            default: throw malformed("torch.Size of \(graph.describe(args[0]))")
            }
        case .global("_codecs.encode"):
            // How protocol 2 spells a Python 3 bytes object: encode(text, 'latin1').
            guard args.count == 2, case let .string(text) = args[0], case let .string(encoding) = args[1],
                ["latin1", "latin-1", "iso-8859-1"].contains(encoding.lowercased())
            else {
                throw malformed("_codecs.encode is only accepted as encode(text, 'latin1')")
            }
            var out: [UInt8] = []
            out.reserveCapacity(text.unicodeScalars.count)
            for u in text.unicodeScalars {
                guard u.value <= 0xFF else { throw malformed("_codecs.encode: a character beyond latin-1") }
                out.append(UInt8(u.value))
            }
            return .bytes(out)
        case let .global(name):
            throw malformed("'\(name)' is called; it may only appear as a storage type in a persistent id")
        default:
            throw malformed("REDUCE applies \(graph.describe(callable)), which is not callable")
        }
    }

    /// NEWOBJ: `cls.__new__(cls, *args)`; only inert classes and OrderedDict.
    private mutating func construct(_ cls: PickleValue, _ args: [PickleValue]) throws -> PickleValue {
        switch cls {
        case .opaque(let name): return .opaque(name)
        case .global("collections.OrderedDict"):
            graph.dicts.append(PickleDict())
            return .dict(graph.dicts.count - 1)
        default: throw malformed("NEWOBJ on \(graph.describe(cls))")
        }
    }

    private mutating func orderedDict(_ args: [PickleValue]) throws -> PickleValue {
        var dict = PickleDict()
        if let first = args.first {
            let pairs: [PickleValue]
            switch first {
            case let .list(l): pairs = graph.lists[l]
            case let .tuple(t): pairs = graph.tuples[t]
            default: throw malformed("OrderedDict of \(graph.describe(first))")
            }
            for p in pairs {
                let kv = try tupleItems(p, "an OrderedDict item")
                guard kv.count == 2 else { throw malformed("an OrderedDict item has \(kv.count) elements, not 2") }
                dict.set(kv[0], kv[1])
            }
        }
        graph.dicts.append(dict)
        return .dict(graph.dicts.count - 1)
    }

    private func int(_ v: PickleValue, _ what: String) throws -> Int {
        guard case let .int(i) = v else { throw malformed("\(what) is \(graph.describe(v)), expected an integer") }
        return i
    }

    private func ints(_ v: PickleValue, _ what: String) throws -> [Int] {
        let items: [PickleValue]
        switch v {
        case let .tuple(t): items = graph.tuples[t]
        case let .list(l): items = graph.lists[l]
        default: throw malformed("\(what) is \(graph.describe(v)), expected a tuple of integers")
        }
        return try items.map { try int($0, "an element of \(what)") }
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`
    /// (v3 adds the dtype; `_rebuild_tensor` has only the first four). Shape and bounds are checked
    /// against the storage when the data is read; here only the types and signs.
    private mutating func rebuildTensor(_ args: [PickleValue], dtype: TorchDType?, function: String) throws
        -> PickleValue
    {
        guard case let .storage(s) = args[0] else {
            throw malformed("\(function): argument 1 is \(graph.describe(args[0])), expected a storage")
        }
        let offset = try int(args[1], "the storage offset")
        let shape = try ints(args[2], "the size")
        let stride = try ints(args[3], "the stride")
        guard offset >= 0 else { throw malformed("\(function): negative storage offset \(offset)") }
        guard shape.count == stride.count else {
            throw malformed("\(function): size \(shape) and stride \(stride) have different lengths")
        }
        guard shape.allSatisfy({ $0 >= 0 }), stride.allSatisfy({ $0 >= 0 }) else {
            throw malformed("\(function): negative size or stride (size \(shape), stride \(stride))")
        }
        var requiresGrad = false
        if args.count > 4, case let .bool(b) = args[4] { requiresGrad = b }
        graph.tensors.append(
            TorchTensorRef(
                storage: s, dtype: dtype ?? graph.storages[s].dtype, offset: offset,
                shape: shape, stride: stride, requiresGrad: requiresGrad))
        return .tensor(graph.tensors.count - 1)
    }

    // MARK: Persistent ids

    /// BINPERSID: torch's storage references. Zip files write
    /// `('storage', storage_type, key, location, numel)`; the legacy format adds a sixth item,
    /// `None` or `(view_key, offset, numel)` for a view into the root storage.
    private mutating func persistentLoad(_ pid: PickleValue) throws -> PickleValue {
        let items = try tupleItems(pid, "a persistent id")
        var typename = ""
        switch items.first {
        case let .string(s)?: typename = s
        case let .bytes(b)?: typename = String(decoding: b, as: UTF8.self)
        default: break
        }
        if typename == "module" {
            throw malformed(
                "the file pickles a whole nn.Module (torch.save(model)), not a state dict; save model.state_dict() instead"
            )
        }
        guard typename == "storage", items.count == 5 || items.count == 6 else {
            throw malformed(
                "a persistent id is \(graph.describe(pid)) starting with \(items.first.map(graph.describe) ?? "nothing"), expected ('storage', type, key, location, numel)"
            )
        }
        guard case let .global(typeName) = items[1], let typeEnd = typeName.lastIndex(of: "."),
            let dtype = TorchDType(storageClass: String(typeName[typeName.index(after: typeEnd)...]))
        else {
            throw malformed("the storage type is \(graph.describe(items[1])), expected a torch storage class")
        }
        let key: String
        switch items[2] {
        case let .string(s): key = s
        case let .int(i): key = String(i)
        default: throw malformed("the storage key is \(graph.describe(items[2])), expected a string")
        }
        guard case let .string(location) = items[3] else {
            throw malformed("storage '\(key)': the location is \(graph.describe(items[3])), expected a string")
        }
        let count = try int(items[4], "the element count of storage '\(key)'")
        guard count >= 0 else { throw malformed("storage '\(key)' has a negative element count \(count)") }

        let root: Int
        if let existing = graph.rootStorages[key] {
            let r = graph.storages[existing]
            guard r.dtype == dtype, r.rootCount == count else {
                throw malformed(
                    "storage '\(key)' is declared as \(r.rootCount) x \(r.dtype.rawValue) and as \(count) x \(dtype.rawValue)"
                )
            }
            root = existing
        } else {
            graph.storages.append(
                TorchStorageRef(
                    key: key, dtype: dtype, location: location, rootCount: count, viewOffset: 0, count: count))
            root = graph.storages.count - 1
            graph.rootStorages[key] = root
        }
        guard items.count == 6, items[5] != .none else { return .storage(root) }

        let view = try tupleItems(items[5], "the view of storage '\(key)'")
        guard view.count == 3, case let .string(viewKey) = view[0] else {
            throw malformed("the view of storage '\(key)' is not (key, offset, numel)")
        }
        let offset = try int(view[1], "a view offset"), size = try int(view[2], "a view size")
        guard offset >= 0, size >= 0, offset <= count, size <= count - offset else {
            throw malformed(
                "view '\(viewKey)' (offset \(offset), \(size) elements) lies outside storage '\(key)' (\(count) elements)"
            )
        }
        if let existing = graph.viewStorages[viewKey] {
            let v = graph.storages[existing]
            guard v.key == key, v.viewOffset == offset, v.count == size else {
                throw malformed("view '\(viewKey)' is declared twice differently")
            }
            return .storage(existing)
        }
        graph.storages.append(
            TorchStorageRef(
                key: key, dtype: dtype, location: location, rootCount: count, viewOffset: offset, count: size))
        graph.viewStorages[viewKey] = graph.storages.count - 1
        return .storage(graph.storages.count - 1)
    }

    /// Every opcode of pickle protocols 0-5, for naming refused ones.
    static let opcodeNames: [UInt8: String] = [
        0x28: "MARK", 0x2E: "STOP", 0x30: "POP", 0x31: "POP_MARK", 0x32: "DUP", 0x46: "FLOAT", 0x49: "INT",
        0x4A: "BININT", 0x4B: "BININT1", 0x4C: "LONG", 0x4D: "BININT2", 0x4E: "NONE", 0x50: "PERSID",
        0x51: "BINPERSID", 0x52: "REDUCE", 0x53: "STRING", 0x54: "BINSTRING", 0x55: "SHORT_BINSTRING",
        0x56: "UNICODE", 0x58: "BINUNICODE", 0x61: "APPEND", 0x62: "BUILD", 0x63: "GLOBAL", 0x64: "DICT",
        0x7D: "EMPTY_DICT", 0x65: "APPENDS", 0x67: "GET", 0x68: "BINGET", 0x69: "INST", 0x6A: "LONG_BINGET",
        0x6C: "LIST", 0x5D: "EMPTY_LIST", 0x6F: "OBJ", 0x70: "PUT", 0x71: "BINPUT", 0x72: "LONG_BINPUT",
        0x73: "SETITEM", 0x74: "TUPLE", 0x29: "EMPTY_TUPLE", 0x75: "SETITEMS", 0x47: "BINFLOAT",
        0x80: "PROTO", 0x81: "NEWOBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x85: "TUPLE1", 0x86: "TUPLE2",
        0x87: "TUPLE3", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x8A: "LONG1", 0x8B: "LONG4", 0x42: "BINBYTES",
        0x43: "SHORT_BINBYTES", 0x8C: "SHORT_BINUNICODE", 0x8D: "BINUNICODE8", 0x8E: "BINBYTES8",
        0x8F: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET", 0x92: "NEWOBJ_EX", 0x93: "STACK_GLOBAL",
        0x94: "MEMOIZE", 0x95: "FRAME", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
    ]
}
