import Foundation
import XCTest

@testable import VLTensor

/// Layout operations (views and copies), gathers, concatenation and reductions.
final class ShapeAndReduceTests: XCTestCase {

    /// Row-major flat index.
    static func flat(_ idx: [Int], _ shape: [Int]) -> Int {
        var f = 0
        for (i, n) in zip(idx, shape) { f = f * n + i }
        return f
    }

    static func allIndices(_ shape: [Int]) -> [[Int]] {
        ElementwiseTests.allIndices(shape)
    }

    // MARK: - reshaped

    func testReshapedIsAViewWithSameOrder() {
        let x = Check.random([2, 3, 4], seed: 1)
        let y = x.reshaped([4, 6])
        XCTAssertEqual(y.shape, [4, 6])
        XCTAssertEqual(y.scalars, x.scalars)
        XCTAssertTrue(y.storage === x.storage, "reshape must be a view")
        XCTAssertEqual(y.offset, x.offset)
        XCTAssertEqual(x.reshaped([-1]).shape, [24])
        XCTAssertEqual(x.reshaped([2, -1]).shape, [2, 12])
        XCTAssertEqual(x.reshaped([-1, 3, 2]).shape, [4, 3, 2])
        XCTAssertEqual(x.reshaped([1, 2, 1, 12, 1]).shape, [1, 2, 1, 12, 1])
        XCTAssertEqual(Tensor(scalar: 3).reshaped([1, 1]).shape, [1, 1])
        XCTAssertEqual(Tensor(shape: [1], values: [3]).reshaped([]).shape, [])
    }

    func testReshapedGradient() {
        let x = Check.random([2, 3, 4], seed: 2)
        Check.gradients([x]) { $0[0].reshaped([4, -1]) }
        Check.gradients([x]) { $0[0].reshaped([-1]).square() }
        // Reshape in the middle of a chain: the gradient arrives in the input's shape.
        let leaf = x.requiringGrad()
        let w = Check.random([6, 4], seed: 3)
        (leaf.reshaped([6, 4]) * w).sum().backward()
        XCTAssertEqual(leaf.grad!.shape, [2, 3, 4])
        XCTAssertEqual(leaf.grad!.scalars, w.scalars)
    }

    // MARK: - permuted / transposed

    func testPermutedValues() {
        let shape = [2, 3, 4]
        let x = Check.random(shape, seed: 4)
        let xv = x.scalars
        for perm in [[0, 1, 2], [2, 0, 1], [1, 2, 0], [0, 2, 1], [2, 1, 0], [1, 0, 2]] {
            let y = x.permuted(perm)
            let outShape = perm.map { shape[$0] }
            XCTAssertEqual(y.shape, outShape, "perm \(perm)")
            var expected = [Float](repeating: 0, count: x.count)
            for idx in Self.allIndices(outShape) {
                var src = [Int](repeating: 0, count: 3)
                for (i, p) in perm.enumerated() { src[p] = idx[i] }
                expected[Self.flat(idx, outShape)] = xv[Self.flat(src, shape)]
            }
            Check.assertClose(y, expected, tolerance: 0, "perm \(perm)")
            Check.gradients([x]) { $0[0].permuted(perm) }
        }
    }

    func testPermuted4DWithUnitAxes() {
        let shape = [2, 1, 3, 2]
        let x = Check.random(shape, seed: 5)
        let perm = [2, 0, 3, 1]
        let y = x.permuted(perm)
        XCTAssertEqual(y.shape, [3, 2, 2, 1])
        let xv = x.scalars
        var expected = [Float](repeating: 0, count: x.count)
        for idx in Self.allIndices(y.shape) {
            var src = [Int](repeating: 0, count: 4)
            for (i, p) in perm.enumerated() { src[p] = idx[i] }
            expected[Self.flat(idx, y.shape)] = xv[Self.flat(src, shape)]
        }
        Check.assertClose(y, expected, tolerance: 0)
        Check.gradients([x]) { $0[0].permuted(perm) }
    }

    func testTransposed() {
        let x = Check.random([3, 5], seed: 6)
        let y = x.transposed(0, 1)
        XCTAssertEqual(y.shape, [5, 3])
        let xv = x.scalars
        for i in 0..<3 { for j in 0..<5 { XCTAssertEqual(y.scalars[j * 3 + i], xv[i * 5 + j]) } }
        let z = Check.random([2, 3, 4], seed: 7)
        let zt = z.transposed(-1, -2)
        XCTAssertEqual(zt.shape, [2, 4, 3])
        let zv = z.scalars
        for b in 0..<2 {
            for i in 0..<3 {
                for j in 0..<4 {
                    XCTAssertEqual(zt.scalars[(b * 4 + j) * 3 + i], zv[(b * 3 + i) * 4 + j])
                }
            }
        }
        XCTAssertEqual(z.transposed(0, 2).shape, [4, 3, 2])
        Check.gradients([x]) { $0[0].transposed(0, 1) }
        Check.gradients([z]) { $0[0].transposed(-1, -2) }
        Check.gradients([z]) { $0[0].transposed(0, 2) }
    }

    // MARK: - expanded

    func testExpanded() {
        let x = Check.random([3, 1], seed: 8)
        let y = x.expanded(to: [2, 3, 4])
        XCTAssertEqual(y.shape, [2, 3, 4])
        let xv = x.scalars
        var expected: [Float] = []
        for _ in 0..<2 { for i in 0..<3 { for _ in 0..<4 { expected.append(xv[i]) } } }
        Check.assertClose(y, expected, tolerance: 0)
        Check.gradients([x]) { $0[0].expanded(to: [2, 3, 4]) }
        // Gradient of sum is the number of copies.
        let leaf = x.requiringGrad()
        leaf.expanded(to: [2, 3, 4]).sum().backward()
        Check.assertClose(leaf.grad!, [8, 8, 8], tolerance: 0)

        let row = Check.random([1, 4], seed: 9)
        Check.gradients([row]) { $0[0].expanded(to: [3, 4]) }
        let s = Tensor(scalar: 1.5)
        Check.assertClose(s.expanded(to: [2, 2]), [1.5, 1.5, 1.5, 1.5], tolerance: 0)
        Check.gradients([s]) { $0[0].expanded(to: [2, 3]) }
        // Same shape is the identity.
        Check.gradients([x]) { $0[0].expanded(to: [3, 1]) }
    }

    // MARK: - slice

    func testSliceAxis0IsAView() {
        let x = Check.random([5, 3], seed: 10)
        let y = x.slice(axis: 0, 1..<4)
        XCTAssertEqual(y.shape, [3, 3])
        XCTAssertTrue(y.storage === x.storage, "leading-axis slice must be a view")
        XCTAssertEqual(y.offset, x.offset + 3)
        XCTAssertEqual(y.scalars, Array(x.scalars[3..<12]))
        // A slice of a slice keeps the offsets right.
        let z = y.slice(axis: 0, 1..<3)
        XCTAssertEqual(z.offset, x.offset + 6)
        XCTAssertEqual(z.scalars, Array(x.scalars[6..<12]))
        // Leading unit axes make an inner slice a view too.
        let u = Check.random([1, 6, 2], seed: 11)
        let uv = u.slice(axis: 1, 2..<5)
        XCTAssertTrue(uv.storage === u.storage)
        XCTAssertEqual(uv.scalars, Array(u.scalars[4..<10]))
        Check.gradients([x]) { $0[0].slice(axis: 0, 1..<4) }
        Check.gradients([x]) { $0[0].slice(axis: 0, 1..<4).slice(axis: 0, 1..<3) }
        Check.gradients([u]) { $0[0].slice(axis: 1, 2..<5) }
    }

    func testSliceInnerAxes() {
        let shape = [2, 5, 3]
        let x = Check.random(shape, seed: 12)
        let xv = x.scalars
        for (axis, range) in [(1, 1..<4), (2, 0..<2), (-1, 1..<3), (2, 2..<3), (1, 0..<5), (1, 3..<3)] {
            let ax = axis < 0 ? axis + 3 : axis
            let y = x.slice(axis: axis, range)
            var outShape = shape
            outShape[ax] = range.count
            XCTAssertEqual(y.shape, outShape)
            var expected: [Float] = []
            for idx in Self.allIndices(outShape) {
                var src = idx
                src[ax] += range.lowerBound
                expected.append(xv[Self.flat(src, shape)])
            }
            Check.assertClose(y, expected, tolerance: 0, "axis \(axis) range \(range)")
            if !range.isEmpty {
                Check.gradients([x]) { $0[0].slice(axis: axis, range) }
            }
        }
    }

    func testSliceGradientIsZeroOutsideTheRange() {
        let x = Check.random([2, 4], seed: 13).requiringGrad()
        x.slice(axis: 1, 1..<3).sum().backward()
        Check.assertClose(x.grad!, [0, 1, 1, 0, 0, 1, 1, 0], tolerance: 0)
    }

    // MARK: - indexSelect / selectPerBatch

    func testIndexSelectWithRepeatedRows() {
        let table = Check.random([4, 3], seed: 14)
        let tv = table.scalars
        let indices = [2, 0, 2, 3, 2]
        let y = table.indexSelect(rows: indices)
        XCTAssertEqual(y.shape, [5, 3])
        Check.assertClose(y, indices.flatMap { Array(tv[$0 * 3..<$0 * 3 + 3]) }, tolerance: 0)
        Check.gradients([table]) { $0[0].indexSelect(rows: indices) }

        // Scatter-add: row 2 collects three contributions, row 1 none.
        let leaf = table.requiringGrad()
        let w = Check.random([5, 3], seed: 15)
        (leaf.indexSelect(rows: indices) * w).sum().backward()
        let wv = w.scalars
        var expected = [Float](repeating: 0, count: 12)
        for (i, r) in indices.enumerated() { for k in 0..<3 { expected[r * 3 + k] += wv[i * 3 + k] } }
        Check.assertClose(leaf.grad!, expected, tolerance: 1e-6)
        XCTAssertEqual(Array(leaf.grad!.scalars[3..<6]), [0, 0, 0])
    }

    func testIndexSelectHigherRank() {
        let table = Check.random([3, 2, 2], seed: 16)
        let y = table.indexSelect(rows: [1, 1, 0])
        XCTAssertEqual(y.shape, [3, 2, 2])
        let tv = table.scalars
        Check.assertClose(y, Array(tv[4..<8]) + Array(tv[4..<8]) + Array(tv[0..<4]), tolerance: 0)
        Check.gradients([table]) { $0[0].indexSelect(rows: [1, 1, 0]) }
        Check.gradients([table]) { $0[0].indexSelect(rows: []).sum().adding(1) }
    }

    func testSelectPerBatch() {
        let x = Check.random([3, 4, 2], seed: 17)
        let xv = x.scalars
        let idx = [1, 3, 0]
        let y = x.selectPerBatch(idx)
        XCTAssertEqual(y.shape, [3, 2])
        var expected: [Float] = []
        for b in 0..<3 { for c in 0..<2 { expected.append(xv[(b * 4 + idx[b]) * 2 + c]) } }
        Check.assertClose(y, expected, tolerance: 0)
        Check.gradients([x]) { $0[0].selectPerBatch(idx) }

        let x2 = Check.random([2, 5], seed: 18)
        let y2 = x2.selectPerBatch([4, 2])
        XCTAssertEqual(y2.shape, [2])
        Check.assertClose(y2, [x2.scalars[4], x2.scalars[7]], tolerance: 0)
        Check.gradients([x2]) { $0[0].selectPerBatch([4, 2]) }

        let leaf = x.requiringGrad()
        leaf.selectPerBatch(idx).sum().backward()
        var g = [Float](repeating: 0, count: 24)
        for b in 0..<3 { for c in 0..<2 { g[(b * 4 + idx[b]) * 2 + c] = 1 } }
        Check.assertClose(leaf.grad!, g, tolerance: 0)
    }

    // MARK: - concat

    func refConcat(_ parts: [Tensor], axis: Int) -> (shape: [Int], values: [Float]) {
        var shape = parts[0].shape
        shape[axis] = parts.reduce(0) { $0 + $1.shape[axis] }
        var values: [Float] = []
        for idx in Self.allIndices(shape) {
            var pos = idx[axis], p = 0
            while pos >= parts[p].shape[axis] { pos -= parts[p].shape[axis]; p += 1 }
            var src = idx
            src[axis] = pos
            values.append(parts[p].scalars[Self.flat(src, parts[p].shape)])
        }
        return (shape, values)
    }

    func testConcat() {
        let cases: [([[Int]], Int)] = [
            ([[2, 3, 2], [1, 3, 2], [3, 3, 2]], 0),
            ([[2, 1, 2], [2, 3, 2], [2, 2, 2]], 1),
            ([[2, 3, 1], [2, 3, 4]], 2),
            ([[2, 3, 2], [2, 3, 3]], -1),
            ([[4], [2]], 0),
            ([[2, 2]], 1),
        ]
        for (ci, (shapes, axis)) in cases.enumerated() {
            let parts = shapes.enumerated().map { Check.random($1, seed: UInt64(100 * ci + $0)) }
            let ax = axis < 0 ? axis + shapes[0].count : axis
            let y = concat(parts, axis: axis)
            let expected = refConcat(parts, axis: ax)
            XCTAssertEqual(y.shape, expected.shape, "case \(ci)")
            Check.assertClose(y, expected.values, tolerance: 0, "case \(ci)")
            Check.gradients(parts) { concat($0, axis: axis) }
            if parts.count > 1 {
                // Only some parts differentiated.
                var which = parts.map { _ in false }
                which[1] = true
                Check.gradients(parts, differentiate: which) { concat($0, axis: axis) }
            }
        }
    }

    func testConcatSameTensorTwice() {
        let x = Check.random([2, 3], seed: 19)
        Check.gradients([x]) { concat([$0[0], $0[0].square()], axis: 1) }
        let leaf = x.requiringGrad()
        concat([leaf, leaf], axis: 0).sum().backward()
        Check.assertClose(leaf.grad!, [Float](repeating: 2, count: 6), tolerance: 0)
    }

    // MARK: - sum / mean

    func refReduce(_ x: Tensor, axes: [Int], keepDims: Bool, mean: Bool) -> (shape: [Int], values: [Float]) {
        let r = x.rank
        let ax = Set(axes.isEmpty ? Array(0..<r) : axes.map { $0 < 0 ? $0 + r : $0 })
        let kept = x.shape.enumerated().map { ax.contains($0.offset) ? 1 : $0.element }
        var acc = [Double](repeating: 0, count: shapeElementCount(kept))
        let xv = x.scalars
        for idx in Self.allIndices(x.shape) {
            let o = idx.enumerated().map { ax.contains($0.offset) ? 0 : $0.element }
            acc[Self.flat(o, kept)] += Double(xv[Self.flat(idx, x.shape)])
        }
        let n = ax.reduce(1) { $0 * x.shape[$1] }
        let values = acc.map { Float(mean ? $0 / Double(n) : $0) }
        let shape = keepDims ? kept : x.shape.enumerated().filter { !ax.contains($0.offset) }.map(\.element)
        return (shape, values)
    }

    func testSumAndMean() {
        let x = Check.random([2, 3, 4], seed: 20)
        let axesCases: [[Int]] = [[], [0], [1], [2], [-1], [0, 2], [2, 0], [1, 2], [0, 1, 2]]
        for axes in axesCases {
            for keep in [false, true] {
                for mean in [false, true] {
                    let y = mean ? x.mean(axes: axes, keepDims: keep) : x.sum(axes: axes, keepDims: keep)
                    let e = refReduce(x, axes: axes, keepDims: keep, mean: mean)
                    let label = "\(mean ? "mean" : "sum") axes \(axes) keepDims \(keep)"
                    XCTAssertEqual(y.shape, e.shape, label)
                    Check.assertClose(y, e.values, tolerance: 1e-5, label)
                    Check.gradients([x]) {
                        mean ? $0[0].mean(axes: axes, keepDims: keep) : $0[0].sum(axes: axes, keepDims: keep)
                    }
                }
            }
        }
    }

    func testReductionEdgeCases() {
        // Default: a rank-0 total.
        let x = Check.random([3, 4], seed: 21)
        XCTAssertEqual(x.sum().shape, [])
        XCTAssertEqual(Double(x.sum().item), x.scalars.reduce(0.0) { $0 + Double($1) }, accuracy: 1e-5)
        XCTAssertEqual(Double(x.mean().item), x.scalars.reduce(0.0) { $0 + Double($1) } / 12, accuracy: 1e-6)
        // Unit axes and rank-0 inputs.
        let u = Check.random([1, 5, 1], seed: 22)
        Check.assertClose(u.sum(axes: [0]), u.scalars, tolerance: 0)
        XCTAssertEqual(u.sum(axes: [0, 2]).shape, [5])
        Check.gradients([u]) { $0[0].sum(axes: [1], keepDims: true) }
        let s = Tensor(scalar: 2.5)
        XCTAssertEqual(s.sum().item, 2.5)
        XCTAssertEqual(s.mean().item, 2.5)
        Check.gradients([s]) { $0[0].sum() }
        // Mean gradient is 1/n everywhere.
        let leaf = x.requiringGrad()
        leaf.mean(axes: [1]).sum().backward()
        Check.assertClose(leaf.grad!, [Float](repeating: 0.25, count: 12), tolerance: 1e-7)
    }
}
