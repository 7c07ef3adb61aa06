#include "vlseg_panel_gemm.h"

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include "register_tile.h"

#define K512 __attribute__((target("avx512f")))

// Rows of C per tile, and columns (four 16-lane vectors): 24 accumulators, 4 rows of B, one
// broadcast of A in flight, within the 32 vector registers.
#define MR TILE_ROWS
#define NR TILE_COLUMNS
// Depth of one running sum (see vlseg_panel_gemm).
#define KC 256

// One MR x NR tile of C (rows < MR are computed from a repeated last row and not stored).
K512 static void tile(ptrdiff_t rows, ptrdiff_t k, const float *a, ptrdiff_t rsa, ptrdiff_t csa,
                      const float *b, ptrdiff_t ldb, const __mmask16 mask[4],
                      float beta, float *c, ptrdiff_t ldc) {
    const float *ar[MR];
    for (int r = 0; r < MR; r++) ar[r] = a + (r < rows ? r : rows - 1) * rsa;
    const __mmask16 m0 = mask[0], m1 = mask[1], m2 = mask[2], m3 = mask[3];
    TILE_ZERO_ACCUMULATORS;
    const float *a0 = ar[0], *a1 = ar[1], *a2 = ar[2], *a3 = ar[3], *a4 = ar[4], *a5 = ar[5];
    for (ptrdiff_t p = 0; p < k; p++) {
        const float *bp = b + p * ldb;
        const __m512 b0 = _mm512_maskz_loadu_ps(m0, bp), b1 = _mm512_maskz_loadu_ps(m1, bp + 16);
        const __m512 b2 = _mm512_maskz_loadu_ps(m2, bp + 32), b3 = _mm512_maskz_loadu_ps(m3, bp + 48);
        const ptrdiff_t o = p * csa;
        // Row r of the tile: one broadcast of A(i0 + r, p) times the four vectors of B's row p.
#define PANEL_ROW(r)                                                                                   \
        {                                                                                              \
            const __m512 x = _mm512_set1_ps(a##r[o]);                                                  \
            c##r##0 = _mm512_fmadd_ps(x, b0, c##r##0); c##r##1 = _mm512_fmadd_ps(x, b1, c##r##1);      \
            c##r##2 = _mm512_fmadd_ps(x, b2, c##r##2); c##r##3 = _mm512_fmadd_ps(x, b3, c##r##3);      \
        }
        PANEL_ROW(0) PANEL_ROW(1) PANEL_ROW(2) PANEL_ROW(3) PANEL_ROW(4) PANEL_ROW(5)
#undef PANEL_ROW
    }
    TILE_ACCUMULATOR_ARRAY(acc);
    tile_store(acc, rows, mask, beta, c, ldc);
}

K512 void vlseg_panel_gemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                           const float *a, ptrdiff_t rsa, ptrdiff_t csa,
                           const float *b, ptrdiff_t ldb,
                           float beta, float *c, ptrdiff_t ldc) {
    // Column panels outermost: a panel of B (k rows of NR floats) is reused by every row tile.
    for (ptrdiff_t j0 = 0; j0 < n; j0 += NR) {
        const ptrdiff_t width = n - j0 < NR ? n - j0 : NR;
        __mmask16 mask[4];
        tile_masks(width, mask);
        for (ptrdiff_t i0 = 0; i0 < m; i0 += MR) {
            const ptrdiff_t rows = m - i0 < MR ? m - i0 : MR;
            // Sums over k in chunks of KC, each added to C: long sums round about as OpenBLAS's
            // (which also blocks k), not like one running sum of thousands of terms.
            ptrdiff_t p0 = 0;
            do {
                const ptrdiff_t depth = k - p0 < KC ? k - p0 : KC;
                tile(rows, depth, a + i0 * rsa + p0 * csa, rsa, csa, b + p0 * ldb + j0, ldb, mask,
                     p0 == 0 ? beta : 1.0f, c + i0 * ldc + j0, ldc);
                p0 += depth;
            } while (p0 < k);
        }
    }
}

int vlseg_panel_gemm_available(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512f");
    }
    return cached;
}

#else
// Other architectures: never available, so the Swift side keeps OpenBLAS; a plain body keeps the
// symbol defined.
void vlseg_panel_gemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t rsa, ptrdiff_t csa,
                      const float *b, ptrdiff_t ldb, float beta, float *c, ptrdiff_t ldc) {
    for (ptrdiff_t i = 0; i < m; i++)
        for (ptrdiff_t j = 0; j < n; j++) {
            float s = 0;
            for (ptrdiff_t p = 0; p < k; p++) s += a[i * rsa + p * csa] * b[p * ldb + j];
            c[i * ldc + j] = beta != 0.0f ? c[i * ldc + j] + s : s;
        }
}

int vlseg_panel_gemm_available(void) { return 0; }
#endif
