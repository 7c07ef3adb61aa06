import CVectorMath
import Foundation

/// Products with B untransposed for one thread's row block, through CVectorMath's AVX-512 panel
/// kernel where the CPU has it, else OpenBLAS.
///
/// The row blocks of `mlpReLU` multiply by matrices with a side of 64 (CLIPSeg's decoder MLP:
/// 64 -> 2048 -> 64), where OpenBLAS's kernels run at 63-69 % of one core's FMA peak
/// (`vlseg bench gemm --shapes decoder --threads 1`). The panel kernel keeps a 6 x 64 tile of C in
/// registers and reads transposed A by strides without packing. VLSEG_PANEL_GEMM=off keeps OpenBLAS
/// (to compare the two with the same command).
public enum PanelGEMM {
    public static let enabled: Bool =
        vlseg_panel_gemm_available() != 0 && ProcessInfo.processInfo.environment["VLSEG_PANEL_GEMM"] != "off"

    /// C = op(A) B + beta C (beta 0 or 1), A [m, k] or, transposed, [k, m] with row stride lda;
    /// B [k, n] with row stride ldb. Same results for any split of the rows of C.
    public static func multiply(transposeA: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                                b: UnsafePointer<Float>, ldb: Int, beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        precondition(beta == 0 || beta == 1, "PanelGEMM: beta must be 0 or 1")
        guard enabled else {
            BLAS.sgemm(transposeA: transposeA, transposeB: false, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                       beta: beta, c: c, ldc: ldc)
            return
        }
        if m == 0 || n == 0 { return }
        BLAS.addFlops(2 * Double(m) * Double(n) * Double(k))
        vlseg_panel_gemm(m, n, k, a, transposeA ? 1 : lda, transposeA ? lda : 1, b, ldb, beta, c, ldc)
    }

    /// w [rows, cols] as a new [cols, rows] buffer (not recorded): the B operand of `multiply` for
    /// products with a weight in PyTorch's [out, in] layout.
    public static func transposed(_ w: Tensor) -> Tensor { Kernels.permute(w, [1, 0]) }
}
