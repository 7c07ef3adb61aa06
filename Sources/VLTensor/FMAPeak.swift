import CVectorMath
import Foundation

/// The floating-point ceiling of this process's threads: every thread runs CVectorMath's
/// register-only FMA loop at the CPU's widest vector width at once.
///
/// Achieved GFLOP/s divided by this is the model FLOP utilisation, a figure that does not depend on
/// how well the BLAS library suits the CPU (the sgemm reference does). It is a ceiling for the
/// current clock: on a shared or power-managed machine it moves with the load like every timing.
public enum FMAPeak {
    /// Lanes per FMA instruction the loop uses on this CPU (16 with AVX-512, else 8).
    public static var lanes: Int { Int(vlseg_fma_lanes()) }

    /// GFLOP/s with `threads` threads looping together: the best of several runs of at least
    /// `minSeconds` in total (each run about 20 ms per thread).
    public static func measure(threads: Int, minSeconds: Double = 0.3) -> Double {
        let threads = max(1, threads)
        var checksum: Float = 0
        // Calibrate: iterations for about 20 ms on one thread.
        let probe = 1 << 16
        let t0 = DispatchTime.now().uptimeNanoseconds
        _ = vlseg_fma_loop(probe, &checksum)
        let probeSeconds = max(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9, 1e-7)
        let iterations = max(probe, Int(Double(probe) * 0.02 / probeSeconds))
        let flopsPerThread = vlseg_fma_loop(iterations, &checksum)
        let seconds = GEMMBenchmark.bestSeconds(minSeconds: minSeconds) {
            DispatchQueue.concurrentPerform(iterations: threads) { _ in
                var sink: Float = 0
                _ = vlseg_fma_loop(iterations, &sink)
            }
        }
        return flopsPerThread * Double(threads) / seconds / 1e9
    }
}
