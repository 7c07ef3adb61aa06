import Foundation

/// Interpolation modes matching PyTorch's `F.interpolate` (no antialiasing).
public enum InterpolationMode: Sendable {
    case bilinear
    /// Cubic convolution with A = -0.75 and clamped borders, as PyTorch's "bicubic".
    case bicubic
}

/// The [outSize, inSize] matrix that interpolates one axis; rows sum to 1.
///
/// Resizing is separable and linear, so a 2-D resize is two matrix products (rows, then columns)
/// and its backward is the same products transposed: exact, GEMM-fast, and shared by both modes.
public func interpolationMatrix(inSize: Int, outSize: Int, mode: InterpolationMode, alignCorners: Bool) -> [Double] {
    precondition(inSize > 0 && outSize > 0, "interpolation sizes must be positive")
    var m = [Double](repeating: 0, count: outSize * inSize)
    let scale: Double
    if alignCorners {
        scale = outSize > 1 ? Double(inSize - 1) / Double(outSize - 1) : 0
    } else {
        scale = Double(inSize) / Double(outSize)
    }
    func clampIndex(_ i: Int) -> Int { min(max(i, 0), inSize - 1) }
    for o in 0..<outSize {
        var src = alignCorners ? scale * Double(o) : scale * (Double(o) + 0.5) - 0.5
        switch mode {
        case .bilinear:
            if !alignCorners { src = max(src, 0) }
            let i0 = Int(src)  // src >= 0, so truncation is floor
            let l1 = src - Double(i0)
            let i1 = i0 < inSize - 1 ? i0 + 1 : i0
            m[o * inSize + clampIndex(i0)] += 1 - l1
            m[o * inSize + clampIndex(i1)] += l1
        case .bicubic:
            let fl = src.rounded(.down)
            let i = Int(fl), t = src - fl
            let a = -0.75
            func near(_ x: Double) -> Double { ((a + 2) * x - (a + 3)) * x * x + 1 }  // |x| <= 1
            func far(_ x: Double) -> Double { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }  // 1 < |x| < 2
            let w = [far(t + 1), near(t), near(1 - t), far(2 - t)]
            for (k, wk) in w.enumerated() { m[o * inSize + clampIndex(i - 1 + k)] += wk }
        }
    }
    return m
}

extension Tensor {
    /// Resizes the last two axes [..., H, W] to `size` (PyTorch `interpolate(size=...)`).
    public func resized(to size: (height: Int, width: Int), mode: InterpolationMode, alignCorners: Bool = false)
        -> Tensor
    {
        precondition(rank >= 2, "resize needs [..., H, W]")
        let h = shape[rank - 2], w = shape[rank - 1], ho = size.height, wo = size.width
        let n = count / max(h * w, 1)
        let my = Tensor(
            shape: [ho, h],
            values: interpolationMatrix(inSize: h, outSize: ho, mode: mode, alignCorners: alignCorners).map(Float.init))
        let mx = Tensor(
            shape: [wo, w],
            values: interpolationMatrix(inSize: w, outSize: wo, mode: mode, alignCorners: alignCorners).map(Float.init))
        // Columns: T[n*h, wo] = X[n*h, w] Mxᵀ ; rows: Y_n[ho, wo] = My[ho, h] T_n[h, wo].
        let tmp = Tensor(uninitialized: [n, h, wo])
        withTensorPointers(writing: tmp, reading: self, mx) { pt, px, pmx in
            BLAS.sgemm(
                transposeA: false, transposeB: true, m: n * h, n: wo, k: w,
                a: px, lda: w, b: pmx, ldb: w, c: pt, ldc: wo)
        }
        let out = Tensor(uninitialized: Array(shape.dropLast(2)) + [ho, wo])
        withTensorPointers(writing: out, reading: my, tmp) { po, pmy, pt in
            for i in 0..<n {
                BLAS.sgemm(
                    transposeA: false, transposeB: false, m: ho, n: wo, k: h,
                    a: pmy, lda: h, b: pt + i * h * wo, ldb: wo,
                    c: po + i * ho * wo, ldc: wo)
            }
        }
        let inShape = shape
        return Tensor.record(out, inputs: [self], name: "resize") { g, _ in
            let gt = Tensor(uninitialized: [n, h, wo])
            withTensorPointers(writing: gt, reading: my, g) { pgt, pmy, pg in
                for i in 0..<n {  // dT_n = Myᵀ dY_n
                    BLAS.sgemm(
                        transposeA: true, transposeB: false, m: h, n: wo, k: ho,
                        a: pmy, lda: h, b: pg + i * ho * wo, ldb: wo,
                        c: pgt + i * h * wo, ldc: wo)
                }
            }
            let gx = Tensor(uninitialized: inShape)  // dX = dT Mx
            withTensorPointers(writing: gx, reading: gt, mx) { pgx, pgt, pmx in
                BLAS.sgemm(
                    transposeA: false, transposeB: false, m: n * h, n: w, k: wo,
                    a: pgt, lda: wo, b: pmx, ldb: w, c: pgx, ldc: w)
            }
            return [gx]
        }
    }
}
