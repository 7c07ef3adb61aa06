import XCTest

@testable import VLTensor

/// The AVX-512 panel kernel against OpenBLAS: every tail of rows (tiles of 6) and columns (panels
/// of 64, vectors of 16), transposed A, accumulation, and k = 0.
final class PanelGEMMTests: XCTestCase {
    func product(transposeA: Bool, m: Int, n: Int, k: Int, beta: Float, seed: UInt64, panel: Bool) -> [Float] {
        let a = Check.random(transposeA ? [k, m] : [m, k], seed: seed)
        let b = Check.random([k, n + 3], seed: seed + 1)  // row stride n + 3: ldb larger than n
        // C has a row stride of n + 5; beta 0 must not read it, so it starts as NaN there.
        let c = Tensor(
            shape: [m, n + 5],
            values: beta == 0
                ? Array(repeating: .nan, count: m * (n + 5))
                : Check.random([m, n + 5], seed: seed + 2).scalars)
        let lda = transposeA ? m : k
        withTensorPointers(writing: c, reading: a, b) { pc, pa, pb in
            if panel {
                PanelGEMM.multiply(
                    transposeA: transposeA, m: m, n: n, k: k, a: pa, lda: lda, b: pb, ldb: n + 3,
                    beta: beta, c: pc, ldc: n + 5)
            } else {
                BLAS.sgemm(
                    transposeA: transposeA, transposeB: false, m: m, n: n, k: k, a: pa, lda: lda, b: pb,
                    ldb: n + 3, beta: beta, c: pc, ldc: n + 5)
            }
        }
        // Only the m x n block; the padding columns must be untouched (NaN or the initial values).
        return c.scalars
    }

    func testMatchesOpenBLASOnEveryTail() throws {
        try XCTSkipUnless(PanelGEMM.enabled, "no AVX-512 on this CPU: PanelGEMM is OpenBLAS")
        var seed: UInt64 = 1
        for transposeA in [false, true] {
            for (m, n, k) in [
                (1, 1, 1), (5, 17, 3), (6, 64, 64), (7, 65, 9), (13, 130, 33), (256, 64, 2048), (12, 2048, 64),
                (3, 48, 0),
            ] {
                for beta: Float in [0, 1] {
                    let got = product(transposeA: transposeA, m: m, n: n, k: k, beta: beta, seed: seed, panel: true)
                    let want = product(transposeA: transposeA, m: m, n: n, k: k, beta: beta, seed: seed, panel: false)
                    seed += 3
                    for i in 0..<m {
                        for j in 0..<(n + 5) {
                            let g = got[i * (n + 5) + j], w = want[i * (n + 5) + j]
                            if j >= n {
                                XCTAssertTrue(
                                    g.isNaN && w.isNaN || g == w, "padding written at (\(i), \(j)) m \(m) n \(n) k \(k)"
                                )
                            } else {
                                XCTAssertEqual(
                                    g, w, accuracy: 1e-5 * Float(max(k, 1)).squareRoot() * 4,
                                    "(\(i), \(j)) m \(m) n \(n) k \(k) transposeA \(transposeA) beta \(beta)")
                            }
                        }
                    }
                }
            }
        }
    }

    /// Long sums (k = 2048, as the decoder MLP's fc2 and dX) are about as accurate as OpenBLAS's,
    /// measured against float64.
    func testLongSumsAreAsAccurateAsOpenBLAS() throws {
        try XCTSkipUnless(PanelGEMM.enabled, "no AVX-512 on this CPU: PanelGEMM is OpenBLAS")
        let (m, n, k) = (24, 64, 2048)
        let a = Check.random([m, k], seed: 21), b = Check.random([k, n], seed: 22)
        let pa = a.scalars, pb = b.scalars
        var panelError = 0.0, blasError = 0.0
        let viaPanel = Tensor(uninitialized: [m, n]), viaBLAS = Tensor(uninitialized: [m, n])
        withTensorPointers(writing: viaPanel, viaBLAS, reading: a, b) { panelC, blasC, pa, pb in
            PanelGEMM.multiply(transposeA: false, m: m, n: n, k: k, a: pa, lda: k, b: pb, ldb: n, c: panelC, ldc: n)
            BLAS.sgemm(
                transposeA: false, transposeB: false, m: m, n: n, k: k, a: pa, lda: k, b: pb, ldb: n, c: blasC, ldc: n)
        }
        for i in 0..<m {
            for j in 0..<n {
                var exact = 0.0
                for p in 0..<k { exact += Double(pa[i * k + p]) * Double(pb[p * n + j]) }
                panelError = max(panelError, abs(Double(viaPanel.scalars[i * n + j]) - exact))
                blasError = max(blasError, abs(Double(viaBLAS.scalars[i * n + j]) - exact))
            }
        }
        XCTAssertLessThan(panelError, 1.5 * blasError + 1e-6, "panel \(panelError), OpenBLAS \(blasError)")
        XCTAssertLessThan(panelError, 1e-4)
    }

    /// Each element's sum runs over k in order whatever rows and columns are asked for: a block of
    /// C computed alone equals the same block of the whole product, bit for bit.
    func testResultsDoNotDependOnTheSplit() throws {
        try XCTSkipUnless(PanelGEMM.enabled, "no AVX-512 on this CPU: PanelGEMM is OpenBLAS")
        let (m, n, k) = (20, 150, 70)
        let a = Check.random([m, k], seed: 7), b = Check.random([k, n], seed: 8)
        let whole = Tensor(uninitialized: [m, n]), part = Tensor(uninitialized: [m, n])
        withTensorPointers(writing: whole, part, reading: a, b) { pw, pp, pa, pb in
            PanelGEMM.multiply(transposeA: false, m: m, n: n, k: k, a: pa, lda: k, b: pb, ldb: n, c: pw, ldc: n)
            for (rows, cols) in [(0..<7, 0..<33), (7..<20, 0..<33), (0..<20, 33..<150)] {
                PanelGEMM.multiply(
                    transposeA: false, m: rows.count, n: cols.count, k: k, a: pa + rows.lowerBound * k, lda: k,
                    b: pb + cols.lowerBound, ldb: n, c: pp + rows.lowerBound * n + cols.lowerBound, ldc: n)
            }
        }
        XCTAssertEqual(whole.scalars, part.scalars)
    }

    /// A linear layer on the panel path (40 -> 48, then 48 -> 20 for the input gradient's
    /// columns; every product above the million multiply-adds that splits it over threads) gives
    /// the same bits on 1, 2 and 3 threads, forward and backward.
    func testLinearIsBitIdenticalAcrossThreadCounts() throws {
        try XCTSkipUnless(PanelGEMM.enabled, "no AVX-512 on this CPU: PanelGEMM is OpenBLAS")
        XCTAssertTrue(PanelGEMM.suits(columns: 48) && PanelGEMM.suits(columns: 20) && !PanelGEMM.suits(columns: 8))
        let previous = ComputeThreads.count
        defer { ComputeThreads.set(previous) }
        var results: [[[Float]]] = []
        for threads in [1, 2, 3] {
            ComputeThreads.set(threads)
            let x = Check.random([3, 700, 20], seed: 31).requiringGrad()
            let w1 = Check.random([48, 20], seed: 32).requiringGrad(), b1 = Check.random([48], seed: 33).requiringGrad()
            let w2 = Check.random([20, 48], seed: 34).requiringGrad()
            let y = linear(linearReLU(x, weight: w1, bias: b1), weight: w2)
            (y * Check.random([3, 700, 20], seed: 35)).sum().backward()
            results.append([y.scalars, x.grad!.scalars, w1.grad!.scalars, b1.grad!.scalars, w2.grad!.scalars])
        }
        XCTAssertEqual(results[0], results[1])
        XCTAssertEqual(results[0], results[2])
    }
}
