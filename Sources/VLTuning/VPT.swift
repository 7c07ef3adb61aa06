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

    public init(depth: Int = 1, contextLength: Int = 4) {
        super.init(name: Self.methodName, depth: depth, contextLength: contextLength, initPhrase: nil, text: false, vision: true)
    }

    convenience init(options: TuningOptions) throws {
        var r = PromptOptionReader(method: Self.methodName, options: options)
        let depth = try r.int("depth", default: 1), n = try r.int("n_ctx", default: 4, minimum: 0)
        try r.finish()
        self.init(depth: depth, contextLength: n)
    }

    override func learnerShapes(_ config: CLIPSegConfig, contextLength n: Int) throws -> [(name: String, shape: [Int])] {
        [("context_vectors", [depth, n, config.visionConfig.hiddenSize])]
    }

    override func initialValue(_ name: String, shape: [Int], init rng: LearnerInit, config: CLIPSegConfig) -> Tensor {
        rng.normal(name, shape, std: 0.02)
    }

    override func visionPrompt(_ d: Int, context: ForwardContext) -> Tensor { contextRow(d) }
}
