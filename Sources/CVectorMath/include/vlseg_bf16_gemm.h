#ifndef VLSEG_BF16_GEMM_H
#define VLSEG_BF16_GEMM_H

// Matrix products with bfloat16 operands and float32 accumulation (AVX512_BF16's VDPBF16PS), for
// the trainer's opt-in bf16 precision: each instruction does twice the multiply-adds of a float32
// FMA, so products run up to twice as fast, at bfloat16's 8-bit significand on the inputs.
//
// B is packed once per product into panels of 64 columns; each panel holds, for every pair of
// rows (2p, 2p + 1) of B, 64 32-bit words (B(2p, j) in the low half, B(2p + 1, j) in the high
// half), k padded with zeros to even and n to a multiple of 64. A is read as float32 by any
// strides and converted per block. Inputs are rounded to nearest even; bfloat16 denormals are
// flushed to zero, as the hardware conversion does.
//
// Every element of C is summed over k in ascending pairs, in chunks of 256 added to C, so results
// do not depend on how a caller splits rows or panels.

#include <stddef.h>
#include <stdint.h>

/// Words of the packed form of a k x n matrix B.
size_t vlseg_bf16_packed_words(ptrdiff_t k, ptrdiff_t n);

/// Packs panels [panel_begin, panel_end) of B(p, j) = b[p * rsb + j * csb] (k x n).
void vlseg_bf16_pack_b(ptrdiff_t k, ptrdiff_t n, const float *b, ptrdiff_t rsb, ptrdiff_t csb,
                       uint32_t *packed, ptrdiff_t panel_begin, ptrdiff_t panel_end);

/// C = A B + beta C (beta 0: C is never read; beta 1), A(i, p) = a[i * rsa + p * csa] (m x k),
/// B packed by vlseg_bf16_pack_b for n columns (a caller computing a range of panels passes the
/// first panel's words and its columns of C). Call only when vlseg_bf16_gemm_available() is 1.
void vlseg_bf16_gemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t rsa, ptrdiff_t csa,
                     const uint32_t *packed_b, float beta, float *c, ptrdiff_t ldc);

/// The float32 value nearest x in bfloat16, as the kernels round their inputs (for tests).
float vlseg_bf16_round(float x);

/// 1 when the CPU has AVX512_BF16 (x86-64 only).
int vlseg_bf16_gemm_available(void);

#endif
