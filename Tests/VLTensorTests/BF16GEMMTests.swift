import CVectorMath
import XCTest

@testable import VLTensor

/// The bfloat16 kernel against float64 sums of bfloat16-rounded inputs (so a packing or indexing
/// mistake shows at full size, not hidden inside bf16 tolerance), its rounding rule, its
/// independence from the split of the work, and `linear` under `MatmulPrecision.bf16`.
final class BF16GEMMTests: XCTestCase {
    private var threads = 1

    override func setUpWithError() throws {
        try XCTSkipUnless(BF16GEMM.available, "no AVX512_BF16 on this CPU")
        threads = ComputeThreads.count
    }

    override func tearDown() {
        try? MatmulPrecision.set(.fp32)
        ComputeThreads.set(threads)
    }

    /// Each reduced-precision tensor within `tolerance` of its float32 counterpart's largest magnitude,
    /// and different from it (else the bf16 path did not run), except those named in `unchanged`.
    func assertNearFloat32(
        _ exact: [Tensor], _ reduced: [Tensor], names: [String], tolerance: Float, _ context: String,
        unchanged: Set<String> = [], file: StaticString = #filePath, line: UInt = #line
    ) {
        for (name, (e, r)) in zip(names, zip(exact, reduced)) {
            let scale = e.scalars.map { abs($0) }.max()!
            let worst = zip(e.scalars, r.scalars).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(worst, tolerance * scale, "\(name), \(context)", file: file, line: line)
            if !unchanged.contains(name) {
                XCTAssertGreaterThan(
                    worst, 0, "\(name), \(context): the bf16 kernel did not run", file: file, line: line)
            }
        }
    }

    /// How B is laid out in memory: rows contiguous, columns contiguous (a weight read as W^T), or
    /// neither; each takes a different packing path.
    enum Layout: CaseIterable { case rows, columns, strided }

    func strides(_ layout: Layout, k: Int, n: Int) -> (rsb: Int, csb: Int, count: Int) {
        switch layout {
        case .rows: return (n + 3, 1, k * (n + 3))
        case .columns: return (1, k + 2, n * (k + 2))
        case .strided: return (2 * n + 1, 2, k * (2 * n + 1))
        }
    }

    func testMatchesFloat64OfRoundedInputsOnEveryTail() {
        var seed: UInt64 = 5
        for layout in Layout.allCases {
            for transposeA in [false, true] {
                for (m, n, k) in [
                    (1, 1, 1), (5, 17, 3), (6, 64, 64), (7, 65, 9), (13, 130, 33), (97, 70, 515), (12, 200, 2),
                    (3, 48, 0),
                ] {
                    for beta: Float in [0, 1] {
                        seed += 4
                        let a = Check.random([m * k + 1], seed: seed).scalars
                        let (rsb, csb, bCount) = strides(layout, k: k, n: n)
                        let b = Check.random([max(bCount, 1)], seed: seed + 1).scalars
                        let ldc = n + 5
                        let c0 =
                            beta == 0
                            ? [Float](repeating: .nan, count: m * ldc) : Check.random([m * ldc], seed: seed + 2).scalars
                        var c = c0
                        let (rsa, csa) = transposeA ? (1, m) : (k, 1)
                        a.withUnsafeBufferPointer { pa in
                            b.withUnsafeBufferPointer { pb in
                                c.withUnsafeMutableBufferPointer { pc in
                                    BF16GEMM.multiply(
                                        m: m, n: n, k: k, a: pa.baseAddress!, rsa: rsa, csa: csa, b: pb.baseAddress!,
                                        rsb: rsb, csb: csb, beta: beta, c: pc.baseAddress!, ldc: ldc)
                                }
                            }
                        }
                        for i in 0..<m {
                            for j in 0..<ldc {
                                let got = c[i * ldc + j]
                                if j >= n {
                                    XCTAssertTrue(
                                        got.isNaN && c0[i * ldc + j].isNaN || got == c0[i * ldc + j],
                                        "padding written at (\(i), \(j))")
                                    continue
                                }
                                var sum = beta == 0 ? 0.0 : Double(c0[i * ldc + j]), scale = abs(sum)
                                for p in 0..<k {
                                    let term =
                                        Double(BF16GEMM.rounded(a[i * rsa + p * csa]))
                                        * Double(BF16GEMM.rounded(b[p * rsb + j * csb]))
                                    sum += term
                                    scale += abs(term)
                                }
                                XCTAssertEqual(
                                    Double(got), sum, accuracy: 4e-7 * Double(k + 1).squareRoot() * max(scale, 1e-30),
                                    "(\(i), \(j)) m \(m) n \(n) k \(k) \(layout) transposeA \(transposeA) beta \(beta)")
                            }
                        }
                    }
                }
            }
        }
    }

    /// Round to nearest even on the 16 dropped bits, denormals to signed zero, infinities kept,
    /// NaN kept NaN: the rule of the hardware conversion.
    func testRoundingRule() {
        let one = Float(1)
        XCTAssertEqual(BF16GEMM.rounded(one + 0x1p-8), 1, "a tie rounds to the even neighbour (down)")
        XCTAssertEqual(BF16GEMM.rounded(one + 3 * 0x1p-8), 1 + 0x1p-6, "a tie rounds to the even neighbour (up)")
        XCTAssertEqual(BF16GEMM.rounded(one + 0x1p-8 + 0x1p-12), 1 + 0x1p-7, "above the tie rounds up")
        XCTAssertEqual(BF16GEMM.rounded(-3.140625), -3.140625, "representable values are exact")
        XCTAssertEqual(BF16GEMM.rounded(Float(bitPattern: 0x0000_1234)).bitPattern, 0, "a denormal becomes +0")
        XCTAssertEqual(
            BF16GEMM.rounded(Float(bitPattern: 0x8000_1234)).bitPattern, 0x8000_0000, "a negative denormal becomes -0")
        XCTAssertEqual(BF16GEMM.rounded(.infinity), .infinity)
        XCTAssertEqual(
            BF16GEMM.rounded(-.greatestFiniteMagnitude), -.infinity, "beyond bfloat16's largest finite value")
        XCTAssertTrue(BF16GEMM.rounded(.nan).isNaN)
        XCTAssertTrue(
            BF16GEMM.rounded(Float(bitPattern: 0x7F80_0001)).isNaN,
            "a NaN whose payload is in the dropped bits stays NaN")
    }

    /// The vector packing paths (rows and columns contiguous) give the same words as the portable
    /// rule on values that exercise it: ties, denormals, NaN, infinities.
    func testEveryPackingPathRoundsAlike() {
        let (k, n) = (37, 70)
        let specials: [Float] = [
            1 + 0x1p-8, 1 + 3 * 0x1p-8, Float(bitPattern: 0x0000_1234), Float(bitPattern: 0x8000_0001),
            .infinity, -.infinity, .nan, Float(bitPattern: 0x7F80_0001), -0.0, .greatestFiniteMagnitude,
        ]
        let random = Check.random([k * n], seed: 9).scalars
        let values = (0..<(k * n)).map { $0 % 7 == 0 ? specials[($0 / 7) % specials.count] : random[$0] }
        func bits(_ x: Float) -> UInt32 { BF16GEMM.rounded(x).bitPattern >> 16 }
        let words = vlseg_bf16_packed_words(k, n)
        for layout in Layout.allCases {
            let (rsb, csb, count) = strides(layout, k: k, n: n)
            var b = [Float](repeating: 0, count: count)
            for p in 0..<k { for j in 0..<n { b[p * rsb + j * csb] = values[p * n + j] } }
            var packed = [UInt32](repeating: 0xDEAD_BEEF, count: words)
            vlseg_bf16_pack_b(k, n, b, rsb, csb, &packed, 0, (n + 63) / 64)
            let pairs = (k + 1) / 2
            for panel in 0..<((n + 63) / 64) {
                for p in 0..<pairs {
                    for lane in 0..<64 {
                        let j = panel * 64 + lane
                        let low = j < n ? bits(values[2 * p * n + j]) : 0
                        let high = j < n && 2 * p + 1 < k ? bits(values[(2 * p + 1) * n + j]) : 0
                        let got = packed[(panel * pairs + p) * 64 + lane]
                        XCTAssertEqual(got, low | high << 16, "\(layout): pair \(p), column \(j)")
                    }
                }
            }
        }
    }

    /// The same bits whatever the thread count (row-tile and panel splits) and whether the kernel
    /// runs on the whole product or on blocks of rows.
    func testResultsDoNotDependOnTheSplit() {
        for (m, n, k) in [(300, 70, 600), (40, 700, 300)] {
            let a = Check.random([m, k], seed: 31), b = Check.random([k, n], seed: 32)
            var results: [[Float]] = []
            for threads in [1, 2, 3] {
                ComputeThreads.set(threads)
                let c = Tensor(uninitialized: [m, n])
                withTensorPointers(writing: c, reading: a, b) { pc, pa, pb in
                    BF16GEMM.multiply(m: m, n: n, k: k, a: pa, rsa: k, csa: 1, b: pb, rsb: n, csb: 1, c: pc, ldc: n)
                }
                results.append(c.scalars)
            }
            XCTAssertEqual(results[0], results[1], "1 vs 2 threads, \(m)x\(n)x\(k)")
            XCTAssertEqual(results[0], results[2], "1 vs 3 threads, \(m)x\(n)x\(k)")
        }
    }

    /// Attention with 64-wide heads (the per-head product path) under bf16: output and gradients
    /// within bfloat16's rounding of float32's, on one thread and with heads split over threads.
    func testAttentionUnderBF16StaysWithinBFloat16RoundingOfFloat32() throws {
        let (b, tq, tk, e, heads) = (2, 37, 45, 128, 2)
        let q = Check.random([b, tq, e], seed: 51), k = Check.random([b, tk, e], seed: 52),
            v = Check.random([b, tk, e], seed: 53)
        let upstream = Check.random([b, tq, e], seed: 54)
        var mask = [Float](repeating: 1, count: b * tk)
        for j in 40..<tk { mask[tk + j] = 0 }
        let keyMask = Tensor(shape: [b, tk], values: mask)
        func run() -> [Tensor] {
            let qv = q.detached().requiringGrad(), kv = k.detached().requiringGrad(), vv = v.detached().requiringGrad()
            let y = multiHeadAttention(query: qv, key: kv, value: vv, heads: heads, keyMask: keyMask, scale: 0.3)
            (y * upstream).sum().backward()
            return [y, qv.grad!, kv.grad!, vv.grad!]
        }
        for threads in [1, 2] {
            ComputeThreads.set(threads)
            try MatmulPrecision.set(.fp32)
            let exact = run()
            try MatmulPrecision.set(.bf16)
            let reduced = run()
            assertNearFloat32(
                exact, reduced, names: ["output", "dQ", "dK", "dV"], tolerance: 0.03, "\(threads) thread(s)")
        }
    }

    /// Convolutions under bf16 (their im2col products), image-parallel and one image at a time:
    /// outputs and gradients within bfloat16's rounding of float32's.
    func testConvolutionsUnderBF16StayWithinBFloat16RoundingOfFloat32() throws {
        for batch in [1, 3] {
            let x = Check.random([batch, 24, 11, 13], seed: 61), w = Check.random([32, 24, 3, 3], seed: 62)
            let tw = Check.random([24, 20, 2, 2], seed: 63), bias = Check.random([32], seed: 64)
            func run() -> [Tensor] {
                let xv = x.detached().requiringGrad(), wv = w.detached().requiringGrad(),
                    twv = tw.detached().requiringGrad()
                let y = conv2d(xv, weight: wv, bias: bias, stride: (1, 2), padding: (1, 1))
                let z = convTranspose2d(xv, weight: twv, stride: (2, 2))
                let seedY = Check.random(y.shape, seed: 65), seedZ = Check.random(z.shape, seed: 66)
                ((y * seedY).sum() + (z * seedZ).sum()).backward()
                return [y, z, xv.grad!, wv.grad!, twv.grad!]
            }
            try MatmulPrecision.set(.fp32)
            let exact = run()
            try MatmulPrecision.set(.bf16)
            let reduced = run()
            assertNearFloat32(
                exact, reduced, names: ["conv2d", "conv_transpose2d", "dX", "conv2d dW", "conv_transpose2d dW"],
                tolerance: 0.02, "batch \(batch)")
        }
    }

    /// `linear` under bf16: forward and all three gradients within bfloat16's rounding of the float32
    /// results, and not equal to them (the bf16 path really ran).
    func testLinearUnderBF16StaysWithinBFloat16RoundingOfFloat32() throws {
        let x = Check.random([2, 45, 96], seed: 41), w = Check.random([80, 96], seed: 42),
            bias = Check.random([80], seed: 43)
        let upstream = Check.random([2, 45, 80], seed: 44)
        func run() -> [Tensor] {
            let xv = x.detached().requiringGrad(), wv = w.detached().requiringGrad(),
                bv = bias.detached().requiringGrad()
            let y = linear(xv, weight: wv, bias: bv)
            (y * upstream).sum().backward()
            return [y, xv.grad!, wv.grad!, bv.grad!]
        }
        let exact = run()
        try MatmulPrecision.set(.bf16)
        let reduced = run()
        // The bias gradient is a sum over rows, no product: it may come out exactly equal.
        assertNearFloat32(
            exact, reduced, names: ["output", "input gradient", "weight gradient", "bias gradient"], tolerance: 0.02,
            "linear", unchanged: ["bias gradient"])
    }

    /// `mlpReLU` under bf16 (weights packed once per call, every row block multiplied by them), over
    /// several row blocks: output and input gradient bit-identical to `linearReLU` + `linear` under
    /// bf16 (the same products, each element summed the same way), weight gradients (float32 products
    /// there, bf16 in `linear`) close; the same bits for 1 and 2 threads; and different from float32.
    func testBlockedMLPUnderBF16MatchesComposedLayersAndIgnoresThreads() throws {
        let (inF, hidden, outF) = (40, 1100, 24)
        let x = Check.random([2, 500, inF], seed: 71)
        let w1 = Check.random([hidden, inF], seed: 72), b1 = Check.random([hidden], seed: 73)
        let w2 = Check.random([outF, hidden], seed: 74), b2 = Check.random([outF], seed: 75)
        let upstream = Check.random([2, 500, outF], seed: 76)
        XCTAssertGreaterThan(MLPBlocks(rows: 1000, hidden: hidden).blocks, 2, "the test should span several row blocks")
        func run(blocked: Bool) -> [Tensor] {
            let xv = x.detached().requiringGrad(), w1v = w1.detached().requiringGrad(),
                b1v = b1.detached().requiringGrad()
            let w2v = w2.detached().requiringGrad(), b2v = b2.detached().requiringGrad()
            let y =
                blocked
                ? mlpReLU(xv, fc1Weight: w1v, fc1Bias: b1v, fc2Weight: w2v, fc2Bias: b2v)
                : linear(linearReLU(xv, weight: w1v, bias: b1v), weight: w2v, bias: b2v)
            (y * upstream).sum().backward()
            return [y, xv.grad!, w1v.grad!, b1v.grad!, w2v.grad!, b2v.grad!]
        }
        let names = [
            "output", "input gradient", "fc1 weight gradient", "fc1 bias gradient", "fc2 weight gradient",
            "fc2 bias gradient",
        ]
        let exact = run(blocked: true)
        try MatmulPrecision.set(.bf16)
        ComputeThreads.set(1)
        let one = run(blocked: true)
        let composed = run(blocked: false)
        ComputeThreads.set(2)
        let two = run(blocked: true)
        for (name, (a, b)) in zip(names, zip(one, two)) {
            XCTAssertEqual(a.scalars, b.scalars, "\(name) differs between 1 and 2 threads")
        }
        XCTAssertEqual(one[0].scalars, composed[0].scalars, "output: blocked and composed bf16 products differ")
        XCTAssertEqual(one[1].scalars, composed[1].scalars, "input gradient: blocked and composed bf16 products differ")
        // The weight gradients' products are float32 in the blocked MLP and bf16 in `linear`.
        assertNearFloat32(
            Array(one[2...]), Array(composed[2...]), names: Array(names[2...]), tolerance: 0.02,
            "mlpReLU vs linear, bf16",
            unchanged: ["fc1 bias gradient", "fc2 bias gradient"])
        // Against float32 the ReLU masks differ wherever rounding moves a hidden activation across 0,
        // each flip changing a hidden gradient by its whole size: a looser bound, and the output's.
        assertNearFloat32([exact[0]], [one[0]], names: ["output"], tolerance: 0.02, "mlpReLU vs float32")
        assertNearFloat32(
            Array(exact[1...]), Array(one[1...]), names: Array(names[1...]), tolerance: 0.15, "mlpReLU vs float32",
            unchanged: ["fc2 bias gradient"])
    }
}
