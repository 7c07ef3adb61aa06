// Average pooling over the last two axes of [..., H, W] (NCHW images, or [C, H, W]).
//
// Every plane (one channel of one image) is pooled independently, so the loops split by plane and
// the backward scatter never races. Backward needs only shapes, so nothing is saved.

/// Planes and spatial size of a pooling input.
private func poolingPlanes(_ x: Tensor, _ op: String) -> (planes: Int, h: Int, w: Int) {
    precondition(x.rank >= 2, "\(op): input \(x.shape) needs at least two (spatial) axes")
    let h = x.shape[x.rank - 2], w = x.shape[x.rank - 1]
    return (x.count / max(h * w, 1), h, w)
}

/// PyTorch AvgPool2d with count_include_pad = true and ceil_mode = false: every window divides by
/// kh*kw, padded zeros included. (With ceil_mode off no window reaches past the padding, so that
/// divisor is also PyTorch's.) `stride` defaults to the kernel.
public func avgPool2d(_ x: Tensor, kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0))
    -> Tensor
{
    let (planes, h, w) = poolingPlanes(x, "avgPool2d")
    let (kh, kw) = kernel
    let (sh, sw) = stride ?? kernel
    let (ph, pw) = padding
    precondition(kh >= 1 && kw >= 1 && sh >= 1 && sw >= 1, "avgPool2d: kernel \(kernel), stride \((sh, sw))")
    precondition(
        ph >= 0 && pw >= 0 && 2 * ph <= kh && 2 * pw <= kw,
        "avgPool2d: padding \(padding) must be at most half the kernel \(kernel)")
    precondition(h + 2 * ph >= kh && w + 2 * pw >= kw, "avgPool2d: kernel \(kernel) larger than padded input \(h)x\(w)")
    let outH = (h + 2 * ph - kh) / sh + 1, outW = (w + 2 * pw - kw) / sw + 1
    let scale = 1 / Float(kh * kw)
    let inPlane = h * w, outPlane = outH * outW
    let out = Tensor(uninitialized: Array(x.shape.dropLast(2)) + [outH, outW])
    withTensorPointers(writing: out, reading: x) { o, p in
        parallelFor(planes, grain: max(1, 16384 / max(outPlane * kh * kw, 1))) { range in
            for plane in range {
                let src = p + plane * inPlane, dst = o + plane * outPlane
                for oy in 0..<outH {
                    let y0 = oy * sh - ph, yLo = max(0, y0), yHi = min(h, y0 + kh)
                    for ox in 0..<outW {
                        let x0 = ox * sw - pw, xLo = max(0, x0), xHi = min(w, x0 + kw)
                        var s: Float = 0
                        for iy in yLo..<max(yLo, yHi) {
                            let row = src + iy * w
                            for ix in xLo..<max(xLo, xHi) { s += row[ix] }
                        }
                        dst[oy * outW + ox] = s * scale
                    }
                }
            }
        }
    }
    let inShape = x.shape
    return Tensor.record(out, inputs: [x], name: "avg_pool2d") { g, _ in
        let gx = Tensor(zeros: inShape)
        withTensorPointers(writing: gx, reading: g) { o, pg in
            parallelFor(planes, grain: max(1, 16384 / max(outPlane * kh * kw, 1))) { range in
                for plane in range {
                    let src = pg + plane * outPlane, dst = o + plane * inPlane
                    for oy in 0..<outH {
                        let y0 = oy * sh - ph, yLo = max(0, y0), yHi = min(h, y0 + kh)
                        for ox in 0..<outW {
                            let x0 = ox * sw - pw, xLo = max(0, x0), xHi = min(w, x0 + kw)
                            let v = src[oy * outW + ox] * scale
                            for iy in yLo..<max(yLo, yHi) {
                                let row = dst + iy * w
                                for ix in xLo..<max(xLo, xHi) { row[ix] += v }
                            }
                        }
                    }
                }
            }
        }
        return [gx]
    }
}

/// PyTorch adaptive bins along one axis: bin i covers [floor(i*size/out), ceil((i+1)*size/out)),
/// so bins overlap when size is not a multiple of out, and repeat pixels when out > size.
private func adaptiveBins(size: Int, out: Int) -> [Range<Int>] {
    (0..<out).map { i in (i * size / out)..<(((i + 1) * size + out - 1) / out) }
}

/// PyTorch AdaptiveAvgPool2d: the mean of each adaptive bin, giving [..., outH, outW].
public func adaptiveAvgPool2d(_ x: Tensor, outputSize: (Int, Int)) -> Tensor {
    let (planes, h, w) = poolingPlanes(x, "adaptiveAvgPool2d")
    let (outH, outW) = outputSize
    precondition(outH >= 1 && outW >= 1 && h >= 1 && w >= 1, "adaptiveAvgPool2d: \(h)x\(w) to \(outputSize)")
    let rowBins = adaptiveBins(size: h, out: outH), colBins = adaptiveBins(size: w, out: outW)
    let inPlane = h * w, outPlane = outH * outW
    let work = max(1, (h + outH) * (w + outW))  // rough per-plane cost: bins overlap by at most one pixel
    let out = Tensor(uninitialized: Array(x.shape.dropLast(2)) + [outH, outW])
    withTensorPointers(writing: out, reading: x) { o, p in
        parallelFor(planes, grain: max(1, 16384 / work)) { range in
            for plane in range {
                let src = p + plane * inPlane, dst = o + plane * outPlane
                for (oy, ys) in rowBins.enumerated() {
                    for (ox, xs) in colBins.enumerated() {
                        var s: Float = 0
                        for iy in ys {
                            let row = src + iy * w
                            for ix in xs { s += row[ix] }
                        }
                        dst[oy * outW + ox] = s / Float(ys.count * xs.count)
                    }
                }
            }
        }
    }
    let inShape = x.shape
    return Tensor.record(out, inputs: [x], name: "adaptive_avg_pool2d") { g, _ in
        let gx = Tensor(zeros: inShape)
        withTensorPointers(writing: gx, reading: g) { o, pg in
            parallelFor(planes, grain: max(1, 16384 / work)) { range in
                for plane in range {
                    let src = pg + plane * outPlane, dst = o + plane * inPlane
                    for (oy, ys) in rowBins.enumerated() {
                        for (ox, xs) in colBins.enumerated() {
                            let v = src[oy * outW + ox] / Float(ys.count * xs.count)
                            for iy in ys {
                                let row = dst + iy * w
                                for ix in xs { row[ix] += v }
                            }
                        }
                    }
                }
            }
        }
        return [gx]
    }
}
