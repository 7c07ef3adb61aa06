import COpenBLAS
import Synchronization

/// Thin, explicit wrappers over OpenBLAS sgemm for row-major data.
public enum BLAS {
    /// Floating-point operations of the matrix products run (2·m·n·k each: every sgemm, and the
    /// products inside the fused attention kernel), for benchmarks that report achieved GFLOP/s
    /// from the shapes actually run. Counted atomically: several threads issue products at once
    /// (the row-blocked MLP's blocks, attention's heads).
    public static var flopCount: Double { Double(flops.load(ordering: .relaxed)) }

    /// Adds `count` floating-point operations to `flopCount`.
    @inlinable
    public static func addFlops(_ count: Double) { flops.wrappingAdd(UInt64(count), ordering: .relaxed) }

    @usableFromInline static let flops = Atomic<UInt64>(0)

    /// C[m,n] = alpha * op(A) op(B) + beta * C, row-major, with leading dimensions (row strides).
    @inlinable
    public static func sgemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        addFlops(2 * Double(m) * Double(n) * Double(k))
        if k == 0 {
            if beta == 0 {
                for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) }
            } else if beta != 1 {
                for i in 0..<m { for j in 0..<n { c[i * ldc + j] *= beta } }
            }
            return
        }
        cblas_sgemm(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// The kernel core OpenBLAS selected at load time (e.g. "SkylakeX", "Haswell", "Prescott").
    public static var coreName: String {
        guard let p = openblas_get_corename() else { return "unknown" }
        return String(cString: p)
    }

    /// OpenBLAS's build configuration string (version, options).
    public static var configuration: String {
        guard let p = openblas_get_config() else { return "unknown" }
        return String(cString: p)
    }

    /// Sets OpenBLAS's thread count (the engine's own loops keep `ComputeThreads.count`).
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }

    /// Threads OpenBLAS currently uses.
    public static var threads: Int { Int(openblas_get_num_threads()) }
}
