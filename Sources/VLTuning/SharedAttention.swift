import VLModels
import VLTensor

/// Shared Attention (TuneVLSeg): one joint prompt J [D, n, Dt + Dv] passed, per depth, through a pre-norm
/// transformer encoder layer (PyTorch `TransformerEncoderLayer(norm_first=True)`, ReLU, LayerNorm eps
/// 1e-5, no dropout) whose self-attention runs ACROSS the n prompt tokens:
///   x = J[d]; x = x + MHA(LN1 x); x = x + linear2(ReLU(linear1(LN2 x)));
/// then split: P_t[d] = x[:, :Dt] (placed as CoOp's), P_v[d] = x[:, Dt:] (placed as VPT's).
///
/// Tensors: `context_vectors` [D, n, Dt+Dv], then per depth `layers.{d}.self_attn.in_proj_weight` [3d, d],
/// `.in_proj_bias`, `.self_attn.out_proj.{weight,bias}`, `.linear1.{weight,bias}` [ffn, d], `.linear2.{weight,bias}`
/// [d, ffn], `.norm1.{weight,bias}`, `.norm2.{weight,bias}`. Initialisation as PyTorch builds that layer:
/// in_proj xavier-uniform with zero bias, out_proj U(±1/√d) with zero bias, linear1/linear2 U(±1/√in),
/// LayerNorms 1 and 0; the context N(0, 0.02).
public final class SharedAttention: PromptLearner {
    public static let methodName = "shared_attention"
    public let heads: Int
    public let feedForward: Int

    public init(depth: Int, contextLength: Int, heads: Int, feedForward: Int) {
        self.heads = heads
        self.feedForward = feedForward
        super.init(
            name: Self.methodName, depth: depth, contextLength: contextLength, initPhrase: nil, text: true, vision: true
        )
    }

    /// TuneVLSeg's 16 heads and 1536 feed-forward units.
    static let family = TuningMethodFamily(
        name: methodName, summary: "one joint text+vision prompt through a transformer layer across prompt tokens",
        architectures: [.clipseg],
        options: PromptOptions.shared() + [
            TuningOption(
                "heads", .int, default: 16, help: "attention heads of the prompt transformer layer", minimum: 1),
            TuningOption(
                "ffn", .int, default: 1536, help: "feed-forward width of the prompt transformer layer", minimum: 1),
        ]
    ) { o in
        try PromptOptions.configured(
            SharedAttention(
                depth: try o.int("depth"), contextLength: try o.int("n_ctx"), heads: try o.int("heads"),
                feedForward: try o.int("ffn")), o)
    }

    /// Width w = Dt + Dv of the joint prompt.
    func contextWidth(_ config: CLIPSegConfig) -> Int { config.textConfig.hiddenSize + config.visionConfig.hiddenSize }

    override func learnerShapes(_ config: CLIPSegConfig, contextLength n: Int) throws -> [(name: String, shape: [Int])]
    {
        let w = contextWidth(config)
        guard w % heads == 0 else {
            throw TuningError.invalidOption(
                method: name, key: "heads",
                reason:
                    "\(heads) heads do not divide the joint prompt width \(w) (text \(config.textConfig.hiddenSize) + vision \(config.visionConfig.hiddenSize))"
            )
        }
        var shapes: [(name: String, shape: [Int])] = [("context_vectors", [depth, n, w])]
        for d in 0..<depth {
            let p = "layers.\(d)."
            shapes += [
                (p + "self_attn.in_proj_weight", [3 * w, w]), (p + "self_attn.in_proj_bias", [3 * w]),
                (p + "self_attn.out_proj.weight", [w, w]), (p + "self_attn.out_proj.bias", [w]),
                (p + "linear1.weight", [feedForward, w]), (p + "linear1.bias", [feedForward]),
                (p + "linear2.weight", [w, feedForward]), (p + "linear2.bias", [w]),
                (p + "norm1.weight", [w]), (p + "norm1.bias", [w]),
                (p + "norm2.weight", [w]), (p + "norm2.bias", [w]),
            ]
        }
        return shapes
    }

    override func initialValue(_ name: String, shape: [Int], init rng: LearnerInit, config: CLIPSegConfig) -> Tensor {
        let w = contextWidth(config)
        switch name.split(separator: ".").dropFirst(2).joined(separator: ".") {
        case "self_attn.in_proj_weight": return rng.xavierUniform(name, shape)
        case "self_attn.in_proj_bias", "self_attn.out_proj.bias", "norm1.bias", "norm2.bias":
            return Tensor(zeros: shape)
        case "self_attn.out_proj.weight": return rng.linearDefault(name, shape, fanIn: w)
        case "norm1.weight", "norm2.weight": return Tensor(filling: 1, shape: shape)
        case "linear1.weight", "linear1.bias": return rng.linearDefault(name, shape, fanIn: w)
        case "linear2.weight", "linear2.bias": return rng.linearDefault(name, shape, fanIn: feedForward)
        default: return rng.normal(name, shape, std: 0.02)  // context_vectors
        }
    }

    /// The transformer encoder layer of depth d on J[d]: [1, n, Dt+Dv].
    func jointPrompt(_ d: Int) -> Tensor {
        let p = parameters!, pre = "layers.\(d)."
        let w = contextWidth(config)
        let x = contextRow(d)
        let h = layerNorm(x, weight: p[pre + "norm1.weight"], bias: p[pre + "norm1.bias"], eps: 1e-5)
        // [1, n, 3w]
        let qkv = linear(h, weight: p[pre + "self_attn.in_proj_weight"], bias: p[pre + "self_attn.in_proj_bias"])
        let a = multiHeadAttention(
            query: qkv.slice(axis: 2, 0..<w), key: qkv.slice(axis: 2, w..<(2 * w)),
            value: qkv.slice(axis: 2, (2 * w)..<(3 * w)), heads: heads)
        let x1 = x + linear(a, weight: p[pre + "self_attn.out_proj.weight"], bias: p[pre + "self_attn.out_proj.bias"])
        let h2 = layerNorm(x1, weight: p[pre + "norm2.weight"], bias: p[pre + "norm2.bias"], eps: 1e-5)
        let f = linear(
            linear(h2, weight: p[pre + "linear1.weight"], bias: p[pre + "linear1.bias"]).relu(),
            weight: p[pre + "linear2.weight"], bias: p[pre + "linear2.bias"])
        return x1 + f
    }

    override func textPrompt(_ d: Int, context: ForwardContext) -> Tensor {
        jointPrompt(d).slice(axis: 2, 0..<config.textConfig.hiddenSize)
    }

    override func visionPrompt(_ d: Int, context: ForwardContext) -> Tensor {
        let w = contextWidth(config)
        return jointPrompt(d).slice(axis: 2, config.textConfig.hiddenSize..<w)
    }
}
