import Foundation
import VLTensor

// MARK: - Normalisation

/// Per-channel mean and standard deviation applied after scaling bytes (by 1/255 unless the model's
/// processor says otherwise).
public struct Normalization: Sendable, Equatable, Codable {
    public var mean: [Float]
    public var std: [Float]
    /// The factor applied to byte values before the mean and std (a processor's `rescale_factor`, or 1
    /// when it does not rescale).
    public var scale: Double = 1.0 / 255

    public init(mean: [Float], std: [Float], scale: Double = 1.0 / 255) {
        precondition(
            mean.count == 3 && std.count == 3 && std.allSatisfy { $0 > 0 },
            "normalisation needs 3 means and 3 positive stds")
        self.mean = mean
        self.std = std
        self.scale = scale
    }

    enum CodingKeys: String, CodingKey { case mean, std, scale }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(mean, forKey: .mean)
        try c.encode(std, forKey: .std)
        try c.encode(scale, forKey: .scale)
    }

    /// Decoded from a config: three means and three positive standard deviations, else an error
    /// naming the key (never a crash later in the loader).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let mean = try c.decode([Float].self, forKey: .mean)
        let std = try c.decode([Float].self, forKey: .std)
        guard mean.count == 3 else {
            throw DecodingError.dataCorruptedError(
                forKey: .mean, in: c, debugDescription: "mean needs 3 values (R, G, B), got \(mean.count)")
        }
        guard std.count == 3, std.allSatisfy({ $0 > 0 }) else {
            throw DecodingError.dataCorruptedError(
                forKey: .std, in: c, debugDescription: "std needs 3 positive values (R, G, B)")
        }
        let scale = try c.decodeIfPresent(Double.self, forKey: .scale) ?? 1.0 / 255
        guard scale > 0 else {
            throw DecodingError.dataCorruptedError(forKey: .scale, in: c, debugDescription: "scale must be positive")
        }
        self.init(mean: mean, std: std, scale: scale)
    }

    /// ImageNet statistics: what CLIPSeg's processor uses.
    public static let imageNet = Normalization(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])
    /// CLIP's statistics: what CRIS uses.
    public static let clip = Normalization(
        mean: [0.48145466, 0.4578275, 0.40821073],
        std: [0.26862954, 0.26130258, 0.27577711])

    /// The 3 x 256 table of normalised values, computed as the Python pipelines do, so a byte maps to
    /// the same float: torchvision's v / 255 in float32 for the default scale, transformers' rescale
    /// (v x factor in float64, stored as float32) for any other; then (x - mean) / std in float32.
    func lookupTable() -> [Float] {
        var lut = [Float](repeating: 0, count: 3 * 256)
        let byDivision = scale == 1.0 / 255
        for c in 0..<3 {
            for v in 0..<256 {
                let x = byDivision ? Float(v) / 255 : Float(Double(v) * scale)
                lut[c * 256 + v] = (x - mean[c]) / std[c]
            }
        }
        return lut
    }
}

extension RGBImage {
    /// Writes the normalised image as float32 CHW (3 x height x width) at `destination`, e.g. one
    /// slot of a batch tensor, so batching needs no extra copy.
    public func normalize(_ n: Normalization, into destination: UnsafeMutablePointer<Float>) {
        let lut = n.lookupTable()
        let plane = width * height
        lut.withUnsafeBufferPointer { lutBuf in
            pixels.withUnsafeBufferPointer { srcBuf in
                let l = lutBuf.baseAddress!, src = srcBuf.baseAddress!
                let r = destination, g = destination + plane, b = destination + 2 * plane
                for i in 0..<plane {
                    r[i] = l[Int(src[3 * i])]
                    g[i] = l[256 + Int(src[3 * i + 1])]
                    b[i] = l[512 + Int(src[3 * i + 2])]
                }
            }
        }
    }

    /// The normalised image as a [3, height, width] tensor.
    public func normalizedTensor(_ n: Normalization) -> Tensor {
        let t = Tensor(uninitialized: [3, height, width])
        t.withUnsafeMutablePointer { normalize(n, into: $0) }
        return t
    }
}

extension BinaryMask {
    /// Writes the mask as float32 0/1 (height x width) at `destination` (a slot of a batch target).
    public func writeFloats(into destination: UnsafeMutablePointer<Float>) {
        values.withUnsafeBufferPointer { src in
            for i in 0..<src.count { destination[i] = src[i] != 0 ? 1 : 0 }
        }
    }

    /// Bounding box of the foreground as half-open ranges, or nil for an empty mask.
    public var foregroundBounds: (x: Range<Int>, y: Range<Int>)? {
        var x0 = width, x1 = -1, y0 = height, y1 = -1
        values.withUnsafeBufferPointer { v in
            for y in 0..<height {
                let row = y * width
                for x in 0..<width where v[row + x] != 0 {
                    if x < x0 { x0 = x }
                    if x > x1 { x1 = x }
                    if y < y0 { y0 = y }
                    y1 = y
                }
            }
        }
        return x1 < 0 ? nil : (x0..<(x1 + 1), y0..<(y1 + 1))
    }
}
