import Foundation

// 2-D convolution and transposed convolution, lowered to GEMMs through im2col / col2im.
//
// Both ops share one lowering: an image [C, H, W] and a grid of kernel placements give a column
// matrix [C*kh*kw, gridH*gridW]. A convolution gathers its input into columns and multiplies by
// the weight; a transposed convolution multiplies first and scatters the columns back into its
// (larger) output. Each op's backward uses the other direction of the same lowering.
// Batch items are lowered one at a time so a column buffer stays one image large; large GEMMs are
// threaded by OpenBLAS, small ones run one image per thread (`ConvBatchPlan`).

/// How one image maps onto its column matrix: kernel placement (oy, ox) on the grid reads image
/// pixel (oy*strideH - padH + i, ox*strideW - padW + j) for kernel tap (i, j); taps that fall in
/// the padding read zero (im2col) or are dropped (col2im).
struct ConvGeometry {
    let channels: Int, height: Int, width: Int
    let kernelH: Int, kernelW: Int
    let strideH: Int, strideW: Int
    let padH: Int, padW: Int
    let gridH: Int, gridW: Int

    var colRows: Int { channels * kernelH * kernelW }
    var colCols: Int { gridH * gridW }
    var imageCount: Int { channels * height * width }
    /// A 1x1, stride-1, unpadded kernel: the column matrix is the image itself, so callers skip
    /// the copy and use the image (or its gradient) in place.
    var isIdentity: Bool {
        kernelH == 1 && kernelW == 1 && strideH == 1 && strideW == 1 && padH == 0 && padW == 0
            && gridH == height && gridW == width
    }

    @inline(__always)
    static func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }

    /// Grid positions along one axis whose tap `tap` lands inside the image, found arithmetically
    /// so the inner loops carry no bounds tests.
    @inline(__always)
    static func inside(tap: Int, stride: Int, pad: Int, size: Int, grid: Int) -> Range<Int> {
        let lo = min(grid, max(0, -floorDiv(tap - pad, stride)))  // ceil((pad - tap) / stride)
        let hi = max(lo, min(grid, floorDiv(size - 1 + pad - tap, stride) + 1))
        return lo..<hi
    }

    /// Writes every element of `col` (colRows x colCols) from `image` (channels x height x width);
    /// `parallel: false` when the caller already runs one image per thread.
    func im2col(_ image: UnsafePointer<Float>, into col: UnsafeMutablePointer<Float>, parallel: Bool = true) {
        let cols = colCols, area = kernelH * kernelW, plane = height * width
        let body = { (rows: Range<Int>) in
            for r in rows {
                let c = r / area, i = (r / kernelW) % kernelH, j = r % kernelW
                let ys = Self.inside(tap: i, stride: strideH, pad: padH, size: height, grid: gridH)
                let xs = Self.inside(tap: j, stride: strideW, pad: padW, size: width, grid: gridW)
                let dstRow = col + r * cols, src = image + c * plane
                for oy in 0..<gridH {
                    let dst = dstRow + oy * gridW
                    guard ys.contains(oy), !xs.isEmpty else {
                        dst.update(repeating: 0, count: gridW)
                        continue
                    }
                    let srcRow = src + (oy * strideH - padH + i) * width
                    if xs.lowerBound > 0 { dst.update(repeating: 0, count: xs.lowerBound) }
                    if strideW == 1 {
                        (dst + xs.lowerBound).update(from: srcRow + (xs.lowerBound - padW + j), count: xs.count)
                    } else {
                        for ox in xs { dst[ox] = srcRow[ox * strideW - padW + j] }
                    }
                    if xs.upperBound < gridW {
                        (dst + xs.upperBound).update(repeating: 0, count: gridW - xs.upperBound)
                    }
                }
            }
        }
        if parallel { parallelFor(colRows, grain: max(1, 16384 / max(cols, 1)), body) } else { body(0..<colRows) }
    }

    /// Adds each column entry into the image pixel it was gathered from (the adjoint of im2col).
    /// Threads split by channel, so overlapping kernel placements never race.
    func col2im(_ col: UnsafePointer<Float>, accumulatingInto image: UnsafeMutablePointer<Float>, parallel: Bool = true)
    {
        let cols = colCols, plane = height * width
        let perChannel = kernelH * kernelW * cols
        let body = { (chans: Range<Int>) in
            for c in chans {
                let dstPlane = image + c * plane
                for i in 0..<kernelH {
                    let ys = Self.inside(tap: i, stride: strideH, pad: padH, size: height, grid: gridH)
                    for j in 0..<kernelW {
                        let xs = Self.inside(tap: j, stride: strideW, pad: padW, size: width, grid: gridW)
                        if xs.isEmpty { continue }
                        let srcRow = col + ((c * kernelH + i) * kernelW + j) * cols
                        for oy in ys {
                            let dst = dstPlane + (oy * strideH - padH + i) * width
                            let s = srcRow + oy * gridW
                            if strideW == 1 {
                                let shift = j - padW
                                for ox in xs { dst[ox + shift] += s[ox] }
                            } else {
                                for ox in xs { dst[ox * strideW - padW + j] += s[ox] }
                            }
                        }
                    }
                }
            }
        }
        if parallel {
            parallelFor(channels, grain: max(1, 16384 / max(perChannel, 1)), body)
        } else {
            body(0..<channels)
        }
    }
}

/// How a convolution walks its batch. Small per-image products (CLIPSeg's decoder head: 64
/// channels on a 22 x 22 grid, ~36 MFLOP) gain nothing from OpenBLAS's threads, so their images go
/// to the threads instead, each with single-threaded GEMMs and its own column buffer. Weight
/// gradients then sum by fixed slots (image b into slot b mod `slots`, in image order), a structure
/// chosen from the shapes alone, so results do not depend on the thread count. Large products keep
/// one slot and threaded GEMMs, image after image.
struct ConvBatchPlan {
    /// Per-image products up to this many FLOPs run one image per thread.
    static let imageParallelFlops = 256.0e6
    static let maxSlots = 4
    let schedule: SlotSchedule
    var slots: Int { schedule.slots }
    var workers: Int { schedule.workers }

    init(batch: Int, flopsPerImage: Double) {
        schedule = SlotSchedule(count: batch, slots: flopsPerImage <= Self.imageParallelFlops ? Self.maxSlots : 1)
    }

    /// Whether the loops inside one image (im2col, col2im) may use the threads themselves.
    var innerParallel: Bool { workers == 1 }

    /// Runs `body(image, slot, firstInSlot, worker)` for every image (`SlotSchedule`).
    func forEachImage(_ body: (_ image: Int, _ slot: Int, _ first: Bool, _ worker: Int) -> Void) {
        schedule.run(body)
    }

    /// Per-slot buffers for a weight gradient of `n` values; zeros for an empty batch, where no
    /// image writes them.
    func gradientParts(_ n: Int) -> Tensor {
        schedule.count == 0 ? Tensor(zeros: [slots, n]) : Tensor(uninitialized: [slots, n])
    }

    func summedSlots(_ parts: Tensor, shape: [Int]) -> Tensor { schedule.summedSlots(parts, shape: shape) }
}

/// Overwrites out[b, c, :] with bias[c] for every batch item, so a GEMM can then add with beta = 1.
func fillChannelBias(_ out: UnsafeMutablePointer<Float>, bias: Tensor, batch: Int, channels: Int, plane: Int) {
    bias.withUnsafePointer { pb in
        parallelFor(batch * channels, grain: max(1, 16384 / max(plane, 1))) { range in
            for bc in range { (out + bc * plane).update(repeating: pb[bc % channels], count: plane) }
        }
    }
}

/// Per-channel sums of g [batch, channels, plane] over batch and plane: a bias gradient.
func channelSums(_ g: Tensor, batch: Int, channels: Int, plane: Int) -> Tensor {
    let out = Tensor(uninitialized: [channels])
    withTensorPointers(writing: out, reading: g) { o, pg in
        parallelFor(channels, grain: max(1, 16384 / max(batch * plane, 1))) { range in
            for c in range {
                var total: Float = 0
                for b in 0..<batch {
                    let src = pg + (b * channels + c) * plane
                    var s: Float = 0
                    for k in 0..<plane { s += src[k] }
                    total += s
                }
                o[c] = total
            }
        }
    }
    return out
}

/// PyTorch Conv2d: x [B, C, H, W], weight [O, C, kh, kw], bias [O] -> [B, O, Ho, Wo] with
/// Ho = (H + 2*padH - kh) / strideH + 1 (and likewise Wo).
///
/// Backward keeps only what the requested gradients need: the weight for the input gradient, the
/// input for the weight gradient (its columns are rebuilt rather than stored, trading a cheap
/// gather for B column matrices of memory).
public func conv2d(
    _ x: Tensor, weight: Tensor, bias: Tensor? = nil,
    stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0)
) -> Tensor {
    precondition(
        x.rank == 4 && weight.rank == 4 && weight.shape[1] == x.shape[1],
        "conv2d: input \(x.shape) with weight \(weight.shape)")
    precondition(
        stride.0 >= 1 && stride.1 >= 1 && padding.0 >= 0 && padding.1 >= 0,
        "conv2d: stride \(stride), padding \(padding)")
    let batch = x.shape[0], inC = x.shape[1], h = x.shape[2], w = x.shape[3]
    let outC = weight.shape[0], kh = weight.shape[2], kw = weight.shape[3]
    if let bias { precondition(bias.count == outC, "conv2d: bias \(bias.shape) for \(outC) output channels") }
    precondition(
        kh >= 1 && kw >= 1 && h + 2 * padding.0 >= kh && w + 2 * padding.1 >= kw,
        "conv2d: kernel \(kh)x\(kw) larger than padded input \(h)x\(w) + \(padding)")
    let outH = (h + 2 * padding.0 - kh) / stride.0 + 1, outW = (w + 2 * padding.1 - kw) / stride.1 + 1
    let geo = ConvGeometry(
        channels: inC, height: h, width: w, kernelH: kh, kernelW: kw,
        strideH: stride.0, strideW: stride.1, padH: padding.0, padW: padding.1,
        gridH: outH, gridW: outW)
    let k = geo.colRows, n = geo.colCols, imageCount = geo.imageCount, outCount = outC * n

    let plan = ConvBatchPlan(batch: batch, flopsPerImage: 2 * Double(outC) * Double(k) * Double(n))
    let y = Tensor(uninitialized: [batch, outC, outH, outW])
    // One column buffer per worker.
    let scratch = geo.isIdentity ? nil : Tensor(uninitialized: [plan.workers, k * n])
    withTensorPointers(writing: y, reading: x, weight) { py, px, pw in
        if let bias { fillChannelBias(py, bias: bias, batch: batch, channels: outC, plane: n) }
        scratch.withUnsafeMutablePointerIfPresent { scratch in
            plan.forEachImage { b, _, _, worker in
                let xb = px + b * imageCount
                var cols = xb
                if let scratch {
                    let buffer = scratch + worker * k * n
                    geo.im2col(xb, into: buffer, parallel: plan.innerParallel)
                    cols = UnsafePointer(buffer)
                }
                BF16GEMM.product(
                    transposeA: false, transposeB: false, m: outC, n: n, k: k,
                    a: pw, lda: k, b: cols, ldb: n, beta: bias == nil ? 0 : 1, c: py + b * outCount, ldc: n,
                    parallel: plan.innerParallel)
            }
        }
    }

    guard Tensor.willRecord(x, weight) || (bias?.requiresGrad ?? false) else {
        return Tensor.unrecorded(y, name: "conv2d")
    }
    let savedX = weight.requiresGrad ? x.detached() : nil
    let savedW = x.requiresGrad ? weight.detached() : nil
    let xShape = x.shape, wShape = weight.shape
    let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
    return Tensor.record(y, inputs: inputs, name: "conv2d") { g, needs in
        var gx: Tensor? = nil, gw: Tensor? = nil, gb: Tensor? = nil
        let cols = geo.isIdentity || !(needs[0] || needs[1]) ? nil : Tensor(uninitialized: [plan.workers, k * n])
        if needs[0], let savedW {
            // dX = col2im(W^T dY), image by image.
            let t = Tensor(zeros: xShape)
            withTensorPointers(writing: t, reading: g, savedW) { pt, pg, pw in
                cols.withUnsafeMutablePointerIfPresent { cols in
                    plan.forEachImage { b, _, _, worker in
                        let dst = pt + b * imageCount
                        let buffer = cols.map { $0 + worker * k * n }
                        BF16GEMM.product(
                            transposeA: true, transposeB: false, m: k, n: n, k: outC,
                            a: pw, lda: k, b: pg + b * outCount, ldb: n, c: buffer ?? dst, ldc: n,
                            parallel: plan.innerParallel)
                        if let buffer { geo.col2im(buffer, accumulatingInto: dst, parallel: plan.innerParallel) }
                    }
                }
            }
            gx = t
        }
        if needs[1], let savedX {
            // dW = sum_b dY_b col_b^T, by slots.
            let parts = plan.gradientParts(outC * k)
            withTensorPointers(writing: parts, reading: g, savedX) { pparts, pg, px in
                cols.withUnsafeMutablePointerIfPresent { cols in
                    plan.forEachImage { b, slot, first, worker in
                        let xb = px + b * imageCount
                        var colsP = xb
                        if let cols {
                            let buffer = cols + worker * k * n
                            geo.im2col(xb, into: buffer, parallel: plan.innerParallel)
                            colsP = UnsafePointer(buffer)
                        }
                        BF16GEMM.product(
                            transposeA: false, transposeB: true, m: outC, n: k, k: n,
                            a: pg + b * outCount, lda: n, b: colsP, ldb: n, beta: first ? 0 : 1,
                            c: pparts + slot * outC * k, ldc: k, parallel: plan.innerParallel)
                    }
                }
            }
            gw = plan.summedSlots(parts, shape: wShape)
        }
        if needs.count > 2 && needs[2] { gb = channelSums(g, batch: batch, channels: outC, plane: n) }
        return [gx, gw, gb]
    }
}

/// PyTorch ConvTranspose2d: x [B, Cin, H, W], weight [Cin, Cout, kh, kw], bias [Cout] ->
/// [B, Cout, Ho, Wo] with Ho = (H - 1)*strideH - 2*padH + kh + outputPaddingH (likewise Wo).
///
/// It is the adjoint of a conv2d whose input is this op's output: each input pixel scatters a
/// weighted kernel into the output. `padding` crops the scattered result; `outputPadding` only
/// extends the output size (it must be below the stride, as in PyTorch, so the size is unambiguous).
public func convTranspose2d(
    _ x: Tensor, weight: Tensor, bias: Tensor? = nil,
    stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
    outputPadding: (Int, Int) = (0, 0)
) -> Tensor {
    precondition(
        x.rank == 4 && weight.rank == 4 && weight.shape[0] == x.shape[1],
        "convTranspose2d: input \(x.shape) with weight \(weight.shape)")
    precondition(
        stride.0 >= 1 && stride.1 >= 1 && padding.0 >= 0 && padding.1 >= 0,
        "convTranspose2d: stride \(stride), padding \(padding)")
    precondition(
        outputPadding.0 >= 0 && outputPadding.1 >= 0 && outputPadding.0 < stride.0 && outputPadding.1 < stride.1,
        "convTranspose2d: output padding \(outputPadding) must be smaller than stride \(stride)")
    let batch = x.shape[0], inC = x.shape[1], h = x.shape[2], w = x.shape[3]
    let outC = weight.shape[1], kh = weight.shape[2], kw = weight.shape[3]
    if let bias { precondition(bias.count == outC, "convTranspose2d: bias \(bias.shape) for \(outC) output channels") }
    let outH = (h - 1) * stride.0 - 2 * padding.0 + kh + outputPadding.0
    let outW = (w - 1) * stride.1 - 2 * padding.1 + kw + outputPadding.1
    precondition(kh >= 1 && kw >= 1 && outH >= 1 && outW >= 1, "convTranspose2d: empty output \(outH)x\(outW)")
    // The lowering of the *output* image, whose kernel-placement grid is exactly the input H x W.
    let geo = ConvGeometry(
        channels: outC, height: outH, width: outW, kernelH: kh, kernelW: kw,
        strideH: stride.0, strideW: stride.1, padH: padding.0, padW: padding.1,
        gridH: h, gridW: w)
    let k = geo.colRows, n = geo.colCols, inCount = inC * n, outCount = geo.imageCount

    let y = bias == nil ? Tensor(zeros: [batch, outC, outH, outW]) : Tensor(uninitialized: [batch, outC, outH, outW])
    let plan = ConvBatchPlan(batch: batch, flopsPerImage: 2 * Double(k) * Double(n) * Double(inC))
    let scratch = geo.isIdentity ? nil : Tensor(uninitialized: [plan.workers, k * n])
    withTensorPointers(writing: y, reading: x, weight) { py, px, pw in
        if let bias { fillChannelBias(py, bias: bias, batch: batch, channels: outC, plane: outH * outW) }
        scratch.withUnsafeMutablePointerIfPresent { scratch in
            plan.forEachImage { b, _, _, worker in
                let yb = py + b * outCount
                // cols = W^T X_b, then scatter-add; the identity lowering adds straight into the output.
                let buffer = scratch.map { $0 + worker * k * n }
                BF16GEMM.product(
                    transposeA: true, transposeB: false, m: k, n: n, k: inC,
                    a: pw, lda: k, b: px + b * inCount, ldb: n,
                    beta: buffer == nil ? 1 : 0, c: buffer ?? yb, ldc: n, parallel: plan.innerParallel)
                if let buffer { geo.col2im(buffer, accumulatingInto: yb, parallel: plan.innerParallel) }
            }
        }
    }

    guard Tensor.willRecord(x, weight) || (bias?.requiresGrad ?? false) else {
        return Tensor.unrecorded(y, name: "conv_transpose2d")
    }
    let savedX = weight.requiresGrad ? x.detached() : nil
    let savedW = x.requiresGrad ? weight.detached() : nil
    let xShape = x.shape, wShape = weight.shape
    let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
    return Tensor.record(y, inputs: inputs, name: "conv_transpose2d") { g, needs in
        var gx: Tensor? = nil, gw: Tensor? = nil, gb: Tensor? = nil
        let wantX = needs[0] && savedW != nil, wantW = needs[1] && savedX != nil
        if wantX || wantW {
            let tx = wantX ? Tensor(uninitialized: xShape) : nil
            let parts = wantW ? plan.gradientParts(inC * k) : nil
            let cols = geo.isIdentity ? nil : Tensor(uninitialized: [plan.workers, k * n])
            g.withUnsafePointer { pg in
                savedW.withUnsafePointerIfPresent { pw in
                    savedX.withUnsafePointerIfPresent { px in
                        tx.withUnsafeMutablePointerIfPresent { ptx in
                            parts.withUnsafeMutablePointerIfPresent { pparts in
                                cols.withUnsafeMutablePointerIfPresent { cols in
                                    plan.forEachImage { b, slot, first, worker in
                                        // Both gradients read the same gathered dY_b, so it is lowered once per item.
                                        let gyb = pg + b * outCount
                                        var colsP = gyb
                                        if let cols {
                                            let buffer = cols + worker * k * n
                                            geo.im2col(gyb, into: buffer, parallel: plan.innerParallel)
                                            colsP = UnsafePointer(buffer)
                                        }
                                        if let ptx, let pw {  // dX_b = W cols
                                            BF16GEMM.product(
                                                transposeA: false, transposeB: false, m: inC, n: n, k: k,
                                                a: pw, lda: k, b: colsP, ldb: n, c: ptx + b * inCount, ldc: n,
                                                parallel: plan.innerParallel)
                                        }
                                        if let pparts, let px {  // dW += X_b cols^T, by slots
                                            BF16GEMM.product(
                                                transposeA: false, transposeB: true, m: inC, n: k, k: n,
                                                a: px + b * inCount, lda: n, b: colsP, ldb: n,
                                                beta: first ? 0 : 1, c: pparts + slot * inC * k, ldc: k,
                                                parallel: plan.innerParallel)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            gx = tx
            gw = parts.map { plan.summedSlots($0, shape: wShape) }
        }
        if needs.count > 2 && needs[2] { gb = channelSums(g, batch: batch, channels: outC, plane: outH * outW) }
        return [gx, gw, gb]
    }
}
