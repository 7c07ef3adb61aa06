import Foundation

/// Multi-head scaled dot-product attention, fused: softmax(Q Kᵀ * scale + masks) V per head.
///
/// q [B, Tq, H*dh], k and v [B, Tk, H*dh] (heads interleaved along the last axis, exactly as the
/// projections produce them, so no permute copies are needed). `causal` hides keys after the
/// query's position; `keyMask` [B, Tk] (1 keep, 0 hide) hides padding keys. The full attention
/// matrix is never stored, and backward recomputes the probabilities from the saved row
/// log-sum-exps (FlashAttention-style), so memory stays linear in sequence length. Small heads
/// (see `MultiHeadAttentionKernel`) run the fused C kernel a few query rows at a time; others an
/// sgemm per head for scores and values around one reused [Tq, Tk] scratch per thread.
public func multiHeadAttention(
    query q: Tensor, key k: Tensor, value v: Tensor, heads: Int,
    causal: Bool = false, keyMask: Tensor? = nil, scale: Float? = nil
) -> Tensor {
    precondition(q.rank == 3 && k.rank == 3 && v.rank == 3, "attention expects [B, T, E] inputs")
    let b = q.shape[0], tq = q.shape[1], e = q.shape[2], tk = k.shape[1]
    precondition(k.shape == [b, tk, e] && v.shape == [b, tk, e], "attention: q \(q.shape) k \(k.shape) v \(v.shape)")
    precondition(e % heads == 0, "width \(e) not divisible by \(heads) heads")
    if let keyMask { precondition(keyMask.count == b * tk, "keyMask \(keyMask.shape) for [\(b), \(tk)]") }
    let dh = e / heads
    let alpha = scale ?? 1 / Float(dh).squareRoot()
    if MultiHeadAttentionKernel.choice(headSize: dh) == .fused {
        return fusedMultiHeadAttention(
            query: q, key: k, value: v, heads: heads, causal: causal, keyMask: keyMask, scale: alpha)
    }
    let out = Tensor(uninitialized: q.shape)
    let recording = Tensor.willRecord(q, k, v)
    let lse = recording ? Tensor(uninitialized: [b, heads, tq]) : nil
    let workers = HeadParallel.workers(heads: b * heads)
    let scratch = (0..<workers).map { _ in Tensor(uninitialized: [tq, tk]) }

    withTensorPointers(writing: out, reading: q, k, v) { po, pq, pk, pv in
        keyMask.withUnsafePointerIfPresent { mask in
            lse.withUnsafeMutablePointerIfPresent { plse in
                HeadParallel.run(b * heads, workers: workers) { pair, worker, innerParallel in
                    let bi = pair / heads, h = pair % heads
                    let qb = pq + bi * tq * e + h * dh
                    let kb = pk + bi * tk * e + h * dh
                    let vb = pv + bi * tk * e + h * dh
                    scratch[worker].withUnsafeMutablePointer { ps in
                        BF16GEMM.product(
                            transposeA: false, transposeB: true, m: tq, n: tk, k: dh, alpha: alpha,
                            a: qb, lda: e, b: kb, ldb: e, c: ps, ldc: tk, parallel: innerParallel)
                        let lseRow = plse.map { $0 + (bi * heads + h) * tq }
                        applyMasksAndSoftmax(
                            ps, rows: tq, cols: tk, causal: causal, keyMask: mask.map { $0 + bi * tk }, lse: lseRow,
                            parallel: innerParallel)
                        BF16GEMM.product(
                            transposeA: false, transposeB: false, m: tq, n: dh, k: tk,
                            a: ps, lda: tk, b: vb, ldb: e, c: po + bi * tq * e + h * dh, ldc: e, parallel: innerParallel
                        )
                    }
                }
            }
        }
    }
    guard recording, let lse else { return Tensor.unrecorded(out, name: "attention") }
    let qs = q.detached(), ks = k.detached(), vs = v.detached(), os = out.detached()
    // The backward closure holds the mask tensor itself: it reads the mask long after this
    // function returned.
    let savedMask = keyMask?.detached()
    return Tensor.record(out, inputs: [q, k, v], name: "attention") { g, needs in
        // Every head writes its whole slice of each gradient asked for (sgemm with beta 0): no zeroing.
        let gq = Tensor(uninitialized: q.shape), gk = Tensor(uninitialized: k.shape),
            gv = Tensor(uninitialized: v.shape)
        let workers = HeadParallel.workers(heads: b * heads)
        let scratchP = (0..<workers).map { _ in Tensor(uninitialized: [tq, tk]) }
        let scratchDP = (0..<workers).map { _ in Tensor(uninitialized: [tq, tk]) }
        let scratchDot = (0..<workers).map { _ in Tensor(uninitialized: [tq]) }
        withTensorPointers(writing: gq, gk, gv, reading: qs, ks, vs, os) { pgq, pgk, pgv, pqs, pks, pvs, pos in
            withTensorPointers(reading: g, lse) { pg, plse in
                savedMask.withUnsafePointerIfPresent { mask in
                    HeadParallel.run(b * heads, workers: workers) { pair, worker, innerParallel in
                        withTensorPointers(writing: scratchP[worker], scratchDP[worker], scratchDot[worker]) {
                            pp, pdp, pd in
                            let bi = pair / heads, h = pair % heads
                            let off = h * dh
                            let qb = pqs + bi * tq * e + off, kb = pks + bi * tk * e + off
                            let vb = pvs + bi * tk * e + off, ob = pos + bi * tq * e + off
                            let gb = pg + bi * tq * e + off
                            let rows = { (body: @escaping (Range<Int>) -> Void) in
                                if innerParallel {
                                    parallelFor(tq, grain: max(1, 4096 / max(tk, 1)), body)
                                } else {
                                    body(0..<tq)
                                }
                            }
                            // Recompute P = exp(S - lse), masked entries exactly 0.
                            BF16GEMM.product(
                                transposeA: false, transposeB: true, m: tq, n: tk, k: dh, alpha: alpha,
                                a: qb, lda: e, b: kb, ldb: e, c: pp, ldc: tk, parallel: innerParallel)
                            let lrow = plse + (bi * heads + h) * tq
                            let mrow = mask.map { $0 + bi * tk }
                            rows { range in
                                for i in range {
                                    let row = pp + i * tk, l = lrow[i]
                                    if l == -Float.infinity {
                                        row.update(repeating: 0, count: tk)
                                        continue
                                    }
                                    if causal, i + 1 < tk {
                                        (row + i + 1).update(repeating: -Float.infinity, count: tk - i - 1)
                                    }
                                    if let mrow { for j in 0..<tk where mrow[j] == 0 { row[j] = -Float.infinity } }
                                    _ = VectorMath.expShifted(row, row, tk, shift: l)
                                }
                            }
                            if needs[2] {  // dV = Pᵀ dO
                                BF16GEMM.product(
                                    transposeA: true, transposeB: false, m: tk, n: dh, k: tq,
                                    a: pp, lda: tk, b: gb, ldb: e, c: pgv + bi * tk * e + off, ldc: e,
                                    parallel: innerParallel)
                            }
                            guard needs[0] || needs[1] else { return }
                            // dP = dO Vᵀ ; dS = P * (dP - rowsum(dO * O)) * scale
                            BF16GEMM.product(
                                transposeA: false, transposeB: true, m: tq, n: tk, k: dh,
                                a: gb, lda: e, b: vb, ldb: e, c: pdp, ldc: tk, parallel: innerParallel)
                            for i in 0..<tq {
                                var s: Float = 0
                                for c in 0..<dh { s += gb[i * e + c] * ob[i * e + c] }
                                pd[i] = s
                            }
                            rows { range in
                                for i in range {
                                    let prow = pp + i * tk, drow = pdp + i * tk, di = pd[i]
                                    for j in 0..<tk { drow[j] = prow[j] * (drow[j] - di) * alpha }
                                }
                            }
                            if needs[0] {  // dQ = dS K
                                BF16GEMM.product(
                                    transposeA: false, transposeB: false, m: tq, n: dh, k: tk,
                                    a: pdp, lda: tk, b: kb, ldb: e, c: pgq + bi * tq * e + off, ldc: e,
                                    parallel: innerParallel)
                            }
                            if needs[1] {  // dK = dSᵀ Q
                                BF16GEMM.product(
                                    transposeA: true, transposeB: false, m: tk, n: dh, k: tq,
                                    a: pdp, lda: tk, b: qb, ldb: e, c: pgk + bi * tk * e + off, ldc: e,
                                    parallel: innerParallel)
                            }
                        }
                    }
                }
            }
        }
        return [needs[0] ? gq : nil, needs[1] ? gk : nil, needs[2] ? gv : nil]
    }
}

/// Masks (to -inf), then softmax in place row by row; records each row's log-sum-exp when asked.
func applyMasksAndSoftmax(
    _ s: UnsafeMutablePointer<Float>, rows: Int, cols: Int, causal: Bool,
    keyMask: UnsafePointer<Float>?, lse: UnsafeMutablePointer<Float>?, parallel: Bool = true
) {
    let body: (Range<Int>) -> Void = { range in
        for i in range {
            let row = s + i * cols
            if causal, i + 1 < cols { (row + i + 1).update(repeating: -Float.infinity, count: cols - i - 1) }
            if let keyMask { for j in 0..<cols where keyMask[j] == 0 { row[j] = -Float.infinity } }
            let m = VectorMath.maximum(row, cols)
            if m == -Float.infinity {
                row.update(repeating: 0, count: cols)
                lse?[i] = -Float.infinity
                continue
            }
            let sum = VectorMath.expShifted(row, row, cols, shift: m)
            VectorMath.scale(row, cols, by: 1 / sum)
            lse?[i] = m + Foundation.log(sum)
        }
    }
    if parallel { parallelFor(rows, grain: max(1, 4096 / max(cols, 1)), body) } else { body(0..<rows) }
}

/// Attention heads in parallel: with several threads and enough (batch x head) pairs, each thread
/// takes whole heads and runs its small GEMMs single-threaded (OpenBLAS splits a 485x64x485 GEMM
/// poorly); otherwise heads run one after another with threaded BLAS and parallel row loops.
enum HeadParallel {
    static func workers(heads: Int) -> Int {
        let t = ComputeThreads.count
        return t > 1 && heads >= 2 * t ? t : 1
    }

    static func run(_ count: Int, workers: Int, _ body: (_ pair: Int, _ worker: Int, _ innerParallel: Bool) -> Void) {
        if workers <= 1 {
            for pair in 0..<count { body(pair, 0, true) }
            return
        }
        // One pair per slot: worker w takes pairs w, w + workers, ...
        SlotSchedule(count: count, slots: count, workers: workers).run { pair, _, _, worker in body(pair, worker, false)
        }
    }
}
