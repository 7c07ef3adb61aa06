import Foundation
import VLTensor
import XCTest

/// Shared helpers for op tests: value comparison and finite-difference gradient checks.
public enum Check {
    /// Deterministic test data.
    public static func random(_ shape: [Int], seed: UInt64, low: Float = -1, high: Float = 1) -> Tensor {
        var g = SplitMix64(seed: seed)
        return Tensor.randomUniform(shape, low: low, high: high, generator: &g)
    }

    /// Asserts every element within `tolerance` (absolute).
    public static func assertClose(
        _ actual: Tensor, _ expected: [Float], tolerance: Float = 1e-5,
        _ message: String = "", file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(actual.count, expected.count, "element count \(message)", file: file, line: line)
        var worst: Float = 0, at = 0
        for (i, (a, e)) in zip(actual.scalars, expected).enumerated() where abs(a - e) > worst {
            worst = abs(a - e); at = i
        }
        XCTAssertLessThanOrEqual(
            worst, tolerance,
            "max |diff| \(worst) at \(at) (got \(actual.scalars[at]), expected \(expected[at])) \(message)",
            file: file, line: line)
    }

    /// Compares autodiff gradients with central differences of L = sum(f(x) * w), w random fixed.
    ///
    /// The error measure is max |analytic - numeric| divided by the largest numeric magnitude of
    /// that input's gradient. `samples` bounds the number of elements probed per input.
    @discardableResult
    public static func gradients(
        _ inputs: [Tensor], eps: Float = 1e-2, tolerance: Double = 1e-3, samples: Int = 48,
        differentiate: [Bool]? = nil, seed: UInt64 = 99,
        file: StaticString = #filePath, line: UInt = #line,
        _ f: ([Tensor]) -> Tensor
    ) -> [Double] {
        let which = differentiate ?? inputs.map { _ in true }
        let leaves = zip(inputs, which).map { $1 ? $0.requiringGrad(name: "x") : $0.detached() }
        let out = f(leaves)
        let w = random(out.shape, seed: seed)
        let loss = (out * w).sum()
        loss.backward()

        func lossValue(_ xs: [Tensor]) -> Double {
            let y = GradMode.withoutGradients { f(xs) }
            var s = 0.0
            for (a, b) in zip(y.scalars, w.scalars) { s += Double(a) * Double(b) }
            return s
        }

        var errors: [Double] = []
        var rng = SplitMix64(seed: seed &+ 1)
        for (i, x) in inputs.enumerated() where which[i] {
            guard let analytic = leaves[i].grad else {
                XCTFail("input \(i) got no gradient", file: file, line: line)
                continue
            }
            XCTAssertEqual(analytic.shape, x.shape, file: file, line: line)
            let probe: [Int] =
                x.count <= samples
                ? Array(0..<x.count)
                : (0..<samples).map { _ in Int(rng.next() % UInt64(x.count)) }
            var worst = 0.0, scale = 0.0
            for j in probe {
                let plus = inputs.map { $0.copy() }, minus = inputs.map { $0.copy() }
                plus[i].withUnsafeMutableBufferPointer { $0[j] += eps }
                minus[i].withUnsafeMutableBufferPointer { $0[j] -= eps }
                let numeric = (lossValue(plus) - lossValue(minus)) / (2 * Double(eps))
                worst = max(worst, abs(numeric - Double(analytic.withUnsafeBufferPointer { $0[j] })))
                scale = max(scale, abs(numeric))
            }
            let rel = worst / max(scale, 1e-6)
            errors.append(rel)
            XCTAssertLessThan(
                rel, tolerance, "input \(i): relative gradient error \(rel) (max numeric \(scale))",
                file: file, line: line)
        }
        return errors
    }
}
