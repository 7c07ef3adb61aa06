import Foundation

/// Raw kernels on tensor values: no graph, fresh outputs, inputs never written (except `addInPlace`).
public enum Kernels {
    public enum BinaryOp: Sendable { case add, sub, mul, div }

    /// dst += src, element by element (same element count).
    public static func addInPlace(_ dst: Tensor, _ src: Tensor) {
        precondition(dst.count == src.count, "addInPlace of \(src.shape) into \(dst.shape)")
        withTensorPointers(writing: dst, reading: src) { d, s in
            parallelFor(dst.count) { r in
                for i in r { d[i] += s[i] }
            }
        }
    }

    /// a + b for equal element counts, shaped like a.
    public static func sum(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.count == b.count)
        let out = Tensor(uninitialized: a.shape)
        withTensorPointers(writing: out, reading: a, b) { o, pa, pb in
            parallelFor(a.count) { r in
                for i in r { o[i] = pa[i] + pb[i] }
            }
        }
        return out
    }

    /// alpha * x.
    public static func scaled(_ x: Tensor, _ alpha: Float) -> Tensor {
        let out = Tensor(uninitialized: x.shape)
        withTensorPointers(writing: out, reading: x) { o, p in
            parallelFor(x.count) { r in
                for i in r { o[i] = alpha * p[i] }
            }
        }
        return out
    }

    /// A collapsed broadcasting plan: dims merged wherever every operand stays contiguous.
    struct BroadcastPlan {
        var shape: [Int]
        var strides: [[Int]]
    }

    static func plan(outShape: [Int], operands: [[Int]]) -> BroadcastPlan {
        let r = outShape.count
        var strides: [[Int]] = operands.map { s in
            let padded = [Int](repeating: 1, count: r - s.count) + s
            let cs = contiguousStrides(padded)
            return (0..<r).map { padded[$0] == 1 && outShape[$0] != 1 ? 0 : cs[$0] }
        }
        var shape = outShape
        // Drop size-1 dims, then merge neighbours.
        var keep = (0..<r).filter { shape[$0] != 1 }
        if keep.isEmpty { keep = [] }
        shape = keep.map { shape[$0] }
        strides = strides.map { st in keep.map { st[$0] } }
        var i = shape.count - 2
        while i >= 0 {
            let mergeable = strides.allSatisfy { $0[i] == $0[i + 1] * shape[i + 1] }
            if mergeable {
                shape[i] *= shape[i + 1]
                shape.remove(at: i + 1)
                for k in strides.indices {
                    strides[k][i] = strides[k][i + 1]
                    strides[k].remove(at: i + 1)
                }
            }
            i -= 1
        }
        if shape.isEmpty {
            shape = [1]
            strides = strides.map { _ in [1] }
        }
        return BroadcastPlan(shape: shape, strides: strides)
    }

    /// Elementwise a (op) b with NumPy broadcasting.
    public static func broadcastBinary(_ a: Tensor, _ b: Tensor, _ op: BinaryOp) -> Tensor {
        guard let outShape = broadcastShapes(a.shape, b.shape) else {
            preconditionFailure("shapes \(a.shape) and \(b.shape) do not broadcast")
        }
        let out = Tensor(uninitialized: outShape)
        let p = plan(outShape: outShape, operands: [a.shape, b.shape])
        let inner = p.shape[p.shape.count - 1]
        let sa = p.strides[0].last!, sb = p.strides[1].last!
        let outerShape = Array(p.shape.dropLast())
        let outerA = Array(p.strides[0].dropLast()), outerB = Array(p.strides[1].dropLast())
        let rows = shapeElementCount(outerShape)
        withTensorPointers(writing: out, reading: a, b) { o, pa, pb in
            if rows == 1 {
                // One long row (same shapes, or a scalar operand): split the row itself across threads.
                parallelFor(inner, grain: 32768) { r in
                    binaryRow(o + r.lowerBound, pa + r.lowerBound * sa, sa, pb + r.lowerBound * sb, sb, r.count, op)
                }
                return
            }
            parallelFor(rows, grain: max(1, 16384 / max(inner, 1))) { range in
                for row in range {
                    var rem = row, offA = 0, offB = 0
                    var d = outerShape.count - 1
                    while d >= 0 {
                        let idx = rem % outerShape[d]
                        rem /= outerShape[d]
                        offA += idx * outerA[d]
                        offB += idx * outerB[d]
                        d -= 1
                    }
                    binaryRow(o + row * inner, pa + offA, sa, pb + offB, sb, inner, op)
                }
            }
        }
        return out
    }

    @inline(__always)
    static func binaryRow(
        _ o: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ sa: Int,
        _ b: UnsafePointer<Float>, _ sb: Int, _ n: Int, _ op: BinaryOp
    ) {
        switch (op, sa, sb) {
        case (.add, 1, 1): for i in 0..<n { o[i] = a[i] + b[i] }
        case (.add, 1, 0): let s = b[0]; for i in 0..<n { o[i] = a[i] + s }
        case (.add, 0, 1): let s = a[0]; for i in 0..<n { o[i] = s + b[i] }
        case (.sub, 1, 1): for i in 0..<n { o[i] = a[i] - b[i] }
        case (.sub, 1, 0): let s = b[0]; for i in 0..<n { o[i] = a[i] - s }
        case (.sub, 0, 1): let s = a[0]; for i in 0..<n { o[i] = s - b[i] }
        case (.mul, 1, 1): for i in 0..<n { o[i] = a[i] * b[i] }
        case (.mul, 1, 0): let s = b[0]; for i in 0..<n { o[i] = a[i] * s }
        case (.mul, 0, 1): let s = a[0]; for i in 0..<n { o[i] = s * b[i] }
        case (.div, 1, 1): for i in 0..<n { o[i] = a[i] / b[i] }
        case (.div, 1, 0): let s = 1 / b[0]; for i in 0..<n { o[i] = a[i] * s }
        case (.div, 0, 1): let s = a[0]; for i in 0..<n { o[i] = s / b[i] }
        default:
            for i in 0..<n {
                let x = a[i * sa], y = b[i * sb]
                switch op {
                case .add: o[i] = x + y
                case .sub: o[i] = x - y
                case .mul: o[i] = x * y
                case .div: o[i] = x / y
                }
            }
        }
    }

    /// Copies `x` broadcast to `shape`.
    public static func broadcast(_ x: Tensor, to shape: [Int]) -> Tensor {
        if x.shape == shape { return x.detached() }
        precondition(broadcastShapes(x.shape, shape) == shape, "cannot broadcast \(x.shape) to \(shape)")
        let out = Tensor(uninitialized: shape)
        let p = plan(outShape: shape, operands: [x.shape])
        let inner = p.shape[p.shape.count - 1], sx = p.strides[0].last!
        let outerShape = Array(p.shape.dropLast()), outerX = Array(p.strides[0].dropLast())
        let rows = shapeElementCount(outerShape)
        withTensorPointers(writing: out, reading: x) { o, px in
            parallelFor(rows, grain: max(1, 16384 / max(inner, 1))) { range in
                for row in range {
                    var rem = row, off = 0
                    var d = outerShape.count - 1
                    while d >= 0 {
                        off += (rem % outerShape[d]) * outerX[d]
                        rem /= outerShape[d]
                        d -= 1
                    }
                    let dst = o + row * inner, src = px + off
                    if sx == 1 {
                        dst.update(from: src, count: inner)
                    } else {
                        dst.update(repeating: src[0], count: inner)
                    }
                }
            }
        }
        return out
    }

    /// Sums `x` down to `shape`, which broadcasts to x's shape (the backward of broadcasting).
    public static func reduce(_ x: Tensor, toShape shape: [Int]) -> Tensor {
        if x.shape == shape { return x.detached() }
        precondition(broadcastShapes(shape, x.shape) == x.shape, "cannot reduce \(x.shape) to \(shape)")
        let out = Tensor(zeros: shape)
        let p = plan(outShape: x.shape, operands: [x.shape, shape])
        let inner = p.shape[p.shape.count - 1]
        let so = p.strides[1].last!
        let outerShape = Array(p.shape.dropLast())
        let outerX = Array(p.strides[0].dropLast()), outerO = Array(p.strides[1].dropLast())
        let rows = shapeElementCount(outerShape)
        withTensorPointers(writing: out, reading: x) { o, px in
            for row in 0..<rows {
                var rem = row, offX = 0, offO = 0
                var d = outerShape.count - 1
                while d >= 0 {
                    let idx = rem % outerShape[d]
                    rem /= outerShape[d]
                    offX += idx * outerX[d]
                    offO += idx * outerO[d]
                    d -= 1
                }
                let src = px + offX, dst = o + offO
                if so == 1 {
                    for i in 0..<inner { dst[i] += src[i] }
                } else {
                    var s: Float = 0
                    for i in 0..<inner { s += src[i] }
                    dst[0] += s
                }
            }
        }
        return out
    }

    /// Sum over one axis; the axis is kept with length 1.
    public static func sumAxis(_ x: Tensor, axis: Int) -> Tensor {
        let (outer, n, inner) = splitAround(x.shape, axis: axis)
        var shape = x.shape
        shape[axis] = 1
        let out = Tensor(zeros: shape)
        withTensorPointers(writing: out, reading: x) { o, p in
            if outer == 1 && inner > 1 {
                // Column sums of one [n, inner] matrix (a bias gradient): threads take column blocks,
                // each summing its columns over all rows in row order.
                parallelFor(inner, grain: max(64, 16384 / max(n, 1))) { cols in
                    for j in 0..<n {
                        let src = p + j * inner
                        for i in cols { o[i] += src[i] }
                    }
                }
                return
            }
            parallelFor(outer, grain: max(1, 16384 / max(n * inner, 1))) { range in
                for a in range {
                    let dst = o + a * inner
                    if inner == 1 {
                        var s: Float = 0
                        let src = p + a * n
                        for i in 0..<n { s += src[i] }
                        dst[0] = s
                    } else {
                        for j in 0..<n {
                            let src = p + (a * n + j) * inner
                            for i in 0..<inner { dst[i] += src[i] }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Copies `x` into a new layout: out[i_perm] = x[i].
    public static func permute(_ x: Tensor, _ perm: [Int]) -> Tensor {
        let r = x.rank
        precondition(perm.count == r && Set(perm) == Set(0..<r), "bad permutation \(perm) for rank \(r)")
        let outShape = perm.map { x.shape[$0] }
        let out = Tensor(uninitialized: outShape)
        let inStrides = contiguousStrides(x.shape)
        // Source stride for each output dim, then collapse dims that stay contiguous.
        var shape = outShape
        var src = perm.map { inStrides[$0] }
        var i = shape.count - 2
        while i >= 0 {
            if src[i] == src[i + 1] * shape[i + 1] {
                shape[i] *= shape[i + 1]; src[i] = src[i + 1]
                shape.remove(at: i + 1); src.remove(at: i + 1)
            }
            i -= 1
        }
        if shape.isEmpty { shape = [1]; src = [1] }
        let inner = shape.last!, innerStride = src.last!
        let outerShape = Array(shape.dropLast()), outerSrc = Array(src.dropLast())
        let rows = shapeElementCount(outerShape)
        withTensorPointers(writing: out, reading: x) { o, p in
            parallelFor(rows, grain: max(1, 16384 / max(inner, 1))) { range in
                for row in range {
                    var rem = row, off = 0
                    var d = outerShape.count - 1
                    while d >= 0 {
                        off += (rem % outerShape[d]) * outerSrc[d]
                        rem /= outerShape[d]
                        d -= 1
                    }
                    let dst = o + row * inner, s = p + off
                    if innerStride == 1 {
                        dst.update(from: s, count: inner)
                    } else {
                        for k in 0..<inner { dst[k] = s[k * innerStride] }
                    }
                }
            }
        }
        return out
    }
}
