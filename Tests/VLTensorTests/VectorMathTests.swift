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

    /// Head-parallel attention (several threads) equals the serial path, forward and backward.
    func testAttentionIsIndependentOfThreadCount() {
        defer { ComputeThreads.set(1) }
        let q = Check.random([2, 9, 24], seed: 1), k = Check.random([2, 7, 24], seed: 2), v = Check.random([2, 7, 24], seed: 3)
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
        Check.gradients([q, k, v]) { xs in multiHeadAttention(query: xs[0], key: xs[1], value: xs[2], heads: 4, causal: true, keyMask: mask) }
    }
}
