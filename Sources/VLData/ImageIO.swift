import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Why an image could not be read or written. Each case names the file and prints as one line, so
/// a dataset problem ends in a message the user can act on, not in a trace.
public enum ImageError: Error, CustomStringConvertible, Equatable, Sendable {
    /// No file at the path.
    case missingFile(path: String)
    /// The file exists but cannot be read (permissions, a directory, an I/O error).
    case unreadable(path: String, reason: String)
    /// The bytes are not a valid image of their format: bad signature, CRC or Huffman error,
    /// truncated data. The reason carries libpng's or TurboJPEG's own message.
    case corrupt(path: String, reason: String)
    /// A valid file of a kind VLSeg does not decode (GIF, BMP, TIFF, WebP, ...) or too large.
    case unsupportedFormat(path: String, reason: String)
    /// Encoding or writing failed.
    case writeFailed(path: String, reason: String)

    public var path: String {
        switch self {
        case .missingFile(let p), .unreadable(let p, _), .corrupt(let p, _), .unsupportedFormat(let p, _),
            .writeFailed(let p, _):
            return p
        }
    }

    public var description: String {
        switch self {
        case .missingFile(let p): return "image file not found: \(p)"
        case .unreadable(let p, let r): return "cannot read image file \(p): \(r)"
        case .corrupt(let p, let r): return "corrupt or truncated image \(p): \(r)"
        case .unsupportedFormat(let p, let r): return "unsupported image format in \(p): \(r)"
        case .writeFailed(let p, let r): return "cannot write image \(p): \(r)"
        }
    }

    /// The same error naming another path (an in-memory encode that was destined for a file).
    func relocated(to newPath: String) -> ImageError {
        switch self {
        case .missingFile: return .missingFile(path: newPath)
        case .unreadable(_, let r): return .unreadable(path: newPath, reason: r)
        case .corrupt(_, let r): return .corrupt(path: newPath, reason: r)
        case .unsupportedFormat(_, let r): return .unsupportedFormat(path: newPath, reason: r)
        case .writeFailed(_, let r): return .writeFailed(path: newPath, reason: r)
        }
    }

    /// Library messages may end with a newline or span lines; errors print as one line.
    static func oneLine(_ text: String) -> String {
        text.split(whereSeparator: { $0 == "\n" || $0 == "\r" })
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
            .joined(separator: " ")
    }
}

/// Reading and writing images and masks, choosing the codec by the file's signature (magic bytes),
/// never by its extension: datasets contain JPEG files named `.png` and the reverse.
public enum ImageIO {
    /// The formats recognised by signature.
    public enum Format: String, Sendable {
        case png = "PNG", jpeg = "JPEG", gif = "GIF", bmp = "BMP", tiff = "TIFF", webp = "WebP"
    }

    /// The format `bytes` start with, or nil when unrecognised.
    public static func detectFormat(_ bytes: UnsafeRawBufferPointer) -> Format? {
        func starts(_ prefix: [UInt8], at offset: Int = 0) -> Bool {
            guard bytes.count >= offset + prefix.count else { return false }
            for i in 0..<prefix.count where bytes[offset + i] != prefix[i] { return false }
            return true
        }
        if PNGCodec.hasSignature(bytes) { return .png }
        if JPEGCodec.hasSignature(bytes) { return .jpeg }
        if starts(Array("GIF8".utf8)) { return .gif }
        if starts([0x42, 0x4D]) { return .bmp }
        if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A]) { return .tiff }
        if starts(Array("RIFF".utf8)) && starts(Array("WEBP".utf8), at: 8) { return .webp }
        return nil
    }

    /// Reads an image file as RGB (gray replicated, alpha dropped).
    public static func readImage(_ url: URL) throws -> RGBImage {
        let data = try readFileBytes(url)
        return try data.withUnsafeBytes { bytes in
            switch try codec(for: bytes, path: url.path) {
            case .png: return try PNGCodec.decodeImage(bytes, source: url.path)
            default: return try JPEGCodec.decodeImage(bytes, source: url.path)
            }
        }
    }

    /// Reads a mask file: foreground where the file's first channel > 127 (whatever its layout).
    public static func readMask(_ url: URL) throws -> BinaryMask {
        let data = try readFileBytes(url)
        return try data.withUnsafeBytes { bytes in
            switch try codec(for: bytes, path: url.path) {
            case .png: return try PNGCodec.decodeMask(bytes, source: url.path)
            default: return try JPEGCodec.decodeMask(bytes, source: url.path)
            }
        }
    }

    /// For a mask that `readMask` reads as all background: its largest first-channel value (palette
    /// index for palette files) when that is nonzero, i.e. 1-127, as in a 0/1 label mask stored
    /// where 0/255 is expected. nil when the file holds only zeros or cannot be read this way.
    public static func faintMaskMaximum(_ url: URL) -> Int? {
        guard let raw = try? readClassIndices(url), let top = raw.values.max(), top > 0 else { return nil }
        return Int(top)
    }

    /// Reads a class-index map (multi-class masks): palette indices for palette PNGs, the first
    /// channel's value otherwise. JPEG is accepted but lossy compression blurs indices at edges.
    public static func readClassIndices(_ url: URL) throws -> (width: Int, height: Int, values: [UInt8]) {
        let data = try readFileBytes(url)
        return try data.withUnsafeBytes { bytes in
            switch try codec(for: bytes, path: url.path) {
            case .png: return try PNGCodec.decodeClassIndices(bytes, source: url.path)
            default:
                let s = try JPEGCodec.decodeSamples(bytes, source: url.path)
                if s.channels == 1 { return (s.width, s.height, s.pixels) }
                var v = [UInt8](repeating: 0, count: s.width * s.height)
                for i in 0..<v.count { v[i] = s.pixels[i * s.channels] }
                return (s.width, s.height, v)
            }
        }
    }

    /// Writes an RGB image as PNG (overlays, visualisations).
    public static func writePNG(_ image: RGBImage, to url: URL) throws {
        try PNGCodec.write(image, to: url)
    }

    /// Writes a mask as a 0/255 gray PNG (predictions at the original resolution).
    public static func writeMaskPNG(_ mask: BinaryMask, to url: URL) throws {
        try PNGCodec.write(mask: mask, to: url)
    }

    /// The image with `color` blended over the mask's foreground at opacity `alpha` (0...1). A mask of
    /// another size (a prediction at model resolution) is first resized to the image by nearest neighbour.
    public static func overlay(
        image: RGBImage, mask: BinaryMask, color: (UInt8, UInt8, UInt8) = (255, 0, 0),
        alpha: Double = 0.5
    ) -> RGBImage {
        let m =
            (mask.width == image.width && mask.height == image.height)
            ? mask : mask.resizedNearest(width: image.width, height: image.height)
        let a = min(max(alpha, 0), 1)
        // Fixed-point blend: out = (v * (256 - a8) + c * a8 + 128) >> 8.
        let a8 = UInt32((a * 256).rounded())
        let keep = 256 - a8
        let c = [UInt32(color.0) * a8, UInt32(color.1) * a8, UInt32(color.2) * a8]
        var out = image
        out.pixels.withUnsafeMutableBufferPointer { px in
            m.values.withUnsafeBufferPointer { mv in
                for i in 0..<mv.count where mv[i] != 0 {
                    for ch in 0..<3 {
                        let v = UInt32(px[3 * i + ch])
                        px[3 * i + ch] = UInt8(min((v * keep + c[ch] + 128) >> 8, 255))
                    }
                }
            }
        }
        return out
    }

    // MARK: - Files

    /// Which decoder handles `bytes`, or the error naming the file.
    static func codec(for bytes: UnsafeRawBufferPointer, path: String) throws -> Format {
        if bytes.count == 0 { throw ImageError.corrupt(path: path, reason: "empty file") }
        if let f = detectFormat(bytes) {
            if f == .png || f == .jpeg { return f }
            throw ImageError.unsupportedFormat(path: path, reason: "\(f.rawValue) image (VLSeg reads PNG and JPEG)")
        }
        // A file shorter than a signature that starts like one was cut off.
        if bytes.count < PNGCodec.signature.count,
            zip(bytes, PNGCodec.signature).allSatisfy({ $0 == $1 }) || (bytes.count < 3 && bytes.first == 0xFF)
        {
            throw ImageError.corrupt(path: path, reason: "file ends after \(bytes.count) bytes")
        }
        let head = bytes.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
        throw ImageError.unsupportedFormat(path: path, reason: "not a PNG or JPEG file (starts with \(head))")
    }

    /// The whole file, or an error naming it: missing, a directory, or unreadable (with errno's text).
    public static func readFileBytes(_ url: URL) throws -> Data {
        let path = url.path
        let fd = open(path, O_RDONLY)
        if fd < 0 {
            let e = errno
            if e == ENOENT || e == ENOTDIR { throw ImageError.missingFile(path: path) }
            throw ImageError.unreadable(path: path, reason: String(cString: strerror(e)))
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw ImageError.unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw ImageError.unreadable(path: path, reason: "is a directory") }
        let size = Int(st.st_size)
        var data = Data(count: size)
        var done = 0
        let failure: Int32? = data.withUnsafeMutableBytes { buf -> Int32? in
            while done < size {
                let n = read(fd, buf.baseAddress! + done, size - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                if n == 0 { break }
                done += n
            }
            return nil
        }
        if let e = failure { throw ImageError.unreadable(path: path, reason: String(cString: strerror(e))) }
        if done < size { data.removeSubrange(done..<size) }
        return data
    }

    /// The POSIX reason behind a Foundation file error ("Permission denied"), else its description.
    static func reason(of error: Error) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? Error {
            let u = underlying as NSError
            if u.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(u.code))) }
        }
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        return ImageError.oneLine(ns.localizedDescription)
    }

    /// Writes `bytes` to a temporary file beside `url` and renames it into place, creating missing
    /// parent folders, so a crash never leaves a half-written image under the final name.
    public static func writeFileBytes(_ bytes: [UInt8], to url: URL) throws {
        let path = url.path
        let dir = url.deletingLastPathComponent()
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        } catch {
            throw ImageError.writeFailed(path: path, reason: "cannot create folder \(dir.path): \(reason(of: error))")
        }
        // mkstemp makes a unique name, so concurrent writers of the same file never share a temporary.
        var template = Array(dir.appendingPathComponent(".\(url.lastPathComponent).XXXXXX").path.utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw ImageError.writeFailed(path: path, reason: String(cString: strerror(errno))) }
        let tmp = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        fchmod(fd, 0o644)
        var written = 0
        var failure: Int32? = nil
        bytes.withUnsafeBytes { buf in
            while written < buf.count {
                let n = write(fd, buf.baseAddress! + written, buf.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                written += n
            }
        }
        if close(fd) != 0 && failure == nil { failure = errno }
        if let e = failure {
            unlink(tmp)
            throw ImageError.writeFailed(path: path, reason: String(cString: strerror(e)))
        }
        if rename(tmp, path) != 0 {
            let e = errno
            unlink(tmp)
            throw ImageError.writeFailed(path: path, reason: String(cString: strerror(e)))
        }
    }
}
