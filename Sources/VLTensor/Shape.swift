/// Shape helpers shared by the kernels.
@inlinable
public func shapeElementCount(_ shape: [Int]) -> Int {
    var n = 1
    for d in shape { n *= d }
    return n
}

/// Row-major strides of a contiguous tensor.
@inlinable
public func contiguousStrides(_ shape: [Int]) -> [Int] {
    var strides = [Int](repeating: 1, count: shape.count)
    var acc = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) {
        strides[i] = acc
        acc *= shape[i]
    }
    return strides
}

/// Normalises a possibly negative axis against a rank.
@inlinable
public func normalizedAxis(_ axis: Int, rank: Int) -> Int {
    let a = axis < 0 ? axis + rank : axis
    precondition(a >= 0 && a < rank, "axis \(axis) out of range for rank \(rank)")
    return a
}

/// Splits a shape around `axis` into (outer, axis length, inner) element counts.
@inlinable
public func splitAround(_ shape: [Int], axis: Int) -> (outer: Int, length: Int, inner: Int) {
    var outer = 1, inner = 1
    for i in 0..<axis { outer *= shape[i] }
    for i in (axis + 1)..<shape.count { inner *= shape[i] }
    return (outer, shape[axis], inner)
}

/// The broadcast of two shapes under NumPy rules, or nil when they are incompatible.
public func broadcastShapes(_ a: [Int], _ b: [Int]) -> [Int]? {
    let rank = max(a.count, b.count)
    var out = [Int](repeating: 1, count: rank)
    for i in 0..<rank {
        let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
        let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
        if da == db || db == 1 { out[i] = da } else if da == 1 { out[i] = db } else { return nil }
    }
    return out
}

extension Int {
    /// Digits grouped by thousands (150747746 -> "150,747,746"), for parameter and byte counts.
    public var grouped: String {
        let digits = String(magnitude)
        var out = ""
        for (i, c) in digits.reversed().enumerated() {
            if i > 0 && i % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return (self < 0 ? "-" : "") + String(out.reversed())
    }
}
