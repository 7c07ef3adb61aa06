import Foundation

// The segmentation losses of the papers, fused for speed and stability. Targets are constants.

/// Mean over all elements of max(x,0) - x t + log(1 + exp(-|x|)) (PyTorch's BCEWithLogitsLoss).
public func binaryCrossEntropyWithLogits(_ logits: Tensor, target: Tensor) -> Tensor {
    precondition(logits.count == target.count, "BCE: logits \(logits.shape) vs target \(target.shape)")
    let n = logits.count
    let px = logits.pointer, pt = target.pointer
    var total = 0.0
    for i in 0..<n {
        let x = px[i], t = pt[i]
        total += Double(max(x, 0) - x * t + Foundation.log1p(Foundation.exp(-abs(x))))
    }
    let out = Tensor(scalar: Float(total / Double(max(n, 1))))
    let xs = logits.detached(), ts = target.detached()
    return Tensor.record(out, inputs: [logits], name: "bce_with_logits") { g, _ in
        let scale = g.item / Float(max(n, 1))
        let gx = Tensor(uninitialized: xs.shape)
        let po = gx.mutablePointer, px = xs.pointer, pt = ts.pointer
        for i in 0..<n { po[i] = (stableSigmoid(px[i]) - pt[i]) * scale }
        return [gx]
    }
}

/// Soft Dice loss on sigmoid(logits), one Dice per batch item (axis 0) over all other axes:
/// mean over b of 1 - (2 sum p t + smooth) / (sum p + sum t + smooth).
public func softDiceLoss(_ logits: Tensor, target: Tensor, smooth: Float = 1) -> Tensor {
    precondition(logits.count == target.count && logits.rank >= 1, "Dice: logits \(logits.shape) vs target \(target.shape)")
    let b = logits.shape[0], per = logits.count / max(b, 1)
    let px = logits.pointer, pt = target.pointer
    var inter = [Double](repeating: 0, count: b), denom = [Double](repeating: 0, count: b)
    var total = 0.0
    for bi in 0..<b {
        var i2 = 0.0, s = 0.0
        for j in 0..<per {
            let p = Double(stableSigmoid(px[bi * per + j])), t = Double(pt[bi * per + j])
            i2 += p * t
            s += p + t
        }
        inter[bi] = i2
        denom[bi] = s + Double(smooth)
        total += 1 - (2 * i2 + Double(smooth)) / denom[bi]
    }
    let out = Tensor(scalar: Float(total / Double(max(b, 1))))
    let xs = logits.detached(), ts = target.detached()
    return Tensor.record(out, inputs: [logits], name: "soft_dice") { g, _ in
        let scale = Double(g.item) / Double(max(b, 1))
        let gx = Tensor(uninitialized: xs.shape)
        let po = gx.mutablePointer, px = xs.pointer, pt = ts.pointer
        for bi in 0..<b {
            let num = 2 * inter[bi] + Double(smooth), den = denom[bi]
            for j in 0..<per {
                let k = bi * per + j
                let p = Double(stableSigmoid(px[k])), t = Double(pt[k])
                // d(1 - num/den)/dp = -(2t den - num) / den^2
                let dp = -(2 * t * den - num) / (den * den)
                po[k] = Float(dp * p * (1 - p) * scale)
            }
        }
        return [gx]
    }
}
