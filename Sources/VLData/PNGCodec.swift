import CPNG
import Foundation

/// PNG decoding and encoding through libpng's simplified `png_image_*` API.
///
/// The simplified API reports failures through return codes and a message in the `png_image`, so
/// no `setjmp`/`longjmp` crosses Swift frames. Every PNG colour type and bit depth is accepted:
/// gray (1/2/4/8/16-bit), gray+alpha, RGB, RGBA (8/16-bit) and palette (with or without tRNS),
/// interlaced or not.
///
/// Decoding always asks libpng for 8-bit samples in the file's *own* channel layout (palette
/// expanded to its colours), then converts in Swift. That keeps two properties the datasets need:
/// alpha is dropped, never composited (a transparent pixel keeps its stored colour, as PIL's
/// `convert("RGB")` does for RGBA), and a mask's "first channel" is the file's first channel, not a
/// luminance that libpng would compute from RGB.
///
/// Samples are returned as stored, like PIL does, never colour-managed: 16-bit files are declared
/// sRGB-encoded (`PNG_IMAGE_FLAG_16BIT_sRGB`), so libpng scales them to 8 bits with
/// `png_set_scale_16` (v * 255 / 65535, rounded) instead of treating them as linear light, and the
/// colour-management chunks (gAMA, cHRM, sRGB, iCCP) are removed before libpng sees the file, since
/// the simplified API would otherwise gamma-correct a file whose gAMA is not sRGB's (a mask saved
/// with gAMA 1.0 would come back with different values).
public enum PNGCodec {
    /// The 8-byte PNG file signature.
    public static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// Whether `bytes` start with the PNG signature.
    public static func hasSignature(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count >= signature.count else { return false }
        for i in 0..<signature.count where bytes[i] != signature[i] { return false }
        return true
    }

    /// Largest decoded buffer accepted (bytes): a corrupt header claiming a gigantic image must end in
    /// an error naming the file, not in an allocation failure.
    public static let maxDecodedBytes = 1 << 30

    /// 8-bit samples in the file's own channel layout (palette expanded).
    struct Samples {
        var width: Int
        var height: Int
        /// 1 = gray, 2 = gray+alpha, 3 = RGB, 4 = RGBA.
        var channels: Int
        var pixels: [UInt8]
    }

    // MARK: - Decoding

    /// Decodes a PNG held in memory to RGB (gray replicated, alpha dropped).
    public static func decodeImage(_ bytes: UnsafeRawBufferPointer, source: String = "<memory>") throws -> RGBImage {
        let s = try decodeSamples(bytes, source: source)
        return rgbImage(from: s)
    }

    /// Decodes a PNG held in memory to a binary mask: foreground where the first channel > 127.
    public static func decodeMask(_ bytes: UnsafeRawBufferPointer, source: String = "<memory>") throws -> BinaryMask {
        let s = try decodeSamples(bytes, source: source)
        return binaryMask(from: s)
    }

    public static func decodeImage(_ data: Data, source: String = "<memory>") throws -> RGBImage {
        try data.withUnsafeBytes { try decodeImage($0, source: source) }
    }

    public static func decodeMask(_ data: Data, source: String = "<memory>") throws -> BinaryMask {
        try data.withUnsafeBytes { try decodeMask($0, source: source) }
    }

    /// Decodes a PNG file to RGB.
    public static func decodeImage(contentsOf url: URL) throws -> RGBImage {
        let data = try ImageIO.readFileBytes(url)
        return try decodeImage(data, source: url.path)
    }

    /// Decodes a PNG file to a binary mask.
    public static func decodeMask(contentsOf url: URL) throws -> BinaryMask {
        let data = try ImageIO.readFileBytes(url)
        return try decodeMask(data, source: url.path)
    }

    /// Class indices of a label-map PNG: the palette index for palette files (as PIL's mode "P"
    /// gives them: the colours are ignored), the first channel's 8-bit value otherwise.
    ///
    /// Palette indices cannot be recovered from the expanded colours (two entries may share a
    /// colour), so this reads the colour-mapped form, where libpng keeps the file's own indices.
    /// 16-bit files are rejected: scaling them to 8 bits would silently merge classes.
    public static func decodeClassIndices(_ bytes: UnsafeRawBufferPointer, source: String = "<memory>") throws
        -> (width: Int, height: Int, values: [UInt8])
    {
        guard hasSignature(bytes) else {
            throw ImageError.corrupt(path: source, reason: "not a PNG file (bad signature)")
        }
        var image = png_image()
        image.version = vlseg_png_image_version()
        defer { png_image_free(&image) }
        guard png_image_begin_read_from_memory(&image, bytes.baseAddress, bytes.count) != 0 else {
            throw failure(image, source: source)
        }
        let base = image.format
        let width = Int(image.width), height = Int(image.height)
        if base & UInt32(PNG_FORMAT_FLAG_COLORMAP) != 0 {
            guard width * height <= maxDecodedBytes else { throw tooLarge(width, height, source) }
            // RGBA colour-map output keeps the file's indices (no background compositing is needed).
            image.format = UInt32(PNG_FORMAT_FLAG_COLORMAP | PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA)
            var indices = [UInt8](repeating: 0, count: width * height)
            var colormap = [UInt8](repeating: 0, count: 256 * 4)
            let ok = indices.withUnsafeMutableBytes { out in
                colormap.withUnsafeMutableBytes { cmap in
                    png_image_finish_read(&image, nil, out.baseAddress, Int32(width), cmap.baseAddress)
                }
            }
            guard ok != 0 else { throw failure(image, source: source) }
            return (width, height, indices)
        }
        if base & UInt32(PNG_FORMAT_FLAG_LINEAR) != 0 {
            throw ImageError.unsupportedFormat(
                path: source, reason: "16-bit label maps are not supported (use 8-bit gray or palette)")
        }
        png_image_free(&image)
        let s = try decodeSamples(bytes, source: source)
        var values = [UInt8](repeating: 0, count: s.width * s.height)
        s.pixels.withUnsafeBufferPointer { src in
            values.withUnsafeMutableBufferPointer { dst in
                for i in 0..<dst.count { dst[i] = src[i * s.channels] }
            }
        }
        return (s.width, s.height, values)
    }

    /// Chunks that make libpng transform sample values (gamma, chromaticities, colour profiles).
    static let colorManagementChunks: Set<String> = ["gAMA", "cHRM", "sRGB", "iCCP"]

    /// The file without its colour-management chunks, or nil when it has none (the common case: no
    /// copy). Chunk framing is only walked, not validated: a malformed file is left to libpng.
    static func strippingColorManagement(_ bytes: UnsafeRawBufferPointer) -> [UInt8]? {
        var offset = signature.count
        var drop: [Range<Int>] = []
        while offset + 8 <= bytes.count {
            let length =
                Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8
                | Int(bytes[offset + 3])
            let type = String(decoding: bytes[(offset + 4)..<(offset + 8)], as: UTF8.self)
            let end = offset + 12 + length
            guard length >= 0, end <= bytes.count else { break }
            if colorManagementChunks.contains(type) { drop.append(offset..<end) }
            if type == "IDAT" || type == "IEND" { break }  // these chunks all precede the image data
            offset = end
        }
        guard !drop.isEmpty else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(bytes.count)
        var from = 0
        for r in drop {
            out.append(contentsOf: bytes[from..<r.lowerBound])
            from = r.upperBound
        }
        out.append(contentsOf: bytes[from...])
        return out
    }

    /// Reads the file's samples at 8 bits in its own channel layout.
    static func decodeSamples(_ bytes: UnsafeRawBufferPointer, source: String) throws -> Samples {
        guard bytes.count > 0 else { throw ImageError.corrupt(path: source, reason: "empty file") }
        guard hasSignature(bytes) else {
            throw ImageError.corrupt(path: source, reason: "not a PNG file (bad signature)")
        }
        if let stripped = strippingColorManagement(bytes) {
            return try stripped.withUnsafeBytes { try decodeStoredSamples($0, source: source) }
        }
        return try decodeStoredSamples(bytes, source: source)
    }

    private static func decodeStoredSamples(_ bytes: UnsafeRawBufferPointer, source: String) throws -> Samples {
        var image = png_image()
        image.version = vlseg_png_image_version()
        defer { png_image_free(&image) }
        guard png_image_begin_read_from_memory(&image, bytes.baseAddress, bytes.count) != 0 else {
            throw failure(image, source: source)
        }
        let base = image.format
        let hasColor = base & UInt32(PNG_FORMAT_FLAG_COLOR) != 0
        let hasAlpha = base & UInt32(PNG_FORMAT_FLAG_ALPHA) != 0
        let channels = (hasColor ? 3 : 1) + (hasAlpha ? 1 : 0)
        let width = Int(image.width), height = Int(image.height)
        guard width > 0, height > 0 else {
            throw ImageError.corrupt(path: source, reason: "image has no pixels (\(width)x\(height))")
        }
        guard width * height * channels <= maxDecodedBytes else { throw tooLarge(width, height, source) }
        // 8-bit, same colour/alpha channels as the file, palette expanded, no BGR/alpha-first.
        image.format = (hasColor ? UInt32(PNG_FORMAT_FLAG_COLOR) : 0) | (hasAlpha ? UInt32(PNG_FORMAT_FLAG_ALPHA) : 0)
        image.flags |= UInt32(PNG_IMAGE_FLAG_16BIT_sRGB)
        var pixels = [UInt8](repeating: 0, count: width * height * channels)
        let ok = pixels.withUnsafeMutableBytes { out in
            png_image_finish_read(&image, nil, out.baseAddress, Int32(width * channels), nil)
        }
        guard ok != 0 else { throw failure(image, source: source) }
        return Samples(width: width, height: height, channels: channels, pixels: pixels)
    }

    static func rgbImage(from s: Samples) -> RGBImage {
        if s.channels == 3 { return RGBImage(width: s.width, height: s.height, pixels: s.pixels) }
        let n = s.width * s.height
        var out = [UInt8](repeating: 0, count: n * 3)
        s.pixels.withUnsafeBufferPointer { srcBuf in
            out.withUnsafeMutableBufferPointer { dstBuf in
                let src = srcBuf.baseAddress!, dst = dstBuf.baseAddress!
                switch s.channels {
                case 1:
                    for i in 0..<n { let v = src[i]; dst[3 * i] = v; dst[3 * i + 1] = v; dst[3 * i + 2] = v }
                case 2:
                    for i in 0..<n { let v = src[2 * i]; dst[3 * i] = v; dst[3 * i + 1] = v; dst[3 * i + 2] = v }
                default:  // 4: RGBA
                    for i in 0..<n {
                        dst[3 * i] = src[4 * i]; dst[3 * i + 1] = src[4 * i + 1]; dst[3 * i + 2] = src[4 * i + 2]
                    }
                }
            }
        }
        return RGBImage(width: s.width, height: s.height, pixels: out)
    }

    static func binaryMask(from s: Samples) -> BinaryMask {
        BinaryMask(firstChannelOf: s.pixels, width: s.width, height: s.height, channels: s.channels)
    }

    // MARK: - Encoding

    /// Encodes an RGB image as an 8-bit RGB PNG.
    public static func encode(_ image: RGBImage) throws -> [UInt8] {
        try encodeRaw(
            image.pixels, width: image.width, height: image.height,
            format: UInt32(PNG_FORMAT_FLAG_COLOR), channels: 3, destination: "<memory>")
    }

    /// Encodes a mask as an 8-bit gray PNG holding 0 (background) and 255 (foreground), the form
    /// the medvlsm datasets store and viewers show.
    public static func encode(mask: BinaryMask) throws -> [UInt8] {
        var gray = [UInt8](repeating: 0, count: mask.values.count)
        mask.values.withUnsafeBufferPointer { src in
            gray.withUnsafeMutableBufferPointer { dst in
                for i in 0..<dst.count { dst[i] = src[i] != 0 ? 255 : 0 }
            }
        }
        return try encodeGray(gray, width: mask.width, height: mask.height)
    }

    /// Encodes 8-bit gray samples (e.g. a probability map scaled to 0...255, or a class-index map).
    public static func encodeGray(_ values: [UInt8], width: Int, height: Int) throws -> [UInt8] {
        precondition(values.count == width * height, "\(values.count) gray values for \(width)x\(height)")
        return try encodeRaw(values, width: width, height: height, format: 0, channels: 1, destination: "<memory>")
    }

    /// Writes an RGB PNG file (atomically: a reader never sees a half-written file).
    public static func write(_ image: RGBImage, to url: URL) throws {
        let bytes = try encodeRaw(
            image.pixels, width: image.width, height: image.height,
            format: UInt32(PNG_FORMAT_FLAG_COLOR), channels: 3, destination: url.path)
        try ImageIO.writeFileBytes(bytes, to: url)
    }

    /// Writes a 0/255 gray mask PNG file.
    public static func write(mask: BinaryMask, to url: URL) throws {
        let bytes: [UInt8]
        do { bytes = try encode(mask: mask) } catch let e as ImageError { throw e.relocated(to: url.path) }
        try ImageIO.writeFileBytes(bytes, to: url)
    }

    static func encodeRaw(
        _ samples: [UInt8], width: Int, height: Int, format: UInt32, channels: Int,
        destination: String
    ) throws -> [UInt8] {
        guard width > 0, height > 0 else {
            throw ImageError.writeFailed(path: destination, reason: "cannot encode an empty \(width)x\(height) image")
        }
        var image = png_image()
        image.version = vlseg_png_image_version()
        image.width = UInt32(width)
        image.height = UInt32(height)
        image.format = format
        defer { png_image_free(&image) }
        return try samples.withUnsafeBytes { src -> [UInt8] in
            // Raw size plus zlib's worst-case overhead and the chunk framing: one pass almost always fits.
            var capacity = width * height * channels + (width * height * channels) / 100 + height + 4096
            for _ in 0..<2 {
                var out = [UInt8](repeating: 0, count: capacity)
                var size = capacity
                let ok = out.withUnsafeMutableBytes { dst in
                    png_image_write_to_memory(
                        &image, dst.baseAddress, &size, 0, src.baseAddress,
                        Int32(width * channels), nil)
                }
                if ok != 0 {
                    out.removeLast(out.count - size)
                    return out
                }
                // A too-small buffer is reported as a larger size; libpng has already released its state.
                if size > capacity { capacity = size; image.warning_or_error = 0; continue }
                throw ImageError.writeFailed(path: destination, reason: "libpng: \(message(of: image))")
            }
            throw ImageError.writeFailed(path: destination, reason: "libpng: output buffer kept growing")
        }
    }

    // MARK: - Errors

    /// libpng's message, one line.
    static func message(of image: png_image) -> String {
        var copy = image.message
        let text = withUnsafeBytes(of: &copy) { raw -> String in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
        return text.isEmpty ? "unknown libpng error" : ImageError.oneLine(text)
    }

    static func failure(_ image: png_image, source: String) -> ImageError {
        .corrupt(path: source, reason: "libpng: \(message(of: image))")
    }

    static func tooLarge(_ width: Int, _ height: Int, _ source: String) -> ImageError {
        .unsupportedFormat(path: source, reason: "image of \(width)x\(height) pixels is too large to decode")
    }
}

extension BinaryMask {
    /// Binarises interleaved 8-bit samples: foreground where the first channel > 127, the threshold the
    /// reference implementations use for their 0/255 masks (and one that also accepts 0/1 masks scaled
    /// to 0/255 by 1-bit PNG decoding).
    init(firstChannelOf samples: [UInt8], width: Int, height: Int, channels: Int) {
        var values = [UInt8](repeating: 0, count: width * height)
        samples.withUnsafeBufferPointer { srcBuf in
            values.withUnsafeMutableBufferPointer { dstBuf in
                let src = srcBuf.baseAddress!, dst = dstBuf.baseAddress!
                for i in 0..<(width * height) { dst[i] = src[i * channels] > 127 ? 1 : 0 }
            }
        }
        self.init(width: width, height: height, values: values)
    }
}
