import Foundation
import XCTest

@testable import VLTensor

/// Segmentation losses and PyTorch-compatible resizing.
final class LossResizeTests: XCTestCase {

    // MARK: - Loss references

    static func refBCE(_ x: Tensor, _ t: Tensor) -> Double {
        var s = 0.0
        for (xf, tf) in zip(x.scalars, t.scalars) {
            let x = Double(xf), t = Double(tf)
            s += max(x, 0) - x * t + Foundation.log(1 + Foundation.exp(-abs(x)))
        }
        return s / Double(x.count)
    }

    static func refDice(_ x: Tensor, _ t: Tensor, smooth: Double = 1) -> Double {
        let b = x.shape[0], per = x.count / b
        let xv = x.scalars, tv = t.scalars
        var total = 0.0
        for bi in 0..<b {
            var pt = 0.0, sp = 0.0, st = 0.0
            for j in 0..<per {
                let p = 1 / (1 + Foundation.exp(-Double(xv[bi * per + j]))), tt = Double(tv[bi * per + j])
                pt += p * tt; sp += p; st += tt
            }
            total += 1 - (2 * pt + smooth) / (sp + st + smooth)
        }
        return total / Double(b)
    }

    static func binaryTarget(_ shape: [Int], seed: UInt64) -> Tensor {
        let u = Check.random(shape, seed: seed, low: 0, high: 1)
        return Tensor(shape: shape, values: u.scalars.map { $0 > 0.5 ? 1 : 0 })
    }

    // MARK: - BCE

    func testBCEWithLogitsValues() {
        let x = Check.random([2, 3, 4], seed: 1, low: -4, high: 4)
        for t in [Self.binaryTarget([2, 3, 4], seed: 2), Check.random([2, 3, 4], seed: 3, low: 0, high: 1)] {
            let loss = binaryCrossEntropyWithLogits(x, target: t)
            XCTAssertEqual(loss.shape, [])
            XCTAssertEqual(Double(loss.item), Self.refBCE(x, t), accuracy: 1e-6)
        }
        // Known value: logit 0 gives log 2 whatever the target.
        let zero = binaryCrossEntropyWithLogits(Tensor(zeros: [3]), target: Tensor(shape: [3], values: [0, 1, 0.3]))
        XCTAssertEqual(Double(zero.item), Foundation.log(2), accuracy: 1e-6)
        // Extreme logits stay finite and exact: -x t + max(x, 0) for confident mistakes.
        let extreme = binaryCrossEntropyWithLogits(
            Tensor(shape: [2], values: [100, -100]), target: Tensor(shape: [2], values: [0, 1]))
        XCTAssertEqual(extreme.item, 100, accuracy: 1e-4)
    }

    func testBCEWithLogitsTermsAcrossTheRange() {
        // Groups of 8 equal logits (one vector lane each on the wide path), from -30 to 30 including
        // the log1p branch point (exp(-|x|) = sqrt(2) - 1 at |x| = 0.8814): each group's mean must be
        // the float-accurate term, relative to max(1, term).
        var logits: [Float] = []
        var x: Float = -30
        while x <= 30 { logits.append(x); x += 0.0137 }
        logits += [0.8813736, 0.8813735, -0.8813736, 1e-7, -1e-7, 0, 88, -88]
        for target: Float in [0, 1, 0.3] {
            var worst = 0.0
            for v in logits {
                let xs = Tensor(filling: v, shape: [8]), ts = Tensor(filling: target, shape: [8])
                let got = Double(binaryCrossEntropyWithLogits(xs, target: ts).item)
                let ref = Self.refBCE(xs, ts)
                worst = max(worst, abs(got - ref) / max(1, abs(ref)))
            }
            XCTAssertLessThan(worst, 5e-7, "target \(target)")
        }
    }

    func testBCEWithLogitsGradient() {
        let x = Check.random([2, 3, 4], seed: 4, low: -3, high: 3)
        let t = Self.binaryTarget([2, 3, 4], seed: 5)
        Check.gradients([x]) { binaryCrossEntropyWithLogits($0[0], target: t) }
        let soft = Check.random([2, 3, 4], seed: 6, low: 0, high: 1)
        Check.gradients([x]) { binaryCrossEntropyWithLogits($0[0], target: soft) }
        // Analytic form: (sigmoid(x) - t) / n.
        let leaf = x.requiringGrad()
        binaryCrossEntropyWithLogits(leaf, target: t).backward()
        let expected = zip(x.scalars, t.scalars).map { (xf: Float, tf: Float) -> Float in
            let p: Double = 1 / (1 + Foundation.exp(-Double(xf)))
            return Float((p - Double(tf)) / 24)
        }
        Check.assertClose(leaf.grad!, expected, tolerance: 1e-7)
        // Composes inside a larger graph (scaled loss).
        Check.gradients([x]) { binaryCrossEntropyWithLogits($0[0].scaled(0.5), target: t).scaled(3) }
    }

    // MARK: - Dice

    func testSoftDiceValues() {
        let x = Check.random([3, 2, 4], seed: 7, low: -3, high: 3)
        for t in [Self.binaryTarget([3, 2, 4], seed: 8), Check.random([3, 2, 4], seed: 9, low: 0, high: 1)] {
            let loss = softDiceLoss(x, target: t)
            XCTAssertEqual(loss.shape, [])
            XCTAssertEqual(Double(loss.item), Self.refDice(x, t), accuracy: 1e-6)
        }
        let t = Self.binaryTarget([3, 2, 4], seed: 10)
        XCTAssertEqual(
            Double(softDiceLoss(x, target: t, smooth: 0.1).item), Self.refDice(x, t, smooth: 0.1), accuracy: 1e-6)
        // Perfect confident prediction: Dice loss ~0; all-wrong: ~1 - smooth/(n + smooth).
        let target = Tensor(shape: [1, 4], values: [1, 0, 1, 0])
        let perfect = softDiceLoss(Tensor(shape: [1, 4], values: [30, -30, 30, -30]), target: target)
        XCTAssertEqual(perfect.item, 0, accuracy: 1e-6)
        let wrong = softDiceLoss(Tensor(shape: [1, 4], values: [-30, 30, -30, 30]), target: target)
        XCTAssertEqual(Double(wrong.item), 1 - 1.0 / 5.0, accuracy: 1e-6)
    }

    func testSoftDiceGradient() {
        let x = Check.random([3, 2, 4], seed: 11, low: -3, high: 3)
        let t = Self.binaryTarget([3, 2, 4], seed: 12)
        Check.gradients([x]) { softDiceLoss($0[0], target: t) }
        Check.gradients([x]) { softDiceLoss($0[0], target: t, smooth: 0.5) }
        let soft = Check.random([3, 2, 4], seed: 13, low: 0, high: 1)
        Check.gradients([x]) { softDiceLoss($0[0], target: soft) }
        // Rank 1: every element is its own batch item; [1, N]: one item over all elements.
        let x1 = Check.random([6], seed: 14, low: -2, high: 2)
        let t1 = Self.binaryTarget([6], seed: 15)
        XCTAssertEqual(Double(softDiceLoss(x1, target: t1).item), Self.refDice(x1, t1), accuracy: 1e-6)
        let x16 = x1.reshaped([1, 6])
        XCTAssertEqual(Double(softDiceLoss(x16, target: t1).item), Self.refDice(x16, t1), accuracy: 1e-6)
        Check.gradients([x1]) { softDiceLoss($0[0], target: t1) }
        Check.gradients([x16]) { softDiceLoss($0[0], target: t1) }
        // The combined segmentation loss.
        Check.gradients([x]) { binaryCrossEntropyWithLogits($0[0], target: t) + softDiceLoss($0[0], target: t) }
    }

    // MARK: - Resize reference (PyTorch F.interpolate, written from the formulas)

    /// Taps (source index, weight) for one output coordinate along one axis.
    static func taps(_ dst: Int, inSize: Int, outSize: Int, mode: InterpolationMode, alignCorners: Bool) -> [(
        Int, Double
    )] {
        var src: Double
        if alignCorners {
            src = outSize > 1 ? Double(dst) * Double(inSize - 1) / Double(outSize - 1) : 0
        } else {
            src = (Double(dst) + 0.5) * Double(inSize) / Double(outSize) - 0.5
        }
        func clamp(_ i: Int) -> Int { min(max(i, 0), inSize - 1) }
        switch mode {
        case .bilinear:
            // PyTorch clamps negative source coordinates to 0 for linear modes (align_corners=False).
            if !alignCorners && src < 0 { src = 0 }
            let i0 = Int(floor(src))
            let lambda = src - Double(i0)
            let i1 = min(i0 + 1, inSize - 1)
            return [(clamp(i0), 1 - lambda), (i1, lambda)]
        case .bicubic:
            // No clamping of the coordinate; neighbour indices clamped. Keys cubic with A = -0.75.
            let a = -0.75
            let i = Int(floor(src)), t = src - floor(src)
            func w(_ x: Double) -> Double {
                let x = abs(x)
                if x <= 1 { return (a + 2) * x * x * x - (a + 3) * x * x + 1 }
                if x < 2 { return a * x * x * x - 5 * a * x * x + 8 * a * x - 4 * a }
                return 0
            }
            // Neighbours i-1, i, i+1, i+2 are at distances t+1, t, 1-t, 2-t.
            return (-1...2).map { d in (clamp(i + d), w(t - Double(d))) }
        }
    }

    /// Direct 2-D evaluation: out[.., oy, ox] = sum over y taps and x taps of wy wx in[.., iy, ix].
    static func refResize(_ x: Tensor, to size: (Int, Int), mode: InterpolationMode, alignCorners: Bool) -> [Float] {
        let h = x.shape[x.rank - 2], w = x.shape[x.rank - 1], n = x.count / (h * w)
        let (ho, wo) = size
        let xv = x.scalars
        var out: [Float] = []
        for p in 0..<n {
            for oy in 0..<ho {
                let ty = taps(oy, inSize: h, outSize: ho, mode: mode, alignCorners: alignCorners)
                for ox in 0..<wo {
                    let tx = taps(ox, inSize: w, outSize: wo, mode: mode, alignCorners: alignCorners)
                    var s = 0.0
                    for (iy, wy) in ty { for (ix, wx) in tx { s += wy * wx * Double(xv[p * h * w + iy * w + ix]) } }
                    out.append(Float(s))
                }
            }
        }
        return out
    }

    // MARK: - Resize tests

    func testBicubic14To22MatchesPyTorch() {
        // The ViT-B/16 position-embedding grid (14x14) resized to 22x22, as PyTorch's
        // F.interpolate(mode="bicubic", align_corners=False) computes it.
        let x = Check.random([2, 3, 14, 14], seed: 20, low: -1, high: 1)
        let y = x.resized(to: (22, 22), mode: .bicubic, alignCorners: false)
        XCTAssertEqual(y.shape, [2, 3, 22, 22])
        let expected = Self.refResize(x, to: (22, 22), mode: .bicubic, alignCorners: false)
        Check.assertClose(y, expected, tolerance: 1e-5)

        // Spot-check the reference itself against hand-derived coordinates: output 0 reads source
        // -0.1818..., so its taps are at clamped indices (0, 0, 0, 1) with t = 0.8181...
        let t0 = Self.taps(0, inSize: 14, outSize: 22, mode: .bicubic, alignCorners: false)
        XCTAssertEqual(t0.map(\.0), [0, 0, 0, 1])
        XCTAssertEqual(t0.reduce(0) { $0 + $1.1 }, 1, accuracy: 1e-12)
        let src = 0.5 * 14 / 22 - 0.5, t = src - floor(src)
        XCTAssertEqual(t, 1 - 4.0 / 22, accuracy: 1e-12)
        // Middle output 11: source 11.5*14/22 - 0.5 = 6.818..., taps 5, 6, 7, 8.
        XCTAssertEqual(
            Self.taps(11, inSize: 14, outSize: 22, mode: .bicubic, alignCorners: false).map(\.0), [5, 6, 7, 8])
        // Last output 21: source 13.5909..., taps 12, 13, 13, 13 (clamped).
        XCTAssertEqual(
            Self.taps(21, inSize: 14, outSize: 22, mode: .bicubic, alignCorners: false).map(\.0), [12, 13, 13, 13])

        // A smooth separable field: the single-pixel formula evaluated by hand.
        let field = Tensor(
            shape: [14, 14], values: (0..<196).map { i in Float(sin(Double(i / 14) * 0.4) + cos(Double(i % 14) * 0.3)) }
        )
        let fy = field.resized(to: (22, 22), mode: .bicubic)
        func cubicAt(_ o: Int) -> [(Int, Double)] {
            let s = (Double(o) + 0.5) * 14 / 22 - 0.5
            let i = Int(floor(s)), tt = s - floor(s), a = -0.75
            let ws = [
                ((a * (tt + 1) - 5 * a) * (tt + 1) + 8 * a) * (tt + 1) - 4 * a,
                ((a + 2) * tt - (a + 3)) * tt * tt + 1,
                ((a + 2) * (1 - tt) - (a + 3)) * (1 - tt) * (1 - tt) + 1,
                ((a * (2 - tt) - 5 * a) * (2 - tt) + 8 * a) * (2 - tt) - 4 * a,
            ]
            return (0..<4).map { (min(max(i - 1 + $0, 0), 13), ws[$0]) }
        }
        for (oy, ox) in [(0, 0), (3, 17), (11, 11), (21, 5), (21, 21)] {
            var s = 0.0
            for (iy, wy) in cubicAt(oy) {
                for (ix, wx) in cubicAt(ox) {
                    s += wy * wx * (sin(Double(iy) * 0.4) + cos(Double(ix) * 0.3))
                }
            }
            XCTAssertEqual(Double(fy.scalars[oy * 22 + ox]), s, accuracy: 1e-5, "(\(oy), \(ox))")
        }
    }

    func testResizeMatchesReferenceAllModes() {
        let x = Check.random([2, 5, 6], seed: 21)
        let sizes = [(9, 11), (3, 4), (5, 6), (1, 1), (1, 8), (10, 3), (7, 7)]
        for mode in [InterpolationMode.bilinear, .bicubic] {
            for align in [false, true] {
                for size in sizes {
                    let y = x.resized(to: (size.0, size.1), mode: mode, alignCorners: align)
                    XCTAssertEqual(y.shape, [2, size.0, size.1])
                    Check.assertClose(
                        y, Self.refResize(x, to: size, mode: mode, alignCorners: align), tolerance: 1e-5,
                        "\(mode) align \(align) \(size)")
                }
            }
        }
    }

    func testResizeSameSizeIsIdentity() {
        let x = Check.random([1, 2, 4, 5], seed: 22)
        for mode in [InterpolationMode.bilinear, .bicubic] {
            for align in [false, true] {
                Check.assertClose(x.resized(to: (4, 5), mode: mode, alignCorners: align), x.scalars, tolerance: 1e-6)
            }
        }
    }

    func testResizeConstantStaysConstant() {
        let x = Tensor(filling: 2.5, shape: [1, 1, 6, 5])
        for mode in [InterpolationMode.bilinear, .bicubic] {
            for align in [false, true] {
                for size in [(13, 9), (3, 2), (6, 5), (1, 1)] {
                    let y = x.resized(to: size, mode: mode, alignCorners: align)
                    Check.assertClose(
                        y, [Float](repeating: 2.5, count: size.0 * size.1), tolerance: 1e-5,
                        "\(mode) align \(align) \(size)")
                }
            }
        }
    }

    func testBilinearReproducesLinearRamp() {
        // f(y, x) = x: bilinear returns the source x coordinate wherever it lies inside [0, W-1].
        let h = 4, w = 7
        let ramp = Tensor(shape: [h, w], values: (0..<h * w).map { Float($0 % w) })
        for wo in [13, 16, 4] {
            let y = ramp.resized(to: (5, wo), mode: .bilinear, alignCorners: false)
            for oy in 0..<5 {
                for ox in 0..<wo {
                    let src = (Double(ox) + 0.5) * Double(w) / Double(wo) - 0.5
                    let expected = min(max(src, 0), Double(w - 1))  // exact inside, clamped at the borders
                    XCTAssertEqual(Double(y.scalars[oy * wo + ox]), expected, accuracy: 1e-5, "wo \(wo) (\(oy), \(ox))")
                }
            }
            // alignCorners: exactly x * (W-1)/(wo-1) everywhere.
            let ya = ramp.resized(to: (5, wo), mode: .bilinear, alignCorners: true)
            for ox in 0..<wo {
                XCTAssertEqual(
                    Double(ya.scalars[2 * wo + ox]), Double(ox) * Double(w - 1) / Double(wo - 1), accuracy: 1e-5)
            }
        }
        // A ramp in y too: f = 2y + 3x is reproduced in the interior.
        let planeValues: [Float] = (0..<30).map { (i: Int) -> Float in Float(2 * (i / 6) + 3 * (i % 6)) }
        let plane = Tensor(shape: [5, 6], values: planeValues)
        let up = plane.resized(to: (9, 11), mode: .bilinear, alignCorners: true)
        for oy in 0..<9 {
            for ox in 0..<11 {
                let exact: Double = 2 * Double(oy) * 0.5 + 3 * Double(ox) * 0.5
                XCTAssertEqual(Double(up.scalars[oy * 11 + ox]), exact, accuracy: 1e-4)
            }
        }
    }

    func testBilinearKnownValues() {
        // 2x2 -> 4x4, align_corners=False (PyTorch): [[1,2],[3,4]] upsampled.
        let x = Tensor(shape: [2, 2], values: [1, 2, 3, 4])
        let y = x.resized(to: (4, 4), mode: .bilinear, alignCorners: false)
        Check.assertClose(
            y,
            [
                1.0, 1.25, 1.75, 2.0,
                1.5, 1.75, 2.25, 2.5,
                2.5, 2.75, 3.25, 3.5,
                3.0, 3.25, 3.75, 4.0,
            ], tolerance: 1e-6)
        let ya = x.resized(to: (3, 3), mode: .bilinear, alignCorners: true)
        Check.assertClose(ya, [1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4], tolerance: 1e-6)
        // Downsampling by exactly 2 with align_corners=False averages 2x2 blocks.
        let z = Tensor(shape: [4, 4], values: (0..<16).map(Float.init))
        Check.assertClose(
            z.resized(to: (2, 2), mode: .bilinear, alignCorners: false), [2.5, 4.5, 10.5, 12.5], tolerance: 1e-6)
    }

    func testResizeGradients() {
        let x = Check.random([1, 2, 5, 6], seed: 23)
        for mode in [InterpolationMode.bilinear, .bicubic] {
            for align in [false, true] {
                for size in [(8, 9), (3, 4), (7, 3)] {  // up, down, mixed
                    Check.gradients([x]) { $0[0].resized(to: size, mode: mode, alignCorners: align) }
                }
            }
        }
        // Bicubic 14 -> 22 gradient on a batch.
        let g = Check.random([2, 14, 14], seed: 24)
        Check.gradients([g], samples: 64) { $0[0].resized(to: (22, 22), mode: .bicubic) }
    }

    func testResizeGradientIsTransposeOfForward() {
        // <resize(x), g> = <x, resizeᵀ(g)> for the exact adjoint.
        let x = Check.random([2, 4, 5], seed: 25)
        let leaf = x.requiringGrad()
        let g = Check.random([2, 7, 3], seed: 26)
        let y = leaf.resized(to: (7, 3), mode: .bicubic, alignCorners: false)
        (y * g).sum().backward()
        var lhs = 0.0, rhs = 0.0
        for (a, b) in zip(y.scalars, g.scalars) { lhs += Double(a) * Double(b) }
        for (a, b) in zip(x.scalars, leaf.grad!.scalars) { rhs += Double(a) * Double(b) }
        XCTAssertEqual(lhs, rhs, accuracy: 1e-4)
    }
}
