#ifndef VLSEG_ATTENTION_H
#define VLSEG_ATTENTION_H

// Fused attention for one (batch item, head): softmax(scale * Q K^T + masks) V and its backward,
// without materialising more than a few rows of the score matrix. Written for the small heads
// where per-head sgemm calls run far below the GEMM peak (CLIPSeg's decoder: 16-wide heads over
// 485 tokens): the scores stay in a row tile, the packed K^T and V stay in cache, and nothing is
// zeroed or re-read by a separate pass. Head size must be a multiple of 8.
//
// Matrices are row-major with row strides (heads interleaved along a row, as projections write
// them). Call only when vlseg_attention_fused_available() returns 1.

#include <stddef.h>

typedef struct {
    const float *q, *k, *v;    // row i of this head at q + i * ldq (and so on)
    ptrdiff_t ldq, ldk, ldv;
    ptrdiff_t tq, tk, dh;      // queries, keys, head size (a multiple of 8)
    float scale;               // applied to Q K^T
    int causal;                // hide key j > query i
    const float *key_mask;     // NULL, or tk entries: 0 hides that key
} vlseg_attention_head;

/// Floats of scratch one call needs (forward or backward), for one thread.
size_t vlseg_attention_work_floats(ptrdiff_t tk, ptrdiff_t dh);

/// out rows (stride ldo) = attention; lse[i] = log-sum-exp of query i's scaled, masked scores
/// (-inf when every key is hidden: that row's output is 0). lse may be NULL.
void vlseg_attention_forward(const vlseg_attention_head *head, float *out, ptrdiff_t ldo, float *lse, float *work);

/// Gradients from dOut (stride ldg), given the forward's out and lse. gq / gk / gv (strides ldgq,
/// ldgk, ldgv) are written in full, or skipped when NULL.
void vlseg_attention_backward(const vlseg_attention_head *head, const float *out, ptrdiff_t ldo,
                              const float *gout, ptrdiff_t ldg, const float *lse,
                              float *gq, ptrdiff_t ldgq, float *gk, ptrdiff_t ldgk, float *gv, ptrdiff_t ldgv,
                              float *work);

/// 1 when the fused kernels may run on this CPU (x86-64: AVX2 and FMA).
int vlseg_attention_fused_available(void);

#endif
