#include "vlseg_attention.h"
#include "vlseg_vector_math.h"
#include "vector_math_internal.h"

#include <math.h>
#include <string.h>

// Portable 8-lane vectors (clang's ext_vector_type); on x86-64 every kernel is compiled for
// AVX2+FMA and called only when the CPU has them. a * b + c contracts to one FMA.
#pragma clang fp contract(fast)
typedef float v8 __attribute__((ext_vector_type(8)));

#if defined(__x86_64__)
#define KERNEL __attribute__((target("avx2,fma")))
#else
#define KERNEL
#endif

// Query rows per tile: 4 rows x 16 columns of scores (8 vector accumulators) per micro-kernel step.
#define TILE 4
// Key columns per score block.
#define KB 16

KERNEL static inline v8 load8(const float *p) { v8 x; memcpy(&x, p, sizeof x); return x; }
KERNEL static inline void store8(float *p, v8 x) { memcpy(p, &x, sizeof x); }

static ptrdiff_t round_up(ptrdiff_t x, ptrdiff_t m) { return (x + m - 1) / m * m; }

// Forward: K^T blocks, V rows, a score tile, Q and output row tiles.
static size_t forward_floats(ptrdiff_t tk, ptrdiff_t dh, ptrdiff_t tkp) {
    return (size_t)(dh * tkp + tk * dh + TILE * tkp + 2 * TILE * dh);
}

// Backward: K^T and V^T blocks, K rows, P and dS tiles, Q, dO and dQ row tiles, dK and dV sums.
static size_t backward_floats(ptrdiff_t tk, ptrdiff_t dh, ptrdiff_t tkp) {
    return (size_t)(2 * dh * tkp + tk * dh + 2 * TILE * tkp + 3 * TILE * dh + 2 * tk * dh);
}

size_t vlseg_attention_work_floats(ptrdiff_t tk, ptrdiff_t dh) {
    ptrdiff_t tkp = round_up(tk, KB);
    size_t f = forward_floats(tk, dh, tkp), b = backward_floats(tk, dh, tkp);
    return f > b ? f : b;
}

// dst[b][c][0..KB) = src[b*KB + 0..KB][c]: the keys' transpose in column blocks of KB, zero-padded,
// so the score micro-kernel reads it sequentially.
static void pack_transposed_blocks(float *dst, const float *src, ptrdiff_t ld, ptrdiff_t t, ptrdiff_t dh, ptrdiff_t tp) {
    for (ptrdiff_t j0 = 0; j0 < tp; j0 += KB) {
        float *block = dst + j0 * dh;
        for (ptrdiff_t c = 0; c < dh; c++) {
            for (ptrdiff_t jj = 0; jj < KB; jj++) {
                ptrdiff_t j = j0 + jj;
                block[c * KB + jj] = j < t ? src[j * ld + c] : 0.0f;
            }
        }
    }
}

static void pack_rows(float *dst, const float *src, ptrdiff_t ld, ptrdiff_t t, ptrdiff_t dh) {
    for (ptrdiff_t j = 0; j < t; j++) memcpy(dst + j * dh, src + j * ld, (size_t)dh * sizeof(float));
}

// TILE rows of x (row stride ld) times `scale` into a packed tile; rows past `rows` are zero.
static void pack_tile(float *dst, const float *x, ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t dh, float scale) {
    for (ptrdiff_t r = 0; r < TILE; r++)
        for (ptrdiff_t c = 0; c < dh; c++) dst[r * dh + c] = r < rows ? scale * x[r * ld + c] : 0.0f;
}

// s[r][j] = sum_c a[r][c] * bt[c][j] for the TILE rows of a (packed, dh wide) and every column of
// the blocked transpose bt (tp columns): a row tile of Q K^T (or dO V^T).
KERNEL static void tile_times_blocks(const float *a, const float *bt, ptrdiff_t dh, ptrdiff_t tp, float *s) {
    for (ptrdiff_t j0 = 0; j0 < tp; j0 += KB) {
        const float *block = bt + j0 * dh;
        v8 s00 = 0, s01 = 0, s10 = 0, s11 = 0, s20 = 0, s21 = 0, s30 = 0, s31 = 0;
        for (ptrdiff_t c = 0; c < dh; c++) {
            v8 b0 = load8(block + c * KB), b1 = load8(block + c * KB + 8);
            float a0 = a[c], a1 = a[dh + c], a2 = a[2 * dh + c], a3 = a[3 * dh + c];
            s00 += a0 * b0; s01 += a0 * b1;
            s10 += a1 * b0; s11 += a1 * b1;
            s20 += a2 * b0; s21 += a2 * b1;
            s30 += a3 * b0; s31 += a3 * b1;
        }
        store8(s + j0, s00); store8(s + j0 + 8, s01);
        store8(s + tp + j0, s10); store8(s + tp + j0 + 8, s11);
        store8(s + 2 * tp + j0, s20); store8(s + 2 * tp + j0 + 8, s21);
        store8(s + 3 * tp + j0, s30); store8(s + 3 * tp + j0 + 8, s31);
    }
}

// o[r][c] = sum_{j < t} p[r][j] * x[j][c]: a row tile of P V (or dS K) with x packed dh wide.
KERNEL static void tile_times_rows(const float *p, ptrdiff_t tp, const float *x, ptrdiff_t t, ptrdiff_t dh, float *o) {
    const float *p0 = p, *p1 = p + tp, *p2 = p + 2 * tp, *p3 = p + 3 * tp;
    ptrdiff_t c = 0;
    for (; c + 16 <= dh; c += 16) {
        v8 o00 = 0, o01 = 0, o10 = 0, o11 = 0, o20 = 0, o21 = 0, o30 = 0, o31 = 0;
        for (ptrdiff_t j = 0; j < t; j++) {
            v8 x0 = load8(x + j * dh + c), x1 = load8(x + j * dh + c + 8);
            o00 += p0[j] * x0; o01 += p0[j] * x1;
            o10 += p1[j] * x0; o11 += p1[j] * x1;
            o20 += p2[j] * x0; o21 += p2[j] * x1;
            o30 += p3[j] * x0; o31 += p3[j] * x1;
        }
        store8(o + c, o00); store8(o + c + 8, o01);
        store8(o + dh + c, o10); store8(o + dh + c + 8, o11);
        store8(o + 2 * dh + c, o20); store8(o + 2 * dh + c + 8, o21);
        store8(o + 3 * dh + c, o30); store8(o + 3 * dh + c + 8, o31);
    }
    for (; c < dh; c += 8) {
        v8 o0 = 0, o1 = 0, o2 = 0, o3 = 0;
        for (ptrdiff_t j = 0; j < t; j++) {
            v8 x0 = load8(x + j * dh + c);
            o0 += p0[j] * x0; o1 += p1[j] * x0; o2 += p2[j] * x0; o3 += p3[j] * x0;
        }
        store8(o + c, o0); store8(o + dh + c, o1); store8(o + 2 * dh + c, o2); store8(o + 3 * dh + c, o3);
    }
}

// acc[j][c] += sum_r p[r][j] * x[r][c] for j < t: a row tile's contribution to P^T dO (or dS^T Q).
KERNEL static void accumulate_tile_transposed(float *acc, const float *p, ptrdiff_t tp, const float *x, ptrdiff_t t, ptrdiff_t dh) {
    const float *p0 = p, *p1 = p + tp, *p2 = p + 2 * tp, *p3 = p + 3 * tp;
    ptrdiff_t c = 0;
    for (; c + 16 <= dh; c += 16) {
        v8 x00 = load8(x + c), x01 = load8(x + c + 8);
        v8 x10 = load8(x + dh + c), x11 = load8(x + dh + c + 8);
        v8 x20 = load8(x + 2 * dh + c), x21 = load8(x + 2 * dh + c + 8);
        v8 x30 = load8(x + 3 * dh + c), x31 = load8(x + 3 * dh + c + 8);
        for (ptrdiff_t j = 0; j < t; j++) {
            float *row = acc + j * dh + c;
            v8 a0 = load8(row), a1 = load8(row + 8);
            a0 += p0[j] * x00; a1 += p0[j] * x01;
            a0 += p1[j] * x10; a1 += p1[j] * x11;
            a0 += p2[j] * x20; a1 += p2[j] * x21;
            a0 += p3[j] * x30; a1 += p3[j] * x31;
            store8(row, a0); store8(row + 8, a1);
        }
    }
    for (; c < dh; c += 8) {
        v8 x0 = load8(x + c), x1 = load8(x + dh + c), x2 = load8(x + 2 * dh + c), x3 = load8(x + 3 * dh + c);
        for (ptrdiff_t j = 0; j < t; j++) {
            float *row = acc + j * dh + c;
            store8(row, load8(row) + p0[j] * x0 + p1[j] * x1 + p2[j] * x2 + p3[j] * x3);
        }
    }
}

KERNEL static float exp_shifted_row(float *row, ptrdiff_t n, float shift) {
#if defined(__x86_64__)
    return exp_shifted_wide(row, row, n, shift);
#else
    float sum = 0;
    for (ptrdiff_t j = 0; j < n; j++) { row[j] = exp_scalar(row[j] - shift); sum += row[j]; }
    return sum;
#endif
}

KERNEL static float row_max(const float *row, ptrdiff_t n) {
    v8 m8 = -INFINITY;
    ptrdiff_t j = 0;
    for (; j + 8 <= n; j += 8) m8 = __builtin_elementwise_max(m8, load8(row + j));
    float m = -INFINITY;
    for (int l = 0; l < 8; l++) m = m8[l] > m ? m8[l] : m;
    for (; j < n; j++) m = row[j] > m ? row[j] : m;
    return m;
}

// Hides the keys query i may not see (-inf) in its score row.
static void mask_row(float *row, const vlseg_attention_head *h, ptrdiff_t i) {
    if (h->causal)
        for (ptrdiff_t j = i + 1; j < h->tk; j++) row[j] = -INFINITY;
    if (h->key_mask)
        for (ptrdiff_t j = 0; j < h->tk; j++)
            if (h->key_mask[j] == 0) row[j] = -INFINITY;
}

KERNEL void vlseg_attention_forward(const vlseg_attention_head *h, float *out, ptrdiff_t ldo, float *lse, float *work) {
    const ptrdiff_t tq = h->tq, tk = h->tk, dh = h->dh, tkp = round_up(tk, KB);
    float *kt = work, *vp = kt + dh * tkp, *s = vp + tk * dh, *qp = s + TILE * tkp, *op = qp + TILE * dh;
    pack_transposed_blocks(kt, h->k, h->ldk, tk, dh, tkp);
    pack_rows(vp, h->v, h->ldv, tk, dh);
    for (ptrdiff_t i0 = 0; i0 < tq; i0 += TILE) {
        ptrdiff_t rows = tq - i0 < TILE ? tq - i0 : TILE;
        pack_tile(qp, h->q + i0 * h->ldq, h->ldq, rows, dh, h->scale);
        tile_times_blocks(qp, kt, dh, tkp, s);
        for (ptrdiff_t r = 0; r < TILE; r++) {
            float *row = s + r * tkp;
            if (r >= rows) { memset(row, 0, (size_t)tk * sizeof(float)); continue; }
            mask_row(row, h, i0 + r);
            float m = row_max(row, tk);
            if (m == -INFINITY) {
                memset(row, 0, (size_t)tk * sizeof(float));
                if (lse) lse[i0 + r] = -INFINITY;
                continue;
            }
            float sum = exp_shifted_row(row, tk, m);
            // Normalise the probabilities before the value product, as the reference does: the
            // same values rounded in the same order (normalising the output instead moves
            // end-to-end gradients of a small model by ~1e-4 relative).
            const float inv = 1.0f / sum;
            for (ptrdiff_t j = 0; j < tk; j++) row[j] *= inv;
            if (lse) lse[i0 + r] = m + logf(sum);
        }
        tile_times_rows(s, tkp, vp, tk, dh, op);
        for (ptrdiff_t r = 0; r < rows; r++)
            memcpy(out + (i0 + r) * ldo, op + r * dh, (size_t)dh * sizeof(float));
    }
}

KERNEL void vlseg_attention_backward(const vlseg_attention_head *h, const float *out, ptrdiff_t ldo,
                                     const float *gout, ptrdiff_t ldg, const float *lse,
                                     float *gq, ptrdiff_t ldgq, float *gk, ptrdiff_t ldgk, float *gv, ptrdiff_t ldgv,
                                     float *work) {
    const ptrdiff_t tq = h->tq, tk = h->tk, dh = h->dh, tkp = round_up(tk, KB);
    float *kt = work, *vt = kt + dh * tkp, *kp = vt + dh * tkp;
    float *p = kp + tk * dh, *dp = p + TILE * tkp;
    float *qp = dp + TILE * tkp, *gp = qp + TILE * dh, *dq = gp + TILE * dh;
    float *dk = dq + TILE * dh, *dv = dk + tk * dh;
    const int needS = gq != NULL || gk != NULL;
    pack_transposed_blocks(kt, h->k, h->ldk, tk, dh, tkp);
    if (needS) {
        pack_transposed_blocks(vt, h->v, h->ldv, tk, dh, tkp);
        pack_rows(kp, h->k, h->ldk, tk, dh);
    }
    memset(dk, 0, (size_t)(tk * dh) * sizeof(float));
    memset(dv, 0, (size_t)(tk * dh) * sizeof(float));
    for (ptrdiff_t i0 = 0; i0 < tq; i0 += TILE) {
        ptrdiff_t rows = tq - i0 < TILE ? tq - i0 : TILE;
        pack_tile(qp, h->q + i0 * h->ldq, h->ldq, rows, dh, h->scale);
        pack_tile(gp, gout + i0 * ldg, ldg, rows, dh, 1.0f);
        // P = exp(S - lse), hidden keys and rows past the end exactly 0.
        tile_times_blocks(qp, kt, dh, tkp, p);
        for (ptrdiff_t r = 0; r < TILE; r++) {
            float *row = p + r * tkp;
            if (r >= rows || lse[i0 + r] == -INFINITY) { memset(row, 0, (size_t)tk * sizeof(float)); continue; }
            mask_row(row, h, i0 + r);
            exp_shifted_row(row, tk, lse[i0 + r]);
        }
        if (gv) accumulate_tile_transposed(dv, p, tkp, gp, tk, dh);  // dV += P^T dO
        if (!needS) continue;
        // dS / scale = P * (dO V^T - rowsum(dO * O)); the scale is in qp already (for dK) and is
        // applied to dQ below.
        tile_times_blocks(gp, vt, dh, tkp, dp);
        for (ptrdiff_t r = 0; r < TILE; r++) {
            float *prow = p + r * tkp, *drow = dp + r * tkp;
            float d = 0;  // rowsum(dO * O); rows past the end have dO = 0 and P = 0
            if (r < rows)
                for (ptrdiff_t c = 0; c < dh; c++) d += gp[r * dh + c] * out[(i0 + r) * ldo + c];
            for (ptrdiff_t j = 0; j < tk; j++) drow[j] = prow[j] * (drow[j] - d);
        }
        if (gq) {
            tile_times_rows(dp, tkp, kp, tk, dh, dq);
            for (ptrdiff_t r = 0; r < rows; r++)
                for (ptrdiff_t c = 0; c < dh; c++) gq[(i0 + r) * ldgq + c] = h->scale * dq[r * dh + c];
        }
        if (gk) accumulate_tile_transposed(dk, dp, tkp, qp, tk, dh);  // dK += dS^T Q
    }
    for (ptrdiff_t j = 0; j < tk; j++) {
        if (gk) memcpy(gk + j * ldgk, dk + j * dh, (size_t)dh * sizeof(float));
        if (gv) memcpy(gv + j * ldgv, dv + j * dh, (size_t)dh * sizeof(float));
    }
}

int vlseg_attention_fused_available(void) {
#if defined(__x86_64__)
    return vlseg_vector_math_wide();
#else
    return 1;
#endif
}
