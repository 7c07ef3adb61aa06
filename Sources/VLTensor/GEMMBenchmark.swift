import Foundation

/// Measures sgemm throughput for given shapes (used by `vlseg bench gemm` and other benches).
public enum GEMMBenchmark {
    public struct Shape: Sendable {
        public let label: String
        public let batch: Int
        public let m: Int, n: Int, k: Int
        public let transposeA: Bool, transposeB: Bool
        public init(
            label: String, batch: Int = 1, m: Int, n: Int, k: Int, transposeA: Bool = false, transposeB: Bool = false
        ) {
            self.label = label
            self.batch = batch
            self.m = m
            self.n = n
            self.k = k
            self.transposeA = transposeA
            self.transposeB = transposeB
        }
        public var flops: Double { 2 * Double(batch) * Double(m) * Double(n) * Double(k) }
    }

    /// The GEMMs of one ViT-B/16 layer at 352x352 (485 tokens) and a 1024^3 reference.
    public static let vitShapes: [Shape] = [
        Shape(label: "qkv/out proj 485x768 * 768x768", m: 485, n: 768, k: 768),
        Shape(label: "mlp fc1 485x768 * 768x3072", m: 485, n: 3072, k: 768),
        Shape(label: "mlp fc2 485x3072 * 3072x768", m: 485, n: 768, k: 3072),
        Shape(label: "attention scores 12 x 485x64 * 64x485", batch: 12, m: 485, n: 485, k: 64, transposeB: true),
        Shape(label: "attention values 12 x 485x485 * 485x64", batch: 12, m: 485, n: 64, k: 485),
        Shape(label: "square 1024^3", m: 1024, n: 1024, k: 1024),
    ]

    /// The GEMMs of one CLIPSeg decoder layer (width 64, MLP 2048, 4 heads of 16) over a batch of 4
    /// at 352x352 (4 x 485 rows), forward and backward, as `linear` and attention issue them; these
    /// small-K / small-N shapes are what decoder-only training from cached features runs.
    public static let decoderShapes: [Shape] = [
        Shape(label: "fc1 fwd 1940x64 * (2048x64)^T", m: 1940, n: 2048, k: 64, transposeB: true),
        Shape(label: "fc2 fwd 1940x2048 * (64x2048)^T", m: 1940, n: 64, k: 2048, transposeB: true),
        Shape(label: "fc2 dX 1940x64 * 64x2048", m: 1940, n: 2048, k: 64),
        Shape(label: "fc2 dW (1940x64)^T * 1940x2048", m: 64, n: 2048, k: 1940, transposeA: true),
        Shape(label: "fc1 dX 1940x2048 * 2048x64", m: 1940, n: 64, k: 2048),
        Shape(label: "fc1 dW (1940x2048)^T * 1940x64", m: 2048, n: 64, k: 1940, transposeA: true),
        Shape(label: "scores 16 x 485x16 * (485x16)^T", batch: 16, m: 485, n: 485, k: 16, transposeB: true),
        Shape(label: "values 16 x 485x485 * 485x16", batch: 16, m: 485, n: 16, k: 485),
        Shape(label: "proj fwd 1940x64 * (64x64)^T", m: 1940, n: 64, k: 64, transposeB: true),
        Shape(label: "proj dW (1940x64)^T * 1940x64", m: 64, n: 64, k: 1940, transposeA: true),
        Shape(label: "reduce fwd 1940x768 * (64x768)^T", m: 1940, n: 64, k: 768, transposeB: true),
        Shape(label: "reduce dW (1940x64)^T * 1940x768", m: 64, n: 768, k: 1940, transposeA: true),
        Shape(label: "square 1024^3", m: 1024, n: 1024, k: 1024),
    ]

    /// GFLOP/s for `shape`, the best of a few timed repetitions after a warm-up.
    public static func measure(_ shape: Shape, minSeconds: Double = 0.3) -> Double {
        var rng = SplitMix64(seed: 7)
        let a = Tensor.randomUniform([shape.batch, shape.m * shape.k], low: -1, high: 1, generator: &rng)
        let b = Tensor.randomUniform([shape.batch, shape.k * shape.n], low: -1, high: 1, generator: &rng)
        let c = Tensor(zeros: [shape.batch, shape.m, shape.n])
        func run() {
            withTensorPointers(writing: c, reading: a, b) { pc, pa, pb in
                for i in 0..<shape.batch {
                    BLAS.sgemm(
                        transposeA: shape.transposeA, transposeB: shape.transposeB, m: shape.m, n: shape.n, k: shape.k,
                        a: pa + i * shape.m * shape.k, lda: shape.transposeA ? shape.m : shape.k,
                        b: pb + i * shape.k * shape.n, ldb: shape.transposeB ? shape.k : shape.n,
                        c: pc + i * shape.m * shape.n, ldc: shape.n)
                }
            }
        }
        return shape.flops / bestSeconds(minSeconds: minSeconds, run) / 1e9
    }

    /// Best wall time of `body` over at least `minSeconds` of runs (and at least 3), after one
    /// warm-up run: the least disturbed run on a shared machine.
    public static func bestSeconds(minSeconds: Double, _ body: () -> Void) -> Double {
        body()
        var best = Double.infinity, total = 0.0, reps = 0
        while total < minSeconds || reps < 3 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            body()
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
            best = min(best, dt)
            total += dt
            reps += 1
        }
        return best
    }
}
