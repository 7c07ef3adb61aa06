import VLTensor

/// Records named intermediate tensors during a forward pass (debugging, reference comparisons).
public typealias ForwardObserver = (_ name: String, _ value: Tensor) -> Void

/// Applies a Hugging Face activation by its config name.
func activation(_ name: String, _ x: Tensor) -> Tensor {
    switch name {
    case "quick_gelu": return x.quickGELU()
    case "gelu": return x.gelu()
    case "relu": return x.relu()
    default: preconditionFailure("unsupported activation \(name)")  // rejected when the config is validated
    }
}

/// A Linear layer addressed by its checkpoint prefix (`<prefix>.weight`, `<prefix>.bias`).
struct LinearLayer {
    let prefix: String
    let inFeatures: Int
    let outFeatures: Int
    let hasBias: Bool
    /// Parameter names, built once (the forward pass looks them up per call).
    let weightName: String
    let biasName: String

    init(prefix: String, inFeatures: Int, outFeatures: Int, hasBias: Bool) {
        self.prefix = prefix
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.hasBias = hasBias
        weightName = prefix + ".weight"
        biasName = prefix + ".bias"
    }

    func callAsFunction(_ x: Tensor, _ p: ParameterStore, hooks: CLIPSegHooks? = nil) -> Tensor {
        let y = linear(x, weight: p[weightName], bias: hasBias ? p[biasName] : nil)
        if let hooks, let delta = hooks.linearDelta(x, prefix: prefix) { return y + delta }
        return y
    }

    var parameterShapes: [(String, [Int])] {
        [("\(prefix).weight", [outFeatures, inFeatures])] + (hasBias ? [("\(prefix).bias", [outFeatures])] : [])
    }
}

/// A LayerNorm with weight and bias addressed by prefix.
struct LayerNormLayer {
    let prefix: String
    let width: Int
    let eps: Float
    let weightName: String
    let biasName: String

    init(prefix: String, width: Int, eps: Float) {
        self.prefix = prefix
        self.width = width
        self.eps = eps
        weightName = prefix + ".weight"
        biasName = prefix + ".bias"
    }

    func callAsFunction(_ x: Tensor, _ p: ParameterStore) -> Tensor {
        layerNorm(x, weight: p[weightName], bias: p[biasName], eps: eps)
    }

    var parameterShapes: [(String, [Int])] { [("\(prefix).weight", [width]), ("\(prefix).bias", [width])] }
}

/// CLIP's multi-head self-attention (separate q/k/v projections, output projection).
struct SelfAttentionLayer {
    let q, k, v, out: LinearLayer
    let heads: Int

    init(prefix: String, width: Int, heads: Int) {
        q = LinearLayer(prefix: "\(prefix).q_proj", inFeatures: width, outFeatures: width, hasBias: true)
        k = LinearLayer(prefix: "\(prefix).k_proj", inFeatures: width, outFeatures: width, hasBias: true)
        v = LinearLayer(prefix: "\(prefix).v_proj", inFeatures: width, outFeatures: width, hasBias: true)
        out = LinearLayer(prefix: "\(prefix).out_proj", inFeatures: width, outFeatures: width, hasBias: true)
        self.heads = heads
    }

    func callAsFunction(
        _ x: Tensor, _ p: ParameterStore, causal: Bool = false, keyMask: Tensor? = nil,
        hooks: CLIPSegHooks? = nil
    ) -> Tensor {
        let a = multiHeadAttention(
            query: q(x, p, hooks: hooks), key: k(x, p, hooks: hooks), value: v(x, p, hooks: hooks),
            heads: heads, causal: causal, keyMask: keyMask)
        return out(a, p, hooks: hooks)
    }

    var parameterShapes: [(String, [Int])] { [q, k, v, out].flatMap(\.parameterShapes) }
}

/// A CLIP encoder layer: pre-LN attention and MLP blocks with residuals.
struct CLIPEncoderLayer {
    let attention: SelfAttentionLayer
    let norm1, norm2: LayerNormLayer
    let fc1, fc2: LinearLayer
    let act: String

    init(prefix: String, config: CLIPTowerConfig) {
        let d = config.hiddenSize
        attention = SelfAttentionLayer(prefix: "\(prefix).self_attn", width: d, heads: config.numAttentionHeads)
        norm1 = LayerNormLayer(prefix: "\(prefix).layer_norm1", width: d, eps: config.layerNormEps)
        norm2 = LayerNormLayer(prefix: "\(prefix).layer_norm2", width: d, eps: config.layerNormEps)
        fc1 = LinearLayer(
            prefix: "\(prefix).mlp.fc1", inFeatures: d, outFeatures: config.intermediateSize, hasBias: true)
        fc2 = LinearLayer(
            prefix: "\(prefix).mlp.fc2", inFeatures: config.intermediateSize, outFeatures: d, hasBias: true)
        act = config.hiddenAct
    }

    func callAsFunction(
        _ x: Tensor, _ p: ParameterStore, causal: Bool = false, keyMask: Tensor? = nil,
        hooks: CLIPSegHooks? = nil, tower: Tower = .vision, index: Int = 0
    ) -> Tensor {
        guard let hooks else {
            let h = x + attention(norm1(x, p), p, causal: causal, keyMask: keyMask)
            return h + fc2(activation(act, fc1(norm2(h, p), p)), p)
        }
        let a = attention(norm1(x, p), p, causal: causal, keyMask: keyMask, hooks: hooks)
        let h = x + hooks.attentionOutput(a, tower: tower, layer: index)
        let m = fc2(activation(act, fc1(norm2(h, p), p, hooks: hooks)), p, hooks: hooks)
        return h + hooks.mlpOutput(m, tower: tower, layer: index)
    }

    var parameterShapes: [(String, [Int])] {
        attention.parameterShapes + norm1.parameterShapes + fc1.parameterShapes + fc2.parameterShapes
            + norm2.parameterShapes
    }
}

/// A CLIPSeg decoder layer: POST-LN, and always ReLU whatever the config's decoder_hidden_act says
/// (Hugging Face builds it from a copy of the vision config with hidden_act forced to relu).
struct CLIPSegDecoderLayer {
    let attention: SelfAttentionLayer
    let norm1, norm2: LayerNormLayer
    let fc1, fc2: LinearLayer

    init(prefix: String, width: Int, heads: Int, intermediate: Int, eps: Float) {
        attention = SelfAttentionLayer(prefix: "\(prefix).self_attn", width: width, heads: heads)
        norm1 = LayerNormLayer(prefix: "\(prefix).layer_norm1", width: width, eps: eps)
        norm2 = LayerNormLayer(prefix: "\(prefix).layer_norm2", width: width, eps: eps)
        fc1 = LinearLayer(prefix: "\(prefix).mlp.fc1", inFeatures: width, outFeatures: intermediate, hasBias: true)
        fc2 = LinearLayer(prefix: "\(prefix).mlp.fc2", inFeatures: intermediate, outFeatures: width, hasBias: true)
    }

    func callAsFunction(_ x: Tensor, _ p: ParameterStore) -> Tensor {
        let h = norm1(x + attention(x, p), p)
        let mlp = mlpReLU(
            h, fc1Weight: p[fc1.weightName], fc1Bias: p[fc1.biasName],
            fc2Weight: p[fc2.weightName], fc2Bias: p[fc2.biasName])
        return norm2(h + mlp, p)
    }

    var parameterShapes: [(String, [Int])] {
        attention.parameterShapes + norm1.parameterShapes + fc1.parameterShapes + fc2.parameterShapes
            + norm2.parameterShapes
    }
}
