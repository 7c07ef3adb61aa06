#ifndef VLSEG_REGISTER_TILE_H
#define VLSEG_REGISTER_TILE_H

// What the AVX-512 GEMM kernels (panel_gemm.c: float32, bf16_gemm.c: bfloat16 inputs) share: a tile of
// C of 6 rows by four 16-lane vectors (64 columns), held in 24 registers, and its masked store.
// Include only inside an x86-64 block.

#include <immintrin.h>
#include <stddef.h>

#define TILE_ROWS 6
#define TILE_COLUMNS 64

// The tile's 24 accumulators c<row><vector>, zeroed (named, so a kernel's unrolled rows can use
// them as registers), and, after the k loop, the same values as an array for tile_store.
#define TILE_ZERO_ACCUMULATORS                                                                   \
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00;                          \
    __m512 c10 = c00, c11 = c00, c12 = c00, c13 = c00;                                          \
    __m512 c20 = c00, c21 = c00, c22 = c00, c23 = c00;                                          \
    __m512 c30 = c00, c31 = c00, c32 = c00, c33 = c00;                                          \
    __m512 c40 = c00, c41 = c00, c42 = c00, c43 = c00;                                          \
    __m512 c50 = c00, c51 = c00, c52 = c00, c53 = c00
#define TILE_ACCUMULATOR_ARRAY(name)                                                             \
    __m512 name[TILE_ROWS][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23}, \
                                 {c30, c31, c32, c33}, {c40, c41, c42, c43}, {c50, c51, c52, c53}}

// Lanes [0, lanes) of a 16-lane vector (none for lanes <= 0).
__attribute__((target("avx512f"))) static inline __mmask16 tile_lanes_mask(ptrdiff_t lanes) {
    return lanes >= 16 ? (__mmask16)0xFFFF : lanes > 0 ? (__mmask16)((1u << lanes) - 1) : (__mmask16)0;
}

// The four vector masks of a panel `width` columns wide.
__attribute__((target("avx512f"))) static inline void tile_masks(ptrdiff_t width, __mmask16 mask[4]) {
    for (int v = 0; v < 4; v++) mask[v] = tile_lanes_mask(width - 16 * v);
}

// Rows [0, rows) of the tile to C (row stride ldc), masked to the panel's columns; beta 1 adds to
// C, beta 0 overwrites it without reading (it may hold anything, NaN included).
__attribute__((target("avx512f"))) static inline void tile_store(__m512 acc[TILE_ROWS][4], ptrdiff_t rows,
                                                                 const __mmask16 mask[4], float beta, float *c,
                                                                 ptrdiff_t ldc) {
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

#endif
