import Foundation

// Batch normalisation with frozen running statistics (inference mode, also used when fine-tuning
// a backbone whose statistics stay fixed). The statistics are constants, so the op is a per-channel
// affine map y = x * scale[c] + shift[c], and its input gradient is just g * scale[c].

/// y = (x - runningMean[c]) / sqrt(runningVar[c] + eps) * weight[c] + bias[c] over channel axis 1
/// of x [B, C, ...]. Differentiable in x, weight and bias; the running statistics get no gradient.
public func batchNormInference(
    _ x: Tensor, runningMean: Tensor, runningVar: Tensor,
    weight: Tensor?, bias: Tensor?, eps: Float = 1e-5
) -> Tensor {
    precondition(x.rank >= 2, "batchNormInference: input \(x.shape) needs a channel axis 1")
    let (batch, channels, inner) = splitAround(x.shape, axis: 1)
    precondition(
        runningMean.count == channels && runningVar.count == channels,
        "batchNormInference: statistics \(runningMean.shape), \(runningVar.shape) for \(channels) channels")
    if let weight {
        precondition(weight.count == channels, "batchNormInference: weight \(weight.shape) for \(channels) channels")
    }
    if let bias {
        precondition(bias.count == channels, "batchNormInference: bias \(bias.shape) for \(channels) channels")
    }

    // Folded per channel once, in double so a tiny variance plus eps keeps its precision.
    let variance = runningVar.scalars
    let invStd: [Float] = (0..<channels).map { Float(1 / (Double(variance[$0]) + Double(eps)).squareRoot()) }
    let mean = runningMean.scalars
    let weights = weight?.scalars, biases = bias?.scalars
    let scale: [Float] = (0..<channels).map { c in invStd[c] * (weights?[c] ?? 1) }
    let shift: [Float] = (0..<channels).map { c in (biases?[c] ?? 0) - mean[c] * scale[c] }

    let out = Tensor(uninitialized: x.shape)
    withTensorPointers(writing: out, reading: x) { o, p in
        parallelFor(batch * channels, grain: max(1, 16384 / max(inner, 1))) { range in
            for plane in range {
                let a = scale[plane % channels], s = shift[plane % channels]
                let src = p + plane * inner, dst = o + plane * inner
                for k in 0..<inner { dst[k] = src[k] * a + s }
            }
        }
    }

    let weightNeedsGrad = weight?.requiresGrad ?? false
    guard Tensor.willRecord(x) || weightNeedsGrad || (bias?.requiresGrad ?? false) else {
        return Tensor.unrecorded(out, name: "batch_norm_inference")
    }
    var inputs = [x]
    var weightIndex: Int? = nil, biasIndex: Int? = nil
    if let weight { weightIndex = inputs.count; inputs.append(weight) }
    if let bias { biasIndex = inputs.count; inputs.append(bias) }
    let savedX = weightNeedsGrad ? x.detached() : nil  // only the weight gradient reads x
    let xShape = x.shape, inputCount = inputs.count
    return Tensor.record(out, inputs: inputs, name: "batch_norm_inference") { g, needs in
        var grads = [Tensor?](repeating: nil, count: inputCount)
        if needs[0] {
            let t = Tensor(uninitialized: xShape)
            withTensorPointers(writing: t, reading: g) { o, pg in
                parallelFor(batch * channels, grain: max(1, 16384 / max(inner, 1))) { range in
                    for plane in range {
                        let a = scale[plane % channels]
                        let src = pg + plane * inner, dst = o + plane * inner
                        for k in 0..<inner { dst[k] = src[k] * a }
                    }
                }
            }
            grads[0] = t
        }
        if let wi = weightIndex, needs[wi], let savedX {
            // dweight[c] = sum g * xhat, xhat = (x - mean) * invStd.
            let t = Tensor(uninitialized: [channels])
            withTensorPointers(writing: t, reading: g, savedX) { o, pg, px in
                parallelFor(channels, grain: max(1, 16384 / max(batch * inner, 1))) { range in
                    for c in range {
                        let m = mean[c]
                        var total: Float = 0
                        for b in 0..<batch {
                            let gs = pg + (b * channels + c) * inner, xs = px + (b * channels + c) * inner
                            var s: Float = 0
                            for k in 0..<inner { s += gs[k] * (xs[k] - m) }
                            total += s
                        }
                        o[c] = total * invStd[c]
                    }
                }
            }
            grads[wi] = t
        }
        if let bi = biasIndex, needs[bi] {
            grads[bi] = channelSums(g, batch: batch, channels: channels, plane: inner)
        }
        return grads
    }
}
