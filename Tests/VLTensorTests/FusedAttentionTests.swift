import XCTest

@testable import VLTensor

/// The fused attention kernel (head sizes that are multiples of 8) against the naive Double
/// reference, finite differences, and the sgemm-per-head path, including the tile and block edges
/// (query counts not a multiple of the 4-row tile, key counts not a multiple of the 16-key block).
final class FusedAttentionTests: XCTestCase {
    override func setUp() {
        super.setUp()
        MultiHeadAttentionKernel.current = .fused
    }

    override func tearDown() {
        MultiHeadAttentionKernel.current = MultiHeadAttentionKernel.machineDefault
        super.tearDown()
    }

    private func requireFused() throws {
        try XCTSkipUnless(
            MultiHeadAttentionKernel.choice(headSize: 8) == .fused, "fused attention not available on this CPU")
    }

    typealias Case = NormalizationAttentionTests.AttentionCase

    func inputs(_ c: Case, seed: UInt64) -> (q: Tensor, k: Tensor, v: Tensor, mask: Tensor?) {
        let e = c.heads * c.dh
        return (
            Check.random([c.b, c.tq, e], seed: seed, low: -1.5, high: 1.5),
            Check.random([c.b, c.tk, e], seed: seed + 1, low: -1.5, high: 1.5),
            Check.random([c.b, c.tk, e], seed: seed + 2),
            c.mask.map { Tensor(shape: [c.b, c.tk], values: $0) }
        )
    }

    func testForwardMatchesReference() throws {
        try requireFused()
        let cases: [Case] = [
            Case(b: 2, tq: 5, tk: 7, heads: 1, dh: 8),
            Case(b: 1, tq: 1, tk: 1, heads: 2, dh: 8),
            Case(b: 2, tq: 9, tk: 17, heads: 3, dh: 16),
            Case(b: 1, tq: 33, tk: 20, heads: 2, dh: 24),
            Case(b: 1, tq: 13, tk: 13, heads: 2, dh: 32, causal: true),
            Case(b: 2, tq: 6, tk: 5, heads: 2, dh: 8, mask: [1, 0, 1, 1, 0, 1, 1, 1, 1, 1]),
            Case(
                b: 2, tq: 7, tk: 18, heads: 1, dh: 16, causal: true,
                mask: (0..<36).map { $0 % 18 == 1 || $0 % 18 > 15 ? 0 : 1 }, scale: 0.3),
        ]
        for (n, c) in cases.enumerated() {
            let x = inputs(c, seed: UInt64(200 + 10 * n))
            let y = multiHeadAttention(
                query: x.q, key: x.k, value: x.v, heads: c.heads, causal: c.causal, keyMask: x.mask, scale: c.scale)
            let expected = NormalizationAttentionTests.refAttention(
                q: x.q, k: x.k, v: x.v, heads: c.heads, causal: c.causal,
                keyMask: x.mask, scale: c.scale.map(Double.init))
            Check.assertClose(y, expected, tolerance: 2e-6, "\(c)")
        }
    }

    func testGradientsMatchFiniteDifferences() throws {
        try requireFused()
        let cases: [Case] = [
            Case(b: 2, tq: 5, tk: 6, heads: 2, dh: 8),
            Case(b: 1, tq: 6, tk: 6, heads: 1, dh: 16, causal: true, mask: [1, 1, 0, 1, 1, 0]),
            Case(b: 1, tq: 3, tk: 19, heads: 1, dh: 8, scale: 0.7),
        ]
        for (n, c) in cases.enumerated() {
            let x = inputs(c, seed: UInt64(300 + 10 * n))
            let f: ([Tensor]) -> Tensor = {
                multiHeadAttention(
                    query: $0[0], key: $0[1], value: $0[2], heads: c.heads, causal: c.causal, keyMask: x.mask,
                    scale: c.scale)
            }
            Check.gradients([x.q, x.k, x.v], f)
            Check.gradients([x.q, x.k, x.v], differentiate: [true, false, false], f)
            Check.gradients([x.q, x.k, x.v], differentiate: [false, true, false], f)
            Check.gradients([x.q, x.k, x.v], differentiate: [false, false, true], f)
        }
    }

    func testFullyMaskedRowIsZeroWithZeroGradients() throws {
        try requireFused()
        // Causal query 0 sees only key 0, which the mask hides: output 0, finite gradients.
        let c = Case(b: 1, tq: 5, tk: 5, heads: 1, dh: 8, causal: true, mask: [0, 1, 1, 1, 1])
        let x = inputs(c, seed: 400)
        let q = x.q.requiringGrad(), k = x.k.requiringGrad(), v = x.v.requiringGrad()
        let y = multiHeadAttention(query: q, key: k, value: v, heads: 1, causal: true, keyMask: x.mask)
        XCTAssertEqual(Array(y.scalars[0..<8]), [Float](repeating: 0, count: 8))
        (y * Check.random(y.shape, seed: 401)).sum().backward()
        for g in [q.grad!, k.grad!, v.grad!] { XCTAssertTrue(g.scalars.allSatisfy { $0.isFinite }) }
        XCTAssertEqual(Array(q.grad!.scalars[0..<8]), [Float](repeating: 0, count: 8))
        XCTAssertEqual(Array(k.grad!.scalars[0..<8]), [Float](repeating: 0, count: 8))
        XCTAssertEqual(Array(v.grad!.scalars[0..<8]), [Float](repeating: 0, count: 8))
    }

    /// CLIPSeg's decoder shape (4 heads of 16 over 485 tokens) and a cross-attention with padded
    /// keys, fused against sgemm-per-head: outputs and every gradient.
    func testAgreesWithPerHeadGEMMAtModelShapes() throws {
        try requireFused()
        let cases: [Case] = [
            Case(b: 2, tq: 485, tk: 485, heads: 4, dh: 16),
            Case(b: 2, tq: 50, tk: 21, heads: 8, dh: 32, mask: (0..<42).map { $0 % 21 < 15 || $0 >= 21 ? 1 : 0 }),
        ]
        for (n, c) in cases.enumerated() {
            let x = inputs(c, seed: UInt64(500 + 10 * n))
            let w = Check.random([c.b, c.tq, c.heads * c.dh], seed: UInt64(509 + 10 * n))
            func run(_ kernel: MultiHeadAttentionKernel) -> [Tensor] {
                MultiHeadAttentionKernel.current = kernel
                let q = x.q.requiringGrad(), k = x.k.requiringGrad(), v = x.v.requiringGrad()
                let y = multiHeadAttention(query: q, key: k, value: v, heads: c.heads, keyMask: x.mask)
                (y * w).sum().backward()
                return [y.detached(), q.grad!, k.grad!, v.grad!]
            }
            let blas = run(.blas), fused = run(.fused)
            for (name, (a, b)) in zip(["out", "dq", "dk", "dv"], zip(fused, blas)) {
                let magnitude = b.scalars.map(abs).max() ?? 1
                Check.assertClose(a, b.scalars, tolerance: 1e-5 * max(magnitude, 1), "\(name) \(c)")
            }
        }
    }

    func testOnlyRequestedGradientsAreComputed() throws {
        try requireFused()
        let c = Case(b: 1, tq: 6, tk: 9, heads: 2, dh: 8)
        let x = inputs(c, seed: 600)
        let k = x.k.requiringGrad()
        let y = multiHeadAttention(query: x.q, key: k, value: x.v, heads: 2)
        (y * Check.random(y.shape, seed: 601)).sum().backward()
        XCTAssertNotNil(k.grad)
        Check.gradients([x.q, x.k, x.v], differentiate: [false, true, false]) {
            multiHeadAttention(query: $0[0], key: $0[1], value: $0[2], heads: 2)
        }
    }
}
