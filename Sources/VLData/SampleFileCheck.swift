import Foundation

/// A sample whose files cannot be used, found before the run starts.
public struct BadSample: Sendable, Codable, Equatable, CustomStringConvertible {
    public var split: String
    /// Position in the split's sample list.
    public var index: Int
    public var message: String

    public var description: String { message }
}

/// The cheap start-up check of a dataset's files: each file exists, is readable, has a PNG or JPEG
/// header that decodes and is complete (a PNG ends with its IEND chunk, a JPEG with its end-of-image
/// marker), and an image and its mask have the same size. Pixels are not decoded: the point is to
/// find a bad file in seconds, before step 1, rather than after hours of training. A file that passes
/// and still fails to decode mid-run ends the job through the ordinary error path.
public enum SampleFileCheck {
    /// Checks the samples at positions `offset`, `offset + stride`, ... of `set` (a rank's share: the
    /// ranks together cover every sample once), using the machine's cores.
    public static func check(_ set: SampleSet, split: String, offset: Int = 0, stride: Int = 1) -> [BadSample] {
        let positions = Array(Swift.stride(from: offset, to: set.count, by: max(stride, 1)))
        let found = LockedBox([BadSample?](repeating: nil, count: positions.count))
        DispatchQueue.concurrentPerform(iterations: positions.count) { i in
            let sample = set.samples[positions[i]]
            guard let problem = problem(sample) else { return }
            found.modify { $0[i] = BadSample(split: split, index: positions[i], message: problem) }
        }
        return found.value.compactMap { $0 }
    }

    /// What is wrong with a sample's files, or nil.
    static func problem(_ sample: Sample) -> String? {
        let entry = sample.entry
        let image: ImageSize, mask: ImageSize
        do {
            image = try probe(entry.imageURL)
        } catch let error as ImageError {
            return "\(DataError(imageError: error, role: "image", entry: entry.reference))"
        } catch {
            return "\(entry.reference): image \(entry.imageURL.path): \(error)"
        }
        do {
            mask = try probe(entry.maskURL)
        } catch let error as ImageError {
            return "\(DataError(imageError: error, role: "mask", entry: entry.reference))"
        } catch {
            return "\(entry.reference): mask \(entry.maskURL.path): \(error)"
        }
        guard image == mask else {
            return
                "\(DataError.sizeMismatch(entry.reference, imageWidth: image.width, imageHeight: image.height, maskWidth: mask.width, maskHeight: mask.height))"
        }
        return nil
    }

    /// Width and height from a PNG or JPEG file's header, after checking that the file is complete.
    public static func probe(_ url: URL) throws -> ImageSize {
        let data = try ImageIO.readFileBytes(url)
        return try data.withUnsafeBytes { bytes -> ImageSize in
            guard bytes.count > 0 else { throw ImageError.corrupt(path: url.path, reason: "empty file") }
            if PNGCodec.hasSignature(bytes) { return try pngSize(bytes, path: url.path) }
            if JPEGCodec.hasSignature(bytes) { return try jpegSize(bytes, path: url.path) }
            let head = bytes.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
            throw ImageError.unsupportedFormat(path: url.path, reason: "not a PNG or JPEG file (starts with \(head))")
        }
    }

    /// IHDR (the first chunk: 13 bytes of width, height, ...) and IEND (the last chunk).
    static func pngSize(_ bytes: UnsafeRawBufferPointer, path: String) throws -> ImageSize {
        func be32(_ at: Int) -> Int {
            (Int(bytes[at]) << 24) | (Int(bytes[at + 1]) << 16) | (Int(bytes[at + 2]) << 8) | Int(bytes[at + 3])
        }
        guard bytes.count >= 33, be32(8) == 13, bytes[12] == 0x49, bytes[13] == 0x48, bytes[14] == 0x44,
            bytes[15] == 0x52
        else {
            throw ImageError.corrupt(path: path, reason: "no PNG header (IHDR) after the signature")
        }
        let end = bytes.count
        guard end >= 45, bytes[end - 8] == 0x49, bytes[end - 7] == 0x45, bytes[end - 6] == 0x4E, bytes[end - 5] == 0x44
        else {
            throw ImageError.corrupt(path: path, reason: "truncated PNG (no IEND chunk at the end of its \(end) bytes)")
        }
        let w = be32(16), h = be32(20)
        guard w > 0, h > 0 else { throw ImageError.corrupt(path: path, reason: "image has no pixels (\(w)x\(h))") }
        return ImageSize(width: w, height: h)
    }

    /// TurboJPEG's header reader, and the end-of-image marker (allowing trailing padding bytes).
    static func jpegSize(_ bytes: UnsafeRawBufferPointer, path: String) throws -> ImageSize {
        let (w, h) = try JPEGCodec.headerSize(bytes, source: path)
        var end = bytes.count
        while end > 2
            && (bytes[end - 1] == 0x00 || bytes[end - 1] == 0x0A || bytes[end - 1] == 0x0D || bytes[end - 1] == 0x20)
        { end -= 1 }
        guard end >= 4, bytes[end - 2] == 0xFF, bytes[end - 1] == 0xD9 else {
            throw ImageError.corrupt(path: path, reason: "truncated JPEG (no end-of-image marker)")
        }
        return ImageSize(width: w, height: h)
    }
}

/// A value handed between threads under a lock.
public final class LockedBox<Value: Sendable>: @unchecked Sendable {
    // @unchecked: every access to `stored` holds `lock`.
    private let lock = NSLock()
    private var stored: Value

    public init(_ value: Value) { stored = value }

    public var value: Value { lock.lock(); defer { lock.unlock() }; return stored }
    public func set(_ value: Value) { lock.lock(); stored = value; lock.unlock() }
    /// Changes the value in place under the lock.
    public func modify(_ change: (inout Value) -> Void) { lock.lock(); change(&stored); lock.unlock() }
}
