import VLModels
import VLTensor

/// MaPLe (Khattak et al., 2023) as TuneVLSeg runs it on CLIPSeg: text prompts exactly as CoOp's
/// (`context_vectors` [D, n, Dt]), and vision prompts made from them by a coupling function per depth,
/// P_v[d] = LayerNorm(Linear(h, Dv, no bias)(ReLU(Linear(Dt, h)(context_vectors[d])))), placed as VPT's.
///
/// Tensors: `context_vectors`, then per depth `projections.{d}.0.weight` [h, Dt], `.0.bias` [h],
/// `.2.weight` [Dv, h], `.3.weight` [Dv], `.3.bias` [Dv]. Initialisation: context N(0, 0.02) with row 0
/// from `tuning.init` ("a photo of a" by default, as TuneVLSeg); `.0.weight` kaiming-normal, other
/// Linear tensors U(±1/√in), LayerNorm weight 1 and bias 0.
public final class MaPLe: PromptLearner {
    public static let methodName = "maple"
    /// Coupling function hidden width h.
    public let hidden: Int

    public init(depth: Int, contextLength: Int, initPhrase: String?, hidden: Int) {
        self.hidden = hidden
        super.init(
            name: Self.methodName, depth: depth, contextLength: contextLength, initPhrase: initPhrase, text: true,
            vision: true)
    }

    /// Initialised from "a photo of a", as TuneVLSeg's configs.
    static let family = TuningMethodFamily(
        name: methodName, summary: "MaPLe: text prompts, and vision prompts coupled from them per depth",
        architectures: [.clipseg],
        options: PromptOptions.shared(initPhrase: "a photo of a") + [
            TuningOption("hidden", .int, default: 64, help: "coupling function hidden width", minimum: 1)
        ]
    ) { o in
        try PromptOptions.configured(
            MaPLe(
                depth: try o.int("depth"), contextLength: try o.int("n_ctx"), initPhrase: try PromptOptions.phrase(o),
                hidden: try o.int("hidden")), o)
    }

    override func learnerShapes(_ config: CLIPSegConfig, contextLength n: Int) throws -> [(name: String, shape: [Int])]
    {
        let dt = config.textConfig.hiddenSize, dv = config.visionConfig.hiddenSize
        var shapes: [(name: String, shape: [Int])] = [("context_vectors", [depth, n, dt])]
        for d in 0..<depth {
            shapes += [
                ("projections.\(d).0.weight", [hidden, dt]), ("projections.\(d).0.bias", [hidden]),
                ("projections.\(d).2.weight", [dv, hidden]),
                ("projections.\(d).3.weight", [dv]), ("projections.\(d).3.bias", [dv]),
            ]
        }
        return shapes
    }

    override func initialValue(_ name: String, shape: [Int], init rng: LearnerInit, config: CLIPSegConfig) -> Tensor {
        if name == "context_vectors" { return rng.normal(name, shape, std: 0.02) }
        if name.hasSuffix(".0.weight") { return rng.kaimingNormal(name, shape) }
        if name.hasSuffix(".0.bias") { return rng.linearDefault(name, shape, fanIn: config.textConfig.hiddenSize) }
        if name.hasSuffix(".2.weight") { return rng.linearDefault(name, shape, fanIn: shape[1]) }
        if name.hasSuffix(".3.weight") { return Tensor(filling: 1, shape: shape) }
        return Tensor(zeros: shape)  // .3.bias
    }

    override func textPrompt(_ d: Int, context: ForwardContext) -> Tensor { contextRow(d) }

    override func visionPrompt(_ d: Int, context: ForwardContext) -> Tensor {
        projectionMLP(contextRow(d), parameters, prefix: "projections.\(d)", normBias: true)
    }
}
