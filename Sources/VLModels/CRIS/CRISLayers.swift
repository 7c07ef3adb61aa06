import Foundation
import VLTensor

// CRIS building blocks addressed by their PyTorch state-dict prefixes. Each block knows its own
// parameter names and shapes (in state-dict order), so the expected-parameter list, the loader and
// the forward pass share one description of the network.

/// A parameter or buffer name with its shape.
typealias ParameterShape = (name: String, shape: [Int])

/// BatchNorm with frozen running statistics (CRIS always runs its BNs in eval mode).
struct CRISBatchNorm {
    let prefix: String
    let channels: Int
    let eps: Float

    func callAsFunction(_ x: Tensor, _ p: ParameterStore) -> Tensor {
        batchNormInference(
            x, runningMean: p[prefix + ".running_mean"], runningVar: p[prefix + ".running_var"],
            weight: p[prefix + ".weight"], bias: p[prefix + ".bias"], eps: eps)
    }

    var parameterShapes: [ParameterShape] {
        ["weight", "bias", "running_mean", "running_var"].map { ("\(prefix).\($0)", [channels]) }
    }
}

/// Names of BatchNorm statistics: buffers, never trained, not counted as parameters.
public func isBatchNormBuffer(_ name: String) -> Bool {
    name.hasSuffix(".running_mean") || name.hasSuffix(".running_var") || name.hasSuffix(".num_batches_tracked")
}

/// Conv2d without bias.
struct CRISConv {
    let name: String
    let cin, cout, kernel, stride, padding: Int
    var hasBias = false

    init(_ name: String, _ cin: Int, _ cout: Int, kernel: Int, stride: Int = 1, padding: Int? = nil, bias: Bool = false)
    {
        self.name = name
        self.cin = cin
        self.cout = cout
        self.kernel = kernel
        self.stride = stride
        self.padding = padding ?? kernel / 2
        hasBias = bias
    }

    func callAsFunction(_ x: Tensor, _ p: ParameterStore) -> Tensor {
        conv2d(
            x, weight: p[name + ".weight"], bias: hasBias ? p[name + ".bias"] : nil,
            stride: (stride, stride), padding: (padding, padding))
    }

    var parameterShapes: [ParameterShape] {
        [(name + ".weight", [cout, cin, kernel, kernel])] + (hasBias ? [(name + ".bias", [cout])] : [])
    }
}

/// CRIS's `conv_layer`: Conv (no bias, index 0) -> BN (index 1) -> ReLU.
struct ConvBNReLU {
    let conv: CRISConv
    let bn: CRISBatchNorm

    init(_ prefix: String, _ cin: Int, _ cout: Int, kernel: Int, eps: Float) {
        conv = CRISConv(prefix + ".0", cin, cout, kernel: kernel)
        bn = CRISBatchNorm(prefix: prefix + ".1", channels: cout, eps: eps)
    }

    func callAsFunction(_ x: Tensor, _ p: ParameterStore) -> Tensor { bn(conv(x, p), p).relu() }

    var parameterShapes: [ParameterShape] { conv.parameterShapes + bn.parameterShapes }
}

/// A Linear layer (`weight` [out, in], optional `bias`).
struct CRISLinear {
    let name: String
    let inFeatures, outFeatures: Int
    let hasBias: Bool

    func callAsFunction(_ x: Tensor, _ p: ParameterStore) -> Tensor {
        linear(x, weight: p[name + ".weight"], bias: hasBias ? p[name + ".bias"] : nil)
    }

    var parameterShapes: [ParameterShape] {
        [(name + ".weight", [outFeatures, inFeatures])] + (hasBias ? [(name + ".bias", [outFeatures])] : [])
    }
}

struct CRISLayerNorm {
    let name: String
    let width: Int
    let eps: Float

    func callAsFunction(_ x: Tensor, _ p: ParameterStore) -> Tensor {
        layerNorm(x, weight: p[name + ".weight"], bias: p[name + ".bias"], eps: eps)
    }

    var parameterShapes: [ParameterShape] { [(name + ".weight", [width]), (name + ".bias", [width])] }
}

/// `nn.MultiheadAttention` with a packed `in_proj_weight` [3d, d]: batch-first here ([B, T, d]);
/// the q/k/v projections use row views of the packed weight, so no weight is copied.
struct PackedMultiheadAttention {
    let prefix: String
    let width: Int
    let heads: Int

    func callAsFunction(
        query: Tensor, key: Tensor, value: Tensor, _ p: ParameterStore,
        causal: Bool = false, keyMask: Tensor? = nil
    ) -> Tensor {
        let w = p[prefix + ".in_proj_weight"], b = p[prefix + ".in_proj_bias"], d = width
        func project(_ x: Tensor, _ i: Int) -> Tensor {
            linear(x, weight: w.slice(axis: 0, i * d..<(i + 1) * d), bias: b.slice(axis: 0, i * d..<(i + 1) * d))
        }
        let a = multiHeadAttention(
            query: project(query, 0), key: project(key, 1), value: project(value, 2),
            heads: heads, causal: causal, keyMask: keyMask)
        return linear(a, weight: p[prefix + ".out_proj.weight"], bias: p[prefix + ".out_proj.bias"])
    }

    var parameterShapes: [ParameterShape] {
        [
            (prefix + ".in_proj_weight", [3 * width, width]), (prefix + ".in_proj_bias", [3 * width]),
            (prefix + ".out_proj.weight", [width, width]), (prefix + ".out_proj.bias", [width]),
        ]
    }
}

/// CLIP ModifiedResNet bottleneck: 1x1 -> 3x3 -> avg-pool(stride) -> 1x1 (x4), with an
/// avg-pool + 1x1 + BN shortcut when the shape changes.
struct Bottleneck {
    let prefix: String
    let conv1, conv2, conv3: CRISConv
    let bn1, bn2, bn3: CRISBatchNorm
    let stride: Int
    let downsample: (conv: CRISConv, bn: CRISBatchNorm)?

    init(prefix: String, inplanes: Int, planes: Int, stride: Int, eps: Float) {
        self.prefix = prefix
        self.stride = stride
        conv1 = CRISConv(prefix + ".conv1", inplanes, planes, kernel: 1)
        bn1 = CRISBatchNorm(prefix: prefix + ".bn1", channels: planes, eps: eps)
        conv2 = CRISConv(prefix + ".conv2", planes, planes, kernel: 3)
        bn2 = CRISBatchNorm(prefix: prefix + ".bn2", channels: planes, eps: eps)
        conv3 = CRISConv(prefix + ".conv3", planes, planes * 4, kernel: 1)
        bn3 = CRISBatchNorm(prefix: prefix + ".bn3", channels: planes * 4, eps: eps)
        if stride > 1 || inplanes != planes * 4 {
            downsample = (
                CRISConv(prefix + ".downsample.0", inplanes, planes * 4, kernel: 1),
                CRISBatchNorm(prefix: prefix + ".downsample.1", channels: planes * 4, eps: eps)
            )
        } else {
            downsample = nil
        }
    }

    func callAsFunction(_ x: Tensor, _ p: ParameterStore) -> Tensor {
        var out = bn1(conv1(x, p), p).relu()
        out = bn2(conv2(out, p), p).relu()
        if stride > 1 { out = avgPool2d(out, kernel: (stride, stride)) }
        out = bn3(conv3(out, p), p)
        var identity = x
        if let downsample {
            if stride > 1 { identity = avgPool2d(identity, kernel: (stride, stride)) }
            identity = downsample.bn(downsample.conv(identity, p), p)
        }
        return (out + identity).relu()
    }

    var parameterShapes: [ParameterShape] {
        var s = conv1.parameterShapes + bn1.parameterShapes + conv2.parameterShapes + bn2.parameterShapes
        s += conv3.parameterShapes + bn3.parameterShapes
        if let downsample { s += downsample.conv.parameterShapes + downsample.bn.parameterShapes }
        return s
    }
}

/// A CLIP text transformer block: pre-LN attention (causal + padding mask) and QuickGELU MLP.
struct CLIPResidualBlock {
    let attention: PackedMultiheadAttention
    let ln1, ln2: CRISLayerNorm
    let fc, proj: CRISLinear

    init(prefix: String, width: Int, heads: Int, eps: Float) {
        attention = PackedMultiheadAttention(prefix: prefix + ".attn", width: width, heads: heads)
        ln1 = CRISLayerNorm(name: prefix + ".ln_1", width: width, eps: eps)
        ln2 = CRISLayerNorm(name: prefix + ".ln_2", width: width, eps: eps)
        fc = CRISLinear(name: prefix + ".mlp.c_fc", inFeatures: width, outFeatures: width * 4, hasBias: true)
        proj = CRISLinear(name: prefix + ".mlp.c_proj", inFeatures: width * 4, outFeatures: width, hasBias: true)
    }

    func callAsFunction(_ x: Tensor, _ p: ParameterStore, keyMask: Tensor) -> Tensor {
        let h = ln1(x, p)
        let a = x + attention(query: h, key: h, value: h, p, causal: true, keyMask: keyMask)
        return a + proj(fc(ln2(a, p), p).quickGELU(), p)
    }

    var parameterShapes: [ParameterShape] {
        attention.parameterShapes + ln1.parameterShapes + fc.parameterShapes + proj.parameterShapes
            + ln2.parameterShapes
    }
}

/// A CRIS vision-language decoder layer: pre-norm self-attention and cross-attention to the words,
/// each followed by an extra LayerNorm, then a ReLU FFN with a LayerNorm inside.
struct CRISDecoderLayer {
    let selfAttention, crossAttention: PackedMultiheadAttention
    let norm1, norm2, norm3, selfAttentionNorm, crossAttentionNorm, ffnNorm: CRISLayerNorm
    let ffnIn, ffnOut: CRISLinear

    init(prefix: String, width: Int, heads: Int, ffn: Int, eps: Float) {
        selfAttention = PackedMultiheadAttention(prefix: prefix + ".self_attn", width: width, heads: heads)
        crossAttention = PackedMultiheadAttention(prefix: prefix + ".multihead_attn", width: width, heads: heads)
        norm1 = CRISLayerNorm(name: prefix + ".norm1", width: width, eps: eps)
        norm2 = CRISLayerNorm(name: prefix + ".norm2", width: width, eps: eps)
        norm3 = CRISLayerNorm(name: prefix + ".norm3", width: width, eps: eps)
        selfAttentionNorm = CRISLayerNorm(name: prefix + ".self_attn_norm", width: width, eps: eps)
        crossAttentionNorm = CRISLayerNorm(name: prefix + ".cross_attn_norm", width: width, eps: eps)
        ffnIn = CRISLinear(name: prefix + ".ffn.0", inFeatures: width, outFeatures: ffn, hasBias: true)
        ffnNorm = CRISLayerNorm(name: prefix + ".ffn.3", width: ffn, eps: eps)
        ffnOut = CRISLinear(name: prefix + ".ffn.4", inFeatures: ffn, outFeatures: width, hasBias: true)
    }

    /// vis [B, HW, d], txt [B, L, d]; positions broadcast over the batch; `textMask` [B, L] (1 keep).
    func callAsFunction(vis: Tensor, txt: Tensor, visPos: Tensor, txtPos: Tensor, textMask: Tensor, _ p: ParameterStore)
        -> Tensor
    {
        var v = vis
        var v2 = norm1(v, p)
        let qk = v2 + visPos
        v = v + selfAttentionNorm(selfAttention(query: qk, key: qk, value: v2, p), p)
        v2 = norm2(v, p)
        v =
            v
            + crossAttentionNorm(
                crossAttention(query: v2 + visPos, key: txt + txtPos, value: txt, p, keyMask: textMask), p)
        v2 = norm3(v, p)
        let hidden = linearReLU(v2, weight: p[ffnIn.name + ".weight"], bias: p[ffnIn.name + ".bias"])
        return v + ffnOut(ffnNorm(hidden, p), p)
    }

    var parameterShapes: [ParameterShape] {
        selfAttentionNorm.parameterShapes + crossAttentionNorm.parameterShapes + selfAttention.parameterShapes
            + crossAttention.parameterShapes + ffnIn.parameterShapes + ffnNorm.parameterShapes + ffnOut.parameterShapes
            + norm1.parameterShapes + norm2.parameterShapes + norm3.parameterShapes
    }
}

/// Sine position encodings of CRIS's decoder, computed in double and rounded once.
enum SinePositions {
    /// pe[l, 2k] = sin(l w_k), pe[l, 2k+1] = cos(l w_k), w_k = 10000^(-2k/d): [L, d].
    static func oneD(width d: Int, length: Int) -> Tensor {
        var v = [Float](repeating: 0, count: length * d)
        for l in 0..<length {
            for k in 0..<(d / 2) {
                let angle = Double(l) * pow(10000, -Double(2 * k) / Double(d))
                v[l * d + 2 * k] = Float(sin(angle))
                v[l * d + 2 * k + 1] = Float(cos(angle))
            }
        }
        return Tensor(shape: [length, d], values: v)
    }

    /// Column encodings in channels [0, d/2), row encodings in [d/2, d): [H*W, d], token y*W+x.
    static func twoD(width d: Int, height h: Int, width w: Int) -> Tensor {
        let half = d / 2
        var v = [Float](repeating: 0, count: h * w * d)
        for y in 0..<h {
            for x in 0..<w {
                let base = (y * w + x) * d
                for k in 0..<(half / 2) {
                    let freq = pow(10000, -Double(2 * k) / Double(half))
                    v[base + 2 * k] = Float(sin(Double(x) * freq))
                    v[base + 2 * k + 1] = Float(cos(Double(x) * freq))
                    v[base + half + 2 * k] = Float(sin(Double(y) * freq))
                    v[base + half + 2 * k + 1] = Float(cos(Double(y) * freq))
                }
            }
        }
        return Tensor(shape: [h * w, d], values: v)
    }
}
