import XCTest

@testable import VLTensor

/// Convolution, transposed convolution, pooling and inference batch norm, checked against direct
/// float64 definitions (no im2col, no GEMM) and against finite differences.
final class ConvolutionTests: XCTestCase {
    // MARK: - Direct float64 references

    /// y[b,o,oy,ox] = bias[o] + sum_{c,i,j} x[b,c,oy*s-p+i,ox*s-p+j] * w[o,c,i,j], padding reads zero.
    static func referenceConv2d(_ x: Tensor, _ w: Tensor, _ bias: Tensor?, stride: (Int, Int), padding: (Int, Int))
        -> (shape: [Int], values: [Float])
    {
        let (bn, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, kh, kw) = (w.shape[0], w.shape[2], w.shape[3])
        let oh = (h + 2 * padding.0 - kh) / stride.0 + 1, ow = (wd + 2 * padding.1 - kw) / stride.1 + 1
        let xv = x.scalars, wv = w.scalars, bv = bias?.scalars
        var out = [Float](repeating: 0, count: bn * o * oh * ow)
        for b in 0..<bn {
            for oc in 0..<o {
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        var s = Double(bv?[oc] ?? 0)
                        for ic in 0..<c {
                            for i in 0..<kh {
                                for j in 0..<kw {
                                    let iy = oy * stride.0 - padding.0 + i, ix = ox * stride.1 - padding.1 + j
                                    guard iy >= 0, iy < h, ix >= 0, ix < wd else { continue }
                                    s +=
                                        Double(xv[((b * c + ic) * h + iy) * wd + ix])
                                        * Double(wv[((oc * c + ic) * kh + i) * kw + j])
                                }
                            }
                        }
                        out[((b * o + oc) * oh + oy) * ow + ox] = Float(s)
                    }
                }
            }
        }
        return ([bn, o, oh, ow], out)
    }

    /// Scatter definition: every x[b,ci,iy,ix] adds x * w[ci,co,i,j] at output
    /// (iy*s - p + i, ix*s - p + j) when that lands inside the output.
    static func referenceConvTranspose2d(
        _ x: Tensor, _ w: Tensor, _ bias: Tensor?, stride: (Int, Int),
        padding: (Int, Int), outputPadding: (Int, Int)
    ) -> (shape: [Int], values: [Float]) {
        let (bn, ci, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (co, kh, kw) = (w.shape[1], w.shape[2], w.shape[3])
        let oh = (h - 1) * stride.0 - 2 * padding.0 + kh + outputPadding.0
        let ow = (wd - 1) * stride.1 - 2 * padding.1 + kw + outputPadding.1
        let xv = x.scalars, wv = w.scalars, bv = bias?.scalars
        var acc = [Double](repeating: 0, count: bn * co * oh * ow)
        for b in 0..<bn {
            for oc in 0..<co { for k in 0..<(oh * ow) { acc[(b * co + oc) * oh * ow + k] = Double(bv?[oc] ?? 0) } }
        }
        for b in 0..<bn {
            for ic in 0..<ci {
                for iy in 0..<h {
                    for ix in 0..<wd {
                        let v = Double(xv[((b * ci + ic) * h + iy) * wd + ix])
                        for oc in 0..<co {
                            for i in 0..<kh {
                                for j in 0..<kw {
                                    let y = iy * stride.0 - padding.0 + i, xx = ix * stride.1 - padding.1 + j
                                    guard y >= 0, y < oh, xx >= 0, xx < ow else { continue }
                                    acc[((b * co + oc) * oh + y) * ow + xx] +=
                                        v * Double(wv[((ic * co + oc) * kh + i) * kw + j])
                                }
                            }
                        }
                    }
                }
            }
        }
        return ([bn, co, oh, ow], acc.map { Float($0) })
    }

    /// dL/dx of conv2d for upstream gradient g, directly: x[b,c,iy,ix] feeds every output whose
    /// window covers it, with weight w[o,c,i,j].
    static func referenceConv2dInputGradient(
        _ g: Tensor, _ w: Tensor, xShape: [Int], stride: (Int, Int), padding: (Int, Int)
    ) -> [Float] {
        let (bn, c, h, wd) = (xShape[0], xShape[1], xShape[2], xShape[3])
        let (o, kh, kw) = (w.shape[0], w.shape[2], w.shape[3])
        let (oh, ow) = (g.shape[2], g.shape[3])
        let gv = g.scalars, wv = w.scalars
        var acc = [Double](repeating: 0, count: bn * c * h * wd)
        for b in 0..<bn {
            for oc in 0..<o {
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        let gval = Double(gv[((b * o + oc) * oh + oy) * ow + ox])
                        for ic in 0..<c {
                            for i in 0..<kh {
                                for j in 0..<kw {
                                    let iy = oy * stride.0 - padding.0 + i, ix = ox * stride.1 - padding.1 + j
                                    guard iy >= 0, iy < h, ix >= 0, ix < wd else { continue }
                                    acc[((b * c + ic) * h + iy) * wd + ix] +=
                                        gval * Double(wv[((oc * c + ic) * kh + i) * kw + j])
                                }
                            }
                        }
                    }
                }
            }
        }
        return acc.map { Float($0) }
    }

    /// Mean over each window, dividing by kh*kw whatever part of it lies in the padding.
    static func referenceAvgPool(_ x: Tensor, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int)) -> (
        shape: [Int], values: [Float]
    ) {
        let (bn, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let oh = (h + 2 * padding.0 - kernel.0) / stride.0 + 1, ow = (w + 2 * padding.1 - kernel.1) / stride.1 + 1
        let xv = x.scalars
        var out: [Float] = []
        for p in 0..<(bn * c) {
            for oy in 0..<oh {
                for ox in 0..<ow {
                    var s = 0.0
                    for i in 0..<kernel.0 {
                        for j in 0..<kernel.1 {
                            let iy = oy * stride.0 - padding.0 + i, ix = ox * stride.1 - padding.1 + j
                            if iy >= 0, iy < h, ix >= 0, ix < w { s += Double(xv[(p * h + iy) * w + ix]) }
                        }
                    }
                    out.append(Float(s / Double(kernel.0 * kernel.1)))
                }
            }
        }
        return ([bn, c, oh, ow], out)
    }

    static func referenceAdaptiveAvgPool(_ x: Tensor, outputSize: (Int, Int)) -> [Float] {
        let (bn, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let xv = x.scalars
        var out: [Float] = []
        for p in 0..<(bn * c) {
            for oy in 0..<outputSize.0 {
                for ox in 0..<outputSize.1 {
                    let y0 = Int((Double(oy * h) / Double(outputSize.0)).rounded(.down))
                    let y1 = Int((Double((oy + 1) * h) / Double(outputSize.0)).rounded(.up))
                    let x0 = Int((Double(ox * w) / Double(outputSize.1)).rounded(.down))
                    let x1 = Int((Double((ox + 1) * w) / Double(outputSize.1)).rounded(.up))
                    var s = 0.0
                    for iy in y0..<y1 { for ix in x0..<x1 { s += Double(xv[(p * h + iy) * w + ix]) } }
                    out.append(Float(s / Double((y1 - y0) * (x1 - x0))))
                }
            }
        }
        return out
    }

    // MARK: - conv2d

    struct ConvCase {
        var batch: Int, inC: Int, outC: Int, h: Int, w: Int, kh: Int, kw: Int
        var stride: (Int, Int), padding: (Int, Int), bias: Bool
    }

    static let convCases: [ConvCase] = [
        ConvCase(batch: 2, inC: 3, outC: 4, h: 7, w: 6, kh: 3, kw: 3, stride: (1, 1), padding: (0, 0), bias: true),
        ConvCase(batch: 2, inC: 3, outC: 4, h: 7, w: 6, kh: 3, kw: 3, stride: (2, 2), padding: (1, 1), bias: true),
        ConvCase(batch: 1, inC: 2, outC: 3, h: 6, w: 7, kh: 2, kw: 3, stride: (2, 1), padding: (1, 0), bias: false),
        ConvCase(batch: 2, inC: 2, outC: 3, h: 5, w: 4, kh: 3, kw: 2, stride: (1, 2), padding: (2, 1), bias: true),
        ConvCase(batch: 2, inC: 3, outC: 5, h: 4, w: 5, kh: 1, kw: 1, stride: (1, 1), padding: (0, 0), bias: true),
        ConvCase(batch: 2, inC: 2, outC: 2, h: 6, w: 6, kh: 1, kw: 1, stride: (2, 2), padding: (1, 0), bias: false),
        ConvCase(batch: 1, inC: 1, outC: 1, h: 3, w: 3, kh: 5, kw: 4, stride: (1, 1), padding: (1, 1), bias: true),
    ]

    func testConv2dForwardMatchesDirectDefinition() {
        for (n, cs) in Self.convCases.enumerated() {
            let x = Check.random([cs.batch, cs.inC, cs.h, cs.w], seed: 10 + UInt64(n))
            let w = Check.random([cs.outC, cs.inC, cs.kh, cs.kw], seed: 20 + UInt64(n))
            let b = cs.bias ? Check.random([cs.outC], seed: 30 + UInt64(n)) : nil
            let y = conv2d(x, weight: w, bias: b, stride: cs.stride, padding: cs.padding)
            let ref = Self.referenceConv2d(x, w, b, stride: cs.stride, padding: cs.padding)
            XCTAssertEqual(y.shape, ref.shape, "case \(n)")
            Check.assertClose(y, ref.values, tolerance: 1e-5, "case \(n)")
        }
    }

    func testConv2dPatchEmbeddingForward() {
        // ViT-style: kernel == stride == 16 over a 32x48 image gives a 2x3 grid of patches.
        let x = Check.random([2, 3, 32, 48], seed: 1)
        let w = Check.random([4, 3, 16, 16], seed: 2, low: -0.1, high: 0.1)
        let b = Check.random([4], seed: 3)
        let y = conv2d(x, weight: w, bias: b, stride: (16, 16))
        let ref = Self.referenceConv2d(x, w, b, stride: (16, 16), padding: (0, 0))
        XCTAssertEqual(y.shape, [2, 4, 2, 3])
        Check.assertClose(y, ref.values, tolerance: 1e-5)
    }

    func testConv2dGradients() {
        for (n, cs) in Self.convCases.enumerated() {
            let x = Check.random([cs.batch, cs.inC, cs.h, cs.w], seed: 40 + UInt64(n))
            let w = Check.random([cs.outC, cs.inC, cs.kh, cs.kw], seed: 50 + UInt64(n))
            var inputs = [x, w]
            if cs.bias { inputs.append(Check.random([cs.outC], seed: 60 + UInt64(n))) }
            Check.gradients(inputs) { t in
                conv2d(t[0], weight: t[1], bias: t.count > 2 ? t[2] : nil, stride: cs.stride, padding: cs.padding)
            }
            // Weight and bias alone (frozen input): the backward must not need the input gradient.
            Check.gradients(inputs, differentiate: [false] + Array(repeating: true, count: inputs.count - 1)) { t in
                conv2d(t[0], weight: t[1], bias: t.count > 2 ? t[2] : nil, stride: cs.stride, padding: cs.padding)
            }
        }
    }

    func testConv2dPatchEmbeddingGradients() {
        let x = Check.random([2, 3, 32, 48], seed: 4)
        let w = Check.random([4, 3, 16, 16], seed: 5, low: -0.1, high: 0.1)
        let b = Check.random([4], seed: 6)
        Check.gradients([x, w, b]) { t in conv2d(t[0], weight: t[1], bias: t[2], stride: (16, 16)) }
    }

    func testConv2dFrozenWeightComputesOnlyInputGradient() {
        let stride = (2, 1), padding = (1, 1)
        let x = Check.random([2, 3, 6, 5], seed: 70).requiringGrad(name: "x")
        let w = Check.random([4, 3, 3, 2], seed: 71)  // frozen
        let b = Check.random([4], seed: 72)  // frozen
        let y = conv2d(x, weight: w, bias: b, stride: stride, padding: padding)
        XCTAssertTrue(y.requiresGrad)
        let g = Check.random(y.shape, seed: 73)
        let expected = Self.referenceConv2dInputGradient(g, w, xShape: x.shape, stride: stride, padding: padding)

        // The backward function itself, called with the recorded needs, returns only dX.
        let node = try! XCTUnwrap(y.node)
        XCTAssertEqual(node.inputs.map { $0 != nil }, [true, false, false])
        let grads = try! XCTUnwrap(node.backwardFunction)(g, [true, false, false])
        XCTAssertNil(grads.count > 1 ? grads[1] : nil, "frozen weight must get no gradient")
        XCTAssertNil(grads.count > 2 ? grads[2] : nil, "frozen bias must get no gradient")
        let gx = try! XCTUnwrap(grads[0])
        Check.assertClose(gx, expected, tolerance: 1e-5)

        // And through the public backward pass.
        let y2 = conv2d(x, weight: w, bias: b, stride: stride, padding: padding)
        y2.backward(seed: g)
        XCTAssertNil(w.grad)
        XCTAssertNil(b.grad)
        Check.assertClose(try! XCTUnwrap(x.grad), expected, tolerance: 1e-5)
    }

    func testConv2dWithoutGradientsRecordsNothing() {
        let x = Check.random([1, 2, 4, 4], seed: 80)
        let w = Check.random([3, 2, 3, 3], seed: 81)
        XCTAssertNil(conv2d(x, weight: w, padding: (1, 1)).node)
        let wg = w.requiringGrad()
        XCTAssertNil(GradMode.withoutGradients { conv2d(x, weight: wg, padding: (1, 1)) }.node)
    }

    // MARK: - convTranspose2d

    struct TransposeCase {
        var batch: Int, inC: Int, outC: Int, h: Int, w: Int, kh: Int, kw: Int
        var stride: (Int, Int), padding: (Int, Int), outputPadding: (Int, Int), bias: Bool
    }

    static let transposeCases: [TransposeCase] = [
        TransposeCase(
            batch: 2, inC: 3, outC: 2, h: 4, w: 3, kh: 3, kw: 3, stride: (1, 1), padding: (0, 0), outputPadding: (0, 0),
            bias: true),
        TransposeCase(
            batch: 2, inC: 2, outC: 3, h: 3, w: 4, kh: 3, kw: 3, stride: (2, 2), padding: (1, 1), outputPadding: (1, 1),
            bias: true),
        TransposeCase(
            batch: 1, inC: 2, outC: 2, h: 3, w: 3, kh: 2, kw: 3, stride: (2, 1), padding: (0, 1), outputPadding: (1, 0),
            bias: false),
        TransposeCase(
            batch: 2, inC: 3, outC: 2, h: 3, w: 3, kh: 4, kw: 4, stride: (2, 2), padding: (1, 1), outputPadding: (0, 0),
            bias: true),
        TransposeCase(
            batch: 2, inC: 3, outC: 4, h: 3, w: 4, kh: 1, kw: 1, stride: (1, 1), padding: (0, 0), outputPadding: (0, 0),
            bias: true),
        TransposeCase(
            batch: 2, inC: 2, outC: 3, h: 2, w: 3, kh: 2, kw: 2, stride: (2, 2), padding: (0, 0), outputPadding: (0, 0),
            bias: false),
        TransposeCase(
            batch: 1, inC: 2, outC: 2, h: 3, w: 2, kh: 3, kw: 2, stride: (3, 3), padding: (1, 0), outputPadding: (2, 1),
            bias: true),
    ]

    func testConvTranspose2dForwardMatchesScatterDefinition() {
        for (n, cs) in Self.transposeCases.enumerated() {
            let x = Check.random([cs.batch, cs.inC, cs.h, cs.w], seed: 100 + UInt64(n))
            let w = Check.random([cs.inC, cs.outC, cs.kh, cs.kw], seed: 110 + UInt64(n))
            let b = cs.bias ? Check.random([cs.outC], seed: 120 + UInt64(n)) : nil
            let y = convTranspose2d(
                x, weight: w, bias: b, stride: cs.stride, padding: cs.padding, outputPadding: cs.outputPadding)
            let ref = Self.referenceConvTranspose2d(
                x, w, b, stride: cs.stride, padding: cs.padding, outputPadding: cs.outputPadding)
            XCTAssertEqual(y.shape, ref.shape, "case \(n)")
            Check.assertClose(y, ref.values, tolerance: 1e-5, "case \(n)")
        }
    }

    func testConvTranspose2dGradients() {
        for (n, cs) in Self.transposeCases.enumerated() {
            let x = Check.random([cs.batch, cs.inC, cs.h, cs.w], seed: 130 + UInt64(n))
            let w = Check.random([cs.inC, cs.outC, cs.kh, cs.kw], seed: 140 + UInt64(n))
            var inputs = [x, w]
            if cs.bias { inputs.append(Check.random([cs.outC], seed: 150 + UInt64(n))) }
            let f: ([Tensor]) -> Tensor = { t in
                convTranspose2d(
                    t[0], weight: t[1], bias: t.count > 2 ? t[2] : nil,
                    stride: cs.stride, padding: cs.padding, outputPadding: cs.outputPadding)
            }
            Check.gradients(inputs, f)
            Check.gradients(inputs, differentiate: [true, false] + (cs.bias ? [false] : []), f)
            Check.gradients(inputs, differentiate: [false] + Array(repeating: true, count: inputs.count - 1), f)
        }
    }

    // MARK: - Pooling

    func testAvgPool2dForwardMatchesDirectDefinition() {
        let x = Check.random([2, 3, 7, 6], seed: 200)
        let configs: [(kernel: (Int, Int), stride: (Int, Int)?, padding: (Int, Int))] = [
            ((2, 2), nil, (0, 0)),
            ((3, 3), (2, 2), (1, 1)),
            ((3, 2), (1, 2), (1, 0)),
            ((2, 3), (3, 1), (1, 1)),
            ((7, 6), nil, (0, 0)),
        ]
        for (n, c) in configs.enumerated() {
            let y = avgPool2d(x, kernel: c.kernel, stride: c.stride, padding: c.padding)
            let ref = Self.referenceAvgPool(x, kernel: c.kernel, stride: c.stride ?? c.kernel, padding: c.padding)
            XCTAssertEqual(y.shape, ref.shape, "config \(n)")
            Check.assertClose(y, ref.values, tolerance: 1e-6, "config \(n)")
        }
    }

    func testAvgPool2dGradients() {
        let x = Check.random([2, 2, 5, 6], seed: 210)
        Check.gradients([x]) { t in avgPool2d(t[0], kernel: (2, 2)) }
        Check.gradients([x]) { t in avgPool2d(t[0], kernel: (3, 3), stride: (2, 2), padding: (1, 1)) }
        Check.gradients([x]) { t in avgPool2d(t[0], kernel: (3, 2), stride: (1, 2), padding: (1, 1)) }
    }

    func testAdaptiveAvgPool2dForwardMatchesBins() {
        let x = Check.random([2, 3, 7, 5], seed: 220)
        for (n, size) in [(1, 1), (3, 2), (7, 5), (4, 4), (2, 5), (10, 8)].enumerated() {
            let y = adaptiveAvgPool2d(x, outputSize: size)
            XCTAssertEqual(y.shape, [2, 3, size.0, size.1], "size \(n)")
            Check.assertClose(y, Self.referenceAdaptiveAvgPool(x, outputSize: size), tolerance: 1e-6, "size \(n)")
        }
    }

    func testAdaptiveAvgPool2dGradients() {
        let x = Check.random([2, 2, 7, 5], seed: 230)
        for size in [(1, 1), (3, 2), (4, 4), (9, 6)] {
            Check.gradients([x]) { t in adaptiveAvgPool2d(t[0], outputSize: size) }
        }
    }

    // MARK: - Batch norm (inference)

    func testBatchNormInferenceForward() {
        let x = Check.random([2, 3, 4, 5], seed: 300)
        let mean = Check.random([3], seed: 301)
        let variance = Check.random([3], seed: 302, low: 0.1, high: 2)
        let weight = Check.random([3], seed: 303), bias = Check.random([3], seed: 304)
        let eps: Float = 1e-3
        let xv = x.scalars, mv = mean.scalars, vv = variance.scalars, wv = weight.scalars, bv = bias.scalars
        func expected(affine: Bool) -> [Float] {
            (0..<x.count).map { i in
                let c = (i / 20) % 3
                let xhat = (Double(xv[i]) - Double(mv[c])) / (Double(vv[c]) + Double(eps)).squareRoot()
                return Float(affine ? xhat * Double(wv[c]) + Double(bv[c]) : xhat)
            }
        }
        let y = batchNormInference(x, runningMean: mean, runningVar: variance, weight: weight, bias: bias, eps: eps)
        XCTAssertEqual(y.shape, x.shape)
        Check.assertClose(y, expected(affine: true), tolerance: 1e-5)
        let plain = batchNormInference(x, runningMean: mean, runningVar: variance, weight: nil, bias: nil, eps: eps)
        Check.assertClose(plain, expected(affine: false), tolerance: 1e-5)

        // [B, C] input (BatchNorm1d-style) uses the same channel axis.
        let x2 = Check.random([4, 3], seed: 305)
        let y2 = batchNormInference(x2, runningMean: mean, runningVar: variance, weight: weight, bias: bias, eps: eps)
        let x2v = x2.scalars
        let e2: [Float] = (0..<12).map { i in
            let c = i % 3
            return Float(
                (Double(x2v[i]) - Double(mv[c])) / (Double(vv[c]) + Double(eps)).squareRoot() * Double(wv[c])
                    + Double(bv[c]))
        }
        Check.assertClose(y2, e2, tolerance: 1e-5)
    }

    func testBatchNormInferenceGradients() {
        let x = Check.random([2, 3, 4, 5], seed: 310)
        let mean = Check.random([3], seed: 311)
        let variance = Check.random([3], seed: 312, low: 0.1, high: 2)
        let weight = Check.random([3], seed: 313), bias = Check.random([3], seed: 314)
        Check.gradients([x, weight, bias]) { t in
            batchNormInference(t[0], runningMean: mean, runningVar: variance, weight: t[1], bias: t[2])
        }
        Check.gradients([x, weight, bias], differentiate: [false, true, false]) { t in
            batchNormInference(t[0], runningMean: mean, runningVar: variance, weight: t[1], bias: t[2])
        }
        Check.gradients([x, bias], differentiate: [true, true]) { t in
            batchNormInference(t[0], runningMean: mean, runningVar: variance, weight: nil, bias: t[1])
        }
        // Running statistics that happen to require gradients are still treated as constants.
        let y = batchNormInference(
            x.requiringGrad(), runningMean: mean.requiringGrad(), runningVar: variance.requiringGrad(),
            weight: nil, bias: nil)
        XCTAssertEqual(y.node?.inputs.count, 1)
    }

    // MARK: - Threading

    /// Small convolutions run one image per thread and sum weight gradients by fixed slots: outputs
    /// and every gradient are bit-identical for 1, 2 and 3 threads (batch 5: uneven slots).
    func testImageParallelConvolutionsAreBitIdenticalAcrossThreadCounts() {
        let x = Check.random([5, 6, 12, 12], seed: 410)
        let w = Check.random([7, 6, 3, 3], seed: 411), b = Check.random([7], seed: 412)
        let wt = Check.random([6, 3, 4, 4], seed: 413), bt = Check.random([3], seed: 414)
        XCTAssertEqual(ConvBatchPlan(batch: 5, flopsPerImage: 2 * 7 * 54 * 144).slots, 4)
        func run() -> [[Float]] {
            let xs = x.requiringGrad(), ws = w.requiringGrad(), bs = b.requiringGrad()
            let wts = wt.requiringGrad(), bts = bt.requiringGrad()
            let y = conv2d(xs, weight: ws, bias: bs, stride: (1, 1), padding: (1, 1))
            let z = convTranspose2d(xs, weight: wts, bias: bts, stride: (4, 4))
            (y.square().sum() + z.square().sum()).backward()
            return [
                y.scalars, z.scalars, xs.grad!.scalars, ws.grad!.scalars, bs.grad!.scalars, wts.grad!.scalars,
                bts.grad!.scalars,
            ]
        }
        let previous = ComputeThreads.count
        defer { ComputeThreads.set(previous) }
        ComputeThreads.set(1)
        let reference = run()
        for threads in [2, 3] {
            ComputeThreads.set(threads)
            let other = run()
            for k in reference.indices {
                XCTAssertEqual(
                    other[k].map(\.bitPattern), reference[k].map(\.bitPattern), "result \(k), \(threads) threads")
            }
        }
    }

    /// The same results whether the plane/channel loops run on one thread or are split across
    /// several (sizes chosen so every parallel loop here actually splits at two threads).
    func testResultsIndependentOfThreadCount() {
        let x = Check.random([4, 8, 32, 32], seed: 400)
        let w = Check.random([8, 8, 3, 3], seed: 401), b = Check.random([8], seed: 402)
        let wt = Check.random([8, 4, 4, 4], seed: 403)
        let mean = Check.random([8], seed: 404), variance = Check.random([8], seed: 405, low: 0.5, high: 1.5)
        func run() -> [[Float]] {
            let xs = x.requiringGrad(), ws = w.requiringGrad(), bs = b.requiringGrad(), wts = wt.requiringGrad()
            let outs = [
                conv2d(xs, weight: ws, bias: bs, stride: (1, 1), padding: (1, 1)),
                convTranspose2d(xs, weight: wts, stride: (2, 2), padding: (1, 1)),
                avgPool2d(xs, kernel: (3, 3), stride: (1, 1), padding: (1, 1)),
                adaptiveAvgPool2d(xs, outputSize: (7, 9)),
                batchNormInference(xs, runningMean: mean, runningVar: variance, weight: mean, bias: nil),
            ]
            var loss = outs[0].square().sum()
            for o in outs.dropFirst() { loss = loss + o.square().sum() }
            loss.backward()
            return outs.map(\.scalars) + [xs.grad!.scalars, ws.grad!.scalars, bs.grad!.scalars, wts.grad!.scalars]
        }
        let previous = ComputeThreads.count
        defer { ComputeThreads.set(previous) }
        ComputeThreads.set(1)
        let single = run()
        ComputeThreads.set(3)
        let multi = run()
        for (k, (a, m)) in zip(single, multi).enumerated() {
            let scale = a.reduce(Float(0)) { max($0, abs($1)) }
            Check.assertClose(Tensor(shape: [m.count], values: m), a, tolerance: 1e-5 * max(scale, 1), "result \(k)")
        }
    }
}
