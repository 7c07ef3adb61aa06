import Foundation
import VLTensor

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
                (d.baseAddress! + (height - 1 - y) * rowBytes).update(
                    from: s.baseAddress! + y * rowBytes, count: rowBytes)
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
                (d.baseAddress! + r * w * bpp).update(
                    from: s.baseAddress! + ((y + r) * width + x) * bpp, count: w * bpp)
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

/// The image side of an affine warp (masks are always nearest).
public enum AffineInterpolation: String, Codable, Sendable, CaseIterable {
    /// 2 x 2 taps.
    case bilinear
    /// 4 x 4 taps of cubic convolution with A = -0.75 (OpenCV's INTER_CUBIC, what TuneVLSeg used).
    case bicubic
}

/// An inverse affine map from output pixel centres to source coordinates (both in continuous pixel
/// units where pixel i spans [i, i+1)): source = A * (p - c - t) + c, with A the inverse of the
/// forward rotation/shear/scale matrix, c the image centre and t the translation.
struct AffineSampler {
    var a11: Double, a12: Double, a21: Double, a22: Double
    var cx: Double, cy: Double, tx: Double, ty: Double

    /// The forward scales (x, y), kept for inspection.
    let scaleX: Double, scaleY: Double

    /// Forward transform: rotate by `degrees` (counter-clockwise on screen), shear x by `shearDegrees`,
    /// scale x by `scale` and y by `scaleY` (default: `scale`), about the centre, then translate by
    /// (tx, ty) pixels. Scaling comes first, as in albumentations' Affine.
    init(
        width: Int, height: Int, degrees: Double, translate: (Double, Double), scale: Double, scaleY: Double? = nil,
        shearDegrees: Double
    ) {
        let th = -degrees * .pi / 180  // y points down: negate so positive angles turn counter-clockwise
        let sh = tan(shearDegrees * .pi / 180)
        let sx = scale, sy = scaleY ?? scale
        self.scaleX = sx; self.scaleY = sy
        // M = R * Sh * diag(sx, sy)
        let c = cos(th), s = sin(th)
        let m11 = c * sx, m12 = (c * sh - s) * sy
        let m21 = s * sx, m22 = (s * sh + c) * sy
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
    /// The image side of a random affine, with the configured interpolation.
    func warped(_ m: AffineSampler, border: BorderMode, interpolation: AffineInterpolation) -> RGBImage {
        switch interpolation {
        case .bilinear: return warped(m, border: border)
        case .bicubic: return warpedBicubic(m, border: border)
        }
    }

    /// Bicubic warp: 4 x 4 taps weighted by cubic convolution (A = -0.75), each row and column clamped
    /// to the image (replicate) or reading black (constant), the sum rounded and clipped to a byte.
    func warpedBicubic(_ m: AffineSampler, border: BorderMode) -> RGBImage {
        let w = width, h = height
        var out = [UInt8](repeating: 0, count: w * h * 3)
        let constant = border == .constant
        @inline(__always) func weights(_ t: Double) -> (Double, Double, Double, Double) {
            let a = -0.75
            func near(_ x: Double) -> Double { ((a + 2) * x - (a + 3)) * x * x + 1 }
            func far(_ x: Double) -> Double { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
            return (far(t + 1), near(t), near(1 - t), far(2 - t))
        }
        @inline(__always) func tap(_ w: (Double, Double, Double, Double), _ i: Int) -> Double {
            switch i {
            case 0: return w.0
            case 1: return w.1
            case 2: return w.2
            default: return w.3
            }
        }
        pixels.withUnsafeBufferPointer { srcBuf in
            out.withUnsafeMutableBufferPointer { dstBuf in
                guard let src = srcBuf.baseAddress, let dst = dstBuf.baseAddress else { return }
                for y in 0..<h {
                    var (u, v) = m.source(0, y)
                    for x in 0..<w {
                        let fu = u - 0.5, fv = v - 0.5
                        let x0 = fu.rounded(.down), y0 = fv.rounded(.down)
                        let wx = weights(fu - x0), wy = weights(fv - y0)
                        let ix = Int(x0) - 1, iy = Int(y0) - 1
                        var acc = (0.0, 0.0, 0.0)
                        for j in 0..<4 {
                            var row = iy + j
                            if row < 0 || row >= h {
                                if constant { continue }
                                row = min(max(row, 0), h - 1)
                            }
                            for i in 0..<4 {
                                var col = ix + i
                                if col < 0 || col >= w {
                                    if constant { continue }
                                    col = min(max(col, 0), w - 1)
                                }
                                let k = tap(wy, j) * tap(wx, i)
                                let p = src + (row * w + col) * 3
                                acc.0 += k * Double(p[0]); acc.1 += k * Double(p[1]); acc.2 += k * Double(p[2])
                            }
                        }
                        let d = dst + (y * w + x) * 3
                        d[0] = UInt8(min(max(acc.0.rounded(), 0), 255))
                        d[1] = UInt8(min(max(acc.1.rounded(), 0), 255))
                        d[2] = UInt8(min(max(acc.2.rounded(), 0), 255))
                        u += m.a11; v += m.a21
                    }
                }
            }
        }
        return RGBImage(width: w, height: h, pixels: out)
    }

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
