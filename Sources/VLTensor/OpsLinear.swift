// Matrix products through OpenBLAS sgemm. Backward computes only the gradients that are needed:
// with a frozen weight, a linear layer's backward is a single GEMM for the input gradient.

/// y = x W^T + b for x [..., in], W [out, in] (PyTorch's Linear layout), b [out].
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
    linear(x, weight: weight, bias: bias, relu: false)
}

/// relu(x W^T + b), fused: the ReLU is applied in place on the GEMM's output (no second tensor),
/// and backward masks the gradient by the saved output. MLPs with a wide hidden
/// layer (CLIPSeg's decoder: 64 -> 2048 -> 64 over every patch) spend as long on those passes over
/// the hidden activations as on the GEMMs.
public func linearReLU(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
    linear(x, weight: weight, bias: bias, relu: true)
}

/// g * (y > 0): ReLU's backward from its output.
func reluBackward(_ g: Tensor, output y: Tensor) -> Tensor {
    let gx = Tensor(uninitialized: y.shape)
    // Branch-free (a select per 8 lanes): the sign pattern of activations is random, so a branch
    // per element mispredicts about half the time.
    withTensorPointers(writing: gx, reading: g, y) { go, pg, py in
        parallelFor(y.count, grain: 32768) { r in
            var i = r.lowerBound
            let zero = SIMD8<Float>(repeating: 0)
            while i + 8 <= r.upperBound {
                let keep = VectorMath.load(py + i) .> zero
                VectorMath.store(zero.replacing(with: VectorMath.load(pg + i), where: keep), go + i)
                i += 8
            }
            while i < r.upperBound {
                go[i] = py[i] > 0 ? pg[i] : 0
                i += 1
            }
        }
    }
    return gx
}

private func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, relu: Bool) -> Tensor {
    let inF = weight.shape[1], outF = weight.shape[0]
    precondition(weight.rank == 2 && x.shape.last == inF, "linear: input \(x.shape) with weight \(weight.shape)")
    if let bias { precondition(bias.count == outF, "linear: bias \(bias.shape) for \(outF) outputs") }
    let rows = x.count / max(inF, 1)
    let outShape = Array(x.shape.dropLast()) + [outF]
    let y = Tensor(uninitialized: outShape)
    // The bias is written first and the GEMM accumulates onto it (beta 1): no separate zeroing pass.
    let grain = max(1, 16384 / max(outF, 1))
    withTensorPointers(writing: y, reading: x, weight) { py, px, pw in
        if let bias {
            bias.withUnsafePointer { pb in
                parallelFor(rows, grain: grain) { range in
                    for r in range { (py + r * outF).update(from: pb, count: outF) }
                }
            }
        }
        if BF16GEMM.suits(columns: outF) {
            BF16GEMM.product(
                transposeA: false, transposeB: true, m: rows, n: outF, k: inF, a: px, lda: inF,
                b: pw, ldb: inF, beta: bias == nil ? 0 : 1, c: py, ldc: outF)
        } else if PanelGEMM.suits(columns: outF) {
            PanelGEMM.transposed(weight).withUnsafePointer { pwt in
                PanelGEMM.parallelMultiply(
                    transposeA: false, m: rows, n: outF, k: inF, a: px, lda: inF,
                    b: pwt, ldb: outF, beta: bias == nil ? 0 : 1, c: py, ldc: outF)
            }
        } else {
            BLAS.sgemm(
                transposeA: false, transposeB: true, m: rows, n: outF, k: inF,
                a: px, lda: inF, b: pw, ldb: inF, beta: bias == nil ? 0 : 1, c: py, ldc: outF)
        }
        if relu {
            parallelFor(rows * outF, grain: 32768) { range in
                for i in range { py[i] = max(py[i], 0) }
            }
        }
    }
    let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
    guard Tensor.willRecord(x, weight) || (bias?.requiresGrad ?? false) else {
        return Tensor.unrecorded(y, name: relu ? "linear_relu" : "linear")
    }
    let xs = x.detached(), ws = weight.detached(), xShape = x.shape, ys = y.detached()
    return Tensor.record(y, inputs: inputs, name: relu ? "linear_relu" : "linear") { gOut, needs in
        let g = relu ? reluBackward(gOut, output: ys) : gOut
        var gx: Tensor? = nil, gw: Tensor? = nil, gb: Tensor? = nil
        // Both products take B untransposed, so either implementation runs them as they are.
        if needs[0] {
            let t = Tensor(uninitialized: xShape)
            withTensorPointers(writing: t, reading: g, ws) { pt, pg, pw in
                if BF16GEMM.suits(columns: inF) {
                    BF16GEMM.product(
                        transposeA: false, transposeB: false, m: rows, n: inF, k: outF, a: pg, lda: outF,
                        b: pw, ldb: inF, c: pt, ldc: inF)
                } else {
                    PanelGEMM.product(
                        transposeA: false, m: rows, n: inF, k: outF, a: pg, lda: outF, b: pw, ldb: inF,
                        c: pt, ldc: inF)
                }
            }
            gx = t
        }
        if needs[1] {
            let t = Tensor(uninitialized: [outF, inF])
            withTensorPointers(writing: t, reading: g, xs) { pt, pg, px in
                if BF16GEMM.suits(columns: inF) {
                    BF16GEMM.product(
                        transposeA: true, transposeB: false, m: outF, n: inF, k: rows, a: pg, lda: outF,
                        b: px, ldb: inF, c: pt, ldc: inF)
                } else {
                    PanelGEMM.product(
                        transposeA: true, m: outF, n: inF, k: rows, a: pg, lda: outF, b: px, ldb: inF,
                        c: pt, ldc: inF)
                }
            }
            gw = t
        }
        if needs.count > 2 && needs[2] {
            gb = Kernels.sumAxis(Tensor(storage: g.storage, offset: g.offset, shape: [rows, outF]), axis: 0)
        }
        return [gx, gw, gb]
    }
}

/// Batched matrix product of the last two axes: op(a) [..., M, K] x op(b) [..., K, N].
/// Leading (batch) axes must match, or `b` may be a single 2-D matrix shared by every batch.
public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
    precondition(a.rank >= 2 && b.rank >= 2, "matmul needs matrices: \(a.shape) x \(b.shape)")
    let aRows = a.shape[a.rank - 2], aCols = a.shape[a.rank - 1]
    let bRows = b.shape[b.rank - 2], bCols = b.shape[b.rank - 1]
    let m = transposeA ? aCols : aRows, k = transposeA ? aRows : aCols
    let kb = transposeB ? bCols : bRows, n = transposeB ? bRows : bCols
    precondition(
        k == kb,
        "matmul inner dimensions differ: \(a.shape)\(transposeA ? "ᵀ" : "") x \(b.shape)\(transposeB ? "ᵀ" : "")")
    let batchA = Array(a.shape.dropLast(2)), batchB = Array(b.shape.dropLast(2))
    let sharedB = b.rank == 2
    precondition(sharedB || batchA == batchB, "matmul batch axes differ: \(a.shape) x \(b.shape)")
    let batch = shapeElementCount(batchA)
    let out = Tensor(uninitialized: batchA + [m, n])
    let strideA = aRows * aCols, strideB = sharedB ? 0 : bRows * bCols, strideC = m * n
    withTensorPointers(writing: out, reading: a, b) { pc, pa, pb in
        if sharedB && !transposeA {
            BLAS.sgemm(
                transposeA: false, transposeB: transposeB, m: batch * m, n: n, k: k,
                a: pa, lda: aCols, b: pb, ldb: bCols, c: pc, ldc: n)
        } else {
            for i in 0..<batch {
                BLAS.sgemm(
                    transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                    a: pa + i * strideA, lda: aCols, b: pb + i * strideB, ldb: bCols, c: pc + i * strideC, ldc: n)
            }
        }
    }
    guard Tensor.willRecord(a, b) else { return Tensor.unrecorded(out, name: "matmul") }
    let sa = a.detached(), sb = b.detached(), aShape = a.shape, bShape = b.shape
    return Tensor.record(out, inputs: [a, b], name: "matmul") { g, needs in
        var ga: Tensor? = nil, gb: Tensor? = nil
        if needs[0] {
            let t = Tensor(uninitialized: aShape)
            withTensorPointers(writing: t, reading: g, sb) { pt, pg, psb in
                for i in 0..<batch {
                    if !transposeA {  // dA = G op(B)^T : [M,N] x [N,K]
                        BLAS.sgemm(
                            transposeA: false, transposeB: !transposeB, m: m, n: k, k: n,
                            a: pg + i * strideC, lda: n, b: psb + i * strideB, ldb: bCols, c: pt + i * strideA,
                            ldc: aCols)
                    } else {  // dA = op(B) G^T : [K,N] x [N,M]
                        BLAS.sgemm(
                            transposeA: transposeB, transposeB: true, m: k, n: m, k: n,
                            a: psb + i * strideB, lda: bCols, b: pg + i * strideC, ldb: n, c: pt + i * strideA,
                            ldc: aCols)
                    }
                }
            }
            ga = t
        }
        if needs[1] {
            let t = Tensor(zeros: bShape)
            withTensorPointers(writing: t, reading: g, sa) { pt, pg, psa in
                for i in 0..<batch {
                    let beta: Float = sharedB && i > 0 ? 1 : 0
                    if !transposeB {  // dB = op(A)^T G : [K,M] x [M,N]
                        BLAS.sgemm(
                            transposeA: !transposeA, transposeB: false, m: k, n: n, k: m,
                            a: psa + i * strideA, lda: aCols, b: pg + i * strideC, ldb: n,
                            beta: beta, c: pt + i * strideB, ldc: bCols)
                    } else {  // dB = G^T op(A) : [N,M] x [M,K]
                        BLAS.sgemm(
                            transposeA: true, transposeB: transposeA, m: n, n: k, k: m,
                            a: pg + i * strideC, lda: n, b: psa + i * strideA, ldb: aCols,
                            beta: beta, c: pt + i * strideB, ldc: bCols)
                    }
                }
            }
            gb = t
        }
        return [ga, gb]
    }
}
