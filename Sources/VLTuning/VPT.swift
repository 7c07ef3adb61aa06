import VLModels
import VLTensor

/// Visual Prompt Tuning (Jia et al., 2022) as TuneVLSeg runs it on CLIPSeg: n learnable tokens appended
/// after the patch tokens (no position embedding) before the vision pre-LayerNorm; with depth D > 1,
/// rows 1..D-1 replace them in the output of layers 0..D-2 (so a tapped activation carries the next
/// layer's prompts). The prompt tokens go through the decoder's FiLM and attention and are dropped,
/// with CLS, before the transposed convolution. The text tower is unchanged.
///
/// Tensor: `context_vectors` [D, n, Dv], initialised N(0, 0.02). `vpt_shallow` / `vpt_deep` are presets
/// (D = 1 / 10) of this method.
public final class VPT: PromptLearner {
    public static let methodName = "vpt"

    public init(depth: Int, contextLength: Int) {
        super.init(
            name: Self.methodName, depth: depth, contextLength: contextLength, initPhrase: nil, text: false,
            vision: true)
    }

    /// The presets keep the family's name on the method (the dry run prints `vpt (vpt_deep)`).
    static let family = TuningMethodFamily(
        name: methodName, summary: "VPT: learnable vision prompt tokens after the patch tokens",
        architectures: [.clipseg],
        options: PromptOptions.shared(),
        presets: [
            TuningPreset("vpt_shallow", summary: "VPT with prompts at the input only (depth 1)", values: ["depth": 1]),
            TuningPreset("vpt_deep", summary: "VPT with deep prompts (depth 10)", values: ["depth": 10]),
        ]
    ) { o in
        try PromptOptions.configured(VPT(depth: try o.int("depth"), contextLength: try o.int("n_ctx")), o)
    }

    override func learnerShapes(_ config: CLIPSegConfig, contextLength n: Int) throws -> [(name: String, shape: [Int])]
    {
        [("context_vectors", [depth, n, config.visionConfig.hiddenSize])]
    }

    override func initialValue(_ name: String, shape: [Int], init rng: LearnerInit, config: CLIPSegConfig) -> Tensor {
        rng.normal(name, shape, std: 0.02)
    }

    override func visionPrompt(_ d: Int, context: ForwardContext) -> Tensor { contextRow(d) }
}
