import Foundation
import VLTensor

// MARK: - PIL-compatible resize

/// The resampling filters of PIL's `Image.resize` that VLSeg implements, by their PIL codes (what a
/// Hugging Face processor's `resample` holds).
public enum ResizeFilter: Int, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// PIL's BILINEAR: a triangle, support 1.
    case bilinear = 2
    /// PIL's BICUBIC: Keys' cubic with a = -0.5, support 2 (negative lobes, so results are clamped).
    case bicubic = 3

    public var description: String { self == .bilinear ? "bilinear" : "bicubic" }

    var support: Double { self == .bilinear ? 1 : 2 }

    @inline(__always)
    func weight(_ x: Double) -> Double {
        let t = abs(x)
        switch self {
        case .bilinear:
            return t < 1 ? 1 - t : 0
        case .bicubic:
            let a = -0.5
            if t < 1 { return ((a + 2) * t - (a + 3)) * t * t + 1 }
            if t < 2 { return (((t - 5) * t + 8) * t - 4) * a }
            return 0
        }
    }
}

/// Per-axis filter weights of PIL's `Image.resize(size, filter)` (Pillow's Resample.c).
///
/// PIL stretches the filter's support by the downscale factor, so a shrink averages every source
/// pixel under the output pixel (antialiasing) instead of sampling a fixed few as OpenCV or a naive
/// bilinear would. Matching it keeps VLSeg's inputs identical to the Python pipelines the pretrained
/// checkpoints and published results used. Weights are computed in Double exactly as Pillow does,
/// then converted to Pillow's 22-bit fixed point, so results are bit-identical, not merely close.
struct PILResampleWeights {
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

    init(inSize: Int, outSize: Int, filter: ResizeFilter) {
        precondition(inSize > 0 && outSize > 0, "resize \(inSize) -> \(outSize)")
        self.inSize = inSize
        self.outSize = outSize
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = filter.support * filterScale
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
                let w = filter.weight((Double(x + xmin) - center + 0.5) * ss)
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
    let s = v >> Int32(PILResampleWeights.precisionBits)
    return s <= 0 ? 0 : (s >= 255 ? 255 : UInt8(truncatingIfNeeded: s))
}

extension RGBImage {
    /// Resized with PIL's `filter` (bilinear unless said), antialiased when shrinking, bit-identical to
    /// Pillow: separable, horizontal pass first, each pass rounded to 8 bits in fixed point as Pillow
    /// does. The output is uint8 (not float), so it can be augmented and then normalised like a PIL image.
    public func resized(width outW: Int, height outH: Int, filter: ResizeFilter = .bilinear) -> RGBImage {
        precondition(outW > 0 && outH > 0, "resize to \(outW)x\(outH)")
        precondition(width > 0 && height > 0, "resize of an empty \(width)x\(height) image")
        if outW == width && outH == height { return self }
        let needH = outW != width, needV = outH != height
        let vw = needV ? PILResampleWeights(inSize: height, outSize: outH, filter: filter) : nil
        // The horizontal pass only needs the source rows the vertical pass will read.
        var rowFirst = 0, rowLast = height
        if let vw {
            rowFirst = Int(vw.start[0])
            rowLast = Int(vw.start[outH - 1] + vw.count[outH - 1])
        }
        var horizontal: [UInt8]
        if needH {
            let hw = PILResampleWeights(inSize: width, outSize: outW, filter: filter)
            let rows = rowLast - rowFirst
            horizontal = [UInt8](repeating: 0, count: outW * rows * 3)
            pixels.withUnsafeBufferPointer { srcBuf in
                horizontal.withUnsafeMutableBufferPointer { dstBuf in
                    hw.weights.withUnsafeBufferPointer { kBuf in
                        hw.start.withUnsafeBufferPointer { sBuf in
                            hw.count.withUnsafeBufferPointer { cBuf in
                                Self.resampleHorizontal(
                                    src: srcBuf.baseAddress!, inWidth: width, rowFirst: rowFirst,
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
                            Self.resampleVertical(
                                src: srcBuf.baseAddress!, rowOffset: rowFirst, rowLength: outW * 3,
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
    private static func resampleHorizontal(
        src: UnsafePointer<UInt8>, inWidth: Int, rowFirst: Int, rows: Int,
        dst: UnsafeMutablePointer<UInt8>, outWidth: Int, ksize: Int,
        weights: UnsafePointer<Int32>, start: UnsafePointer<Int32>,
        count: UnsafePointer<Int32>, sourceRows: Int
    ) {
        let half = SIMD4<Int32>(repeating: Int32(1) << Int32(PILResampleWeights.precisionBits - 1))
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
                    let px = SIMD4<Int32>(
                        truncatingIfNeeded: raw.loadUnaligned(fromByteOffset: offset, as: SIMD4<UInt8>.self))
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
    private static func resampleVertical(
        src: UnsafePointer<UInt8>, rowOffset: Int, rowLength: Int,
        dst: UnsafeMutablePointer<UInt8>, outHeight: Int, ksize: Int,
        weights: UnsafePointer<Int32>, start: UnsafePointer<Int32>,
        count: UnsafePointer<Int32>
    ) {
        let halfScalar = Int32(1) << Int32(PILResampleWeights.precisionBits - 1)
        let half = SIMD16<Int32>(repeating: halfScalar)
        let shift = SIMD16<Int32>(repeating: Int32(PILResampleWeights.precisionBits))
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
                UnsafeMutableRawPointer(drow + x).storeBytes(
                    of: SIMD16<UInt8>(truncatingIfNeeded: clipped),
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
