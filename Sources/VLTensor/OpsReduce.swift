// Differentiable reductions.

extension Tensor {
    /// Sum over the given axes (all axes when empty).
    public func sum(axes: [Int] = [], keepDims: Bool = false) -> Tensor {
        let axesN = (axes.isEmpty ? Array(0..<rank) : axes.map { normalizedAxis($0, rank: rank) }).sorted()
        var out = detached()
        for a in axesN { out = Kernels.sumAxis(out, axis: a) }
        var keptShape = shape
        for a in axesN { keptShape[a] = 1 }
        let finalShape =
            keepDims ? keptShape : shape.enumerated().filter { !axesN.contains($0.offset) }.map { $0.element }
        out = Tensor(storage: out.storage, offset: out.offset, shape: finalShape)
        let inShape = shape
        return Tensor.record(out, inputs: [self], name: "sum") { g, _ in
            let gk = Tensor(storage: g.storage, offset: g.offset, shape: keptShape)
            return [Kernels.broadcast(gk, to: inShape)]
        }
    }

    /// Mean over the given axes (all axes when empty).
    public func mean(axes: [Int] = [], keepDims: Bool = false) -> Tensor {
        let axesN = axes.isEmpty ? Array(0..<rank) : axes.map { normalizedAxis($0, rank: rank) }
        let n = axesN.reduce(1) { $0 * shape[$1] }
        return sum(axes: axes, keepDims: keepDims).scaled(1 / Float(n))
    }
}
