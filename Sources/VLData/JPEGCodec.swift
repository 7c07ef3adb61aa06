import CJPEG
import Foundation

/// JPEG decoding and encoding through TurboJPEG's tj* API (libjpeg-turbo 2.1), which reports
/// failures as return codes with a message, never by longjmp into Swift.
///
/// Decoding uses libjpeg's defaults (accurate integer DCT, fancy chroma upsampling), the settings
/// PIL decodes with, so pixel values match a PIL-based pipeline. Baseline and progressive files,
/// gray, YCbCr and RGB colour spaces decode to RGB; CMYK/YCCK files (rare: Photoshop exports) are
/// converted assuming Adobe's inverted storage.
///
/// libjpeg-turbo treats a truncated file as a *warning* and pads the missing rows with gray; a
/// dataset loader must not train on such an image, so warnings are errors here, except the benign
/// "extraneous bytes before marker" one that many real files carry and PIL also accepts.
public enum JPEGCodec {
    /// Whether `bytes` start like a JPEG file (SOI marker followed by another marker).
    public static func hasSignature(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF
    }

    /// Largest decoded RGB buffer accepted, in bytes.
    public static let maxDecodedBytes = 1 << 30

    /// Chroma subsampling for the writer.
    public enum Subsampling: Sendable {
        case s444, s422, s420
        var tj: Int32 {
            switch self {
            case .s444: return Int32(TJSAMP_444.rawValue)
            case .s422: return Int32(TJSAMP_422.rawValue)
            case .s420: return Int32(TJSAMP_420.rawValue)
            }
        }
    }

    // MARK: - Decoding

    /// Decodes to RGB (gray files replicated to three channels).
    public static func decodeImage(_ bytes: UnsafeRawBufferPointer, source: String = "<memory>") throws -> RGBImage {
        let (w, h, channels, pixels) = try decodeSamples(bytes, source: source)
        if channels == 3 { return RGBImage(width: w, height: h, pixels: pixels) }
        var rgb = [UInt8](repeating: 0, count: w * h * 3)
        pixels.withUnsafeBufferPointer { src in
            rgb.withUnsafeMutableBufferPointer { dst in
                for i in 0..<(w * h) { let v = src[i]; dst[3 * i] = v; dst[3 * i + 1] = v; dst[3 * i + 2] = v }
            }
        }
        return RGBImage(width: w, height: h, pixels: rgb)
    }

    /// Decodes to a binary mask: foreground where the first channel (gray, or red for colour files) > 127.
    public static func decodeMask(_ bytes: UnsafeRawBufferPointer, source: String = "<memory>") throws -> BinaryMask {
        let (w, h, channels, pixels) = try decodeSamples(bytes, source: source)
        return BinaryMask(firstChannelOf: pixels, width: w, height: h, channels: channels)
    }

    public static func decodeImage(_ data: Data, source: String = "<memory>") throws -> RGBImage {
        try data.withUnsafeBytes { try decodeImage($0, source: source) }
    }

    public static func decodeMask(_ data: Data, source: String = "<memory>") throws -> BinaryMask {
        try data.withUnsafeBytes { try decodeMask($0, source: source) }
    }

    public static func decodeImage(contentsOf url: URL) throws -> RGBImage {
        try decodeImage(try ImageIO.readFileBytes(url), source: url.path)
    }

    public static func decodeMask(contentsOf url: URL) throws -> BinaryMask {
        try decodeMask(try ImageIO.readFileBytes(url), source: url.path)
    }

    /// Width and height from the file's header alone (no pixels decoded).
    public static func headerSize(_ bytes: UnsafeRawBufferPointer, source: String) throws -> (width: Int, height: Int) {
        guard bytes.count > 0, let base = bytes.baseAddress else {
            throw ImageError.corrupt(path: source, reason: "empty file")
        }
        guard let handle = tjInitDecompress() else {
            throw ImageError.unreadable(path: source, reason: "TurboJPEG: cannot create a decompressor")
        }
        defer { tjDestroy(handle) }
        var width: Int32 = 0, height: Int32 = 0, subsamp: Int32 = 0, colorspace: Int32 = 0
        guard
            tjDecompressHeader3(
                handle, base.assumingMemoryBound(to: UInt8.self), UInt(bytes.count), &width, &height, &subsamp,
                &colorspace) == 0
        else {
            throw ImageError.corrupt(path: source, reason: "TurboJPEG: \(errorMessage(handle))")
        }
        guard width > 0, height > 0 else {
            throw ImageError.corrupt(path: source, reason: "image has no pixels (\(width)x\(height))")
        }
        return (Int(width), Int(height))
    }

    /// Decoded samples: one channel for gray files, three (RGB) otherwise.
    static func decodeSamples(_ bytes: UnsafeRawBufferPointer, source: String) throws
        -> (width: Int, height: Int, channels: Int, pixels: [UInt8])
    {
        guard bytes.count > 0 else { throw ImageError.corrupt(path: source, reason: "empty file") }
        guard let handle = tjInitDecompress() else {
            throw ImageError.unreadable(path: source, reason: "TurboJPEG: cannot create a decompressor")
        }
        defer { tjDestroy(handle) }
        let buf = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var width: Int32 = 0, height: Int32 = 0, subsamp: Int32 = 0, colorspace: Int32 = 0
        guard tjDecompressHeader3(handle, buf, UInt(bytes.count), &width, &height, &subsamp, &colorspace) == 0 else {
            throw ImageError.corrupt(path: source, reason: "TurboJPEG: \(errorMessage(handle))")
        }
        let w = Int(width), h = Int(height)
        guard w > 0, h > 0 else { throw ImageError.corrupt(path: source, reason: "image has no pixels (\(w)x\(h))") }
        let isCMYK = colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue)
        let channels = colorspace == Int32(TJCS_GRAY.rawValue) ? 1 : (isCMYK ? 4 : 3)
        guard w * h * channels <= maxDecodedBytes else {
            throw ImageError.unsupportedFormat(path: source, reason: "image of \(w)x\(h) pixels is too large to decode")
        }
        let format: TJPF = channels == 1 ? TJPF_GRAY : (isCMYK ? TJPF_CMYK : TJPF_RGB)
        var pixels = [UInt8](repeating: 0, count: w * h * channels)
        // TJFLAG_LIMITSCANS bounds the work a hostile progressive file can demand.
        let status = pixels.withUnsafeMutableBufferPointer { dst in
            tjDecompress2(
                handle, buf, UInt(bytes.count), dst.baseAddress, width, 0, height,
                format.rawValue, TJFLAG_LIMITSCANS)
        }
        if status != 0 {
            let message = errorMessage(handle)
            let fatal = tjGetErrorCode(handle) == Int32(TJERR_FATAL.rawValue)
            if fatal || !message.contains("extraneous bytes before marker") {
                throw ImageError.corrupt(path: source, reason: "TurboJPEG: \(message)")
            }
        }
        if isCMYK { return (w, h, 3, cmykToRGB(pixels, count: w * h)) }
        return (w, h, channels, pixels)
    }

    /// Adobe-inverted CMYK (as stored by Photoshop, the usual producer) to RGB: R = C' * K' / 255.
    static func cmykToRGB(_ cmyk: [UInt8], count: Int) -> [UInt8] {
        var rgb = [UInt8](repeating: 0, count: count * 3)
        cmyk.withUnsafeBufferPointer { src in
            rgb.withUnsafeMutableBufferPointer { dst in
                for i in 0..<count {
                    let k = UInt32(src[4 * i + 3])
                    for c in 0..<3 { dst[3 * i + c] = UInt8((UInt32(src[4 * i + c]) * k + 127) / 255) }
                }
            }
        }
        return rgb
    }

    // MARK: - Encoding

    /// Encodes an RGB image. `quality` is 1...100; `progressive` writes a progressive JPEG.
    public static func encode(
        _ image: RGBImage, quality: Int = 90, progressive: Bool = false,
        subsampling: Subsampling = .s420
    ) throws -> [UInt8] {
        try compress(
            image.pixels, width: image.width, height: image.height, format: TJPF_RGB,
            subsampling: subsampling.tj, quality: quality, progressive: progressive)
    }

    /// Encodes 8-bit gray samples as a single-component (grayscale) JPEG.
    public static func encodeGray(
        _ values: [UInt8], width: Int, height: Int, quality: Int = 90,
        progressive: Bool = false
    ) throws -> [UInt8] {
        precondition(values.count == width * height, "\(values.count) gray values for \(width)x\(height)")
        return try compress(
            values, width: width, height: height, format: TJPF_GRAY,
            subsampling: Int32(TJSAMP_GRAY.rawValue), quality: quality, progressive: progressive)
    }

    /// Writes an RGB JPEG file atomically.
    public static func write(_ image: RGBImage, to url: URL, quality: Int = 90, progressive: Bool = false) throws {
        let bytes: [UInt8]
        do { bytes = try encode(image, quality: quality, progressive: progressive) } catch let e as ImageError {
            throw e.relocated(to: url.path)
        }
        try ImageIO.writeFileBytes(bytes, to: url)
    }

    static func compress(
        _ samples: [UInt8], width: Int, height: Int, format: TJPF, subsampling: Int32,
        quality: Int, progressive: Bool
    ) throws -> [UInt8] {
        guard width > 0, height > 0 else {
            throw ImageError.writeFailed(path: "<memory>", reason: "cannot encode an empty \(width)x\(height) image")
        }
        guard let handle = tjInitCompress() else {
            throw ImageError.writeFailed(path: "<memory>", reason: "TurboJPEG: cannot create a compressor")
        }
        defer { tjDestroy(handle) }
        var jpegBuf: UnsafeMutablePointer<UInt8>? = nil
        var jpegSize: UInt = 0
        defer { if let b = jpegBuf { tjFree(b) } }
        let flags = TJFLAG_ACCURATEDCT | (progressive ? TJFLAG_PROGRESSIVE : 0)
        let status = samples.withUnsafeBufferPointer { src in
            tjCompress2(
                handle, src.baseAddress, Int32(width), 0, Int32(height), format.rawValue,
                &jpegBuf, &jpegSize, subsampling, Int32(min(max(quality, 1), 100)), flags)
        }
        guard status == 0, let out = jpegBuf else {
            throw ImageError.writeFailed(path: "<memory>", reason: "TurboJPEG: \(errorMessage(handle))")
        }
        return Array(UnsafeBufferPointer(start: out, count: Int(jpegSize)))
    }

    static func errorMessage(_ handle: tjhandle) -> String {
        guard let c = tjGetErrorStr2(handle) else { return "unknown TurboJPEG error" }
        return ImageError.oneLine(String(cString: c))
    }
}
