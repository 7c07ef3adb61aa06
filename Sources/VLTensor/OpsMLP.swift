import Foundation

/// relu(x W1ᵀ + b1) W2ᵀ + b2 for x [..., in], W1 [hidden, in], W2 [out, hidden]: a two-layer ReLU
/// MLP computed by blocks of rows, each block's hidden activations staying in cache.
///
/// Composed from `linearReLU` and `linear`, a wide hidden layer over many rows (CLIPSeg's decoder:
/// 64 -> 2048 -> 64 over 4 x 485 tokens, a 16 MB hidden tensor per layer) makes every pass over the
/// hidden activations a trip to memory: the bias pass, the ReLU, OpenBLAS packing it for fc2,
/// then in backward the fc2 input gradient, the ReLU mask and three more packings. By blocks of
/// `rowBlock` rows all of these run on an L2-resident block; only the hidden activations that
/// backward needs are written out once (and read once). Blocks are spread over the threads, each
/// calling single-threaded products (`PanelGEMM`; under bf16 precision the products by a weight go
/// through bfloat16 panels packed once per call); the weight gradients are summed in a fixed
/// number of slots in a fixed order, so results do not depend on the thread count.
public func mlpReLU(_ x: Tensor, fc1Weight w1: Tensor, fc1Bias b1: Tensor?, fc2Weight w2: Tensor, fc2Bias b2: Tensor?)
    -> Tensor
{
    let inF = w1.shape[1], hidden = w1.shape[0], outF = w2.shape[0]
    precondition(
        w1.rank == 2 && w2.rank == 2 && w2.shape[1] == hidden && x.shape.last == inF,
        "mlpReLU: input \(x.shape) with fc1 \(w1.shape), fc2 \(w2.shape)")
    if let b1 { precondition(b1.count == hidden, "mlpReLU: fc1 bias \(b1.shape) for \(hidden) outputs") }
    if let b2 { precondition(b2.count == outF, "mlpReLU: fc2 bias \(b2.shape) for \(outF) outputs") }
    let rows = x.count / max(inF, 1)
    let y = Tensor(uninitialized: Array(x.shape.dropLast()) + [outF])
    let recording = Tensor.willRecord(x, w1, w2) || (b1?.requiresGrad ?? false) || (b2?.requiresGrad ?? false)
    let plan = MLPBlocks(rows: rows, hidden: hidden)
    // Backward needs the hidden activations: kept whole when recording, else one block per worker.
    let saved = recording ? Tensor(uninitialized: [rows, hidden]) : nil
    let scratch = recording ? nil : Tensor(uninitialized: [plan.workers, plan.rowBlock * hidden])
    // Under bf16 precision the weights are packed once per call for every block's products; the
    // float32 panel kernel takes B by rows, so there the weights are transposed once per call.
    let fc1 = WeightOperand(w1, transposed: true), fc2 = WeightOperand(w2, transposed: true)

    withTensorPointers(writing: y, reading: x) { py, px in
        b1.withUnsafePointerIfPresent { pb1 in
            b2.withUnsafePointerIfPresent { pb2 in
                (saved ?? scratch).withUnsafeMutablePointerIfPresent { hidden0 in
                    // Each block's hidden activations: its rows of `saved`, or the worker's block of `scratch`.
                    guard let hidden0 else { return }
                    plan.forEachBlock { _, rowRange, _, _, worker in
                        let n = rowRange.count, r0 = rowRange.lowerBound
                        let h = hidden0 + (saved != nil ? r0 : worker * plan.rowBlock) * hidden
                        fillRows(h, rows: n, width: hidden, with: pb1)
                        fc1.multiply(m: n, a: px + r0 * inF, lda: inF, beta: pb1 == nil ? 0 : 1, c: h, ldc: hidden)
                        reluInPlace(h, n * hidden)
                        fillRows(py + r0 * outF, rows: n, width: outF, with: pb2)
                        fc2.multiply(m: n, a: h, lda: hidden, beta: pb2 == nil ? 0 : 1, c: py + r0 * outF, ldc: outF)
                    }
                }
            }
        }
    }
    guard recording, let saved else { return Tensor.unrecorded(y, name: "mlp_relu") }
    var inputs = [x, w1, w2]
    if let b1 { inputs.append(b1) }
    if let b2 { inputs.append(b2) }
    let xs = x.detached(), w1s = w1.detached(), w2s = w2.detached(), xShape = x.shape
    let hasB1 = b1 != nil, hasB2 = b2 != nil
    return Tensor.record(y, inputs: inputs, name: "mlp_relu") { g, needs in
        let needX = needs[0], needW1 = needs[1], needW2 = needs[2]
        let needB1 = hasB1 && needs[3], needB2 = hasB2 && needs[hasB1 ? 4 : 3]
        let needHidden = needX || needW1 || needB1
        let gx = needX ? Tensor(uninitialized: xShape) : nil
        let slots = plan.slots
        // Per-slot partial sums of the parameter gradients.
        let gw1Parts = needW1 ? Tensor(uninitialized: [slots, hidden * inF]) : nil
        let gw2Parts = needW2 ? Tensor(uninitialized: [slots, outF * hidden]) : nil
        let gb1Parts = needB1 ? Tensor(zeros: [slots, hidden]) : nil
        let gb2Parts = needB2 ? Tensor(zeros: [slots, outF]) : nil
        let dHidden = needHidden ? Tensor(uninitialized: [plan.workers, plan.rowBlock * hidden]) : nil
        // dH = dY W2 and dX = dH W1 take the weights as they are.
        let fc2Back = needHidden ? WeightOperand(w2s, transposed: false) : nil
        let fc1Back = needX ? WeightOperand(w1s, transposed: false) : nil

        withTensorPointers(reading: g, saved, xs) { pg, ph, pxs in
            gw1Parts.withUnsafeMutablePointerIfPresent { pgw1 in
                gw2Parts.withUnsafeMutablePointerIfPresent { pgw2 in
                    gb1Parts.withUnsafeMutablePointerIfPresent { pgb1 in
                        gb2Parts.withUnsafeMutablePointerIfPresent { pgb2 in
                            dHidden.withUnsafeMutablePointerIfPresent { pdh in
                                gx.withUnsafeMutablePointerIfPresent { pgx in
                                    plan.forEachBlock { _, rowRange, slot, first, worker in
                                        let n = rowRange.count, r0 = rowRange.lowerBound
                                        let gBlock = pg + r0 * outF, hBlock = ph + r0 * hidden
                                        if let pgw2 {  // dW2 += dYᵀ H
                                            PanelGEMM.multiply(
                                                transposeA: true, m: outF, n: hidden, k: n, a: gBlock, lda: outF,
                                                b: hBlock, ldb: hidden,
                                                beta: first ? 0 : 1, c: pgw2 + slot * outF * hidden, ldc: hidden)
                                        }
                                        if let pgb2 {
                                            addColumnSums(gBlock, rows: n, width: outF, into: pgb2 + slot * outF)
                                        }
                                        guard let pdh else { return }
                                        // dH = (dY W2) masked by H > 0
                                        let dh = pdh + worker * plan.rowBlock * hidden
                                        fc2Back!.multiply(m: n, a: gBlock, lda: outF, c: dh, ldc: hidden)
                                        maskByPositive(dh, hBlock, n * hidden)
                                        if let pgb1 {
                                            addColumnSums(dh, rows: n, width: hidden, into: pgb1 + slot * hidden)
                                        }
                                        if let pgw1 {  // dW1 += dHᵀ X
                                            PanelGEMM.multiply(
                                                transposeA: true, m: hidden, n: inF, k: n, a: dh, lda: hidden,
                                                b: pxs + r0 * inF, ldb: inF,
                                                beta: first ? 0 : 1, c: pgw1 + slot * hidden * inF, ldc: inF)
                                        }
                                        if let pgx, let fc1Back {  // dX = dH W1
                                            fc1Back.multiply(m: n, a: dh, lda: hidden, c: pgx + r0 * inF, ldc: inF)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let schedule = plan.schedule
        var grads: [Tensor?] = [
            gx, gw1Parts.map { schedule.summedSlots($0, shape: [hidden, inF]) },
            gw2Parts.map { schedule.summedSlots($0, shape: [outF, hidden]) },
        ]
        if hasB1 { grads.append(gb1Parts.map { schedule.summedSlots($0, shape: [hidden]) }) }
        if hasB2 { grads.append(gb2Parts.map { schedule.summedSlots($0, shape: [outF]) }) }
        return grads
    }
}

/// A weight as the B operand of every row block's product C = A op(W): op(W) = Wᵀ (`transposed`,
/// W [n, k] in PyTorch's [out, in] layout) or W [k, n]. Packed once into bfloat16 panels under bf16
/// precision, else laid out [k, n] by rows for the float32 panel kernel (a transposed copy once
/// per call when needed). The products run on the calling thread.
private struct WeightOperand {
    let k: Int, n: Int
    let packed: BF16GEMM.PackedB?
    let rows: Tensor?

    init(_ w: Tensor, transposed: Bool) {
        k = transposed ? w.shape[1] : w.shape[0]
        n = transposed ? w.shape[0] : w.shape[1]
        if BF16GEMM.suits(columns: n) {
            let (k, n) = (k, n)
            packed = w.withUnsafePointer {
                BF16GEMM.PackedB(k: k, n: n, b: $0, rsb: transposed ? 1 : n, csb: transposed ? k : 1)
            }
            rows = nil
        } else {
            packed = nil
            rows = transposed ? PanelGEMM.transposed(w) : w
        }
    }

    /// C [m, n] = A op(W) + beta C for A [m, k] with row stride lda.
    func multiply(m: Int, a: UnsafePointer<Float>, lda: Int, beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int)
    {
        if let packed {
            packed.multiply(m: m, a: a, rsa: lda, csa: 1, beta: beta, c: c, ldc: ldc)
        } else if let rows {
            rows.withUnsafePointer { b in
                PanelGEMM.multiply(
                    transposeA: false, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: n, beta: beta, c: c, ldc: ldc)
            }
        }
    }
}

/// How `mlpReLU` splits its rows: blocks small enough that a block of hidden activations stays in
/// L2, grouped into a fixed number of gradient slots (block b belongs to slot b mod `slots`), each
/// slot's blocks handled by one thread in order.
struct MLPBlocks {
    /// Gradient slots: the most threads one MLP uses, and the fixed summation structure.
    static let maxSlots = 4
    let rows: Int, rowBlock: Int, blocks: Int
    let schedule: SlotSchedule
    var slots: Int { schedule.slots }
    var workers: Int { schedule.workers }

    init(rows: Int, hidden: Int) {
        self.rows = rows
        // About 2 MB of hidden activations per block (8 to 512 rows). Measured on CLIPSeg's decoder
        // MLP at batch 4 (2 MB L2 per core), forward + backward per layer: 512 KB blocks 8.7 + 15.4 ms,
        // 2 MB 7.0 + 14.0 ms, 4 MB 7.2 + 15.0 ms; unblocked (linearReLU, linear) 7.5 + 25.0 ms.
        rowBlock = max(8, min(512, (1 << 19) / max(hidden, 1)))
        blocks = max(1, (rows + rowBlock - 1) / rowBlock)
        schedule = SlotSchedule(count: blocks, slots: Self.maxSlots)
    }

    /// Runs `body(block, rows, slot, firstInSlot, worker)` for every block (`SlotSchedule`).
    func forEachBlock(_ body: (_ block: Int, _ rows: Range<Int>, _ slot: Int, _ first: Bool, _ worker: Int) -> Void) {
        schedule.run { b, slot, first, worker in
            body(b, (b * rowBlock)..<min(rows, (b + 1) * rowBlock), slot, first, worker)
        }
    }

}

/// Each of `rows` rows of `width` = bias (or left alone when there is no bias: the GEMM then
/// overwrites with beta 0).
private func fillRows(_ p: UnsafeMutablePointer<Float>, rows: Int, width: Int, with bias: UnsafePointer<Float>?) {
    guard let bias else { return }
    for r in 0..<rows { (p + r * width).update(from: bias, count: width) }
}

private func reluInPlace(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
    for i in 0..<n { p[i] = max(p[i], 0) }
}

/// g[i] = h[i] > 0 ? g[i] : 0, branch-free.
private func maskByPositive(_ g: UnsafeMutablePointer<Float>, _ h: UnsafePointer<Float>, _ n: Int) {
    var i = 0
    let zero = SIMD8<Float>(repeating: 0)
    while i + 8 <= n {
        let keep = VectorMath.load(h + i) .> zero
        VectorMath.store(zero.replacing(with: VectorMath.load(g + i), where: keep), g + i)
        i += 8
    }
    while i < n {
        if !(h[i] > 0) { g[i] = 0 }
        i += 1
    }
}

/// acc[j] += sum over rows of p[r, j].
private func addColumnSums(_ p: UnsafePointer<Float>, rows: Int, width: Int, into acc: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let row = p + r * width
        for j in 0..<width { acc[j] += row[j] }
    }
}
