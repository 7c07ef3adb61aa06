#include "vlseg_bf16_gemm.h"

#include <string.h>

// Columns per packed panel of B (four 16-lane vectors), rows of C per register tile (24
// accumulators), depth of one sum added to C, and rows of A converted per block (48 KiB of
// bfloat16 pairs, reused from L2 by every panel).
#define NR 64
#define MR 6
#define KC 256
#define MC 96
#define PAIRS_PER_CHUNK (KC / 2)

// Round to nearest even, denormals to signed zero, NaN kept quiet: VCVTNE2PS2BF16's rule.
static inline uint32_t bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0) return (u >> 16) & 0x8000u;
    if ((u & 0x7fffffffu) > 0x7f800000u) return ((u >> 16) | 0x40u) & 0xffffu;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

static inline uint32_t pair_word(float lo, float hi) { return bf16_bits(lo) | (bf16_bits(hi) << 16); }

float vlseg_bf16_round(float x) {
    uint32_t u = bf16_bits(x) << 16;
    float r;
    memcpy(&r, &u, 4);
    return r;
}

size_t vlseg_bf16_packed_words(ptrdiff_t k, ptrdiff_t n) {
    return (size_t)((k + 1) / 2) * (size_t)((n + NR - 1) / NR) * NR;
}

// The portable packing, for any strides (and the reference the vector paths must equal).
static void pack_panel_scalar(ptrdiff_t k, ptrdiff_t width, const float *b, ptrdiff_t rsb, ptrdiff_t csb,
                              uint32_t *dst) {
    const ptrdiff_t pairs = (k + 1) / 2;
    for (ptrdiff_t p = 0; p < pairs; p++)
        for (ptrdiff_t j = 0; j < NR; j++) {
            if (j >= width) { dst[p * NR + j] = 0; continue; }
            const float lo = b[2 * p * rsb + j * csb];
            const float hi = 2 * p + 1 < k ? b[(2 * p + 1) * rsb + j * csb] : 0.0f;
            dst[p * NR + j] = pair_word(lo, hi);
        }
}

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>

#define KBF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

static inline __mmask16 lanes_mask(ptrdiff_t lanes) {
    return lanes >= 16 ? (__mmask16)0xFFFF : lanes > 0 ? (__mmask16)((1u << lanes) - 1) : (__mmask16)0;
}

// Rows of B contiguous (csb == 1): two rows' 16 columns converted at once, then interleaved into
// (row 2p, row 2p + 1) words.
KBF16 static void pack_panel_rows(ptrdiff_t k, ptrdiff_t width, const float *b, ptrdiff_t rsb, uint32_t *dst) {
    const ptrdiff_t pairs = (k + 1) / 2;
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                                23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (ptrdiff_t p = 0; p < pairs; p++) {
        const float *r0 = b + 2 * p * rsb;
        const int second = 2 * p + 1 < k;
        for (int v = 0; v < 4; v++) {
            const __mmask16 m = lanes_mask(width - 16 * v);
            const __m512 lo = _mm512_maskz_loadu_ps(m, r0 + 16 * v);
            const __m512 hi = second ? _mm512_maskz_loadu_ps(m, r0 + rsb + 16 * v) : _mm512_setzero_ps();
            const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
            _mm512_storeu_si512(dst + p * NR + 16 * v, _mm512_permutexvar_epi16(interleave, both));
        }
    }
}

// Columns of B contiguous (rsb == 1, a weight [out, in] used as B = W^T): each column's 32 values
// along k are already pairs; 16 words go to 16 consecutive pair rows of the panel.
KBF16 static void pack_panel_columns(ptrdiff_t k, ptrdiff_t width, const float *b, ptrdiff_t csb, uint32_t *dst) {
    const ptrdiff_t pairs = (k + 1) / 2;
    const __m512i rows = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                            _mm512_set1_epi32(NR));
    for (ptrdiff_t j = 0; j < NR; j++) {
        if (j >= width) {
            for (ptrdiff_t p = 0; p < pairs; p++) dst[p * NR + j] = 0;
            continue;
        }
        const float *col = b + j * csb;
        ptrdiff_t p = 0;
        for (; 2 * (p + 16) <= k; p += 16) {
            const __m512i words = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(col + 2 * p + 16), _mm512_loadu_ps(col + 2 * p));
            _mm512_i32scatter_epi32(dst + p * NR + j, rows, words, 4);
        }
        for (; p < pairs; p++) dst[p * NR + j] = pair_word(col[2 * p], 2 * p + 1 < k ? col[2 * p + 1] : 0.0f);
    }
}

KBF16 void vlseg_bf16_pack_b(ptrdiff_t k, ptrdiff_t n, const float *b, ptrdiff_t rsb, ptrdiff_t csb,
                             uint32_t *packed, ptrdiff_t panel_begin, ptrdiff_t panel_end) {
    const ptrdiff_t pairs = (k + 1) / 2;
    for (ptrdiff_t panel = panel_begin; panel < panel_end; panel++) {
        const ptrdiff_t j0 = panel * NR, width = n - j0 < NR ? n - j0 : NR;
        uint32_t *dst = packed + panel * pairs * NR;
        const float *src = b + j0 * csb;
        if (csb == 1) pack_panel_rows(k, width, src, rsb, dst);
        else if (rsb == 1) pack_panel_columns(k, width, src, csb, dst);
        else pack_panel_scalar(k, width, src, rsb, csb, dst);
    }
}

// Rows [0, rows) of A, pairs [p0, p0 + pairs) into dst (row stride PAIRS_PER_CHUNK words).
KBF16 static void pack_a_block(ptrdiff_t rows, ptrdiff_t k, ptrdiff_t p0, ptrdiff_t pairs, const float *a,
                               ptrdiff_t rsa, ptrdiff_t csa, uint32_t *dst) {
    for (ptrdiff_t i = 0; i < rows; i++) {
        uint32_t *out = dst + i * PAIRS_PER_CHUNK;
        if (csa == 1) {
            const float *row = a + i * rsa;
            for (ptrdiff_t q = 0; q < pairs; q += 16) {
                const ptrdiff_t first = 2 * (p0 + q), left = k - first;
                const __mmask16 m0 = lanes_mask(left), m1 = lanes_mask(left - 16);
                const __m512i words = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, row + first + 16),
                                                                   _mm512_maskz_loadu_ps(m0, row + first));
                _mm512_mask_storeu_epi32(out + q, lanes_mask(pairs - q), words);
            }
        } else {
            const float *row = a + i * rsa;
            for (ptrdiff_t q = 0; q < pairs; q++) {
                const ptrdiff_t p = 2 * (p0 + q);
                out[q] = pair_word(row[p * csa], p + 1 < k ? row[(p + 1) * csa] : 0.0f);
            }
        }
    }
}

// One MR x NR tile: C (+)= A B over `pairs` pairs (rows < MR repeat the last row, not stored).
KBF16 static void tile(ptrdiff_t rows, ptrdiff_t pairs, const uint32_t *a, const uint32_t *b,
                       const __mmask16 mask[4], float beta, float *c, ptrdiff_t ldc) {
    const uint32_t *a0 = a, *a1 = a + (rows > 1 ? 1 : rows - 1) * PAIRS_PER_CHUNK;
    const uint32_t *a2 = a + (rows > 2 ? 2 : rows - 1) * PAIRS_PER_CHUNK, *a3 = a + (rows > 3 ? 3 : rows - 1) * PAIRS_PER_CHUNK;
    const uint32_t *a4 = a + (rows > 4 ? 4 : rows - 1) * PAIRS_PER_CHUNK, *a5 = a + (rows > 5 ? 5 : rows - 1) * PAIRS_PER_CHUNK;
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00;
    __m512 c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m512 c20 = c00, c21 = c00, c22 = c00, c23 = c00;
    __m512 c30 = c00, c31 = c00, c32 = c00, c33 = c00;
    __m512 c40 = c00, c41 = c00, c42 = c00, c43 = c00;
    __m512 c50 = c00, c51 = c00, c52 = c00, c53 = c00;
    for (ptrdiff_t p = 0; p < pairs; p++) {
        const uint32_t *bp = b + p * NR;
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp), b1 = (__m512bh)_mm512_loadu_si512(bp + 16);
        const __m512bh b2 = (__m512bh)_mm512_loadu_si512(bp + 32), b3 = (__m512bh)_mm512_loadu_si512(bp + 48);
#define BF16_ROW(r)                                                                                     \
        {                                                                                               \
            const __m512bh x = (__m512bh)_mm512_set1_epi32((int)a##r[p]);                               \
            c##r##0 = _mm512_dpbf16_ps(c##r##0, x, b0); c##r##1 = _mm512_dpbf16_ps(c##r##1, x, b1);     \
            c##r##2 = _mm512_dpbf16_ps(c##r##2, x, b2); c##r##3 = _mm512_dpbf16_ps(c##r##3, x, b3);     \
        }
        BF16_ROW(0) BF16_ROW(1) BF16_ROW(2) BF16_ROW(3) BF16_ROW(4) BF16_ROW(5)
#undef BF16_ROW
    }
    __m512 acc[MR][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23},
                         {c30, c31, c32, c33}, {c40, c41, c42, c43}, {c50, c51, c52, c53}};
    for (ptrdiff_t r = 0; r < rows; r++) {
        float *cr = c + r * ldc;
        for (int v = 0; v < 4; v++) {
            if (!mask[v]) continue;
            __m512 value = acc[r][v];
            if (beta != 0.0f) value = _mm512_add_ps(_mm512_maskz_loadu_ps(mask[v], cr + 16 * v), value);
            _mm512_mask_storeu_ps(cr + 16 * v, mask[v], value);
        }
    }
}

KBF16 void vlseg_bf16_gemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t rsa, ptrdiff_t csa,
                           const uint32_t *packed_b, float beta, float *c, ptrdiff_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        if (beta == 0.0f)
            for (ptrdiff_t i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
        return;
    }
    const ptrdiff_t pairs = (k + 1) / 2, panels = (n + NR - 1) / NR;
    uint32_t block[MC * PAIRS_PER_CHUNK] __attribute__((aligned(64)));
    for (ptrdiff_t i0 = 0; i0 < m; i0 += MC) {
        const ptrdiff_t rows = m - i0 < MC ? m - i0 : MC;
        for (ptrdiff_t p0 = 0; p0 < pairs; p0 += PAIRS_PER_CHUNK) {
            const ptrdiff_t depth = pairs - p0 < PAIRS_PER_CHUNK ? pairs - p0 : PAIRS_PER_CHUNK;
            pack_a_block(rows, k, p0, depth, a + i0 * rsa, rsa, csa, block);
            const float chunk_beta = p0 == 0 ? beta : 1.0f;
            for (ptrdiff_t panel = 0; panel < panels; panel++) {
                const ptrdiff_t j0 = panel * NR, width = n - j0 < NR ? n - j0 : NR;
                const __mmask16 mask[4] = {lanes_mask(width), lanes_mask(width - 16), lanes_mask(width - 32),
                                           lanes_mask(width - 48)};
                const uint32_t *bp = packed_b + panel * pairs * NR + p0 * NR;
                for (ptrdiff_t t0 = 0; t0 < rows; t0 += MR)
                    tile(rows - t0 < MR ? rows - t0 : MR, depth, block + t0 * PAIRS_PER_CHUNK, bp, mask, chunk_beta,
                         c + (i0 + t0) * ldc + j0, ldc);
            }
        }
    }
}

int vlseg_bf16_gemm_available(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
    }
    return cached;
}

#else
// Other architectures: never available (the Swift side keeps float32); packing stays portable so
// the symbols exist.
void vlseg_bf16_pack_b(ptrdiff_t k, ptrdiff_t n, const float *b, ptrdiff_t rsb, ptrdiff_t csb,
                       uint32_t *packed, ptrdiff_t panel_begin, ptrdiff_t panel_end) {
    const ptrdiff_t pairs = (k + 1) / 2;
    for (ptrdiff_t panel = panel_begin; panel < panel_end; panel++) {
        const ptrdiff_t j0 = panel * NR, width = n - j0 < NR ? n - j0 : NR;
        pack_panel_scalar(k, width, b + j0 * csb, rsb, csb, packed + panel * pairs * NR);
    }
}

void vlseg_bf16_gemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t rsa, ptrdiff_t csa,
                     const uint32_t *packed_b, float beta, float *c, ptrdiff_t ldc) {
    (void)m; (void)n; (void)k; (void)a; (void)rsa; (void)csa; (void)packed_b; (void)beta; (void)c; (void)ldc;
}

int vlseg_bf16_gemm_available(void) { return 0; }
#endif
