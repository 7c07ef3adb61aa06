import CVectorMath
import Foundation

// The segmentation losses of the papers, fused for speed and stability. Targets are constants.
//
// Sums run over fixed blocks of `lossBlock` elements in parallel (`fixedBlockSums`), each block in Double, and the
// block sums are added in block order: the result does not depend on the number of threads.

let lossBlock = 16384

/// sigmoid(x) for every element, in parallel (the vectorised kernel).
private func sigmoidValues(_ x: Tensor) -> Tensor {
    let p = Tensor(uninitialized: x.shape)
    withTensorPointers(writing: p, reading: x) { pp, px in
        parallelFor(x.count, grain: lossBlock) { r in VectorMath.sigmoid(px + r.lowerBound, pp + r.lowerBound, r.count)
        }
    }
    return p
}

/// Mean over all elements of max(x,0) - x t + log(1 + exp(-|x|)) (PyTorch's BCEWithLogitsLoss).
public func binaryCrossEntropyWithLogits(_ logits: Tensor, target: Tensor) -> Tensor {
    precondition(logits.count == target.count, "BCE: logits \(logits.shape) vs target \(target.shape)")
    let n = logits.count
    let total = withTensorPointers(reading: logits, target) { px, pt in
        fixedBlockSums(n, block: lossBlock, width: 1) { range, out in
            if VectorMath.wide {  // the same terms, 8 lanes at a time (libm's log1p and exp cost ~10 ns per pixel)
                out[0] = vlseg_bce_with_logits_sum(px + range.lowerBound, pt + range.lowerBound, range.count)
                return
            }
            var s = 0.0
            for i in range {
                let x = px[i], t = pt[i]
                s += Double(max(x, 0) - x * t + Foundation.log1p(Foundation.exp(-abs(x))))
            }
            out[0] = s
        }[0]
    }
    let out = Tensor(scalar: Float(total / Double(max(n, 1))))
    guard Tensor.willRecord(logits) else { return Tensor.unrecorded(out, name: "bce_with_logits") }
    let xs = logits.detached(), ts = target.detached()
    return Tensor.record(out, inputs: [logits], name: "bce_with_logits") { g, _ in
        let scale = g.item / Float(max(n, 1))
        let gx = sigmoidValues(xs)
        withTensorPointers(writing: gx, reading: ts) { po, pt in
            parallelFor(n, grain: lossBlock) { r in for i in r { po[i] = (po[i] - pt[i]) * scale } }
        }
        return [gx]
    }
}

/// Soft Dice loss on sigmoid(logits), one Dice per batch item (axis 0) over all other axes:
/// mean over b of 1 - (2 sum p t + smooth) / (sum p + sum t + smooth).
public func softDiceLoss(_ logits: Tensor, target: Tensor, smooth: Float = 1) -> Tensor {
    precondition(
        logits.count == target.count && logits.rank >= 1, "Dice: logits \(logits.shape) vs target \(target.shape)")
    let b = logits.shape[0], per = logits.count / max(b, 1)
    let probabilities = sigmoidValues(logits)
    var inter = [Double](repeating: 0, count: b), denom = [Double](repeating: 0, count: b)
    var total = 0.0
    for bi in 0..<b {
        let base = bi * per
        let sums = withTensorPointers(reading: probabilities, target) { pp, pt in
            fixedBlockSums(per, block: lossBlock, width: 2) { range, out in
                var i2 = 0.0, s = 0.0
                for j in range {
                    let p = Double(pp[base + j]), t = Double(pt[base + j])
                    i2 += p * t
                    s += p + t
                }
                out[0] = i2
                out[1] = s
            }
        }
        inter[bi] = sums[0]
        denom[bi] = sums[1] + Double(smooth)
        total += 1 - (2 * sums[0] + Double(smooth)) / denom[bi]
    }
    let out = Tensor(scalar: Float(total / Double(max(b, 1))))
    guard Tensor.willRecord(logits) else { return Tensor.unrecorded(out, name: "soft_dice") }
    let ts = target.detached()
    return Tensor.record(out, inputs: [logits], name: "soft_dice") { g, _ in
        let scale = Double(g.item) / Double(max(b, 1))
        let gx = Tensor(uninitialized: probabilities.shape)
        withTensorPointers(writing: gx, reading: probabilities, ts) { po, pp, pt in
            for bi in 0..<b {
                let num = 2 * inter[bi] + Double(smooth), den = denom[bi]
                // d(1 - num/den)/dp = -(2t den - num) / den^2, times dp/dx = p (1 - p).
                let a = Float(-2 * den / (den * den) * scale), c = Float(num / (den * den) * scale)
                let base = bi * per
                parallelFor(per, grain: lossBlock) { r in
                    for j in r {
                        let k = base + j, p = pp[k]
                        po[k] = (a * pt[k] + c) * p * (1 - p)
                    }
                }
            }
        }
        return [gx]
    }
}
