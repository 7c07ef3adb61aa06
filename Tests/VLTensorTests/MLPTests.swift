import XCTest

@testable import VLTensor

/// The fused two-layer ReLU MLP against its composition from `linearReLU` and `linear`, finite
/// differences, and across thread counts (the result must not depend on them).
final class MLPTests: XCTestCase {
    func composed(_ t: [Tensor]) -> Tensor {
        linear(linearReLU(t[0], weight: t[1], bias: t[3]), weight: t[2], bias: t[4])
    }

    func fused(_ t: [Tensor]) -> Tensor {
        mlpReLU(t[0], fc1Weight: t[1], fc1Bias: t[3], fc2Weight: t[2], fc2Bias: t[4])
    }

    func parameters(rows: [Int], inF: Int, hidden: Int, outF: Int, seed: UInt64) -> [Tensor] {
        [
            Check.random(rows + [inF], seed: seed), Check.random([hidden, inF], seed: seed + 1, low: -0.5, high: 0.5),
            Check.random([outF, hidden], seed: seed + 2, low: -0.5, high: 0.5), Check.random([hidden], seed: seed + 3),
            Check.random([outF], seed: seed + 4),
        ]
    }

    func testMatchesCompositionValuesAndGradients() {
        // Row counts below, at and across the block size (hidden 2048 -> 64-row blocks), so
        // every slot and the ragged last block are exercised.
        for (n, (rows, hidden)) in [([3, 5], 16), ([2, 97], 2048), ([1, 64], 2048), ([4, 485], 256)].enumerated() {
            let t = parameters(rows: rows, inF: 24, hidden: hidden, outF: 16, seed: UInt64(10 * n + 1))
            let w = Check.random(rows + [16], seed: UInt64(10 * n + 7))
            let a = t.map { $0.requiringGrad() }, b = t.map { $0.requiringGrad() }
            let ya = fused(a), yb = composed(b)
            // Relative to the outputs' size: sums over 2048 hidden units round differently per kernel.
            let outScale = yb.scalars.map(abs).max() ?? 1
            Check.assertClose(ya, yb.scalars, tolerance: 2e-5 * max(1, outScale), "rows \(rows) hidden \(hidden)")
            (ya * w).sum().backward()
            (yb * w).sum().backward()
            for (i, name) in ["x", "fc1.weight", "fc2.weight", "fc1.bias", "fc2.bias"].enumerated() {
                let ref = b[i].grad!
                let scale = ref.scalars.map(abs).max() ?? 1
                Check.assertClose(
                    a[i].grad!, ref.scalars, tolerance: 2e-5 * max(1, scale), "\(name) rows \(rows) hidden \(hidden)")
            }
        }
    }

    func testGradientsMatchFiniteDifferences() {
        // Hidden pre-activations kept at least 0.1 away from ReLU's kink (|x W1ᵀ| <= 0.5 against
        // |b1| >= 0.6, half the units off), so no finite-difference probe crosses it.
        var t = parameters(rows: [2, 7], inF: 5, hidden: 12, outF: 4, seed: 50)
        t[1] = Check.random([12, 5], seed: 51, low: -0.1, high: 0.1)
        t[3] = Tensor(
            shape: [12],
            values: Check.random([12], seed: 53, low: 0.6, high: 1).scalars.enumerated().map {
                $0.offset % 2 == 0 ? $0.element : -$0.element
            })
        Check.gradients(t) { self.fused($0) }
        Check.gradients(t, differentiate: [true, false, false, false, false]) { self.fused($0) }
        Check.gradients(t, differentiate: [false, true, false, true, false]) { self.fused($0) }
        Check.gradients(t, differentiate: [false, false, true, false, true]) { self.fused($0) }
    }

    func testWithoutBiasesAndFrozenWeights() {
        let t = parameters(rows: [3, 9], inF: 8, hidden: 32, outF: 8, seed: 60)
        let f: ([Tensor]) -> Tensor = { mlpReLU($0[0], fc1Weight: $0[1], fc1Bias: nil, fc2Weight: $0[2], fc2Bias: nil) }
        // A small step, so that no probe moves a hidden pre-activation across ReLU's kink.
        Check.gradients(t, eps: 1e-3, tolerance: 5e-3, differentiate: [true, false, false, false, false], f)
        let y = f(t), ref = linear(linearReLU(t[0], weight: t[1]), weight: t[2])
        Check.assertClose(y, ref.scalars, tolerance: 1e-5)
    }

    func testIndependentOfThreadCount() {
        let saved = ComputeThreads.count
        defer { ComputeThreads.set(saved) }
        let t = parameters(rows: [4, 485], inF: 64, hidden: 2048, outF: 64, seed: 70)
        let w = Check.random([4, 485, 64], seed: 77)
        var results: [[[Float]]] = []
        for threads in [1, 2, 3] {
            ComputeThreads.set(threads)
            let a = t.map { $0.requiringGrad() }
            let y = fused(a)
            (y * w).sum().backward()
            results.append([y.scalars] + a.map { $0.grad!.scalars })
        }
        XCTAssertEqual(results[0], results[1], "1 vs 2 threads")
        XCTAssertEqual(results[0], results[2], "1 vs 3 threads")
    }
}
