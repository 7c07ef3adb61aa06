import Foundation
import XCTest

@testable import VLTensor

/// `linear` and `matmul` against naive Double loops, with gradient checks for every input.
final class LinearAlgebraTests: XCTestCase {

    /// y[r, o] = sum_i x[r, i] W[o, i] + b[o] over all leading rows of x.
    static func refLinear(_ x: Tensor, _ w: Tensor, _ b: Tensor?) -> [Float] {
        let inF = w.shape[1], outF = w.shape[0], rows = x.count / inF
        let xv = x.scalars, wv = w.scalars, bv = b?.scalars
        var y: [Float] = []
        for r in 0..<rows {
            for o in 0..<outF {
                var s = bv.map { Double($0[o]) } ?? 0
                for i in 0..<inF { s += Double(xv[r * inF + i]) * Double(wv[o * inF + i]) }
                y.append(Float(s))
            }
        }
        return y
    }

    /// op(A) op(B) per batch; a 2-D `b` is shared by every batch.
    static func refMatmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool) -> (
        shape: [Int], values: [Float]
    ) {
        let ar = a.shape[a.rank - 2], ac = a.shape[a.rank - 1]
        let br = b.shape[b.rank - 2], bc = b.shape[b.rank - 1]
        let m = transposeA ? ac : ar, k = transposeA ? ar : ac, n = transposeB ? br : bc
        let batchShape = Array(a.shape.dropLast(2))
        let batch = shapeElementCount(batchShape)
        let av = a.scalars, bv = b.scalars
        let shared = b.rank == 2
        var out: [Float] = []
        for p in 0..<batch {
            let ao = p * ar * ac, bo = shared ? 0 : p * br * bc
            func A(_ i: Int, _ j: Int) -> Double { Double(transposeA ? av[ao + j * ac + i] : av[ao + i * ac + j]) }
            func B(_ i: Int, _ j: Int) -> Double { Double(transposeB ? bv[bo + j * bc + i] : bv[bo + i * bc + j]) }
            for i in 0..<m {
                for j in 0..<n {
                    var s = 0.0
                    for q in 0..<k { s += A(i, q) * B(q, j) }
                    out.append(Float(s))
                }
            }
        }
        return (batchShape + [m, n], out)
    }

    // MARK: - linear

    func testLinearWithBias() {
        let x = Check.random([5, 4], seed: 1), w = Check.random([3, 4], seed: 2), b = Check.random([3], seed: 3)
        let y = linear(x, weight: w, bias: b)
        XCTAssertEqual(y.shape, [5, 3])
        Check.assertClose(y, Self.refLinear(x, w, b), tolerance: 1e-5)
        Check.gradients([x, w, b]) { linear($0[0], weight: $0[1], bias: $0[2]) }
    }

    func testLinearWithoutBias() {
        let x = Check.random([5, 4], seed: 4), w = Check.random([6, 4], seed: 5)
        let y = linear(x, weight: w)
        XCTAssertEqual(y.shape, [5, 6])
        Check.assertClose(y, Self.refLinear(x, w, nil), tolerance: 1e-5)
        Check.gradients([x, w]) { linear($0[0], weight: $0[1]) }
    }

    func testLinear3DInput() {
        let x = Check.random([2, 3, 4], seed: 6), w = Check.random([5, 4], seed: 7), b = Check.random([5], seed: 8)
        let y = linear(x, weight: w, bias: b)
        XCTAssertEqual(y.shape, [2, 3, 5])
        Check.assertClose(y, Self.refLinear(x, w, b), tolerance: 1e-5)
        Check.gradients([x, w, b]) { linear($0[0], weight: $0[1], bias: $0[2]) }
        Check.gradients([x, w]) { linear($0[0], weight: $0[1]) }
        // Each input alone.
        Check.gradients([x, w, b], differentiate: [true, false, false]) { linear($0[0], weight: $0[1], bias: $0[2]) }
        Check.gradients([x, w, b], differentiate: [false, true, false]) { linear($0[0], weight: $0[1], bias: $0[2]) }
        Check.gradients([x, w, b], differentiate: [false, false, true]) { linear($0[0], weight: $0[1], bias: $0[2]) }
    }

    /// The fused linear + ReLU equals the two ops and differentiates like them; wide enough rows that
    /// the bias pass and the column-sum bias gradient split across threads.
    func testLinearReLUFusedMatchesTheComposition() {
        let x = Check.random([3, 7, 5], seed: 21), w = Check.random([9, 5], seed: 22), b = Check.random([9], seed: 23)
        let fused = linearReLU(x, weight: w, bias: b)
        XCTAssertEqual(fused.shape, [3, 7, 9])
        Check.assertClose(fused, Self.refLinear(x, w, b).map { max($0, 0) }, tolerance: 1e-5)
        // Gradients equal those of linear followed by relu (each checked against finite differences
        // elsewhere; finite differences straddle the kink here).
        let g0 = Check.random([3, 7, 9], seed: 28)
        func grads(_ f: (Tensor, Tensor, Tensor) -> Tensor) -> [Tensor] {
            let leaves = [x.copy().requiringGrad(), w.copy().requiringGrad(), b.copy().requiringGrad()]
            (f(leaves[0], leaves[1], leaves[2]) * g0).sum().backward()
            return leaves.map { $0.grad! }
        }
        let fusedGrads = grads { linearReLU($0, weight: $1, bias: $2) }
        let composed = grads { linear($0, weight: $1, bias: $2).relu() }
        for (a, e) in zip(fusedGrads, composed) { Check.assertClose(a, e.scalars, tolerance: 1e-5) }
        let saved = ComputeThreads.count
        defer { ComputeThreads.set(saved) }
        ComputeThreads.set(2)
        let wideX = Check.random([300, 16], seed: 24), wideW = Check.random([2000, 16], seed: 25),
            wideB = Check.random([2000], seed: 26)
        let leaf = wideB.requiringGrad()
        let g = Check.random([300, 2000], seed: 27)
        (linearReLU(wideX, weight: wideW, bias: leaf) * g).sum().backward()
        let y = GradMode.withoutGradients { linear(wideX, weight: wideW, bias: wideB) }
        let yv = y.scalars, gv = g.scalars
        let expected = (0..<2000).map { o in
            (0..<300).reduce(Float(0)) { $0 + (yv[$1 * 2000 + o] > 0 ? gv[$1 * 2000 + o] : 0) }
        }
        Check.assertClose(leaf.grad!, expected, tolerance: 1e-4)
    }

    func testLinearBiasGradientIsColumnSum() {
        let x = Check.random([2, 3, 4], seed: 9), w = Check.random([2, 4], seed: 10)
        let b = Tensor(zeros: [2]).requiringGrad()
        let g = Check.random([2, 3, 2], seed: 11)
        (linear(x, weight: w, bias: b) * g).sum().backward()
        let gv = g.scalars
        let expected = (0..<2).map { o in (0..<6).reduce(Float(0)) { $0 + gv[$1 * 2 + o] } }
        Check.assertClose(b.grad!, expected, tolerance: 1e-6)
    }

    func testFrozenWeightProducesOnlyInputGradient() {
        let w = Check.random([3, 4], seed: 12), b = Check.random([3], seed: 13)  // frozen
        let x = Check.random([2, 5, 4], seed: 14).requiringGrad(name: "x")
        let y = linear(x, weight: w, bias: b)
        XCTAssertNotNil(y.node)
        let g = Check.random([2, 5, 3], seed: 15)
        (y * g).sum().backward()
        XCTAssertNil(w.grad)
        XCTAssertNil(b.grad)
        XCTAssertNil(w.node)
        // dX = G W.
        let gv = g.scalars, wv = w.scalars
        var expected: [Float] = []
        for r in 0..<10 {
            for i in 0..<4 {
                var s = 0.0
                for o in 0..<3 { s += Double(gv[r * 3 + o]) * Double(wv[o * 4 + i]) }
                expected.append(Float(s))
            }
        }
        XCTAssertEqual(x.grad?.shape, [2, 5, 4])
        Check.assertClose(x.grad!, expected, tolerance: 1e-5)
    }

    func testFrozenInputProducesOnlyWeightGradient() {
        let x = Check.random([6, 4], seed: 16)  // frozen activations
        let w = Check.random([3, 4], seed: 17).requiringGrad(name: "w")
        let b = Check.random([3], seed: 18)  // frozen bias
        (linear(x, weight: w, bias: b) * Check.random([6, 3], seed: 19)).sum().backward()
        XCTAssertNil(x.grad)
        XCTAssertNil(b.grad)
        XCTAssertEqual(w.grad?.shape, [3, 4])
        Check.gradients([x, w, b], differentiate: [false, true, false]) { linear($0[0], weight: $0[1], bias: $0[2]) }
        // Only the bias trainable.
        let bt = b.requiringGrad()
        let y = linear(x, weight: w.detached(), bias: bt)
        XCTAssertNotNil(y.node)
        y.sum().backward()
        Check.assertClose(bt.grad!, [6, 6, 6], tolerance: 1e-6)
    }

    // MARK: - matmul

    func checkMatmul(
        _ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        let label = "\(a.shape)\(transposeA ? "ᵀ" : "") x \(b.shape)\(transposeB ? "ᵀ" : "")"
        let y = matmul(a, b, transposeA: transposeA, transposeB: transposeB)
        let e = Self.refMatmul(a, b, transposeA: transposeA, transposeB: transposeB)
        XCTAssertEqual(y.shape, e.shape, label, file: file, line: line)
        Check.assertClose(y, e.values, tolerance: 1e-5, label, file: file, line: line)
        let f: ([Tensor]) -> Tensor = { matmul($0[0], $0[1], transposeA: transposeA, transposeB: transposeB) }
        Check.gradients([a, b], file: file, line: line, f)
        Check.gradients([a, b], differentiate: [true, false], file: file, line: line, f)
        Check.gradients([a, b], differentiate: [false, true], file: file, line: line, f)
    }

    /// Stored shape of a logical [rows, cols] operand, transposed or not, with batch axes.
    static func stored(_ batch: [Int], _ rows: Int, _ cols: Int, transposed: Bool) -> [Int] {
        batch + (transposed ? [cols, rows] : [rows, cols])
    }

    func testMatmul2DAllTransposes() {
        let m = 3, k = 4, n = 5
        for ta in [false, true] {
            for tb in [false, true] {
                let a = Check.random(Self.stored([], m, k, transposed: ta), seed: 20)
                let b = Check.random(Self.stored([], k, n, transposed: tb), seed: 21)
                checkMatmul(a, b, transposeA: ta, transposeB: tb)
            }
        }
    }

    func testMatmulBatchedAllTransposes() {
        let m = 2, k = 3, n = 4
        for batch in [[2], [2, 3]] {
            for ta in [false, true] {
                for tb in [false, true] {
                    let a = Check.random(Self.stored(batch, m, k, transposed: ta), seed: 22)
                    let b = Check.random(Self.stored(batch, k, n, transposed: tb), seed: 23)
                    checkMatmul(a, b, transposeA: ta, transposeB: tb)
                }
            }
        }
    }

    func testMatmulSharedRightOperand() {
        let m = 3, k = 4, n = 2
        for batch in [[2], [2, 2]] {
            for ta in [false, true] {
                for tb in [false, true] {
                    let a = Check.random(Self.stored(batch, m, k, transposed: ta), seed: 24)
                    let b = Check.random(Self.stored([], k, n, transposed: tb), seed: 25)
                    checkMatmul(a, b, transposeA: ta, transposeB: tb)
                }
            }
        }
    }

    func testMatmulSharedRightOperandGradientAccumulatesOverBatch() {
        // sum over batches of A_i B: dB = sum_i A_iᵀ G_i.
        let a = Check.random([3, 2, 4], seed: 26)
        let b = Check.random([4, 5], seed: 27).requiringGrad()
        let g = Check.random([3, 2, 5], seed: 28)
        (matmul(a, b) * g).sum().backward()
        let av = a.scalars, gv = g.scalars
        var expected = [Float](repeating: 0, count: 20)
        for q in 0..<4 {
            for j in 0..<5 {
                var s = 0.0
                for bi in 0..<3 {
                    for i in 0..<2 { s += Double(av[(bi * 2 + i) * 4 + q]) * Double(gv[(bi * 2 + i) * 5 + j]) }
                }
                expected[q * 5 + j] = Float(s)
            }
        }
        Check.assertClose(b.grad!, expected, tolerance: 1e-5)
    }

    func testMatmulVectorLikeShapes() {
        // Degenerate sizes: row vector times matrix, matrix times column, outer product.
        checkMatmul(
            Check.random([1, 4], seed: 29), Check.random([4, 3], seed: 30), transposeA: false, transposeB: false)
        checkMatmul(
            Check.random([3, 4], seed: 31), Check.random([4, 1], seed: 32), transposeA: false, transposeB: false)
        checkMatmul(
            Check.random([1, 3], seed: 33), Check.random([1, 2], seed: 34), transposeA: true, transposeB: false)
    }

    func testMatmulSameOperandTwice() {
        // x xᵀ: both gradient paths land on the same leaf.
        let x = Check.random([3, 4], seed: 35)
        Check.gradients([x]) { matmul($0[0], $0[0], transposeB: true) }
        Check.gradients([x]) { matmul($0[0], $0[0], transposeA: true) }
    }
}

/// The FLOP counter behind the benches' GFLOP/s: exact when several threads issue products at once.
final class FLOPCountTests: XCTestCase {
    func testConcurrentProductsAreAllCounted() {
        let a = Tensor(filling: 1, shape: [3, 5]), b = Tensor(filling: 1, shape: [5, 7])
        let c0 = Tensor(zeros: [8, 3, 7])
        let perProduct = 2.0 * 3 * 7 * 5, calls = 4_000
        let before = BLAS.flopCount
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            withTensorPointers(writing: c0, reading: a, b) { pc, pa, pb in
                for _ in 0..<(calls / 8) {
                    BLAS.sgemm(
                        transposeA: false, transposeB: false, m: 3, n: 7, k: 5,
                        a: pa, lda: 5, b: pb, ldb: 7, c: pc + t * 21, ldc: 7)
                }
            }
        }
        XCTAssertEqual(BLAS.flopCount - before, perProduct * Double(calls))
        XCTAssertEqual(c0.scalars, [Float](repeating: 5, count: 8 * 21))
    }
}
