#ifndef VLSEG_FMA_PEAK_H
#define VLSEG_FMA_PEAK_H

// The CPU's floating-point ceiling: a register-only loop of independent fused multiply-adds at
// the widest vector width the CPU has (AVX-512, else AVX2+FMA on x86-64; portable 8-lane code
// elsewhere). Benchmarks divide achieved GFLOP/s by it (model FLOP utilisation), which does not
// depend on how well a BLAS library suits the CPU.

/// Runs `iterations` rounds of 12 independent vector FMA chains on the calling thread; returns
/// the floating-point operations done (2 per lane per FMA). `checksum` receives a value that
/// depends on every chain, so the loop cannot be removed.
double vlseg_fma_loop(long iterations, float *checksum);

/// Lanes per FMA in vlseg_fma_loop on this CPU (16, or 8).
int vlseg_fma_lanes(void);

#endif
