#include "vlseg_vector_math.h"
#include "vector_math_internal.h"

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))

WIDE static void sigmoid_wide(const float *x, float *out, ptrdiff_t n, float a) {
    const __m256 one = _mm256_set1_ps(1.0f), na = _mm256_set1_ps(-a);
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_mul_ps(na, _mm256_loadu_ps(x + i)));
        _mm256_storeu_ps(out + i, _mm256_div_ps(one, _mm256_add_ps(one, e)));
    }
    for (; i < n; i++) out[i] = 1.0f / (1.0f + exp_scalar(-a * x[i]));
}

WIDE static void quick_gelu_wide(const float *x, float *out, ptrdiff_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), na = _mm256_set1_ps(-1.702f);
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 e = exp8(_mm256_mul_ps(na, v));
        _mm256_storeu_ps(out + i, _mm256_div_ps(v, _mm256_add_ps(one, e)));
    }
    for (; i < n; i++) out[i] = x[i] / (1.0f + exp_scalar(-1.702f * x[i]));
}

// log(1 + e) for e in [0, 1] (Cephes logf's polynomial for log(1 + z), z in [sqrt(1/2) - 1,
// sqrt(2) - 1]): below sqrt(2) - 1 the polynomial takes e itself (no rounding of 1 + e); above, 1 + e
// = 2 (1 + z) with z = (e - 1) / 2, and log 2 is added in two parts.
WIDE static inline __m256 log1p_unit8(__m256 e) {
    const __m256 big = _mm256_cmp_ps(e, _mm256_set1_ps(0.41421356237f), _CMP_GT_OQ);
    __m256 z = _mm256_blendv_ps(e, _mm256_mul_ps(_mm256_sub_ps(e, _mm256_set1_ps(1.0f)), _mm256_set1_ps(0.5f)), big);
    __m256 fe = _mm256_and_ps(big, _mm256_set1_ps(1.0f));
    __m256 zz = _mm256_mul_ps(z, z);
    __m256 y = _mm256_set1_ps(7.0376836292E-2f);
    y = _mm256_fmadd_ps(y, z, _mm256_set1_ps(-1.1514610310E-1f));
    y = _mm256_fmadd_ps(y, z, _mm256_set1_ps(1.1676998740E-1f));
    y = _mm256_fmadd_ps(y, z, _mm256_set1_ps(-1.2420140846E-1f));
    y = _mm256_fmadd_ps(y, z, _mm256_set1_ps(1.4249322787E-1f));
    y = _mm256_fmadd_ps(y, z, _mm256_set1_ps(-1.6668057665E-1f));
    y = _mm256_fmadd_ps(y, z, _mm256_set1_ps(2.0000714765E-1f));
    y = _mm256_fmadd_ps(y, z, _mm256_set1_ps(-2.4999993993E-1f));
    y = _mm256_fmadd_ps(y, z, _mm256_set1_ps(3.3333331174E-1f));
    y = _mm256_mul_ps(_mm256_mul_ps(y, z), zz);
    y = _mm256_fmadd_ps(fe, _mm256_set1_ps(-2.12194440e-4f), y);
    y = _mm256_fnmadd_ps(zz, _mm256_set1_ps(0.5f), y);
    __m256 r = _mm256_add_ps(z, y);
    return _mm256_fmadd_ps(fe, _mm256_set1_ps(0.693359375f), r);
}

// sum of max(x, 0) - x t + log(1 + exp(-|x|)), each term in float, summed in double.
WIDE static double bce_with_logits_sum_wide(const float *x, const float *t, ptrdiff_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps();
    __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i), tv = _mm256_loadu_ps(t + i);
        __m256 e = exp8(_mm256_or_ps(v, sign));  // exp(-|x|)
        __m256 term = _mm256_add_ps(_mm256_sub_ps(_mm256_max_ps(v, zero), _mm256_mul_ps(v, tv)), log1p_unit8(e));
        acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(term)));
        acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(term, 1)));
    }
    __m256d acc = _mm256_add_pd(acc0, acc1);
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(acc), _mm256_extractf128_pd(acc, 1));
    double sum = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (; i < n; i++) {
        float v = x[i];
        sum += (double)((v > 0 ? v : 0) - v * t[i] + log1pf(exp_scalar(-fabsf(v))));
    }
    return sum;
}

int vlseg_vector_math_wide(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
}

float vlseg_exp_shifted(const float *x, float *out, ptrdiff_t n, float shift) { return exp_shifted_wide(x, out, n, shift); }
void vlseg_sigmoid(const float *x, float *out, ptrdiff_t n, float a) { sigmoid_wide(x, out, n, a); }
void vlseg_quick_gelu(const float *x, float *out, ptrdiff_t n) { quick_gelu_wide(x, out, n); }
double vlseg_bce_with_logits_sum(const float *x, const float *t, ptrdiff_t n) { return bce_with_logits_sum_wide(x, t, n); }

#else
// Other architectures: never wide, so the Swift side never calls these; scalar bodies keep them defined.
int vlseg_vector_math_wide(void) { return 0; }

float vlseg_exp_shifted(const float *x, float *out, ptrdiff_t n, float shift) {
    float sum = 0;
    for (ptrdiff_t i = 0; i < n; i++) { out[i] = exp_scalar(x[i] - shift); sum += out[i]; }
    return sum;
}
void vlseg_sigmoid(const float *x, float *out, ptrdiff_t n, float a) {
    for (ptrdiff_t i = 0; i < n; i++) out[i] = 1.0f / (1.0f + exp_scalar(-a * x[i]));
}
void vlseg_quick_gelu(const float *x, float *out, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) out[i] = x[i] / (1.0f + exp_scalar(-1.702f * x[i]));
}
double vlseg_bce_with_logits_sum(const float *x, const float *t, ptrdiff_t n) {
    double sum = 0;
    for (ptrdiff_t i = 0; i < n; i++) sum += (double)((x[i] > 0 ? x[i] : 0) - x[i] * t[i] + log1pf(exp_scalar(-fabsf(x[i]))));
    return sum;
}
#endif
