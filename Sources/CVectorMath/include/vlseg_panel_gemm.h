#ifndef VLSEG_PANEL_GEMM_H
#define VLSEG_PANEL_GEMM_H

// Single-threaded C = A B (+ C) for products with one short side, as the row blocks of a wide MLP
// run them (CLIPSeg's decoder: 64 -> 2048 -> 64; every product has a side of 64). OpenBLAS's
// kernels reach about two thirds of the FMA peak on these shapes, one thread per block; this
// kernel keeps a 6 x 64 tile of C in 24 AVX-512 registers, streams B by rows and broadcasts A
// straight from memory with any strides, so transposed operands need no packing.
//
// A(i, k) = a[i * rsa + k * csa]; B(k, j) = b[k * ldb + j] (rows of B contiguous);
// C(i, j) = c[i * ldc + j]. beta is 0 (C is overwritten, never read) or 1 (accumulated).
// Call only when vlseg_panel_gemm_available() returns 1. The order of every sum depends only on
// k (ascending, in chunks of 256 added to C), so results do not depend on how the caller splits
// rows or columns.

#include <stddef.h>

void vlseg_panel_gemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                      const float *a, ptrdiff_t rsa, ptrdiff_t csa,
                      const float *b, ptrdiff_t ldb,
                      float beta, float *c, ptrdiff_t ldc);

/// 1 when the CPU has AVX-512F (x86-64 only).
int vlseg_panel_gemm_available(void);

#endif
