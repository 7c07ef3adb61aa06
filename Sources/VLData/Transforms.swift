import Foundation
import VLTensor

// MARK: - PIL-compatible bilinear resize

/// Per-axis filter weights of PIL's `Image.resize(size, BILINEAR)` (Pillow's Resample.c).
///
/// PIL's bilinear is a triangle filter whose support is stretched by the downscale factor, so a
/// shrink averages every source pixel under the output pixel (antialiasing) instead of sampling
/// four of them as OpenCV or a naive bilinear would. Matching it keeps VLSeg's inputs identical to
/// the Python pipelines the pretrained checkpoints and published results used. Weights are computed
/// in Double exactly as Pillow does, then converted to Pillow's 22-bit fixed point, so results are
/// bit-identical, not merely close.
struct PILBilinearWeights {
    static let precisionBits = 32 - 8 - 2
    let inSize: Int
    let outSize: Int
    /// Taps reserved per output pixel.
    let ksize: Int
    /// First source index and number of taps, per output pixel.
    var start: [Int32]
    var count: [Int32]
    /// `ksize` fixed-point weights per output pixel (unused taps are 0).
    var weights: [Int32]

    init(inSize: Int, outSize: Int) {
        precondition(inSize > 0 && outSize > 0, "resize \(inSize) -> \(outSize)")
        self.inSize = inSize
        self.outSize = outSize
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = 1.0 * filterScale // bilinear support is 1
        ksize = Int(support.rounded(.up)) * 2 + 1
        start = [Int32](repeating: 0, count: outSize)
        count = [Int32](repeating: 0, count: outSize)
        weights = [Int32](repeating: 0, count: outSize * ksize)
        var k = [Double](repeating: 0, count: ksize)
        let ss = 1.0 / filterScale
        let one = Double(1 << Self.precisionBits)
        for xx in 0..<outSize {
            let center = (Double(xx) + 0.5) * scale
            // C's (int) cast truncates toward zero.
            var xmin = Int((center - support + 0.5).rounded(.towardZero))
            if xmin < 0 { xmin = 0 }
            var xmax = Int((center + support + 0.5).rounded(.towardZero))
            if xmax > inSize { xmax = inSize }
            xmax -= xmin
            var ww = 0.0
            for x in 0..<xmax {
                let t = abs((Double(x + xmin) - center + 0.5) * ss)
                let w = t < 1.0 ? 1.0 - t : 0.0
                k[x] = w
                ww += w
            }
            for x in 0..<xmax {
                let v = ww != 0 ? k[x] / ww : k[x]
                let f = v < 0 ? (-0.5 + v * one) : (0.5 + v * one)
                weights[xx * ksize + x] = Int32(f.rounded(.towardZero))
            }
            start[xx] = Int32(xmin)
            count[xx] = Int32(xmax)
        }
    }
}

@inline(__always)
private func clip8(_ v: Int32) -> UInt8 {
    let s = v >> Int32(PILBilinearWeights.precisionBits)
    return s <= 0 ? 0 : (s >= 255 ? 255 : UInt8(truncatingIfNeeded: s))
}

extension RGBImage {
    /// Resized with PIL's `BILINEAR` filter, antialiased when shrinking, bit-identical to Pillow:
    /// separable, horizontal pass first, each pass rounded to 8 bits in fixed point as Pillow does.
    /// The output is uint8 (not float), so it can be augmented and then normalised like a PIL image.
    public func resized(width outW: Int, height outH: Int) -> RGBImage {
        precondition(outW > 0 && outH > 0, "resize to \(outW)x\(outH)")
        precondition(width > 0 && height > 0, "resize of an empty \(width)x\(height) image")
        if outW == width && outH == height { return self }
        let needH = outW != width, needV = outH != height
        let vw = needV ? PILBilinearWeights(inSize: height, outSize: outH) : nil
        // The horizontal pass only needs the source rows the vertical pass will read.
        var rowFirst = 0, rowLast = height
        if let vw {
            rowFirst = Int(vw.start[0])
            rowLast = Int(vw.start[outH - 1] + vw.count[outH - 1])
        }
        var horizontal: [UInt8]
        if needH {
            let hw = PILBilinearWeights(inSize: width, outSize: outW)
            let rows = rowLast - rowFirst
            horizontal = [UInt8](repeating: 0, count: outW * rows * 3)
            pixels.withUnsafeBufferPointer { srcBuf in
                horizontal.withUnsafeMutableBufferPointer { dstBuf in
                    hw.weights.withUnsafeBufferPointer { kBuf in
                        hw.start.withUnsafeBufferPointer { sBuf in
                            hw.count.withUnsafeBufferPointer { cBuf in
                                Self.resampleHorizontal(src: srcBuf.baseAddress!, inWidth: width, rowFirst: rowFirst,
                                                        rows: rows, dst: dstBuf.baseAddress!, outWidth: outW,
                                                        ksize: hw.ksize, weights: kBuf.baseAddress!,
                                                        start: sBuf.baseAddress!, count: cBuf.baseAddress!,
                                                        sourceRows: height)
                            }
                        }
                    }
                }
            }
        } else {
            horizontal = pixels
            rowFirst = 0
        }
        guard let vw else { return RGBImage(width: outW, height: outH, pixels: horizontal) }
        var out = [UInt8](repeating: 0, count: outW * outH * 3)
        horizontal.withUnsafeBufferPointer { srcBuf in
            out.withUnsafeMutableBufferPointer { dstBuf in
                vw.weights.withUnsafeBufferPointer { kBuf in
                    vw.start.withUnsafeBufferPointer { sBuf in
                        vw.count.withUnsafeBufferPointer { cBuf in
                            Self.resampleVertical(src: srcBuf.baseAddress!, rowOffset: rowFirst, rowLength: outW * 3,
                                                  dst: dstBuf.baseAddress!, outHeight: outH, ksize: vw.ksize,
                                                  weights: kBuf.baseAddress!, start: sBuf.baseAddress!,
                                                  count: cBuf.baseAddress!)
                        }
                    }
                }
            }
        }
        return RGBImage(width: outW, height: outH, pixels: out)
    }

    /// One row at a time; per output pixel, a dot product of the taps with the pixel's channels, done
    /// as 4-lane integer vectors (R, G, B and the next pixel's R, which is ignored). The 4-byte loads
    /// read one byte past a pixel, so the buffer's last row goes through a padded copy.
    private static func resampleHorizontal(src: UnsafePointer<UInt8>, inWidth: Int, rowFirst: Int, rows: Int,
                                           dst: UnsafeMutablePointer<UInt8>, outWidth: Int, ksize: Int,
                                           weights: UnsafePointer<Int32>, start: UnsafePointer<Int32>,
                                           count: UnsafePointer<Int32>, sourceRows: Int) {
        let half = SIMD4<Int32>(repeating: Int32(1) << Int32(PILBilinearWeights.precisionBits - 1))
        let rowBytes = inWidth * 3
        let padded = UnsafeMutablePointer<UInt8>.allocate(capacity: rowBytes + 1)
        defer { padded.deallocate() }
        padded[rowBytes] = 0
        for y in 0..<rows {
            var srow = src + (y + rowFirst) * rowBytes
            if y + rowFirst == sourceRows - 1 {
                padded.update(from: srow, count: rowBytes)
                srow = UnsafePointer(padded)
            }
            let raw = UnsafeRawPointer(srow)
            let drow = dst + y * outWidth * 3
            for xx in 0..<outWidth {
                let k = weights + xx * ksize
                var offset = Int(start[xx]) * 3
                var acc = half
                for i in 0..<Int(count[xx]) {
                    let px = SIMD4<Int32>(truncatingIfNeeded: raw.loadUnaligned(fromByteOffset: offset, as: SIMD4<UInt8>.self))
                    acc &+= px &* SIMD4<Int32>(repeating: k[i])
                    offset += 3
                }
                drow[3 * xx] = clip8(acc[0])
                drow[3 * xx + 1] = clip8(acc[1])
                drow[3 * xx + 2] = clip8(acc[2])
            }
        }
    }

    /// Whole rows at a time, 16 bytes per step: the taps accumulate in registers as 16 Int32 lanes.
    private static func resampleVertical(src: UnsafePointer<UInt8>, rowOffset: Int, rowLength: Int,
                                         dst: UnsafeMutablePointer<UInt8>, outHeight: Int, ksize: Int,
                                         weights: UnsafePointer<Int32>, start: UnsafePointer<Int32>,
                                         count: UnsafePointer<Int32>) {
        let halfScalar = Int32(1) << Int32(PILBilinearWeights.precisionBits - 1)
        let half = SIMD16<Int32>(repeating: halfScalar)
        let shift = SIMD16<Int32>(repeating: Int32(PILBilinearWeights.precisionBits))
        let zero = SIMD16<Int32>(repeating: 0), top = SIMD16<Int32>(repeating: 255)
        let vectorEnd = rowLength & ~15
        for yy in 0..<outHeight {
            let k = weights + yy * ksize
            let n = Int(count[yy])
            let first = src + (Int(start[yy]) - rowOffset) * rowLength
            let drow = dst + yy * rowLength
            var x = 0
            while x < vectorEnd {
                var acc = half
                var p = UnsafeRawPointer(first + x)
                for i in 0..<n {
                    let v = SIMD16<Int32>(truncatingIfNeeded: p.loadUnaligned(as: SIMD16<UInt8>.self))
                    acc &+= v &* SIMD16<Int32>(repeating: k[i])
                    p += rowLength
                }
                let clipped = (acc &>> shift).clamped(lowerBound: zero, upperBound: top)
                UnsafeMutableRawPointer(drow + x).storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: clipped),
                                                              as: SIMD16<UInt8>.self)
                x += 16
            }
            while x < rowLength {
                var acc = halfScalar
                for i in 0..<n { acc &+= Int32(first[i * rowLength + x]) &* k[i] }
                drow[x] = clip8(acc)
                x += 1
            }
        }
    }
}

// MARK: - Nearest resize (masks)

/// Source indices of PIL's `NEAREST` resize along one axis (Pillow's ImagingScaleAffine): pixel
/// centres, `floor((x + 0.5) * in / out)`, accumulated in Double exactly as Pillow does so that
/// ties fall the same way. An index that falls outside the source (never for sane sizes) is -1.
func pilNearestIndices(inSize: Int, outSize: Int) -> [Int] {
    let step = Double(inSize) / Double(outSize)
    var pos = step * 0.5
    var out = [Int](repeating: -1, count: outSize)
    for x in 0..<outSize {
        let i = pos < 0 ? -1 : Int(pos)
        if i >= 0 && i < inSize { out[x] = i }
        pos += step
    }
    return out
}

extension BinaryMask {
    /// Resized with PIL's `NEAREST` semantics (masks stay binary).
    public func resizedNearest(width outW: Int, height outH: Int) -> BinaryMask {
        precondition(outW > 0 && outH > 0, "resize to \(outW)x\(outH)")
        if outW == width && outH == height { return self }
        let xs = pilNearestIndices(inSize: width, outSize: outW)
        let ys = pilNearestIndices(inSize: height, outSize: outH)
        var out = [UInt8](repeating: 0, count: outW * outH)
        values.withUnsafeBufferPointer { srcBuf in
            out.withUnsafeMutableBufferPointer { dstBuf in
                let src = srcBuf.baseAddress!, dst = dstBuf.baseAddress!
                for y in 0..<outH where ys[y] >= 0 {
                    let srow = src + ys[y] * width
                    let drow = dst + y * outW
                    for x in 0..<outW where xs[x] >= 0 { drow[x] = srow[xs[x]] }
                }
            }
        }
        return BinaryMask(width: outW, height: outH, values: out)
    }
}

// MARK: - Normalisation

/// Per-channel mean and standard deviation applied after scaling bytes to [0, 1].
public struct Normalization: Sendable, Equatable, Codable {
    public var mean: [Float]
    public var std: [Float]

    public init(mean: [Float], std: [Float]) {
        precondition(mean.count == 3 && std.count == 3 && std.allSatisfy { $0 > 0 }, "normalisation needs 3 means and 3 positive stds")
        self.mean = mean
        self.std = std
    }

    enum CodingKeys: String, CodingKey { case mean, std }

    /// Decoded from a config: three means and three positive standard deviations, else an error
    /// naming the key (never a crash later in the loader).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let mean = try c.decode([Float].self, forKey: .mean)
        let std = try c.decode([Float].self, forKey: .std)
        guard mean.count == 3 else {
            throw DecodingError.dataCorruptedError(forKey: .mean, in: c, debugDescription: "mean needs 3 values (R, G, B), got \(mean.count)")
        }
        guard std.count == 3, std.allSatisfy({ $0 > 0 }) else {
            throw DecodingError.dataCorruptedError(forKey: .std, in: c, debugDescription: "std needs 3 positive values (R, G, B)")
        }
        self.init(mean: mean, std: std)
    }

    /// ImageNet statistics: what CLIPSeg's processor uses.
    public static let imageNet = Normalization(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])
    /// CLIP's statistics: what CRIS uses.
    public static let clip = Normalization(mean: [0.48145466, 0.4578275, 0.40821073],
                                           std: [0.26862954, 0.26130258, 0.27577711])

    /// The 3 x 256 table of normalised values, computed as PyTorch does (v / 255, then (x - mean) / std
    /// in float32), so a byte maps to the same float in both pipelines.
    func lookupTable() -> [Float] {
        var lut = [Float](repeating: 0, count: 3 * 256)
        for c in 0..<3 {
            for v in 0..<256 { lut[c * 256 + v] = (Float(v) / 255 - mean[c]) / std[c] }
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
        normalize(n, into: t.mutablePointer)
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

// MARK: - Geometric helpers

/// Flips and crops shared by images (3 bytes per pixel) and masks (1 byte).
private func flipH(_ src: [UInt8], width: Int, height: Int, bpp: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: src.count)
    src.withUnsafeBufferPointer { s in
        out.withUnsafeMutableBufferPointer { d in
            for y in 0..<height {
                let row = y * width * bpp
                for x in 0..<width {
                    let si = row + x * bpp, di = row + (width - 1 - x) * bpp
                    for c in 0..<bpp { d[di + c] = s[si + c] }
                }
            }
        }
    }
    return out
}

private func flipV(_ src: [UInt8], width: Int, height: Int, bpp: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: src.count)
    let rowBytes = width * bpp
    src.withUnsafeBufferPointer { s in
        out.withUnsafeMutableBufferPointer { d in
            for y in 0..<height {
                (d.baseAddress! + (height - 1 - y) * rowBytes).update(from: s.baseAddress! + y * rowBytes, count: rowBytes)
            }
        }
    }
    return out
}

private func crop(_ src: [UInt8], width: Int, bpp: Int, x: Int, y: Int, w: Int, h: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: w * h * bpp)
    src.withUnsafeBufferPointer { s in
        out.withUnsafeMutableBufferPointer { d in
            for r in 0..<h {
                (d.baseAddress! + r * w * bpp).update(from: s.baseAddress! + ((y + r) * width + x) * bpp, count: w * bpp)
            }
        }
    }
    return out
}

extension RGBImage {
    public func flippedHorizontally() -> RGBImage {
        RGBImage(width: width, height: height, pixels: flipH(pixels, width: width, height: height, bpp: 3))
    }

    public func flippedVertically() -> RGBImage {
        RGBImage(width: width, height: height, pixels: flipV(pixels, width: width, height: height, bpp: 3))
    }

    /// The rectangle at (x, y) of size w x h, which must lie inside the image.
    public func cropped(x: Int, y: Int, width w: Int, height h: Int) -> RGBImage {
        precondition(x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= width && y + h <= height, "crop outside the image")
        return RGBImage(width: w, height: h, pixels: crop(pixels, width: width, bpp: 3, x: x, y: y, w: w, h: h))
    }
}

extension BinaryMask {
    public func flippedHorizontally() -> BinaryMask {
        BinaryMask(width: width, height: height, values: flipH(values, width: width, height: height, bpp: 1))
    }

    public func flippedVertically() -> BinaryMask {
        BinaryMask(width: width, height: height, values: flipV(values, width: width, height: height, bpp: 1))
    }

    public func cropped(x: Int, y: Int, width w: Int, height h: Int) -> BinaryMask {
        precondition(x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= width && y + h <= height, "crop outside the mask")
        return BinaryMask(width: w, height: h, values: crop(values, width: width, bpp: 1, x: x, y: y, w: w, h: h))
    }
}

// MARK: - Affine warp

/// How samples outside the source are filled.
public enum BorderMode: String, Codable, Sendable {
    /// The nearest edge pixel (OpenCV's BORDER_REPLICATE, what TuneVLSeg used).
    case replicate
    /// Black image, background mask.
    case constant
}

/// An inverse affine map from output pixel centres to source coordinates (both in continuous pixel
/// units where pixel i spans [i, i+1)): source = A * (p - c - t) + c, with A the inverse of the
/// forward rotation/shear/scale matrix, c the image centre and t the translation.
struct AffineSampler {
    var a11: Double, a12: Double, a21: Double, a22: Double
    var cx: Double, cy: Double, tx: Double, ty: Double

    /// Forward transform: rotate by `degrees` (counter-clockwise on screen), shear x by `shearDegrees`,
    /// scale by `scale`, about the centre, then translate by (tx, ty) pixels.
    init(width: Int, height: Int, degrees: Double, translate: (Double, Double), scale: Double, shearDegrees: Double) {
        let th = -degrees * .pi / 180 // y points down: negate so positive angles turn counter-clockwise
        let sh = tan(shearDegrees * .pi / 180)
        // M = R * Sh * S
        let c = cos(th), s = sin(th)
        let m11 = c * scale, m12 = (c * sh - s) * scale
        let m21 = s * scale, m22 = (s * sh + c) * scale
        let det = m11 * m22 - m12 * m21
        a11 = m22 / det; a12 = -m12 / det
        a21 = -m21 / det; a22 = m11 / det
        cx = Double(width) / 2; cy = Double(height) / 2
        tx = translate.0; ty = translate.1
    }

    /// Source point of output pixel (x, y)'s centre.
    @inline(__always)
    func source(_ x: Int, _ y: Int) -> (Double, Double) {
        let px = Double(x) + 0.5 - cx - tx, py = Double(y) + 0.5 - cy - ty
        return (a11 * px + a12 * py + cx, a21 * px + a22 * py + cy)
    }
}

extension RGBImage {
    /// Bilinear warp (image side of a random affine).
    func warped(_ m: AffineSampler, border: BorderMode) -> RGBImage {
        let w = width, h = height
        var out = [UInt8](repeating: 0, count: w * h * 3)
        pixels.withUnsafeBufferPointer { srcBuf in
            out.withUnsafeMutableBufferPointer { dstBuf in
                let src = srcBuf.baseAddress!, dst = dstBuf.baseAddress!
                let constant = border == .constant
                for y in 0..<h {
                    var (u, v) = m.source(0, y)
                    // Step along the row: one output pixel moves the source by (a11, a21).
                    for x in 0..<w {
                        let fu = u - 0.5, fv = v - 0.5
                        let xa = Int(fu.rounded(.down)), ya = Int(fv.rounded(.down))
                        let xb = xa + 1, yb = ya + 1
                        var wxb = Float(fu - Double(xa)), wyb = Float(fv - Double(ya))
                        var wxa = 1 - wxb, wya = 1 - wyb
                        if constant {
                            // Taps outside the source read black: zero their weights.
                            if xa < 0 || xa >= w { wxa = 0 }
                            if xb < 0 || xb >= w { wxb = 0 }
                            if ya < 0 || ya >= h { wya = 0 }
                            if yb < 0 || yb >= h { wyb = 0 }
                        }
                        if wxa + wxb > 0 && wya + wyb > 0 {
                            let cxa = min(max(xa, 0), w - 1), cxb = min(max(xb, 0), w - 1)
                            let rowA = src + min(max(ya, 0), h - 1) * w * 3
                            let rowB = src + min(max(yb, 0), h - 1) * w * 3
                            let p00 = rowA + cxa * 3, p01 = rowA + cxb * 3
                            let p10 = rowB + cxa * 3, p11 = rowB + cxb * 3
                            let d = dst + (y * w + x) * 3
                            for c in 0..<3 {
                                let top = wxa * Float(p00[c]) + wxb * Float(p01[c])
                                let bottom = wxa * Float(p10[c]) + wxb * Float(p11[c])
                                d[c] = UInt8(min(max(wya * top + wyb * bottom + 0.5, 0), 255))
                            }
                        }
                        u += m.a11; v += m.a21
                    }
                }
            }
        }
        return RGBImage(width: w, height: h, pixels: out)
    }
}

extension BinaryMask {
    /// Nearest-neighbour warp (mask side of a random affine): masks stay binary.
    func warped(_ m: AffineSampler, border: BorderMode) -> BinaryMask {
        let w = width, h = height
        var out = [UInt8](repeating: 0, count: w * h)
        values.withUnsafeBufferPointer { srcBuf in
            out.withUnsafeMutableBufferPointer { dstBuf in
                let src = srcBuf.baseAddress!, dst = dstBuf.baseAddress!
                for y in 0..<h {
                    var (u, v) = m.source(0, y)
                    for x in 0..<w {
                        var xx = Int(u.rounded(.down)), yy = Int(v.rounded(.down))
                        let inside = xx >= 0 && xx < w && yy >= 0 && yy < h
                        if inside || border == .replicate {
                            xx = min(max(xx, 0), w - 1); yy = min(max(yy, 0), h - 1)
                            dst[y * w + x] = src[yy * w + xx]
                        }
                        u += m.a11; v += m.a21
                    }
                }
            }
        }
        return BinaryMask(width: w, height: h, values: out)
    }
}

// MARK: - Photometric

extension RGBImage {
    /// Every byte mapped through a 256-entry table (brightness and contrast are both such maps).
    func mapped(_ table: [UInt8]) -> RGBImage {
        var out = self
        table.withUnsafeBufferPointer { t in
            out.pixels.withUnsafeMutableBufferPointer { p in
                for i in 0..<p.count { p[i] = t[Int(p[i])] }
            }
        }
        return out
    }

    /// Mean luma (ITU-R 601 weights, as PIL's `convert("L")`), the pivot of a contrast change.
    var meanLuma: Double {
        var sum = 0.0
        pixels.withUnsafeBufferPointer { p in
            var s: UInt64 = 0
            for i in 0..<(width * height) {
                s += UInt64(299 * UInt32(p[3 * i]) + 587 * UInt32(p[3 * i + 1]) + 114 * UInt32(p[3 * i + 2]))
            }
            sum = Double(s) / 1000
        }
        return width * height == 0 ? 0 : sum / Double(width * height)
    }

    /// Adds `delta` (in units of the full range, e.g. 0.1 = +25.5 levels) to every channel.
    public func adjustingBrightness(_ delta: Double) -> RGBImage {
        mapped((0..<256).map { UInt8(min(max((Double($0) + delta * 255).rounded(), 0), 255)) })
    }

    /// Scales the distance of every channel from the image's mean luma by `factor` (1 = unchanged),
    /// torchvision's and PIL ImageEnhance's definition of contrast.
    public func adjustingContrast(_ factor: Double) -> RGBImage {
        let m = meanLuma
        return mapped((0..<256).map { UInt8(min(max(((Double($0) - m) * factor + m).rounded(), 0), 255)) })
    }
}

// MARK: - Augmentation configuration

/// Training augmentations, all off by default (`AugmentationConfig()` changes nothing).
///
/// Decoded from configs with snake_case keys; an unknown key or an out-of-range value is an error
/// naming it, so a typo cannot silently disable an augmentation.
public struct AugmentationConfig: Codable, Sendable, Equatable {
    /// Random affine applied identically to image (bilinear) and mask (nearest).
    public struct Affine: Codable, Sendable, Equatable {
        /// Probability of applying it.
        public var p: Double = 0
        /// Rotation uniform in [-degrees, degrees].
        public var degrees: Double = 0
        /// Translation uniform in [-translate, translate] times the width (x) and height (y).
        public var translate: Double = 0
        /// Isotropic scale uniform in [scale[0], scale[1]].
        public var scale: [Double] = [1, 1]
        /// Horizontal shear uniform in [-shear, shear] degrees.
        public var shear: Double = 0
        /// How pixels pulled in from outside the image are filled.
        public var border: BorderMode = .replicate

        public init(p: Double = 0, degrees: Double = 0, translate: Double = 0, scale: [Double] = [1, 1],
                    shear: Double = 0, border: BorderMode = .replicate) {
            self.p = p; self.degrees = degrees; self.translate = translate; self.scale = scale
            self.shear = shear; self.border = border
        }

        enum CodingKeys: String, CodingKey, CaseIterable { case p, degrees, translate, scale, shear, border }

        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.stringValue), section: "augmentation.affine")
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init()
            p = try c.decodeIfPresent(Double.self, forKey: .p) ?? p
            degrees = try c.decodeIfPresent(Double.self, forKey: .degrees) ?? degrees
            translate = try c.decodeIfPresent(Double.self, forKey: .translate) ?? translate
            scale = try c.decodeIfPresent([Double].self, forKey: .scale) ?? scale
            shear = try c.decodeIfPresent(Double.self, forKey: .shear) ?? shear
            border = try c.decodeIfPresent(BorderMode.self, forKey: .border) ?? border
            try check(probability: p, key: .p, in: c)
            try check(degrees >= 0 && degrees <= 180, "degrees must be in 0...180", key: .degrees, in: c)
            try check(translate >= 0 && translate < 1, "translate must be in [0, 1)", key: .translate, in: c)
            try check(scale.count == 2 && scale[0] > 0 && scale[0] <= scale[1],
                      "scale must be [low, high] with 0 < low <= high", key: .scale, in: c)
            try check(shear >= 0 && shear < 90, "shear must be in [0, 90) degrees", key: .shear, in: c)
        }
    }

    /// A random crop that contains the mask's foreground bounding box, resized back to the input size.
    public struct ForegroundCrop: Codable, Sendable, Equatable {
        public var p: Double = 0
        /// Smallest crop side as a fraction of the image side (the crop grows when the foreground needs it).
        public var minScale: Double = 0.7

        public init(p: Double = 0, minScale: Double = 0.7) { self.p = p; self.minScale = minScale }

        enum CodingKeys: String, CodingKey, CaseIterable { case p, minScale = "min_scale" }

        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.stringValue), section: "augmentation.foreground_crop")
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init()
            p = try c.decodeIfPresent(Double.self, forKey: .p) ?? p
            minScale = try c.decodeIfPresent(Double.self, forKey: .minScale) ?? minScale
            try check(probability: p, key: .p, in: c)
            try check(minScale > 0 && minScale <= 1, "min_scale must be in (0, 1]", key: .minScale, in: c)
        }
    }

    /// A photometric jitter applied with probability p, strength uniform in [-limit, limit].
    public struct Jitter: Codable, Sendable, Equatable {
        public var p: Double = 0
        public var limit: Double = 0

        public init(p: Double = 0, limit: Double = 0) { self.p = p; self.limit = limit }

        enum CodingKeys: String, CodingKey, CaseIterable { case p, limit }

        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.stringValue), section: "augmentation jitter")
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init()
            p = try c.decodeIfPresent(Double.self, forKey: .p) ?? p
            limit = try c.decodeIfPresent(Double.self, forKey: .limit) ?? limit
            try check(probability: p, key: .p, in: c)
            try check(limit >= 0 && limit < 1, "limit must be in [0, 1)", key: .limit, in: c)
        }
    }

    public var affine = Affine()
    public var foregroundCrop = ForegroundCrop()
    /// Adds limit-bounded fractions of the full range (albumentations' brightness_by_max).
    public var brightness = Jitter()
    /// Scales contrast about the mean luma by 1 + U(-limit, limit).
    public var contrast = Jitter()
    /// Probability of a horizontal flip.
    public var horizontalFlip: Double = 0
    /// Probability of a vertical flip.
    public var verticalFlip: Double = 0

    public init(affine: Affine = Affine(), foregroundCrop: ForegroundCrop = ForegroundCrop(), brightness: Jitter = Jitter(),
                contrast: Jitter = Jitter(), horizontalFlip: Double = 0, verticalFlip: Double = 0) {
        self.affine = affine; self.foregroundCrop = foregroundCrop; self.brightness = brightness
        self.contrast = contrast; self.horizontalFlip = horizontalFlip; self.verticalFlip = verticalFlip
    }

    /// No augmentation (evaluation, or training without it).
    public static let none = AugmentationConfig()

    /// TuneVLSeg's training augmentations (its end-to-end CLIPSeg/CRIS experiment configs):
    /// `Affine(scale 0.98-1.02, translate ±2 %, rotate ±5°, border replicate, p=0.2)` and
    /// `RandomBrightnessContrast(limits 0.1, p=0.2)`. Its `CropNonEmptyMaskIfExists` crops the full
    /// image size out of an image already resized to that size, which keeps everything, so the
    /// foreground crop stays off here too; no flips (commented out there).
    public static let tuneVLSeg = AugmentationConfig(
        affine: Affine(p: 0.2, degrees: 5, translate: 0.02, scale: [0.98, 1.02], shear: 0, border: .replicate),
        brightness: Jitter(p: 0.2, limit: 0.1),
        contrast: Jitter(p: 0.2, limit: 0.1))

    /// Whether the configuration can change a sample at all (lets the loader skip the work).
    public var isIdentity: Bool {
        affine.p == 0 && foregroundCrop.p == 0 && brightness.p == 0 && contrast.p == 0
            && horizontalFlip == 0 && verticalFlip == 0
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case affine, foregroundCrop = "foreground_crop", brightness, contrast
        case horizontalFlip = "horizontal_flip", verticalFlip = "vertical_flip"
    }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.stringValue), section: "augmentation")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        affine = try c.decodeIfPresent(Affine.self, forKey: .affine) ?? affine
        foregroundCrop = try c.decodeIfPresent(ForegroundCrop.self, forKey: .foregroundCrop) ?? foregroundCrop
        brightness = try c.decodeIfPresent(Jitter.self, forKey: .brightness) ?? brightness
        contrast = try c.decodeIfPresent(Jitter.self, forKey: .contrast) ?? contrast
        horizontalFlip = try c.decodeIfPresent(Double.self, forKey: .horizontalFlip) ?? horizontalFlip
        verticalFlip = try c.decodeIfPresent(Double.self, forKey: .verticalFlip) ?? verticalFlip
        try check(probability: horizontalFlip, key: .horizontalFlip, in: c)
        try check(probability: verticalFlip, key: .verticalFlip, in: c)
    }
}

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

private func rejectUnknownKeys(_ decoder: Decoder, known: [String], section: String) throws {
    let c = try decoder.container(keyedBy: AnyKey.self)
    for key in c.allKeys where !known.contains(key.stringValue) {
        throw DecodingError.dataCorruptedError(
            forKey: key, in: c,
            debugDescription: "unknown key '\(key.stringValue)' in \(section) (known: \(known.joined(separator: ", ")))")
    }
}

private func check<K: CodingKey>(_ ok: Bool, _ message: String, key: K, in c: KeyedDecodingContainer<K>) throws {
    if !ok { throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: message) }
}

private func check<K: CodingKey>(probability p: Double, key: K, in c: KeyedDecodingContainer<K>) throws {
    try check(p >= 0 && p <= 1, "'\(key.stringValue)' must be a probability in [0, 1]", key: key, in: c)
}

// MARK: - Augmentation

/// Augments one training sample: foreground-keeping crop, random affine, flips, then brightness and
/// contrast, each with its own probability, the geometric ones applied identically to image and mask.
///
/// All randomness comes from `rng`, which the loader derives from (seed, epoch, sample index,
/// `.augmentation`), so a sample is augmented the same way whatever rank or thread handles it. Every
/// step draws the same number of values whether or not it fires, so turning one augmentation on or
/// off does not change the draws of the others.
public func augment(image: RGBImage, mask: BinaryMask, config: AugmentationConfig,
                    rng: inout CounterRandom) -> (RGBImage, BinaryMask) {
    precondition(image.width == mask.width && image.height == mask.height,
                 "augment: image \(image.width)x\(image.height) and mask \(mask.width)x\(mask.height) differ")
    var img = image, msk = mask
    let w = image.width, h = image.height

    // 1. Crop containing the foreground bounding box, resized back.
    let cropFires = rng.bernoulli(config.foregroundCrop.p)
    let cropScale = rng.uniform(config.foregroundCrop.minScale, 1)
    let cropU = rng.unit(), cropV = rng.unit()
    if cropFires && w > 1 && h > 1 {
        let bounds = msk.foregroundBounds
        let cw = min(w, max(bounds?.x.count ?? 1, Int((cropScale * Double(w)).rounded())))
        let ch = min(h, max(bounds?.y.count ?? 1, Int((cropScale * Double(h)).rounded())))
        // Offsets for which the crop still covers the box.
        let xLo = max(0, (bounds?.x.upperBound ?? 0) - cw), xHi = min(bounds?.x.lowerBound ?? (w - cw), w - cw)
        let yLo = max(0, (bounds?.y.upperBound ?? 0) - ch), yHi = min(bounds?.y.lowerBound ?? (h - ch), h - ch)
        let x0 = xLo + min(Int(cropU * Double(xHi - xLo + 1)), xHi - xLo)
        let y0 = yLo + min(Int(cropV * Double(yHi - yLo + 1)), yHi - yLo)
        if cw != w || ch != h {
            img = img.cropped(x: x0, y: y0, width: cw, height: ch).resized(width: w, height: h)
            msk = msk.cropped(x: x0, y: y0, width: cw, height: ch).resizedNearest(width: w, height: h)
        }
    }

    // 2. Random affine.
    let a = config.affine
    let affineFires = rng.bernoulli(a.p)
    let angle = rng.uniform(-a.degrees, a.degrees)
    let tx = rng.uniform(-a.translate, a.translate) * Double(w)
    let ty = rng.uniform(-a.translate, a.translate) * Double(h)
    let scale = rng.uniform(a.scale[0], a.scale[1])
    let shear = rng.uniform(-a.shear, a.shear)
    if affineFires {
        let m = AffineSampler(width: w, height: h, degrees: angle, translate: (tx, ty), scale: scale, shearDegrees: shear)
        img = img.warped(m, border: a.border)
        msk = msk.warped(m, border: a.border)
    }

    // 3. Flips.
    if rng.bernoulli(config.horizontalFlip) {
        img = img.flippedHorizontally(); msk = msk.flippedHorizontally()
    }
    if rng.bernoulli(config.verticalFlip) {
        img = img.flippedVertically(); msk = msk.flippedVertically()
    }

    // 4. Photometric (image only).
    let brightFires = rng.bernoulli(config.brightness.p)
    let brightDelta = rng.uniform(-config.brightness.limit, config.brightness.limit)
    if brightFires { img = img.adjustingBrightness(brightDelta) }
    let contrastFires = rng.bernoulli(config.contrast.p)
    let contrastFactor = 1 + rng.uniform(-config.contrast.limit, config.contrast.limit)
    if contrastFires { img = img.adjustingContrast(contrastFactor) }
    return (img, msk)
}
