import CVectorMath
import Foundation
import Synchronization

/// The number format of the inputs of the engine's large matrix products.
///
/// `fp32` (the default) computes every product in float32, as the reference implementation does.
/// `bf16` rounds both inputs of linear layers' products (forward, input gradient and weight
/// gradient), of the blocked MLP's products by its weights (forward and input gradient), of
/// attention's per-head products and of convolutions' im2col products to bfloat16 and
/// accumulates in float32 on CPUs with AVX512_BF16, like mixed-precision training elsewhere: twice
/// the multiply-adds per instruction, so the products that dominate a step run up to twice as fast,
/// at the cost of inputs carrying 8 significant bits. Weights, gradients, optimiser state and every
/// other op stay float32.
public enum MatmulPrecision: String, Sendable, CaseIterable, Codable {
    case fp32, bf16

    /// 0 = fp32, 1 = bf16: read by every product from any thread, set by a command before its work.
    private static let active = Atomic<UInt8>(0)

    /// The process-wide precision (a rank sets it once, before its first step).
    public static var current: MatmulPrecision { active.load(ordering: .relaxed) == 1 ? .bf16 : .fp32 }

    /// Why `bf16` cannot run here, or nil when it can.
    public static var bf16Unavailable: String? {
        if BF16GEMM.available { return nil }
        if vlseg_bf16_gemm_available() != 0 { return "bf16 matrix products are switched off here (VLSEG_BF16=off)" }
        return "bf16 matrix products need a CPU with AVX512_BF16 (this one lacks it)"
    }

    /// Makes `precision` the process-wide setting; `bf16` on a CPU without AVX512_BF16 is refused.
    public static func set(_ precision: MatmulPrecision) throws {
        if precision == .bf16, let reason = bf16Unavailable { throw MatmulPrecisionError.unavailable(reason) }
        active.store(precision == .bf16 ? 1 : 0, ordering: .relaxed)
    }
}

public enum MatmulPrecisionError: Error, CustomStringConvertible {
    case unavailable(String)
    public var description: String {
        switch self {
        case let .unavailable(reason): return reason
        }
    }
}

/// C = A B + beta C with bfloat16 inputs and float32 sums (CVectorMath's bf16 kernel), B packed per
/// product and the work split over the compute threads.
public enum BF16GEMM {
    /// The CPU has AVX512_BF16, and VLSEG_BF16=off does not hide it (to check, on such a CPU, what a
    /// machine without it does).
    public static let available: Bool =
        vlseg_bf16_gemm_available() != 0 && ProcessInfo.processInfo.environment["VLSEG_BF16"] != "off"

    /// Columns per packed panel of B (the kernel's NR) and rows per register tile (MR).
    static let panelColumns = 64, rowTile = 6

    /// True when a product with `columns` columns of C runs in bf16 under the current precision:
    /// narrower ones (a LoRA layer's rank side) stay float32, where most vector lanes would idle.
    public static func suits(columns: Int) -> Bool {
        MatmulPrecision.current == .bf16 && columns >= PanelGEMM.minimumColumns
    }

    /// C [m, n] (row stride ldc) = A B + beta C (beta 0 or 1) with A(i, p) = a[i * rsa + p * csa] and
    /// B(p, j) = b[p * rsb + j * csb]. Results are the same for any thread count. `parallel: false`
    /// runs on the calling thread only (callers that already split work over threads).
    public static func multiply(
        m: Int, n: Int, k: Int, a: UnsafePointer<Float>, rsa: Int, csa: Int,
        b: UnsafePointer<Float>, rsb: Int, csb: Int, beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int, parallel: Bool = true
    ) {
        precondition(available, "BF16GEMM on a CPU without AVX512_BF16")
        precondition(beta == 0 || beta == 1, "BF16GEMM: beta must be 0 or 1")
        if m == 0 || n == 0 { return }
        BLAS.addFlops(2 * Double(m) * Double(n) * Double(k))
        let panels = (n + panelColumns - 1) / panelColumns
        let pairs = (k + 1) / 2
        let threads = parallel ? ComputeThreads.count : 1
        let large = Double(m) * Double(n) * Double(k) >= 1e6 && threads > 1
        let packedB = PackedB(k: k, n: n, b: b, rsb: rsb, csb: csb, parallel: large)
        packedB.withPackedWords { packed in
            guard large else {
                vlseg_bf16_gemm(m, n, k, a, rsa, csa, packed, beta, c, ldc)
                return
            }
            // Split C by row tiles when it is taller than wide, else by panels; each element's sum is
            // computed the same way either way.
            if m >= n {
                let tiles = (m + rowTile - 1) / rowTile
                parallelFor(tiles, grain: max(1, tiles / threads)) { r in
                    let lo = r.lowerBound * rowTile, hi = min(m, r.upperBound * rowTile)
                    vlseg_bf16_gemm(hi - lo, n, k, a + lo * rsa, rsa, csa, packed, beta, c + lo * ldc, ldc)
                }
            } else {
                parallelFor(panels, grain: max(1, panels / threads)) { r in
                    let lo = r.lowerBound * panelColumns, hi = min(n, r.upperBound * panelColumns)
                    vlseg_bf16_gemm(
                        m, hi - lo, k, a, rsa, csa, packed + r.lowerBound * pairs * panelColumns,
                        beta, c + lo, ldc)
                }
            }
        }
    }

    /// C = alpha op(A) op(B) + beta C (beta 0 or 1), row-major with leading dimensions as sgemm takes
    /// them, in the current precision: bf16 when it is active and C is at least a vector wide, else
    /// OpenBLAS sgemm. `parallel` is false when the caller already runs such products on every thread.
    public static func product(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int, parallel: Bool = true
    ) {
        guard suits(columns: n) else {
            BLAS.sgemm(
                transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
                a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            return
        }
        precondition(alpha == 1 || beta == 0, "BF16GEMM.product: alpha scales the whole of C, so beta must be 0")
        multiply(
            m: m, n: n, k: k, a: a, rsa: transposeA ? 1 : lda, csa: transposeA ? lda : 1,
            b: b, rsb: transposeB ? 1 : ldb, csb: transposeB ? ldb : 1, beta: beta, c: c, ldc: ldc, parallel: parallel)
        if alpha != 1 {
            let scaleRows: (Range<Int>) -> Void = { rows in
                for i in rows { VectorMath.scale(c + i * ldc, n, by: alpha) }
            }
            if parallel { parallelFor(m, grain: max(1, 16384 / max(n, 1)), scaleRows) } else { scaleRows(0..<m) }
        }
    }

    /// `x` rounded to the nearest bfloat16, as the kernel rounds its inputs.
    public static func rounded(_ x: Float) -> Float { vlseg_bf16_round(x) }

    /// B packed once for many products that share it: a weight multiplied by every row block of a
    /// blocked op (`mlpReLU`), where packing per block would repeat the same conversion each time.
    /// Its buffer goes back to the pool when the value is released.
    // @unchecked Sendable: packed once in init, then only read by every block's workers.
    public final class PackedB: @unchecked Sendable {
        public let k: Int, n: Int
        private let buffer: PackingBuffers.Buffer

        /// Packs B(p, j) = b[p * rsb + j * csb], p < k, j < n; `parallel` spreads the panels over the
        /// compute threads.
        public init(k: Int, n: Int, b: UnsafePointer<Float>, rsb: Int, csb: Int, parallel: Bool = false) {
            precondition(available, "BF16GEMM on a CPU without AVX512_BF16")
            self.k = k
            self.n = n
            buffer = PackingBuffers.shared.take(words: vlseg_bf16_packed_words(k, n))
            let packed = buffer.words, panels = (n + panelColumns - 1) / panelColumns
            let threads = parallel ? ComputeThreads.count : 1
            parallelFor(panels, grain: max(1, panels / threads)) { r in
                vlseg_bf16_pack_b(k, n, b, rsb, csb, packed, r.lowerBound, r.upperBound)
            }
        }

        /// The packed panels for the duration of `body`: the buffer goes back to the pool (and may be
        /// reused by another packing) as soon as this value is released.
        func withPackedWords<R>(_ body: (UnsafeMutablePointer<UInt32>) -> R) -> R {
            withExtendedLifetime(self) { body(buffer.words) }
        }

        deinit { PackingBuffers.shared.give(back: buffer) }

        /// C [m, n] = A B + beta C (beta 0 or 1), A(i, p) = a[i * rsa + p * csa], on the calling thread.
        /// Each element's sum is the one `multiply` computes, so splitting the rows changes nothing.
        public func multiply(
            m: Int, a: UnsafePointer<Float>, rsa: Int, csa: Int, beta: Float = 0,
            c: UnsafeMutablePointer<Float>, ldc: Int
        ) {
            precondition(beta == 0 || beta == 1, "BF16GEMM: beta must be 0 or 1")
            if m == 0 || n == 0 { return }
            BLAS.addFlops(2 * Double(m) * Double(n) * Double(k))
            vlseg_bf16_gemm(m, n, k, a, rsa, csa, buffer.words, beta, c, ldc)
        }
    }
}

/// Packed-B buffers kept across products: a step packs hundreds of weights, and fresh buffers of a
/// few MB each, freed between activations that outlive them, fragment the heap (peak RSS of a
/// DA-VL step rose by about 130 MB that way). One buffer per concurrent caller, grown when a larger
/// product comes.
final class PackingBuffers: Sendable {
    static let shared = PackingBuffers()

    // @unchecked Sendable: a pool buffer is owned by one packing at a time (taken and returned under
    // the pool's lock).
    struct Buffer: @unchecked Sendable {
        let words: UnsafeMutablePointer<UInt32>
        let capacity: Int
    }

    private let free = Mutex<[Buffer]>([])

    /// A buffer of at least `words` words (64-byte aligned), the caller's until `give(back:)`.
    func take(words: Int) -> Buffer {
        let reusable = free.withLock { list -> Buffer? in
            guard let i = list.indices.max(by: { list[$0].capacity < list[$1].capacity }) else { return nil }
            return list.remove(at: i)
        }
        if let reusable, reusable.capacity >= words { return reusable }
        if let reusable { reusable.words.deallocate() }
        let capacity = max(words, 1)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: capacity * 4, alignment: 64)
        return Buffer(words: raw.bindMemory(to: UInt32.self, capacity: capacity), capacity: capacity)
    }

    func give(back buffer: Buffer) { free.withLock { $0.append(buffer) } }
}
