import Foundation

/// Layer normalisation over the last axis: (x - mean) / sqrt(var + eps) * weight + bias.
/// `weight` and `bias` are optional (some models' LayerNorms have no bias).
public func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
    let d = x.shape.last ?? 1
    if let weight { precondition(weight.count == d, "layerNorm weight \(weight.shape) for width \(d)") }
    if let bias { precondition(bias.count == d, "layerNorm bias \(bias.shape) for width \(d)") }
    let rows = x.count / max(d, 1)
    let out = Tensor(uninitialized: x.shape)
    let mean = Tensor(uninitialized: [rows]), rstd = Tensor(uninitialized: [rows])
    withTensorPointers(writing: out, mean, rstd, reading: x) { po, pm, pr, px in
        weight.withUnsafePointerIfPresent { pw in
            bias.withUnsafePointerIfPresent { pb in
                parallelFor(rows, grain: max(1, 8192 / max(d, 1))) { range in
                    for r in range {
                        let row = px + r * d, o = po + r * d
                        var s: Float = 0
                        for i in 0..<d { s += row[i] }
                        let mu = s / Float(d)
                        var v: Float = 0
                        for i in 0..<d { let c = row[i] - mu; v += c * c }
                        let rs = 1 / (v / Float(d) + eps).squareRoot()
                        pm[r] = mu
                        pr[r] = rs
                        switch (pw, pb) {
                        case let (w?, b?): for i in 0..<d { o[i] = (row[i] - mu) * rs * w[i] + b[i] }
                        case let (w?, nil): for i in 0..<d { o[i] = (row[i] - mu) * rs * w[i] }
                        case let (nil, b?): for i in 0..<d { o[i] = (row[i] - mu) * rs + b[i] }
                        case (nil, nil): for i in 0..<d { o[i] = (row[i] - mu) * rs }
                        }
                    }
                }
            }
        }
    }
    var inputs = [x]
    if let weight { inputs.append(weight) }
    if let bias { inputs.append(bias) }
    guard inputs.contains(where: \.requiresGrad), GradMode.isEnabled else {
        return Tensor.unrecorded(out, name: "layer_norm")
    }
    let xs = x.detached(), ws = weight?.detached()
    let weightIndex = weight == nil ? nil : 1, biasIndex = bias == nil ? nil : (weight == nil ? 1 : 2)
    return Tensor.record(out, inputs: inputs, name: "layer_norm") { g, needs in
        var grads = [Tensor?](repeating: nil, count: needs.count)
        if needs[0] {
            let gx = Tensor(uninitialized: xs.shape)
            withTensorPointers(writing: gx, reading: g, xs, mean, rstd) { pgx, pg, px, pm, pr in
                ws.withUnsafePointerIfPresent { pw in
                    parallelFor(rows, grain: max(1, 8192 / max(d, 1))) { range in
                        for r in range {
                            let row = px + r * d, gr = pg + r * d, o = pgx + r * d
                            let mu = pm[r], rs = pr[r]
                            var sumG: Float = 0, sumGX: Float = 0
                            for i in 0..<d {
                                let gh = pw.map { gr[i] * $0[i] } ?? gr[i]
                                sumG += gh
                                sumGX += gh * (row[i] - mu) * rs
                            }
                            let invD = 1 / Float(d)
                            for i in 0..<d {
                                let gh = pw.map { gr[i] * $0[i] } ?? gr[i]
                                let xh = (row[i] - mu) * rs
                                o[i] = rs * (gh - sumG * invD - xh * sumGX * invD)
                            }
                        }
                    }
                }
            }
            grads[0] = gx
        }
        let needW = weightIndex.map { needs[$0] } ?? false, needB = biasIndex.map { needs[$0] } ?? false
        if needW || needB {
            let gw = Tensor(zeros: [d]), gb = Tensor(zeros: [d])
            withTensorPointers(writing: gw, gb, reading: g, xs, mean, rstd) { pgw, pgb, pg, px, pm, pr in
                for r in 0..<rows {
                    let row = px + r * d, gr = pg + r * d
                    let mu = pm[r], rs = pr[r]
                    for i in 0..<d {
                        pgw[i] += gr[i] * (row[i] - mu) * rs
                        pgb[i] += gr[i]
                    }
                }
            }
            if needW, let wi = weightIndex { grads[wi] = Tensor(storage: gw.storage, shape: weight!.shape) }
            if needB, let bi = biasIndex { grads[bi] = Tensor(storage: gb.storage, shape: bias!.shape) }
        }
        return grads
    }
}

extension Tensor {
    /// Softmax over the last axis.
    public func softmax() -> Tensor {
        let d = shape.last ?? 1
        let rows = count / max(d, 1)
        let out = Tensor(uninitialized: shape)
        withTensorPointers(writing: out, reading: self) { po, px in
            parallelFor(rows, grain: max(1, 8192 / max(d, 1))) { range in
                for r in range { softmaxRow(px + r * d, po + r * d, d) }
            }
        }
        guard Tensor.willRecord(self) else { return Tensor.unrecorded(out, name: "softmax") }
        let y = out.detached()
        return Tensor.record(out, inputs: [self], name: "softmax") { g, _ in
            let gx = Tensor(uninitialized: y.shape)
            withTensorPointers(writing: gx, reading: y, g) { po, py, pg in
                parallelFor(rows, grain: max(1, 8192 / max(d, 1))) { range in
                    for r in range {
                        let yr = py + r * d, gr = pg + r * d, o = po + r * d
                        var dot: Float = 0
                        for i in 0..<d { dot += yr[i] * gr[i] }
                        for i in 0..<d { o[i] = yr[i] * (gr[i] - dot) }
                    }
                }
            }
            return [gx]
        }
    }
}

/// Numerically stable softmax of one row; -infinity entries get probability 0.
@inline(__always)
func softmaxRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    let m = VectorMath.maximum(x, n)
    if m == -Float.infinity {
        y.update(repeating: 0, count: n)
        return
    }
    let s = VectorMath.expShifted(x, y, n, shift: m)
    VectorMath.scale(y, n, by: 1 / s)
}
