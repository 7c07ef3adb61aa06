import CVectorMath
import Foundation
import Synchronization

/// Which implementation `multiHeadAttention` runs.
///
/// `fused` (CVectorMath's tiled kernel: scores for a few query rows at a time, softmax and the
/// value product while they are in cache, backward recomputing them the same way) where the CPU
/// has it and the head size is a multiple of 8; `blas` (an sgemm per head for scores and values
/// with a softmax pass between) otherwise. Small heads are where the two differ most: sgemm with
/// K = 16 re-reads and zeroes its output around every product.
public enum MultiHeadAttentionKernel: String, Sendable, CustomStringConvertible {
    case fused, blas

    /// The kernel preferred on this machine: `fused` when available, unless VLSEG_ATTENTION=blas
    /// asks for the sgemm path (to compare the two with the same command).
    public static let machineDefault: MultiHeadAttentionKernel = {
        if ProcessInfo.processInfo.environment["VLSEG_ATTENTION"] == "blas" { return .blas }
        return vlseg_attention_fused_available() != 0 ? .fused : .blas
    }()

    /// 1 = fused, 0 = blas; an atomic because ops read it from any thread.
    private static let selected = Atomic<UInt8>(machineDefault == .fused ? 1 : 0)

    /// What runs from now on; tests switch it to compare both paths in one process.
    public static var current: MultiHeadAttentionKernel {
        get { selected.load(ordering: .relaxed) == 1 ? .fused : .blas }
        set { selected.store(newValue == .fused ? 1 : 0, ordering: .relaxed) }
    }

    /// Largest head size the fused kernel takes. Above it sgemm's K is long enough for OpenBLAS to
    /// run near its peak and the per-head GEMMs win (`vlseg bench attention`, batch 4, 2 threads:
    /// 16-wide heads over 485 tokens fused 2.4 + 4.1 ms forward + backward vs 2.8 + 5.4 ms; 32-wide
    /// 7.8 + 16.1 vs 9.9 + 17.5 ms; 64-wide (ViT-B/16) 20.1 + 52.6 vs 20.2 + 47.9 ms).
    public static let fusedMaximumHeadSize = 32

    /// The kernel used for heads of `headSize`.
    public static func choice(headSize: Int) -> MultiHeadAttentionKernel {
        let fits = headSize % 8 == 0 && headSize <= fusedMaximumHeadSize
        return current == .fused && fits && vlseg_attention_fused_available() != 0 ? .fused : .blas
    }

    public var description: String { self == .fused ? "fused attention kernel" : "sgemm per head" }
}

/// The fused path of `multiHeadAttention` (same arguments and results).
func fusedMultiHeadAttention(
    query q: Tensor, key k: Tensor, value v: Tensor, heads: Int,
    causal: Bool, keyMask: Tensor?, scale alpha: Float
) -> Tensor {
    let b = q.shape[0], tq = q.shape[1], e = q.shape[2], tk = k.shape[1], dh = e / heads
    let out = Tensor(uninitialized: q.shape)
    let recording = Tensor.willRecord(q, k, v)
    let lse = recording ? Tensor(uninitialized: [b, heads, tq]) : nil
    let workFloats = Int(vlseg_attention_work_floats(tk, dh))

    /// The kernel's view of (batch item, head) `pair`, from the first elements of q, k, v and the mask.
    func head(
        _ pair: Int, _ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
        _ mask: UnsafePointer<Float>?
    ) -> vlseg_attention_head {
        let bi = pair / heads, off = (pair % heads) * dh
        return vlseg_attention_head(
            q: q + bi * tq * e + off, k: k + bi * tk * e + off, v: v + bi * tk * e + off,
            ldq: e, ldk: e, ldv: e, tq: tq, tk: tk, dh: dh, scale: alpha, causal: causal ? 1 : 0,
            key_mask: mask.map { $0 + bi * tk })
    }
    /// Offset of `pair`'s first query row in an output laid out like q.
    func queryOffset(_ pair: Int) -> Int { (pair / heads) * tq * e + (pair % heads) * dh }
    func keyOffset(_ pair: Int) -> Int { (pair / heads) * tk * e + (pair % heads) * dh }

    let product = 2 * Double(tq) * Double(tk) * Double(dh) * Double(b * heads)
    BLAS.addFlops(2 * product)  // scores and values
    withTensorPointers(writing: out, reading: q, k, v) { po, pq, pk, pv in
        keyMask.withUnsafePointerIfPresent { mask in
            lse.withUnsafeMutablePointerIfPresent { plse in
                eachHead(b * heads, workFloats: workFloats) { pair, work in
                    var h = head(pair, pq, pk, pv, mask)
                    vlseg_attention_forward(&h, po + queryOffset(pair), e, plse.map { $0 + pair * tq }, work)
                }
            }
        }
    }
    guard recording, let lse else { return Tensor.unrecorded(out, name: "attention") }
    let qs = q.detached(), ks = k.detached(), vs = v.detached(), os = out.detached()
    let savedMask = keyMask?.detached()
    return Tensor.record(out, inputs: [q, k, v], name: "attention") { g, needs in
        // Every head writes its whole slice of each gradient it is asked for: no zeroing needed.
        let gq = needs[0] ? Tensor(uninitialized: qs.shape) : nil
        let gk = needs[1] ? Tensor(uninitialized: ks.shape) : nil
        let gv = needs[2] ? Tensor(uninitialized: vs.shape) : nil
        // Recomputed scores, then dV, dP (for dQ or dK), dQ, dK as asked.
        let products = 1 + (needs[2] ? 1 : 0) + (needs[0] || needs[1] ? 1 : 0) + (needs[0] ? 1 : 0) + (needs[1] ? 1 : 0)
        BLAS.addFlops(Double(products) * product)
        withTensorPointers(reading: qs, ks, vs, os) { pq, pk, pv, po in
            withTensorPointers(reading: g, lse) { pg, plse in
                savedMask.withUnsafePointerIfPresent { mask in
                    gq.withUnsafeMutablePointerIfPresent { pgq in
                        gk.withUnsafeMutablePointerIfPresent { pgk in
                            gv.withUnsafeMutablePointerIfPresent { pgv in
                                eachHead(b * heads, workFloats: workFloats) { pair, work in
                                    var h = head(pair, pq, pk, pv, mask)
                                    vlseg_attention_backward(
                                        &h, po + queryOffset(pair), e, pg + queryOffset(pair), e,
                                        plse + pair * tq,
                                        pgq.map { $0 + queryOffset(pair) }, e,
                                        pgk.map { $0 + keyOffset(pair) }, e,
                                        pgv.map { $0 + keyOffset(pair) }, e, work)
                                }
                            }
                        }
                    }
                }
            }
        }
        return [gq, gk, gv]
    }
}

/// Runs `body` for every (batch item, head) pair, whole heads per thread (`HeadParallel.run`), each
/// thread with its own scratch of `workFloats`.
private func eachHead(_ count: Int, workFloats: Int, _ body: (_ pair: Int, _ work: UnsafeMutablePointer<Float>) -> Void)
{
    let workers = max(1, min(ComputeThreads.count, count))
    let scratch = Tensor(uninitialized: [workers, max(workFloats, 1)])
    scratch.withUnsafeMutablePointer { base in
        HeadParallel.run(count, workers: workers) { pair, worker, _ in body(pair, base + worker * workFloats) }
    }
}
