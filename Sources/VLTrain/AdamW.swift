import Foundation
import VLTensor

/// AdamW with decoupled weight decay, identical in arithmetic order to PyTorch's `torch.optim.AdamW`
/// (single-tensor path): p *= 1 - lr*wd; m = lerp(m, g, 1-b1); v = b2 v + (1-b2) g^2;
/// p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). Decay applies to
/// `arena.decayedRanges` only when set (TuneVLSeg's parameter groups), else to every value.
public struct AdamW: Sendable, Codable, Equatable {
    public var beta1: Float
    public var beta2: Float
    public var eps: Float
    public var weightDecay: Float
    /// Optimiser steps taken (t in the bias corrections).
    public var step: Int = 0

    public init(beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
    }

    /// One update of the whole arena at learning rate `lr`.
    public mutating func update(_ arena: ParameterArena, lr: Float) {
        step += 1
        let t = Double(step)
        let bc1 = 1 - pow(Double(beta1), t), bc2 = 1 - pow(Double(beta2), t)
        let stepSize = Float(Double(lr) / bc1)
        let bc2Sqrt = Float(bc2.squareRoot())
        let decay = 1 - lr * weightDecay
        let b1 = beta1, b2 = beta2, eps = self.eps
        var wd = weightDecay
        if wd != 0, let ranges = arena.decayedRanges {
            // Decay only some tensors: scale them first, then run the update without decay. Each element
            // still sees p * (1 - lr wd) before its Adam step, as in the single pass.
            arena.values.withUnsafeMutablePointer { p in
                for range in ranges {
                    parallelFor(range.count, grain: 32768) { r in
                        for i in r { p[range.lowerBound + i] *= decay }
                    }
                }
            }
            wd = 0
        }
        withTensorPointers(writing: arena.values, arena.firstMoment, arena.secondMoment, reading: arena.gradients) {
            p, m, v, g in
            parallelFor(arena.count, grain: 32768) { range in
                // Eight lanes at a time with the scalar expression's operations in the same order, so
                // every element gets the same bits as the scalar tail would give it.
                var i = range.lowerBound
                while i + 8 <= range.upperBound {
                    var pi = VectorMath.load(p + i)
                    if wd != 0 { pi *= decay }
                    let gi = VectorMath.load(g + i)
                    var mi = VectorMath.load(m + i), vi = VectorMath.load(v + i)
                    mi += (gi - mi) * (1 - b1)
                    vi = vi * b2 + (1 - b2) * gi * gi
                    let denom = vi.squareRoot() / bc2Sqrt + eps
                    pi -= stepSize * (mi / denom)
                    VectorMath.store(pi, p + i)
                    VectorMath.store(mi, m + i)
                    VectorMath.store(vi, v + i)
                    i += 8
                }
                while i < range.upperBound {
                    if wd != 0 { p[i] *= decay }
                    let gi = g[i]
                    m[i] += (gi - m[i]) * (1 - b1)
                    v[i] = v[i] * b2 + (1 - b2) * gi * gi
                    let denom = v[i].squareRoot() / bc2Sqrt + eps
                    p[i] -= stepSize * (m[i] / denom)
                    i += 1
                }
            }
        }
    }
}

/// Scales gradients so their global L2 norm is at most `maxNorm` (after the all-reduce, so every
/// rank computes the same factor). Returns the norm before clipping.
@discardableResult
public func clipGradientNorm(_ arena: ParameterArena, maxNorm: Float) -> Float {
    let count = arena.count
    return arena.gradients.withUnsafeMutablePointer { g in
        // Sum of squares in Double, eight lanes at a time, by fixed blocks (thread-count independent).
        let total = fixedBlockSums(count, width: 1) { range, out in
            var i = range.lowerBound
            var acc = SIMD8<Double>(repeating: 0)
            while i + 8 <= range.upperBound {
                let x = SIMD8<Double>(VectorMath.load(g + i))
                acc += x * x
                i += 8
            }
            var s = acc.sum()
            while i < range.upperBound {
                s += Double(g[i]) * Double(g[i])
                i += 1
            }
            out[0] = s
        }[0]
        let norm = Float(total.squareRoot())
        if maxNorm > 0 {
            let coef = maxNorm / (norm + 1e-6)
            if coef < 1 {
                parallelFor(count, grain: 32768) { range in
                    for i in range { g[i] *= coef }
                }
            }
        }
        return norm
    }
}
