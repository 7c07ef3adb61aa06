import Foundation
import XCTest

@testable import VLTensor

/// layerNorm, softmax and fused multi-head attention against naive Double references.
final class NormalizationAttentionTests: XCTestCase {

    // MARK: - References

    static func refLayerNorm(_ x: Tensor, _ w: Tensor?, _ b: Tensor?, eps: Double = 1e-5) -> [Float] {
        let d = x.shape.last!, rows = x.count / d
        let xv = x.scalars.map(Double.init), wv = w?.scalars, bv = b?.scalars
        var out: [Float] = []
        for r in 0..<rows {
            let row = Array(xv[r * d..<(r + 1) * d])
            let mu = row.reduce(0, +) / Double(d)
            let variance = row.reduce(0) { $0 + ($1 - mu) * ($1 - mu) } / Double(d)
            for i in 0..<d {
                var y = (row[i] - mu) / (variance + eps).squareRoot()
                if let wv { y *= Double(wv[i]) }
                if let bv { y += Double(bv[i]) }
                out.append(Float(y))
            }
        }
        return out
    }

    static func refSoftmax(_ row: [Double]) -> [Double] {
        let m = row.max()!
        if m == -.infinity { return row.map { _ in 0 } }
        let e = row.map { Foundation.exp($0 - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    /// Naive attention: per batch, head and query, softmax over visible keys of scaled dot products.
    static func refAttention(
        q: Tensor, k: Tensor, v: Tensor, heads: Int, causal: Bool,
        keyMask: Tensor?, scale: Double?
    ) -> [Float] {
        let b = q.shape[0], tq = q.shape[1], e = q.shape[2], tk = k.shape[1]
        let dh = e / heads
        let alpha = scale ?? 1 / Double(dh).squareRoot()
        let qv = q.scalars, kv = k.scalars, vv = v.scalars, mv = keyMask?.scalars
        var out = [Float](repeating: 0, count: b * tq * e)
        for bi in 0..<b {
            for h in 0..<heads {
                for i in 0..<tq {
                    var scores = [Double](repeating: 0, count: tk)
                    for j in 0..<tk {
                        var s = 0.0
                        for c in 0..<dh {
                            s += Double(qv[(bi * tq + i) * e + h * dh + c]) * Double(kv[(bi * tk + j) * e + h * dh + c])
                        }
                        let hidden = (causal && j > i) || (mv.map { $0[bi * tk + j] == 0 } ?? false)
                        scores[j] = hidden ? -.infinity : s * alpha
                    }
                    let p = refSoftmax(scores)
                    for c in 0..<dh {
                        var s = 0.0
                        for j in 0..<tk { s += p[j] * Double(vv[(bi * tk + j) * e + h * dh + c]) }
                        out[(bi * tq + i) * e + h * dh + c] = Float(s)
                    }
                }
            }
        }
        return out
    }

    // MARK: - layerNorm

    func testLayerNormAffine() {
        let x = Check.random([2, 3, 6], seed: 1, low: -2, high: 2)
        let w = Check.random([6], seed: 2, low: 0.5, high: 1.5), b = Check.random([6], seed: 3)
        let y = layerNorm(x, weight: w, bias: b)
        XCTAssertEqual(y.shape, x.shape)
        Check.assertClose(y, Self.refLayerNorm(x, w, b), tolerance: 2e-5)
        Check.gradients([x, w, b]) { layerNorm($0[0], weight: $0[1], bias: $0[2]) }
        Check.gradients([x, w, b], differentiate: [false, true, true]) { layerNorm($0[0], weight: $0[1], bias: $0[2]) }
        Check.gradients([x, w, b], differentiate: [true, false, false]) { layerNorm($0[0], weight: $0[1], bias: $0[2]) }
        Check.gradients([x, w, b], differentiate: [false, false, true]) { layerNorm($0[0], weight: $0[1], bias: $0[2]) }
    }

    func testLayerNormWeightOnly() {
        let x = Check.random([4, 5], seed: 4, low: -2, high: 2)
        let w = Check.random([5], seed: 5, low: -1.5, high: 1.5)
        Check.assertClose(layerNorm(x, weight: w, bias: nil), Self.refLayerNorm(x, w, nil), tolerance: 2e-5)
        Check.gradients([x, w]) { layerNorm($0[0], weight: $0[1], bias: nil) }
        Check.gradients([x, w], differentiate: [false, true]) { layerNorm($0[0], weight: $0[1], bias: nil) }
    }

    func testLayerNormBiasOnly() {
        let x = Check.random([4, 5], seed: 6, low: -2, high: 2)
        let b = Check.random([5], seed: 7)
        Check.assertClose(layerNorm(x, weight: nil, bias: b), Self.refLayerNorm(x, nil, b), tolerance: 2e-5)
        Check.gradients([x, b]) { layerNorm($0[0], weight: nil, bias: $0[1]) }
        Check.gradients([x, b], differentiate: [false, true]) { layerNorm($0[0], weight: nil, bias: $0[1]) }
    }

    func testLayerNormNoAffine() {
        let x = Check.random([3, 2, 7], seed: 8, low: -3, high: 3)
        let y = layerNorm(x, weight: nil, bias: nil)
        Check.assertClose(y, Self.refLayerNorm(x, nil, nil), tolerance: 2e-5)
        // Each row has mean 0 and (biased) variance ~1.
        let yv = y.scalars
        for r in 0..<6 {
            let row = yv[r * 7..<(r + 1) * 7].map(Double.init)
            XCTAssertEqual(row.reduce(0, +) / 7, 0, accuracy: 1e-6)
            XCTAssertEqual(row.reduce(0) { $0 + $1 * $1 } / 7, 1, accuracy: 1e-3)
        }
        Check.gradients([x]) { layerNorm($0[0], weight: nil, bias: nil) }
    }

    func testLayerNormCustomEpsAndShiftInvariance() {
        let x = Check.random([2, 4], seed: 9)
        Check.assertClose(
            layerNorm(x, weight: nil, bias: nil, eps: 0.5), Self.refLayerNorm(x, nil, nil, eps: 0.5), tolerance: 2e-5)
        Check.gradients([x]) { layerNorm($0[0], weight: nil, bias: nil, eps: 0.5) }
        let shifted = x.adding(10)
        Check.assertClose(
            layerNorm(shifted, weight: nil, bias: nil), layerNorm(x, weight: nil, bias: nil).scalars, tolerance: 1e-4)
    }

    // MARK: - softmax

    func testSoftmax() {
        let x = Check.random([2, 3, 5], seed: 10, low: -3, high: 3)
        let y = x.softmax()
        var expected: [Float] = []
        let xv = x.scalars.map(Double.init)
        for r in 0..<6 { expected += Self.refSoftmax(Array(xv[r * 5..<(r + 1) * 5])).map(Float.init) }
        Check.assertClose(y, expected, tolerance: 1e-6)
        Check.gradients([x]) { $0[0].softmax() }
        // Rows sum to 1; large logits stay finite (shift invariance).
        let big = Tensor(shape: [1, 3], values: [1000, 1001, 1002]).softmax()
        Check.assertClose(big, Self.refSoftmax([0, 1, 2]).map(Float.init), tolerance: 1e-6)
        // Masked (-inf) entries get zero probability; an all -inf row is all zeros.
        let masked = Tensor(shape: [2, 3], values: [0, -.infinity, 0, -.infinity, -.infinity, -.infinity]).softmax()
        Check.assertClose(masked, [0.5, 0, 0.5, 0, 0, 0], tolerance: 1e-7)
        // Sum of softmax is constant: its gradient vanishes.
        let leaf = x.requiringGrad()
        leaf.softmax().sum().backward()
        Check.assertClose(leaf.grad!, [Float](repeating: 0, count: 30), tolerance: 1e-6)
    }

    // MARK: - attention

    struct AttentionCase {
        var b: Int, tq: Int, tk: Int, heads: Int, dh: Int
        var causal = false
        var mask: [Float]? = nil
        var scale: Float? = nil
    }

    func checkAttention(_ c: AttentionCase, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        let e = c.heads * c.dh
        let q = Check.random([c.b, c.tq, e], seed: seed, low: -1.5, high: 1.5)
        let k = Check.random([c.b, c.tk, e], seed: seed + 1, low: -1.5, high: 1.5)
        let v = Check.random([c.b, c.tk, e], seed: seed + 2)
        let mask = c.mask.map { Tensor(shape: [c.b, c.tk], values: $0) }
        let y = multiHeadAttention(
            query: q, key: k, value: v, heads: c.heads, causal: c.causal, keyMask: mask, scale: c.scale)
        XCTAssertEqual(y.shape, [c.b, c.tq, e], file: file, line: line)
        let expected = Self.refAttention(
            q: q, k: k, v: v, heads: c.heads, causal: c.causal, keyMask: mask,
            scale: c.scale.map(Double.init))
        Check.assertClose(y, expected, tolerance: 1e-5, "\(c)", file: file, line: line)
        let f: ([Tensor]) -> Tensor = {
            multiHeadAttention(
                query: $0[0], key: $0[1], value: $0[2], heads: c.heads, causal: c.causal, keyMask: mask, scale: c.scale)
        }
        Check.gradients([q, k, v], file: file, line: line, f)
        Check.gradients([q, k, v], differentiate: [true, false, false], file: file, line: line, f)
        Check.gradients([q, k, v], differentiate: [false, true, false], file: file, line: line, f)
        Check.gradients([q, k, v], differentiate: [false, false, true], file: file, line: line, f)
    }

    func testAttentionSingleHead() {
        checkAttention(AttentionCase(b: 2, tq: 3, tk: 3, heads: 1, dh: 4), seed: 20)
    }

    func testAttentionSingleHeadCrossLengths() {
        checkAttention(AttentionCase(b: 2, tq: 3, tk: 5, heads: 1, dh: 4), seed: 30)
        checkAttention(AttentionCase(b: 1, tq: 5, tk: 2, heads: 1, dh: 3), seed: 35)
    }

    func testAttentionThreeHeads() {
        checkAttention(AttentionCase(b: 2, tq: 4, tk: 4, heads: 3, dh: 2), seed: 40)
        checkAttention(AttentionCase(b: 2, tq: 2, tk: 5, heads: 3, dh: 3), seed: 45)
    }

    func testAttentionCausal() {
        checkAttention(AttentionCase(b: 2, tq: 4, tk: 4, heads: 1, dh: 3, causal: true), seed: 50)
        checkAttention(AttentionCase(b: 2, tq: 5, tk: 5, heads: 3, dh: 2, causal: true), seed: 55)
        // Tq != Tk: query i sees keys 0...i (top-left aligned, like torch.tril(ones(Tq, Tk))).
        checkAttention(AttentionCase(b: 1, tq: 3, tk: 5, heads: 3, dh: 2, causal: true), seed: 57)
        checkAttention(AttentionCase(b: 1, tq: 5, tk: 3, heads: 1, dh: 2, causal: true), seed: 58)
    }

    func testAttentionCausalFirstRowCopiesFirstValue() {
        let q = Check.random([1, 3, 4], seed: 59), k = Check.random([1, 3, 4], seed: 60),
            v = Check.random([1, 3, 4], seed: 61)
        let y = multiHeadAttention(query: q, key: k, value: v, heads: 2, causal: true)
        Check.assertClose(y.slice(axis: 1, 0..<1), Array(v.scalars[0..<4]), tolerance: 1e-6)
    }

    func testAttentionKeyMaskPadding() {
        // Batch 0 has 3 of 5 keys, batch 1 all 5.
        let mask: [Float] = [1, 1, 1, 0, 0, 1, 1, 1, 1, 1]
        checkAttention(AttentionCase(b: 2, tq: 3, tk: 5, heads: 1, dh: 4, mask: mask), seed: 60)
        checkAttention(AttentionCase(b: 2, tq: 4, tk: 5, heads: 3, dh: 2, mask: mask), seed: 65)
        // Holes in the middle, combined with causal.
        let holes: [Float] = [1, 0, 1, 1, 1, 0, 1, 1]
        checkAttention(AttentionCase(b: 2, tq: 4, tk: 4, heads: 3, dh: 2, causal: true, mask: holes), seed: 70)
    }

    func testAttentionPaddedKeysDoNotMatter() {
        // Changing the keys and values at padded positions changes neither output nor unpadded gradients.
        let mask = Tensor(shape: [1, 4], values: [1, 1, 0, 0])
        let q = Check.random([1, 2, 4], seed: 71)
        let k1 = Check.random([1, 4, 4], seed: 72), v1 = Check.random([1, 4, 4], seed: 73)
        var kv2 = k1.scalars, vv2 = v1.scalars
        for i in 8..<16 { kv2[i] = 5 * kv2[i] + 1; vv2[i] = -3 * vv2[i] }
        let k2 = Tensor(shape: [1, 4, 4], values: kv2), v2 = Tensor(shape: [1, 4, 4], values: vv2)
        let y1 = multiHeadAttention(query: q, key: k1, value: v1, heads: 2, keyMask: mask)
        let y2 = multiHeadAttention(query: q, key: k2, value: v2, heads: 2, keyMask: mask)
        Check.assertClose(y1, y2.scalars, tolerance: 1e-6)
        // Padded keys and values receive zero gradient.
        let kl = k1.requiringGrad(), vl = v1.requiringGrad()
        (multiHeadAttention(query: q, key: kl, value: vl, heads: 2, keyMask: mask) * Check.random([1, 2, 4], seed: 74))
            .sum().backward()
        XCTAssertEqual(Array(kl.grad!.scalars[8..<16]), [Float](repeating: 0, count: 8))
        XCTAssertEqual(Array(vl.grad!.scalars[8..<16]), [Float](repeating: 0, count: 8))
    }

    func testAttentionFullyMaskedRowIsZero() {
        // Causal query 0 sees only key 0; hiding key 0 leaves it nothing: output 0, no NaN.
        let mask: [Float] = [0, 1, 1]
        let c = AttentionCase(b: 1, tq: 3, tk: 3, heads: 1, dh: 2, causal: true, mask: mask)
        checkAttention(c, seed: 80)
        let q = Check.random([1, 3, 2], seed: 80), k = Check.random([1, 3, 2], seed: 81),
            v = Check.random([1, 3, 2], seed: 82)
        let y = multiHeadAttention(
            query: q, key: k, value: v, heads: 1, causal: true, keyMask: Tensor(shape: [1, 3], values: mask))
        XCTAssertEqual(Array(y.scalars[0..<2]), [0, 0])
        XCTAssertTrue(y.scalars.allSatisfy { $0.isFinite })
    }

    func testAttentionCustomScale() {
        checkAttention(AttentionCase(b: 2, tq: 3, tk: 4, heads: 1, dh: 4, scale: 0.9), seed: 90)
        checkAttention(AttentionCase(b: 1, tq: 3, tk: 3, heads: 3, dh: 2, causal: true, scale: 0.3), seed: 95)
        // scale 0: uniform average of the visible values.
        let q = Check.random([1, 2, 2], seed: 96), k = Check.random([1, 3, 2], seed: 97),
            v = Check.random([1, 3, 2], seed: 98)
        let y = multiHeadAttention(query: q, key: k, value: v, heads: 1, scale: 0)
        let vv = v.scalars
        let avg: [Float] = (0..<2).map { (c: Int) -> Float in
            let total: Float = vv[c] + vv[2 + c] + vv[4 + c]
            return total / 3
        }
        Check.assertClose(y, avg + avg, tolerance: 1e-6)
    }

    func testAttentionMatchesUnfusedComposition() {
        // softmax(Q Kᵀ s) V built from matmul/softmax agrees with the fused kernel, value and gradient.
        let q = Check.random([2, 3, 4], seed: 100), k = Check.random([2, 5, 4], seed: 101),
            v = Check.random([2, 5, 4], seed: 102)
        let unfused: ([Tensor]) -> Tensor = { t in
            matmul(matmul(t[0], t[1], transposeB: true).scaled(0.5).softmax(), t[2])
        }
        let fused = multiHeadAttention(query: q, key: k, value: v, heads: 1)
        Check.assertClose(fused, unfused([q, k, v]).scalars, tolerance: 1e-6)
        let ql = q.requiringGrad(), kl = k.requiringGrad(), vl = v.requiringGrad()
        let ql2 = q.requiringGrad(), kl2 = k.requiringGrad(), vl2 = v.requiringGrad()
        let w = Check.random([2, 3, 4], seed: 103)
        (multiHeadAttention(query: ql, key: kl, value: vl, heads: 1) * w).sum().backward()
        (unfused([ql2, kl2, vl2]) * w).sum().backward()
        Check.assertClose(ql.grad!, ql2.grad!.scalars, tolerance: 1e-5)
        Check.assertClose(kl.grad!, kl2.grad!.scalars, tolerance: 1e-5)
        Check.assertClose(vl.grad!, vl2.grad!.scalars, tolerance: 1e-5)
    }
}
