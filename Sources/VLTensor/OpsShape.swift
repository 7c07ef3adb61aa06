// Differentiable layout operations. Reshape and leading-axis slices are views; the rest copy.

extension Tensor {
    /// The same elements under a new shape (a view). One dimension may be -1.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var resolved = newShape
        if let i = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != i }.reduce(1) { $0 * $1.element }
            precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
            resolved[i] = count / known
        }
        precondition(shapeElementCount(resolved) == count, "cannot reshape \(shape) (\(count) elements) to \(newShape)")
        let out = Tensor(storage: storage, offset: offset, shape: resolved)
        let inShape = shape
        return Tensor.record(out, inputs: [self], name: "reshape") { g, _ in
            [Tensor(storage: g.storage, offset: g.offset, shape: inShape)]
        }
    }

    /// Reorders axes (copies): out.shape[i] = shape[perm[i]].
    public func permuted(_ perm: [Int]) -> Tensor {
        let out = Kernels.permute(self, perm)
        var inverse = [Int](repeating: 0, count: perm.count)
        for (i, p) in perm.enumerated() { inverse[p] = i }
        return Tensor.record(out, inputs: [self], name: "permute") { g, _ in [Kernels.permute(g, inverse)] }
    }

    /// Swaps two axes (copies).
    public func transposed(_ a: Int, _ b: Int) -> Tensor {
        var perm = Array(0..<rank)
        perm.swapAt(normalizedAxis(a, rank: rank), normalizedAxis(b, rank: rank))
        return permuted(perm)
    }

    /// Broadcasts to a larger shape (copies); the gradient sums back.
    public func expanded(to newShape: [Int]) -> Tensor {
        let out = Kernels.broadcast(self, to: newShape)
        let inShape = shape
        return Tensor.record(out, inputs: [self], name: "expand") { g, _ in [Kernels.reduce(g, toShape: inShape)] }
    }

    /// Elements `range` along `axis`. A view when every axis before `axis` has length 1.
    public func slice(axis: Int, _ range: Range<Int>) -> Tensor {
        let ax = normalizedAxis(axis, rank: rank)
        precondition(
            range.lowerBound >= 0 && range.upperBound <= shape[ax],
            "slice \(range) out of 0..<\(shape[ax]) on axis \(ax)")
        let (outer, n, inner) = splitAround(shape, axis: ax)
        var outShape = shape
        outShape[ax] = range.count
        let out: Tensor
        if outer == 1 {
            out = Tensor(storage: storage, offset: offset + range.lowerBound * inner, shape: outShape)
        } else {
            out = Tensor(uninitialized: outShape)
            withTensorPointers(writing: out, reading: self) { o, p in
                let chunk = range.count * inner
                for a in 0..<outer {
                    (o + a * chunk).update(from: p + (a * n + range.lowerBound) * inner, count: chunk)
                }
            }
        }
        let inShape = shape
        return Tensor.record(out, inputs: [self], name: "slice") { g, _ in
            let gx = Tensor(zeros: inShape)
            withTensorPointers(writing: gx, reading: g) { o, pg in
                let chunk = range.count * inner
                for a in 0..<outer {
                    (o + (a * n + range.lowerBound) * inner).update(from: pg + a * chunk, count: chunk)
                }
            }
            return [gx]
        }
    }

    /// Rows of a table: out[i] = self[indices[i]] along axis 0 (token embeddings).
    /// The gradient scatter-adds into the selected rows only.
    public func indexSelect(rows indices: [Int]) -> Tensor {
        precondition(rank >= 1)
        let rowSize = count / max(shape[0], 1)
        let out = Tensor(uninitialized: [indices.count] + shape.dropFirst())
        withTensorPointers(writing: out, reading: self) { o, p in
            for (i, r) in indices.enumerated() {
                precondition(r >= 0 && r < shape[0], "index \(r) out of range 0..<\(shape[0])")
                (o + i * rowSize).update(from: p + r * rowSize, count: rowSize)
            }
        }
        let inShape = shape
        return Tensor.record(out, inputs: [self], name: "index_select") { g, _ in
            let gx = Tensor(zeros: inShape)
            withTensorPointers(writing: gx, reading: g) { o, pg in
                for (i, r) in indices.enumerated() {
                    let dst = o + r * rowSize, src = pg + i * rowSize
                    for k in 0..<rowSize { dst[k] += src[k] }
                }
            }
            return [gx]
        }
    }

    /// For x of shape [B, T, ...], picks position indices[b] of each batch item: [B, ...]
    /// (end-of-text pooling).
    public func selectPerBatch(_ indices: [Int]) -> Tensor {
        precondition(rank >= 2 && indices.count == shape[0], "selectPerBatch needs one index per batch item")
        let b = shape[0], t = shape[1], inner = count / max(b * t, 1)
        let out = Tensor(uninitialized: [b] + shape.dropFirst(2))
        withTensorPointers(writing: out, reading: self) { o, p in
            for i in 0..<b {
                precondition(indices[i] >= 0 && indices[i] < t, "position \(indices[i]) out of range 0..<\(t)")
                (o + i * inner).update(from: p + (i * t + indices[i]) * inner, count: inner)
            }
        }
        let inShape = shape
        return Tensor.record(out, inputs: [self], name: "select_per_batch") { g, _ in
            let gx = Tensor(zeros: inShape)
            withTensorPointers(writing: gx, reading: g) { o, pg in
                for i in 0..<b { (o + (i * t + indices[i]) * inner).update(from: pg + i * inner, count: inner) }
            }
            return [gx]
        }
    }
}

/// Joins tensors along an axis; all other dimensions must agree.
public func concat(_ parts: [Tensor], axis: Int) -> Tensor {
    precondition(!parts.isEmpty, "concat of nothing")
    let rank = parts[0].rank
    let ax = normalizedAxis(axis, rank: rank)
    for p in parts {
        precondition(
            p.rank == rank && (0..<rank).allSatisfy { $0 == ax || p.shape[$0] == parts[0].shape[$0] },
            "concat of \(parts.map(\.shape)) along axis \(ax)")
    }
    var outShape = parts[0].shape
    outShape[ax] = parts.reduce(0) { $0 + $1.shape[ax] }
    let (outer, total, inner) = splitAround(outShape, axis: ax)
    let out = Tensor(uninitialized: outShape)
    var start = 0
    var starts: [Int] = []
    for p in parts {
        starts.append(start)
        let len = p.shape[ax] * inner
        withTensorPointers(writing: out, reading: p) { o, src in
            for a in 0..<outer { (o + a * total * inner + start * inner).update(from: src + a * len, count: len) }
        }
        start += p.shape[ax]
    }
    let lengths = parts.map { $0.shape[ax] }, shapes = parts.map(\.shape)
    return Tensor.record(out, inputs: parts, name: "concat") { g, needs in
        (0..<parts.count).map { i in
            guard needs[i] else { return nil }
            let gi = Tensor(uninitialized: shapes[i])
            let len = lengths[i] * inner
            withTensorPointers(writing: gi, reading: g) { dst, pg in
                for a in 0..<outer {
                    (dst + a * len).update(from: pg + a * total * inner + starts[i] * inner, count: len)
                }
            }
            return gi
        }
    }
}
