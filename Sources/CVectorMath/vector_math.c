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
#endif
