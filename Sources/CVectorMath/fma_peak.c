#include "vlseg_fma_peak.h"
#include "vlseg_vector_math.h"

// a * b + c contracts to one FMA instruction where the target has it.
#pragma clang fp contract(fast)
typedef float v8 __attribute__((ext_vector_type(8)));
typedef float v16 __attribute__((ext_vector_type(16)));

// 12 chains: more than FMA latency x FMA ports on current cores (4 x 2), so the loop is bound by
// FMA throughput alone. acc = acc * 0.9999999 + 1e-7 moves slowly towards 1 (no overflow, no
// denormals); no chain starts at that fixed point, where the compiler could hoist it out.
#define CHAINS(V, TARGET, NAME)                                                              \
    TARGET static double NAME(long iterations, float *checksum) {                            \
        volatile float origin = 0.05f; /* opaque, and distinct lanes: no chain can be */      \
        V o;                            /* folded or packed into another's lanes    */      \
        for (int l = 0; l < (int)(sizeof(V) / sizeof(float)); l++) o[l] = origin + 0.001f * (float)l; \
        V a0 = o, a1 = o + 0.1f, a2 = o + 0.2f, a3 = o + 0.3f, a4 = o + 0.4f, a5 = o + 0.5f,  \
          a6 = o + 0.6f, a7 = o + 0.7f, a8 = o + 0.8f, a9 = o + 0.9f, a10 = o + 1.1f, a11 = o + 1.2f; \
        const V m = 0.9999999f, c = 1e-7f;                                                   \
        for (long i = 0; i < iterations; i++) {                                              \
            a0 = a0 * m + c; a1 = a1 * m + c; a2 = a2 * m + c; a3 = a3 * m + c;              \
            a4 = a4 * m + c; a5 = a5 * m + c; a6 = a6 * m + c; a7 = a7 * m + c;              \
            a8 = a8 * m + c; a9 = a9 * m + c; a10 = a10 * m + c; a11 = a11 * m + c;          \
        }                                                                                    \
        V s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11)); \
        float total = 0;                                                                     \
        for (int l = 0; l < (int)(sizeof(V) / sizeof(float)); l++) total += s[l];           \
        *checksum = total;                                                                    \
        return 2.0 * 12.0 * (double)(sizeof(V) / sizeof(float)) * (double)iterations;       \
    }

#if defined(__x86_64__)
CHAINS(v16, __attribute__((target("avx512f"))), loop16)
CHAINS(v8, __attribute__((target("avx2,fma"))), loop8)
CHAINS(v8, , loop_portable)

static int has_avx512(void) { __builtin_cpu_init(); return __builtin_cpu_supports("avx512f"); }

double vlseg_fma_loop(long iterations, float *checksum) {
    if (has_avx512()) return loop16(iterations, checksum);
    if (vlseg_vector_math_wide()) return loop8(iterations, checksum);  // AVX2 and FMA
    return loop_portable(iterations, checksum);
}

int vlseg_fma_lanes(void) { return has_avx512() ? 16 : 8; }
#else
CHAINS(v8, , loop_portable)

double vlseg_fma_loop(long iterations, float *checksum) { return loop_portable(iterations, checksum); }

int vlseg_fma_lanes(void) { return 8; }
#endif
