import Foundation

// MARK: - OpenCV-compatible bicubic resize

/// Per-axis taps of OpenCV's `cv::resize(..., INTER_CUBIC)` on 8-bit images (imgproc's resize.cpp).
///
/// TuneVLSeg resizes with albumentations' `Resize(interpolation=cv2.INTER_CUBIC)`, which differs from
/// PIL's bicubic in three ways that change the pixels: Keys' cubic with a = -0.75 (PIL: -0.5), always four
/// taps even when shrinking (no antialiasing: PIL widens the kernel by the scale), and OpenCV's pixel-centre
/// mapping sx = floor((dx + 0.5) * in / out - 0.5) with the fraction in float. Taps outside the image repeat
/// the edge pixel. Weights are OpenCV's: float coefficients rounded to 11-bit fixed point.
struct OpenCVCubicTaps {
    static let coefficientBits = 11
    /// First source index (before clamping; taps are first ..< first + 4) per output pixel.
    var first: [Int]
    /// Four fixed-point weights per output pixel.
    var weights: [Int32]

    init(inSize: Int, outSize: Int) {
        precondition(inSize > 0 && outSize > 0, "resize \(inSize) -> \(outSize)")
        let scale = Double(inSize) / Double(outSize)
        let one = Float(1 << Self.coefficientBits)
        first = [Int](repeating: 0, count: outSize)
        weights = [Int32](repeating: 0, count: 4 * outSize)
        for d in 0..<outSize {
            var f = Float((Double(d) + 0.5) * scale - 0.5)
            let s = Int(f.rounded(.down))
            f -= Float(s)
            first[d] = s - 1
            for (k, c) in Self.coefficients(f).enumerated() {
                // saturate_cast<short>(float): round half to even, as cvRound.
                weights[4 * d + k] = Int32((c * one).rounded(.toNearestOrEven))
            }
        }
    }

    /// OpenCV's `interpolateCubic` in float, A = -0.75; the last weight makes the four sum to 1.
    static func coefficients(_ x: Float) -> [Float] {
        let a: Float = -0.75
        let c0 = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
        let c1 = ((a + 2) * x - (a + 3)) * x * x + 1
        let c2 = ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1
        return [c0, c1, c2, 1 - c0 - c1 - c2]
    }
}

extension RGBImage {
    /// Resized as `cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)` on uint8 RGB: a
    /// horizontal pass into integer sums (value x 2^11), a vertical pass, then (sum + 2^21) >> 22
    /// saturated to 0...255 (OpenCV's fixed-point path).
    public func resizedOpenCVCubic(width outW: Int, height outH: Int) -> RGBImage {
        precondition(outW > 0 && outH > 0, "resize to \(outW)x\(outH)")
        precondition(width > 0 && height > 0, "resize of an empty \(width)x\(height) image")
        if outW == width && outH == height { return self }
        let hx = OpenCVCubicTaps(inSize: width, outSize: outW)
        let vy = OpenCVCubicTaps(inSize: height, outSize: outH)
        let w = width, h = height
        // Horizontal pass over every source row: outW x h x 3 integer sums.
        var rows = [Int32](repeating: 0, count: outW * h * 3)
        pixels.withUnsafeBufferPointer { src in
            rows.withUnsafeMutableBufferPointer { dst in
                for y in 0..<h {
                    let srow = y * w * 3, drow = y * outW * 3
                    for x in 0..<outW {
                        var acc: (Int32, Int32, Int32) = (0, 0, 0)
                        for k in 0..<4 {
                            let sx = min(max(hx.first[x] + k, 0), w - 1)
                            let wt = hx.weights[4 * x + k]
                            let p = srow + sx * 3
                            acc.0 += Int32(src[p]) * wt
                            acc.1 += Int32(src[p + 1]) * wt
                            acc.2 += Int32(src[p + 2]) * wt
                        }
                        dst[drow + x * 3] = acc.0
                        dst[drow + x * 3 + 1] = acc.1
                        dst[drow + x * 3 + 2] = acc.2
                    }
                }
            }
        }
        // Vertical pass: 2 x 11 fractional bits, rounded half up.
        let shift = Int64(2 * OpenCVCubicTaps.coefficientBits)
        let half = Int64(1) << (shift - 1)
        var out = [UInt8](repeating: 0, count: outW * outH * 3)
        rows.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<outH {
                    for i in 0..<(outW * 3) {
                        var acc: Int64 = 0
                        for k in 0..<4 {
                            let sy = min(max(vy.first[y] + k, 0), h - 1)
                            acc += Int64(src[sy * outW * 3 + i]) * Int64(vy.weights[4 * y + k])
                        }
                        let v = (acc + half) >> shift
                        dst[y * outW * 3 + i] = UInt8(clamping: v)
                    }
                }
            }
        }
        return RGBImage(width: outW, height: outH, pixels: out)
    }
}

/// `data.resize`: the image resize to the model's input (masks are always resized nearest).
public enum ImageResizeSetting: String, Sendable, Codable, CaseIterable {
    /// The model processor's PIL filter (bilinear for CLIPSeg's).
    case auto
    case pilBilinear = "pil_bilinear"
    case pilBicubic = "pil_bicubic"
    /// OpenCV's INTER_CUBIC (`RGBImage.resizedOpenCVCubic`).
    case cv2Cubic = "cv2_cubic"
}
