import Foundation

// A read-only reader for the zip archives `torch.save` writes (PyTorch >= 1.6).
//
// torch stores every record uncompressed (method 0) and pads local headers so tensor data starts
// 64-byte aligned, which is what makes memory-mapping the file useful: a record's bytes are a plain
// range of the file. This reader therefore implements exactly that subset (end-of-central-directory,
// ZIP64, central directory, local headers, stored entries) and refuses everything else by name
// instead of guessing. Every offset and size read from the file is checked against the bytes that
// are actually there before it is used: a truncated or hostile archive throws, it never traps.

/// Errors reading a zip archive; each names the file and, when one is at fault, the entry.
public struct ZipArchiveError: Error, CustomStringConvertible, Equatable, Sendable {
    public let path: String
    public let entry: String?
    public let reason: String

    public init(path: String, entry: String? = nil, reason: String) {
        self.path = path
        self.entry = entry
        self.reason = reason
    }

    public var description: String {
        if let entry { return "\(path): zip entry '\(entry)': \(reason)" }
        return "\(path): not a readable zip archive: \(reason)"
    }
}

/// The bytes a reader works on: a memory-mapped file or an in-memory copy, kept alive by `owner`.
// @unchecked Sendable: immutable after init (a read-only mapping or a private copy freed in deinit).
final class ByteSource: @unchecked Sendable {
    private let base: UnsafeRawPointer?
    private let length: Int
    private let owner: AnyObject?
    private let copy: UnsafeMutableRawBufferPointer?

    /// All of the bytes. The window holds this source, so its memory lives as long as any window
    /// (or slice of one) does, whatever the optimiser does with the lifetime of the reader objects.
    var window: ByteWindow { ByteWindow(base: base, count: length, keeper: self) }

    /// Maps `path` read-only (tensor data is then read straight from the page cache).
    init(path: String) throws {
        let file = try MappedFile(path: path)
        owner = file
        copy = nil
        base = file.base.map { UnsafeRawPointer($0) }
        length = file.length
    }

    /// Copies `data` (for inputs that are already in memory, and for tests).
    init(data: Data) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(data.count, 1), alignment: 64)
        data.withUnsafeBytes { raw in
            if let src = raw.baseAddress, raw.count > 0 {
                buffer.baseAddress!.copyMemory(from: src, byteCount: raw.count)
            }
        }
        copy = buffer
        owner = nil
        base = UnsafeRawPointer(buffer.baseAddress!)
        length = data.count
    }

    deinit { copy?.deallocate() }
}

/// A bounds-aware view of raw bytes. Reads are unchecked for speed, so every caller first asks
/// `contains(_:_:)` (overflow-safe) and throws when the range is not there.
struct ByteWindow {
    /// Read through the methods below or `withUnsafeBytes`, never kept: the window may be the
    /// last holder of `keeper`, and the optimiser may release it right after this is read.
    private let base: UnsafeRawPointer?
    let count: Int
    /// What owns the memory (a `ByteSource`), retained by every window into it.
    let keeper: AnyObject?

    init(base: UnsafeRawPointer?, count: Int, keeper: AnyObject?) {
        self.base = base
        self.count = count
        self.keeper = keeper
    }

    /// A window on nothing; made on each use (a stored static of a non-Sendable type is shared state).
    static var empty: ByteWindow { ByteWindow(base: nil, count: 0, keeper: nil) }

    /// True when [offset, offset + length) lies inside the window (no arithmetic overflow possible).
    @inline(__always)
    func contains(_ offset: Int, _ length: Int) -> Bool {
        offset >= 0 && length >= 0 && offset <= count && length <= count - offset
    }

    @inline(__always) func u8(_ o: Int) -> UInt8 { base!.load(fromByteOffset: o, as: UInt8.self) }
    @inline(__always) func u16(_ o: Int) -> UInt16 {
        UInt16(littleEndian: base!.loadUnaligned(fromByteOffset: o, as: UInt16.self))
    }
    @inline(__always) func u32(_ o: Int) -> UInt32 {
        UInt32(littleEndian: base!.loadUnaligned(fromByteOffset: o, as: UInt32.self))
    }
    @inline(__always) func u64(_ o: Int) -> UInt64 {
        UInt64(littleEndian: base!.loadUnaligned(fromByteOffset: o, as: UInt64.self))
    }

    /// A sub-window; the caller has checked `contains(offset, length)`.
    func slice(_ offset: Int, _ length: Int) -> ByteWindow {
        length == 0 ? .empty : ByteWindow(base: base! + offset, count: length, keeper: keeper)
    }

    /// The bytes as an array (for small records: names, version strings).
    func bytes(_ offset: Int, _ length: Int) -> [UInt8] {
        guard length > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: base! + offset, count: length))
    }

    var data: Data { count == 0 ? Data() : Data(bytes: base!, count: count) }

    /// The bytes (nil for an empty window) for the duration of `body`, with their owner held.
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(keeper) { try body(UnsafeRawBufferPointer(start: base, count: count)) }
    }
}

/// A read-only zip archive of stored (uncompressed) entries over memory-mapped bytes.
// @unchecked Sendable: the directory is parsed in init; afterwards only read.
public final class ZipArchive: @unchecked Sendable {
    /// One central-directory record.
    public struct Entry: Sendable, Equatable {
        public let name: String
        /// Compression method: 0 = stored; anything else cannot be read here.
        public let method: UInt16
        public let flags: UInt16
        public let crc32: UInt32
        public let compressedSize: Int
        public let uncompressedSize: Int
        public let localHeaderOffset: Int
        let rawName: [UInt8]
    }

    public let path: String
    /// Entries in central-directory order.
    public let entries: [Entry]
    private let index: [String: Int]
    let source: ByteSource

    // Signatures and fixed record sizes of the zip format (APPNOTE 6.3).
    static let localHeaderSignature: UInt32 = 0x0403_4B50
    static let centralHeaderSignature: UInt32 = 0x0201_4B50
    static let endSignature: UInt32 = 0x0605_4B50
    static let zip64EndSignature: UInt32 = 0x0606_4B50
    static let zip64LocatorSignature: UInt32 = 0x0706_4B50
    static let endRecordSize = 22, centralHeaderSize = 46, localHeaderSize = 30
    static let zip64EndRecordSize = 56, zip64LocatorSize = 20

    /// Opens and validates the archive at `path` (memory-mapped).
    public convenience init(path: String) throws {
        let source: ByteSource
        do {
            source = try ByteSource(path: path)
        } catch let SafeTensorsError.cannotOpen(_, reason) {
            throw ZipArchiveError(path: path, reason: "cannot open: \(reason)")
        }
        try self.init(path: path, source: source)
    }

    /// Reads the archive held in `data`; `name` is used in error messages.
    public convenience init(data: Data, name: String) throws {
        try self.init(path: name, source: ByteSource(data: data))
    }

    init(path: String, source: ByteSource) throws {
        self.path = path
        self.source = source
        let b = source.window
        func fail(_ reason: String) -> ZipArchiveError { ZipArchiveError(path: path, reason: reason) }

        // 1. The end-of-central-directory record: the last 22+ bytes, possibly followed by a comment
        //    of up to 65,535 bytes, so search backwards. A record whose comment reaches exactly the end
        //    of the file wins; otherwise the last one that fits (bytes appended after an archive).
        guard b.count >= Self.endRecordSize else {
            throw fail("the file is \(b.count) bytes, shorter than a zip end record (\(Self.endRecordSize) bytes)")
        }
        var end = -1, fallback = -1
        var pos = b.count - Self.endRecordSize
        let lowest = max(0, b.count - Self.endRecordSize - 0xFFFF)
        while pos >= lowest {
            if b.u32(pos) == Self.endSignature {
                let commentLength = Int(b.u16(pos + 20))
                if pos + Self.endRecordSize + commentLength == b.count { end = pos; break }
                if fallback < 0, pos + Self.endRecordSize + commentLength <= b.count { fallback = pos }
            }
            pos -= 1
        }
        if end < 0 { end = fallback }
        guard end >= 0 else { throw fail("no end-of-central-directory record (truncated, or not a zip file)") }

        var disk = UInt64(b.u16(end + 4)), centralDisk = UInt64(b.u16(end + 6))
        var entriesOnDisk = UInt64(b.u16(end + 8)), totalEntries = UInt64(b.u16(end + 10))
        var centralSize = UInt64(b.u32(end + 12)), centralOffset = UInt64(b.u32(end + 16))

        // 2. ZIP64: archives over 4 GB (or 65,535 entries) keep the real values in a ZIP64 end record,
        //    found through a locator right before the classic record.
        let locator = end - Self.zip64LocatorSize
        if locator >= 0, b.u32(locator) == Self.zip64LocatorSignature {
            let recordOffset64 = b.u64(locator + 8)
            guard b.u32(locator + 4) == 0, b.u32(locator + 16) <= 1 else {
                throw fail("multi-disk (spanned) archives are not supported")
            }
            guard recordOffset64 <= UInt64(Int.max), case let record = Int(recordOffset64),
                b.contains(record, Self.zip64EndRecordSize), record <= locator - Self.zip64EndRecordSize
            else {
                throw fail("the ZIP64 end record offset \(recordOffset64) lies outside the file")
            }
            guard b.u32(record) == Self.zip64EndSignature else { throw fail("no ZIP64 end record at offset \(record)") }
            disk = UInt64(b.u32(record + 16))
            centralDisk = UInt64(b.u32(record + 20))
            entriesOnDisk = b.u64(record + 24)
            totalEntries = b.u64(record + 32)
            centralSize = b.u64(record + 40)
            centralOffset = b.u64(record + 48)
            end = record
        } else if totalEntries == 0xFFFF || centralSize == 0xFFFF_FFFF || centralOffset == 0xFFFF_FFFF {
            throw fail("the end record defers to a ZIP64 record that is missing")
        }
        guard disk == 0, centralDisk == 0, entriesOnDisk == totalEntries else {
            throw fail("multi-disk (spanned) archives are not supported")
        }
        guard centralOffset <= UInt64(end), centralSize <= UInt64(end) - centralOffset else {
            throw fail(
                "the central directory (offset \(centralOffset), \(centralSize) bytes) does not fit before the end record at \(end)"
            )
        }
        let cdStart = Int(centralOffset), cdEnd = Int(centralOffset + centralSize)
        // Each record takes at least 46 bytes: reject absurd counts before allocating anything.
        guard totalEntries <= UInt64(cdEnd - cdStart) / UInt64(Self.centralHeaderSize) else {
            throw fail(
                "the end record claims \(totalEntries) entries, more than a \(centralSize)-byte central directory can hold"
            )
        }

        // 3. The central directory: names, sizes, checksums and local-header offsets.
        var entries: [Entry] = []
        entries.reserveCapacity(Int(totalEntries))
        var index: [String: Int] = [:]
        var p = cdStart
        for i in 0..<Int(totalEntries) {
            guard p <= cdEnd - Self.centralHeaderSize, b.u32(p) == Self.centralHeaderSignature else {
                throw fail("central directory record \(i) at offset \(p) is missing or malformed")
            }
            let flags = b.u16(p + 8), method = b.u16(p + 10), crc = b.u32(p + 16)
            var compressed = UInt64(b.u32(p + 20)), uncompressed = UInt64(b.u32(p + 24))
            let nameLength = Int(b.u16(p + 28)), extraLength = Int(b.u16(p + 30)), commentLength = Int(b.u16(p + 32))
            let startDisk = b.u16(p + 34)
            var localOffset = UInt64(b.u32(p + 42))
            let variable = nameLength + extraLength + commentLength
            guard variable <= cdEnd - p - Self.centralHeaderSize else {
                throw fail("central directory record \(i) at offset \(p) runs past the directory")
            }
            let rawName = b.bytes(p + Self.centralHeaderSize, nameLength)
            let name = String(decoding: rawName, as: UTF8.self)
            func bad(_ reason: String) -> ZipArchiveError { ZipArchiveError(path: path, entry: name, reason: reason) }

            // ZIP64 extended information: 8-byte values for exactly the fields saturated above, in order.
            if compressed == 0xFFFF_FFFF || uncompressed == 0xFFFF_FFFF || localOffset == 0xFFFF_FFFF {
                var q = p + Self.centralHeaderSize + nameLength
                let extraEnd = q + extraLength
                var found = false
                while q + 4 <= extraEnd {
                    let id = b.u16(q), size = Int(b.u16(q + 2))
                    guard size <= extraEnd - q - 4 else { throw bad("extra field runs past its record") }
                    if id == 0x0001 {
                        var r = q + 4
                        let rEnd = r + size
                        func next() throws -> UInt64 {
                            guard r + 8 <= rEnd else { throw bad("ZIP64 extra field is too short") }
                            defer { r += 8 }
                            return b.u64(r)
                        }
                        if uncompressed == 0xFFFF_FFFF { uncompressed = try next() }
                        if compressed == 0xFFFF_FFFF { compressed = try next() }
                        if localOffset == 0xFFFF_FFFF { localOffset = try next() }
                        found = true
                        break
                    }
                    q += 4 + size
                }
                if !found { throw bad("sizes or offset are saturated but there is no ZIP64 extra field") }
            }
            guard startDisk == 0 || startDisk == 0xFFFF else { throw bad("lies on another disk of a spanned archive") }
            guard compressed <= UInt64(b.count), uncompressed <= UInt64(Int.max), localOffset <= UInt64(b.count) else {
                throw bad(
                    "sizes (\(compressed) / \(uncompressed) bytes) or offset (\(localOffset)) exceed the \(b.count)-byte file"
                )
            }
            guard index[name] == nil else { throw bad("appears twice in the central directory") }
            index[name] = entries.count
            entries.append(
                Entry(
                    name: name, method: method, flags: flags, crc32: crc, compressedSize: Int(compressed),
                    uncompressedSize: Int(uncompressed), localHeaderOffset: Int(localOffset), rawName: rawName))
            p += Self.centralHeaderSize + variable
        }
        self.entries = entries
        self.index = index
    }

    public func entry(named name: String) -> Entry? { index[name].map { entries[$0] } }

    /// The stored bytes of `entry`, after checking its local header, method, range and (when
    /// `verifyChecksum`) its CRC-32. A compressed entry is an error naming the entry.
    func contents(of entry: Entry, verifyChecksum: Bool = true) throws -> ByteWindow {
        let b = source.window
        func bad(_ reason: String) -> ZipArchiveError { ZipArchiveError(path: path, entry: entry.name, reason: reason) }
        if entry.flags & 0x1 != 0 { throw bad("is encrypted") }
        guard entry.method == 0 else {
            let how = entry.method == 8 ? "deflate-compressed (method 8)" : "compressed with method \(entry.method)"
            throw bad("is \(how); only stored (uncompressed) entries can be read, as torch.save writes them")
        }
        guard entry.compressedSize == entry.uncompressedSize else {
            throw bad("is stored but its sizes differ (\(entry.compressedSize) vs \(entry.uncompressedSize) bytes)")
        }
        let h = entry.localHeaderOffset
        guard b.contains(h, Self.localHeaderSize), b.u32(h) == Self.localHeaderSignature else {
            throw bad("no local header at offset \(h)")
        }
        let nameLength = Int(b.u16(h + 26)), extraLength = Int(b.u16(h + 28))
        let dataStart = h + Self.localHeaderSize + nameLength + extraLength
        guard b.contains(h + Self.localHeaderSize, nameLength + extraLength),
            b.bytes(h + Self.localHeaderSize, nameLength) == entry.rawName
        else {
            throw bad("the local header at offset \(h) names a different entry")
        }
        guard b.contains(dataStart, entry.compressedSize) else {
            throw bad(
                "its \(entry.compressedSize) bytes at offset \(dataStart) run past the end of the file (\(b.count) bytes)"
            )
        }
        let window = b.slice(dataStart, entry.compressedSize)
        // A zero CRC on non-empty data means the writer did not compute one (torch can be told not
        // to); any other value must match.
        if verifyChecksum, entry.crc32 != 0 || entry.compressedSize == 0 {
            let actual = CRC32.checksum(window)
            guard actual == entry.crc32 else {
                throw bad(
                    String(format: "CRC-32 mismatch (stored %08x, data %08x): the file is damaged", entry.crc32, actual)
                )
            }
        }
        return window
    }

    /// A copy of a stored entry's bytes.
    public func data(of entry: Entry, verifyChecksum: Bool = true) throws -> Data {
        try contents(of: entry, verifyChecksum: verifyChecksum).data
    }
}

/// CRC-32 (IEEE 802.3, as zip uses), slicing by 8 bytes per step.
enum CRC32 {
    /// Eight 256-entry tables, flattened: table k at [k * 256 ..< (k + 1) * 256].
    static let table: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
            t[i] = c
        }
        for k in 1..<8 {
            for i in 0..<256 { t[k * 256 + i] = (t[(k - 1) * 256 + i] >> 8) ^ t[Int(t[(k - 1) * 256 + i] & 0xFF)] }
        }
        return t
    }()

    static func checksum(_ w: ByteWindow) -> UInt32 {
        w.withUnsafeBytes { checksum($0) }
    }

    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress else { return 0 }
        let n = bytes.count
        return table.withUnsafeBufferPointer { t -> UInt32 in
            var crc: UInt32 = 0xFFFF_FFFF
            var i = 0
            while i + 8 <= n {
                let lo = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt32.self)) ^ crc
                let hi = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self))
                crc =
                    t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((lo >> 16) & 0xFF)] ^ t[4 * 256 + Int(lo >> 24)]
                    ^ t[3 * 256 + Int(hi & 0xFF)] ^ t[2 * 256 + Int((hi >> 8) & 0xFF)]
                    ^ t[1 * 256 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
                i += 8
            }
            while i < n {
                crc = t[Int((crc ^ UInt32(base.load(fromByteOffset: i, as: UInt8.self))) & 0xFF)] ^ (crc >> 8)
                i += 1
            }
            return ~crc
        }
    }
}
