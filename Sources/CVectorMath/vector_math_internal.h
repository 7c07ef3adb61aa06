#ifndef VLSEG_VECTOR_MATH_INTERNAL_H
#define VLSEG_VECTOR_MATH_INTERNAL_H

// The exponential shared by the array kernels (vector_math.c) and fused attention (attention.c).

#include <math.h>
#include <stddef.h>
#include <stdint.h>

// exp(x) = 2^n * e^r with n = round(x / ln 2), r = x - n ln 2 (split in two constants for accuracy),
// e^r by a degree-6 minimax polynomial (Cephes expf): within 2 ulp on [-87.3, 88.4].
#define EXP_HI 88.3762626647949f
#define EXP_LO -87.3365447505531f
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO -2.12194440e-4f
#define P0 1.9875691500e-4f
#define P1 1.3981999507e-3f
#define P2 8.3334519073e-3f
#define P3 4.1665795894e-2f
#define P4 1.6666665459e-1f
#define P5 5.0000001201e-1f

static inline float exp_scalar(float x) {
    if (!(x >= EXP_LO)) return 0.0f;  // also -inf and NaN-free masks
    if (x > EXP_HI) x = EXP_HI;
    float fx = nearbyintf(x * LOG2E);
    float r = x - fx * LN2_HI - fx * LN2_LO;
    float z = r * r;
    float y = ((((P0 * r + P1) * r + P2) * r + P3) * r + P4) * r + P5;
    y = y * z + r + 1.0f;
    union { uint32_t u; float f; } s;
    s.u = (uint32_t)((int32_t)fx + 127) << 23;
    return y * s.f;
}

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
#define WIDE __attribute__((target("avx2,fma")))

WIDE static inline __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(EXP_LO);
    __m256 below = _mm256_cmp_ps(x, lo, _CMP_NGE_UQ);  // x < lo, or NaN/-inf comparisons
    __m256 v = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(EXP_HI));
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(v, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(LN2_HI), v);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(LN2_LO), r);
    __m256 z = _mm256_mul_ps(r, r);
    __m256 y = _mm256_set1_ps(P0);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P1));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P2));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P3));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P4));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P5));
    y = _mm256_fmadd_ps(y, z, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(below, y);
}

WIDE static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

WIDE static inline float exp_shifted_wide(const float *x, float *out, ptrdiff_t n, float shift) {
    __m256 acc = _mm256_setzero_ps(), s = _mm256_set1_ps(shift);
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
        _mm256_storeu_ps(out + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float sum = hsum8(acc);
    for (; i < n; i++) {
        float e = exp_scalar(x[i] - shift);
        out[i] = e;
        sum += e;
    }
    return sum;
}

#endif  // x86-64

#endif
