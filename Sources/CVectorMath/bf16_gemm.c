#include "vlseg_bf16_gemm.h"

#include <string.h>

// Columns per packed panel of B (four 16-lane vectors, one register tile), depth of one sum added
// to C, and rows of A converted per block (48 KiB of bfloat16 pairs, reused from L2 by every panel).
#define NR 64
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
#include "register_tile.h"

#define KBF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))
#define MR TILE_ROWS
_Static_assert(NR == TILE_COLUMNS, "a packed panel is one register tile wide");

// 16 pair words (lo[j], hi[j]) from two rows of 16 floats (hi NULL: zeros, for an odd k).
KBF16 static inline __m512i pair_words(const float *lo, const float *hi, __mmask16 m) {
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                                23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512 l = _mm512_maskz_loadu_ps(m, lo), h = hi ? _mm512_maskz_loadu_ps(m, hi) : _mm512_setzero_ps();
    return _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(h, l));
}

// Rows of B contiguous (csb == 1): two rows' 16 columns converted at once, then interleaved into
// (row 2p, row 2p + 1) words.
KBF16 static void pack_panel_rows(ptrdiff_t k, ptrdiff_t width, const float *b, ptrdiff_t rsb, uint32_t *dst) {
    const ptrdiff_t pairs = (k + 1) / 2;
    for (ptrdiff_t p = 0; p < pairs; p++) {
        const float *r0 = b + 2 * p * rsb, *r1 = 2 * p + 1 < k ? r0 + rsb : NULL;
        for (int v = 0; v < 4; v++)
            _mm512_storeu_si512(dst + p * NR + 16 * v,
                                pair_words(r0 + 16 * v, r1 ? r1 + 16 * v : NULL, tile_lanes_mask(width - 16 * v)));
    }
}

// Transposes 16 x 16 32-bit words in place: r[j][q] becomes r[q][j].
KBF16 static void transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    // u[4g + e] holds, in 128-bit lane L, element 4L + e of rows 4g .. 4g + 3.
    for (int g = 0; g < 4; g++) {
        u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
    for (int e = 0; e < 4; e++) {
        const __m512i v = _mm512_shuffle_i32x4(u[e], u[4 + e], 0x88), w = _mm512_shuffle_i32x4(u[e], u[4 + e], 0xDD);
        const __m512i x = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0x88), y = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0xDD);
        r[e] = _mm512_shuffle_i32x4(v, x, 0x88);
        r[8 + e] = _mm512_shuffle_i32x4(v, x, 0xDD);
        r[4 + e] = _mm512_shuffle_i32x4(w, y, 0x88);
        r[12 + e] = _mm512_shuffle_i32x4(w, y, 0xDD);
    }
}

// Columns of B contiguous (rsb == 1, a weight [out, in] used as B = W^T): each column's 32 values
// along k are already 16 pairs; 16 columns' pairs are converted, transposed in registers and
// stored as 16 contiguous pair rows of the panel.
KBF16 static void pack_panel_columns(ptrdiff_t k, ptrdiff_t width, const float *b, ptrdiff_t csb, uint32_t *dst) {
    const ptrdiff_t pairs = (k + 1) / 2;
    for (ptrdiff_t jg = 0; jg < NR; jg += 16) {
        ptrdiff_t p = 0;
        if (jg + 16 <= width) {
            for (; 2 * (p + 16) <= k; p += 16) {
                __m512i r[16];
                for (int j = 0; j < 16; j++) {
                    const float *col = b + (jg + j) * csb + 2 * p;
                    r[j] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(col + 16), _mm512_loadu_ps(col));
                }
                transpose16(r);
                for (int q = 0; q < 16; q++) _mm512_storeu_si512(dst + (p + q) * NR + jg, r[q]);
            }
        }
        for (ptrdiff_t j = jg; j < jg + 16; j++) {
            const float *col = b + j * csb;
            for (ptrdiff_t q = p; q < pairs; q++)
                dst[q * NR + j] = j < width ? pair_word(col[2 * q], 2 * q + 1 < k ? col[2 * q + 1] : 0.0f) : 0;
        }
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

// Pairs [from, pairs) of block rows [i0, i1), one element at a time.
static void pack_a_scalar(ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t k, ptrdiff_t p0, ptrdiff_t from, ptrdiff_t pairs,
                          const float *a, ptrdiff_t rsa, ptrdiff_t csa, uint32_t *dst) {
    for (ptrdiff_t i = i0; i < i1; i++)
        for (ptrdiff_t q = from; q < pairs; q++) {
            const ptrdiff_t p = 2 * (p0 + q);
            dst[i * PAIRS_PER_CHUNK + q] = pair_word(a[i * rsa + p * csa], p + 1 < k ? a[i * rsa + (p + 1) * csa] : 0.0f);
        }
}

// Rows [0, rows) of A, pairs [p0, p0 + pairs) into dst (row stride PAIRS_PER_CHUNK words).
KBF16 static void pack_a_block(ptrdiff_t rows, ptrdiff_t k, ptrdiff_t p0, ptrdiff_t pairs, const float *a,
                               ptrdiff_t rsa, ptrdiff_t csa, uint32_t *dst) {
    if (csa == 1) {
        // Rows contiguous along k: 32 values are 16 pairs.
        for (ptrdiff_t i = 0; i < rows; i++) {
            const float *row = a + i * rsa;
            for (ptrdiff_t q = 0; q < pairs; q += 16) {
                const ptrdiff_t first = 2 * (p0 + q), left = k - first;
                const __mmask16 m0 = tile_lanes_mask(left), m1 = tile_lanes_mask(left - 16);
                const __m512i words = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, row + first + 16),
                                                                   _mm512_maskz_loadu_ps(m0, row + first));
                _mm512_mask_storeu_epi32(dst + i * PAIRS_PER_CHUNK + q, tile_lanes_mask(pairs - q), words);
            }
        }
        return;
    }
    ptrdiff_t i = 0;
    if (rsa == 1) {
        // Transposed A (a gradient read as G^T): 16 rows by 16 pairs at a time, converted along the
        // contiguous rows axis, then transposed in registers to the block's row-major layout.
        for (; i + 16 <= rows; i += 16) {
            ptrdiff_t q = 0;
            for (; q + 16 <= pairs && 2 * (p0 + q + 16) <= k; q += 16) {
                __m512i r[16];
                for (int qq = 0; qq < 16; qq++) {
                    const float *lo = a + i + 2 * (p0 + q + qq) * csa;
                    r[qq] = pair_words(lo, lo + csa, 0xFFFF);
                }
                transpose16(r);
                for (int rr = 0; rr < 16; rr++) _mm512_storeu_si512(dst + (i + rr) * PAIRS_PER_CHUNK + q, r[rr]);
            }
            pack_a_scalar(i, i + 16, k, p0, q, pairs, a, rsa, csa, dst);
        }
    }
    pack_a_scalar(i, rows, k, p0, 0, pairs, a, rsa, csa, dst);
}

// One MR x NR tile: C (+)= A B over `pairs` pairs (rows < MR repeat the last row, not stored).
KBF16 static void tile(ptrdiff_t rows, ptrdiff_t pairs, const uint32_t *a, const uint32_t *b,
                       const __mmask16 mask[4], float beta, float *c, ptrdiff_t ldc) {
    const uint32_t *a0 = a, *a1 = a + (rows > 1 ? 1 : rows - 1) * PAIRS_PER_CHUNK;
    const uint32_t *a2 = a + (rows > 2 ? 2 : rows - 1) * PAIRS_PER_CHUNK, *a3 = a + (rows > 3 ? 3 : rows - 1) * PAIRS_PER_CHUNK;
    const uint32_t *a4 = a + (rows > 4 ? 4 : rows - 1) * PAIRS_PER_CHUNK, *a5 = a + (rows > 5 ? 5 : rows - 1) * PAIRS_PER_CHUNK;
    TILE_ZERO_ACCUMULATORS;
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
    TILE_ACCUMULATOR_ARRAY(acc);
    tile_store(acc, rows, mask, beta, c, ldc);
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
                __mmask16 mask[4];
                tile_masks(width, mask);
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
