#ifndef VLSEG_VECTOR_MATH_H
#define VLSEG_VECTOR_MATH_H

// AVX2+FMA array kernels for the engine's transcendental hot loops (softmax, sigmoid, quick GELU).
// The binary targets baseline x86-64, so the wide path is chosen per CPU at run time: call the
// kernels only when vlseg_vector_math_wide() returns 1 (VectorMath keeps portable code otherwise).

#include <stddef.h>

// The module's umbrella directory is scanned when its module is first built; a build made before a
// header was added does not see that header until an existing one changes. Headers added later are
// therefore also included from here.
#include "vlseg_panel_gemm.h"
#include "vlseg_bf16_gemm.h"

/// out[i] = exp(x[i] - shift); returns the sum of the outputs. exp of -inf (or below -87.3) is 0.
float vlseg_exp_shifted(const float *x, float *out, ptrdiff_t n, float shift);
/// out[i] = 1 / (1 + exp(-a x[i])).
void vlseg_sigmoid(const float *x, float *out, ptrdiff_t n, float a);
/// out[i] = x[i] * sigmoid(1.702 x[i]).
void vlseg_quick_gelu(const float *x, float *out, ptrdiff_t n);
/// sum over i of max(x, 0) - x t + log(1 + exp(-|x|)) (binary cross-entropy with logits), each term
/// in float, the sum in double.
double vlseg_bce_with_logits_sum(const float *x, const float *t, ptrdiff_t n);
/// 1 when the wide (AVX2+FMA) path runs on this CPU.
int vlseg_vector_math_wide(void);

#endif
