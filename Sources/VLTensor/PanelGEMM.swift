import CVectorMath
import Foundation

/// Products with B untransposed and a narrow side, through CVectorMath's AVX-512 panel kernel where
/// the CPU has it, else OpenBLAS.
///
/// The row blocks of `mlpReLU` (one thread each) and the narrow linear layers multiply by matrices
/// with a side of 64 (CLIPSeg's decoder: 64 -> 2048 -> 64 MLPs, 64-wide projections, 768 -> 64
/// reductions), where OpenBLAS's kernels run at 63-69 % of one core's FMA peak
/// (`vlseg bench gemm --shapes decoder --threads 1`). The panel kernel keeps a 6 x 64 tile of C in
/// registers and reads transposed A by strides without packing. VLSEG_PANEL_GEMM=off keeps OpenBLAS
/// (to compare the two with the same command).
public enum PanelGEMM {
    public static let enabled: Bool =
        vlseg_panel_gemm_available() != 0 && ProcessInfo.processInfo.environment["VLSEG_PANEL_GEMM"] != "off"

    /// Products whose C has at most this many columns go through the panel kernel in `linear`
    /// (`bench linear`, 1940 rows, alternating with VLSEG_PANEL_GEMM=off: 64 -> 64 forward 0.13 ->
    /// 0.10 ms, 768 -> 64 forward 1.09 -> 0.92 ms); on wider ones (64 -> 768 forward, the 64 x 768
    /// weight gradient of 768 -> 64) OpenBLAS's packed kernels were as fast or faster.
    public static let narrowColumns = 64

    /// Fewer columns than one 16-lane vector go to OpenBLAS even in `multiply`: most lanes would
    /// idle, and OpenBLAS computes such products (a LoRA layer's rank-r side) as dot products along
    /// k, which round closer to the float64 result.
    public static let minimumColumns = 16

    /// True when a product with `columns` columns of C should use the panel kernel on this CPU.
    public static func suits(columns: Int) -> Bool { enabled && columns >= minimumColumns && columns <= narrowColumns }

    /// C = op(A) B + beta C (beta 0 or 1), A [m, k] or, transposed, [k, m] with row stride lda;
    /// B [k, n] with row stride ldb. Same results for any split of the rows of C.
    public static func multiply(
        transposeA: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int, beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        precondition(beta == 0 || beta == 1, "PanelGEMM: beta must be 0 or 1")
        guard enabled, n >= minimumColumns else {
            BLAS.sgemm(
                transposeA: transposeA, transposeB: false, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                beta: beta, c: c, ldc: ldc)
            return
        }
        kernel(transposeA: transposeA, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }

    /// The panel kernel itself, whatever the width (splits of one product must all run it).
    private static func kernel(
        transposeA: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        BLAS.addFlops(2 * Double(m) * Double(n) * Double(k))
        vlseg_panel_gemm(m, n, k, a, transposeA ? 1 : lda, transposeA ? lda : 1, b, ldb, beta, c, ldc)
    }

    /// `multiply` split over the compute threads: by row tiles when C is taller than wide, else by
    /// column panels. Every element's sum has the same order whatever the split, so results do not
    /// depend on the thread count.
    public static func parallelMultiply(
        transposeA: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int, beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        let threads = ComputeThreads.count
        // Below about a million multiply-adds a hand-off costs more than it saves.
        guard enabled, threads > 1, n >= minimumColumns, Double(m) * Double(n) * Double(k) >= 1e6 else {
            multiply(
                transposeA: transposeA, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            return
        }
        let rowTile = 6, columnPanel = 64
        if m >= n {
            let tiles = (m + rowTile - 1) / rowTile
            parallelFor(tiles, grain: max(1, tiles / threads)) { r in
                let lo = r.lowerBound * rowTile, hi = min(m, r.upperBound * rowTile)
                let aRows = transposeA ? a + lo : a + lo * lda
                kernel(
                    transposeA: transposeA, m: hi - lo, n: n, k: k, a: aRows, lda: lda, b: b, ldb: ldb,
                    beta: beta, c: c + lo * ldc, ldc: ldc)
            }
        } else {
            let panels = (n + columnPanel - 1) / columnPanel
            parallelFor(panels, grain: max(1, panels / threads)) { r in
                let lo = r.lowerBound * columnPanel, hi = min(n, r.upperBound * columnPanel)
                kernel(
                    transposeA: transposeA, m: m, n: hi - lo, k: k, a: a, lda: lda, b: b + lo, ldb: ldb,
                    beta: beta, c: c + lo, ldc: ldc)
            }
        }
    }

    /// C = op(A) B (+ C) for a caller that does not pick: products with `suits(columns:)` columns
    /// through `parallelMultiply`, the others through OpenBLAS.
    public static func product(
        transposeA: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int, beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if suits(columns: n) {
            parallelMultiply(
                transposeA: transposeA, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        } else {
            BLAS.sgemm(
                transposeA: transposeA, transposeB: false, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                beta: beta, c: c, ldc: ldc)
        }
    }

    /// w [rows, cols] as a new [cols, rows] buffer (not recorded): the B operand of `multiply` for
    /// products with a weight in PyTorch's [out, in] layout.
    public static func transposed(_ w: Tensor) -> Tensor { Kernels.permute(w, [1, 0]) }
}
