import Foundation
import XCTest

@testable import VLTensor

final class VectorMathTests: XCTestCase {
    func testVectorExpMatchesLibm() {
        var worst: Double = 0
        var x: Float = -87
        while x < 88 {
            let v = VectorMath.exp(SIMD8<Float>((0..<8).map { x + Float($0) * 0.0137 }))
            for k in 0..<8 {
                let xi = x + Float(k) * 0.0137
                let ref = Foundation.exp(Double(xi))
                worst = max(worst, abs(Double(v[k]) - ref) / ref)
            }
            x += 0.37
        }
        XCTAssertLessThan(worst, 3e-7)
        let edge = VectorMath.exp(SIMD8<Float>(-.infinity, -1000, -88, 0, 1, -87.3, 88, 1e-30))
        XCTAssertEqual(edge[0], 0)
        XCTAssertEqual(edge[1], 0)
        XCTAssertEqual(edge[2], 0)
        XCTAssertEqual(edge[3], 1)
        XCTAssertEqual(Double(edge[4]), M_E, accuracy: 1e-6)
    }

    /// The array kernels (the AVX2 path where the CPU has it) against libm, with -inf and the range ends.
    func testArrayKernelsMatchLibm() {
        var xs: [Float] = stride(from: Float(-90), to: 80, by: 0.0731).map { $0 }
        xs += [-.infinity, -1000, 0, 1e-30, -87.3, 79.9]
        var out = [Float](repeating: 0, count: xs.count)
        let sum = VectorMath.expShifted(xs, &out, xs.count, shift: 0)
        var total = 0.0, worst = 0.0
        for (x, e) in zip(xs, out) {
            let ref = x < -87.3365 ? 0 : Foundation.exp(Double(min(x, 88.3762626647949)))
            if ref == 0 { XCTAssertEqual(e, 0, "exp(\(x))") } else { worst = max(worst, abs(Double(e) - ref) / ref) }
            total += Double(e)
        }
        XCTAssertLessThan(worst, 3e-7)
        XCTAssertEqual(Double(sum), total, accuracy: total * 1e-6)
        let ys: [Float] = stride(from: Float(-40), to: 40, by: 0.0173).map { $0 }
        var sig = [Float](repeating: 0, count: ys.count), gelu = sig
        VectorMath.sigmoid(ys, &sig, ys.count, a: 1.702)
        VectorMath.quickGELU(ys, &gelu, ys.count)
        for (i, y) in ys.enumerated() {
            let s = 1 / (1 + Foundation.exp(-1.702 * Double(y)))
            XCTAssertEqual(Double(sig[i]), s, accuracy: 1e-6 * max(s, 1e-30) + 1e-12, "sigmoid(\(y))")
            XCTAssertEqual(
                Double(gelu[i]), Double(y) * s, accuracy: 2e-6 * abs(Double(y) * s) + 1e-12, "quickGELU(\(y))")
        }
    }

    /// Head-parallel attention (several threads) equals the serial path, forward and backward.
    func testAttentionIsIndependentOfThreadCount() {
        defer { ComputeThreads.set(1) }
        let q = Check.random([2, 9, 24], seed: 1), k = Check.random([2, 7, 24], seed: 2),
            v = Check.random([2, 7, 24], seed: 3)
        let mask = Tensor(shape: [2, 7], values: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1])
        func run(threads: Int) -> [[Float]] {
            ComputeThreads.set(threads)
            let lq = q.requiringGrad(), lk = k.requiringGrad(), lv = v.requiringGrad()
            let out = multiHeadAttention(query: lq, key: lk, value: lv, heads: 4, causal: true, keyMask: mask)
            (out * Check.random(out.shape, seed: 9)).sum().backward()
            return [out.scalars, lq.grad!.scalars, lk.grad!.scalars, lv.grad!.scalars]
        }
        let serial = run(threads: 1), parallel = run(threads: 2)
        for (a, b) in zip(serial, parallel) {
            XCTAssertEqual(a.count, b.count)
            for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-6) }
        }
        ComputeThreads.set(2)
        Check.gradients([q, k, v]) { xs in
            multiHeadAttention(query: xs[0], key: xs[1], value: xs[2], heads: 4, causal: true, keyMask: mask)
        }
    }
}
