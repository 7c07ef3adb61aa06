import Foundation
import XCTest

@testable import VLTensor

/// Elementwise binary ops with broadcasting, scalar ops and pointwise activations:
/// forward values against an independent Double computation, gradients by finite differences.
final class ElementwiseTests: XCTestCase {

    // MARK: - Independent references

    /// NumPy broadcast of two shapes, computed here without the library helper.
    static func refBroadcastShape(_ a: [Int], _ b: [Int]) -> [Int] {
        let r = max(a.count, b.count)
        let pa = [Int](repeating: 1, count: r - a.count) + a
        let pb = [Int](repeating: 1, count: r - b.count) + b
        return (0..<r).map { i in
            precondition(pa[i] == pb[i] || pa[i] == 1 || pb[i] == 1, "test shapes do not broadcast")
            return max(pa[i], pb[i])
        }
    }

    /// Flat index into a tensor of `shape` for an output multi-index (right-aligned, size-1 dims broadcast).
    static func sourceIndex(_ outIndex: [Int], _ shape: [Int]) -> Int {
        let lead = outIndex.count - shape.count
        var flat = 0
        for (d, n) in shape.enumerated() {
            flat = flat * n + (n == 1 ? 0 : outIndex[lead + d])
        }
        return flat
    }

    /// Every multi-index of `shape` in row-major order.
    static func allIndices(_ shape: [Int]) -> [[Int]] {
        var out: [[Int]] = [[]]
        for n in shape {
            var next: [[Int]] = []
            for prefix in out { for i in 0..<n { next.append(prefix + [i]) } }
            out = next
        }
        return out
    }

    static func refBinary(_ a: Tensor, _ b: Tensor, _ op: (Double, Double) -> Double) -> (shape: [Int], values: [Float])
    {
        let shape = refBroadcastShape(a.shape, b.shape)
        let av = a.scalars, bv = b.scalars
        let values = allIndices(shape).map { idx -> Float in
            Float(op(Double(av[sourceIndex(idx, a.shape)]), Double(bv[sourceIndex(idx, b.shape)])))
        }
        return (shape, values)
    }

    /// Values pushed away from zero: |x| in [0.2, 1.2], random sign.
    static func awayFromZero(_ shape: [Int], seed: UInt64) -> Tensor {
        let u = Check.random(shape, seed: seed)
        return Tensor(shape: shape, values: u.scalars.map { $0 >= 0 ? 0.2 + $0 : -0.2 + $0 })
    }

    // MARK: - Binary ops

    /// (a shape, b shape) pairs covering the broadcasting cases.
    static let shapePairs: [([Int], [Int])] = [
        ([2, 3, 4], [2, 3, 4]),  // same shape
        ([2, 3, 4], [4]),  // [B,T,D] with [D]
        ([4], [2, 3, 4]),  // reversed operand order
        ([2, 1, 4], [2, 3, 1]),  // [B,1,D] with [B,T,1]
        ([2, 3, 4], [1]),  // scalar-shaped [1]
        ([1], [2, 3]),
        ([2, 3, 4], []),  // rank-0
        ([], [3, 2]),
        ([], []),
        ([3, 1], [1, 5]),  // outer product style
        ([2, 3, 4], [3, 1]),  // middle broadcast with rank difference
    ]

    func checkBinary(
        _ name: String, _ op: (Tensor, Tensor) -> Tensor, _ ref: @escaping (Double, Double) -> Double,
        positiveB: Bool = false, file: StaticString = #filePath, line: UInt = #line
    ) {
        for (i, (sa, sb)) in Self.shapePairs.enumerated() {
            let a = Check.random(sa, seed: UInt64(10 + i))
            let b =
                positiveB
                ? Check.random(sb, seed: UInt64(50 + i), low: 0.5, high: 1.5)
                : Check.random(sb, seed: UInt64(50 + i))
            let out = op(a, b)
            let expected = Self.refBinary(a, b, ref)
            XCTAssertEqual(out.shape, expected.shape, "\(name) \(sa) with \(sb)", file: file, line: line)
            Check.assertClose(out, expected.values, tolerance: 1e-5, "\(name) \(sa) with \(sb)", file: file, line: line)
            XCTAssertNil(out.node, "\(name): frozen inputs must not record", file: file, line: line)
            // Both inputs, then each alone (the other frozen).
            Check.gradients([a, b], file: file, line: line) { op($0[0], $0[1]) }
            Check.gradients([a, b], differentiate: [true, false], file: file, line: line) { op($0[0], $0[1]) }
            Check.gradients([a, b], differentiate: [false, true], file: file, line: line) { op($0[0], $0[1]) }
        }
    }

    func testAdd() { checkBinary("add", { $0 + $1 }, { $0 + $1 }) }
    func testSubtract() { checkBinary("sub", { $0 - $1 }, { $0 - $1 }) }
    func testMultiply() { checkBinary("mul", { $0 * $1 }, { $0 * $1 }) }
    func testDivide() { checkBinary("div", { $0 / $1 }, { $0 / $1 }, positiveB: true) }

    func testDivideByNegativeDenominators() {
        let a = Check.random([2, 3, 4], seed: 1)
        let b = Check.random([3, 1], seed: 2, low: -1.5, high: -0.5)
        Check.assertClose(a / b, Self.refBinary(a, b, /).values, tolerance: 1e-5)
        Check.gradients([a, b]) { $0[0] / $0[1] }
    }

    func testBroadcastGradientSumsOverBroadcastAxes() {
        // d/d b of sum(a + b) for b [D] broadcast over [B,T,D] is B*T per element.
        let a = Check.random([2, 3, 4], seed: 3)
        let b = Check.random([4], seed: 4).requiringGrad()
        (a + b).sum().backward()
        Check.assertClose(b.grad!, [Float](repeating: 6, count: 4), tolerance: 1e-6)
        XCTAssertEqual(b.grad!.shape, [4])

        let s = Tensor(scalar: 2).requiringGrad()
        let x = Check.random([3, 5], seed: 5)
        (x * s).sum().backward()
        XCTAssertEqual(s.grad!.shape, [])
        XCTAssertEqual(Double(s.grad!.item), x.scalars.reduce(0.0) { $0 + Double($1) }, accuracy: 1e-5)
    }

    func testSameTensorOnBothSides() {
        let x = Check.random([3, 4], seed: 6)
        let xv = x.scalars
        Check.assertClose(x * x, xv.map { $0 * $0 })
        Check.assertClose(x - x, [Float](repeating: 0, count: 12))
        Check.gradients([x]) { $0[0] * $0[0] }
        Check.gradients([Check.random([3, 4], seed: 7, low: 0.5, high: 2)]) { ($0[0] * $0[0] + $0[0]) / ($0[0] + 2) }
    }

    // MARK: - Scalar ops

    func testScaled() {
        let x = Check.random([2, 3, 4], seed: 11)
        Check.assertClose(x.scaled(-2.5), x.scalars.map { Float(Double($0) * -2.5) })
        Check.assertClose(x * 3, x.scalars.map { $0 * 3 })
        Check.assertClose(0.5 * x, x.scalars.map { $0 * 0.5 })
        Check.assertClose(-x, x.scalars.map { -$0 })
        Check.gradients([x]) { $0[0].scaled(-2.5) }
        Check.gradients([x]) { 0.5 * $0[0] }
        Check.gradients([x]) { -$0[0] }
    }

    func testAdding() {
        let x = Check.random([2, 3, 4], seed: 12)
        Check.assertClose(x.adding(1.25), x.scalars.map { Float(Double($0) + 1.25) })
        Check.assertClose(x + 2, x.scalars.map { $0 + 2 })
        Check.assertClose(x - 2, x.scalars.map { $0 - 2 })
        Check.gradients([x]) { $0[0].adding(1.25) }
        Check.gradients([x]) { $0[0] - 3 }
        let s = Tensor(scalar: 4)
        Check.assertClose(s.adding(-1), [3])
        XCTAssertEqual(s.adding(-1).shape, [])
    }

    // MARK: - Pointwise activations

    func checkPointwise(
        _ name: String, _ x: Tensor, _ op: (Tensor) -> Tensor, _ ref: (Double) -> Double,
        tolerance: Float = 1e-5, file: StaticString = #filePath, line: UInt = #line
    ) {
        let y = op(x)
        XCTAssertEqual(y.shape, x.shape, file: file, line: line)
        Check.assertClose(
            y, x.scalars.map { Float(ref(Double($0))) }, tolerance: tolerance, name, file: file, line: line)
        Check.gradients([x], file: file, line: line) { op($0[0]) }
    }

    func testRelu() {
        let x = Self.awayFromZero([3, 4, 5], seed: 21)
        checkPointwise("relu", x, { $0.relu() }, { max($0, 0) })
        // Gradient is exactly 0 / 1.
        let leaf = x.requiringGrad()
        leaf.relu().sum().backward()
        Check.assertClose(leaf.grad!, x.scalars.map { $0 > 0 ? 1 : 0 }, tolerance: 0)
    }

    func testSigmoid() {
        let x = Check.random([3, 4, 5], seed: 22, low: -4, high: 4)
        checkPointwise("sigmoid", x, { $0.sigmoid() }, { 1 / (1 + Foundation.exp(-$0)) })
        // Extreme inputs stay finite and saturate.
        let big = Tensor(shape: [4], values: [-200, -90, 90, 200]).sigmoid().scalars
        XCTAssertTrue(big.allSatisfy { $0.isFinite })
        XCTAssertEqual(big[0], 0, accuracy: 1e-30)
        XCTAssertEqual(big[3], 1)
    }

    func testTanh() {
        let x = Check.random([3, 4, 5], seed: 23, low: -3, high: 3)
        checkPointwise("tanh", x, { $0.tanh() }, { Foundation.tanh($0) })
    }

    func testQuickGELU() {
        let x = Check.random([3, 4, 5], seed: 24, low: -4, high: 4)
        checkPointwise("quickGELU", x, { $0.quickGELU() }, { $0 / (1 + Foundation.exp(-1.702 * $0)) })
    }

    func testGELU() {
        let x = Check.random([3, 4, 5], seed: 25, low: -4, high: 4)
        checkPointwise("gelu", x, { $0.gelu() }, { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) })
        // Known values of x * Phi(x).
        let known = Tensor(shape: [3], values: [-1, 0, 1]).gelu()
        Check.assertClose(known, [-0.15865525, 0, 0.84134475], tolerance: 1e-6)
    }

    func testExp() {
        let x = Check.random([3, 4, 5], seed: 26, low: -2, high: 2)
        checkPointwise("exp", x, { $0.exp() }, { Foundation.exp($0) })
    }

    func testLog() {
        let x = Check.random([3, 4, 5], seed: 27, low: 0.3, high: 3)
        checkPointwise("log", x, { $0.log() }, { Foundation.log($0) })
    }

    func testSquare() {
        let x = Check.random([3, 4, 5], seed: 28, low: -2, high: 2)
        checkPointwise("square", x, { $0.square() }, { $0 * $0 })
    }

    func testChainedExpression() {
        // A composite of several ops, differentiated through all of them.
        let a = Check.random([2, 3, 4], seed: 31)
        let b = Check.random([4], seed: 32, low: 0.5, high: 1.5)
        let c = Check.random([2, 1, 4], seed: 33)
        let av = a.scalars, bv = b.scalars, cv = c.scalars
        var expected: [Float] = []
        for i in 0..<2 {
            for t in 0..<3 {
                for d in 0..<4 {
                    let x = Double(av[(i * 3 + t) * 4 + d]), y = Double(bv[d]), z = Double(cv[i * 4 + d])
                    expected.append(Float(Foundation.tanh(x / y) * z + (x * z).exponentialSigmoid))
                }
            }
        }
        let f: ([Tensor]) -> Tensor = { ($0[0] / $0[1]).tanh() * $0[2] + ($0[0] * $0[2]).sigmoid() }
        Check.assertClose(f([a, b, c]), expected, tolerance: 1e-5)
        Check.gradients([a, b, c], f)
    }
}

private extension Double {
    var exponentialSigmoid: Double { 1 / (1 + Foundation.exp(-self)) }
}
