import VLModels
import VLTensor

/// CoOp (Zhou et al., 2022) as TuneVLSeg runs it on CLIPSeg: n learnable text context vectors right
/// after BOS; with depth D > 1, rows 1..D-1 replace them at the input of text layers 1..D-1.
///
/// Tensor: `context_vectors` [D, n, Dt]. Initialisation: N(0, 0.02), or row 0 from the token embeddings
/// of `tuning.init` (a phrase, whose token count sets n). The vision tower and decoder are unchanged.
public final class CoOp: PromptLearner {
    public static let methodName = "coop"

    public init(depth: Int, contextLength: Int, initPhrase: String?) {
        super.init(
            name: Self.methodName, depth: depth, contextLength: contextLength, initPhrase: initPhrase, text: true,
            vision: false)
    }

    static let family = TuningMethodFamily(
        name: methodName, summary: "CoOp: learnable text context after BOS", architectures: [.clipseg, .cris],
        options: PromptOptions.shared(initPhrase: "none") + [PromptOptions.crisCompatIndexing]
    ) { o in
        let method = CoOp(
            depth: try o.int("depth"), contextLength: try o.int("n_ctx"), initPhrase: try PromptOptions.phrase(o))
        method.crisCompatIndexing = try o.bool("cris_compat_indexing")
        return try PromptOptions.configured(method, o)
    }

    override func crisLearnerShapes(_ config: CRISConfig, contextLength n: Int) throws -> [(name: String, shape: [Int])]
    {
        [("context_vectors", [depth, n, config.clip.transformerWidth])]
    }

    override func learnerShapes(_ config: CLIPSegConfig, contextLength n: Int) throws -> [(name: String, shape: [Int])]
    {
        [("context_vectors", [depth, n, config.textConfig.hiddenSize])]
    }

    override func initialValue(_ name: String, shape: [Int], init rng: LearnerInit, config: CLIPSegConfig) -> Tensor {
        rng.normal(name, shape, std: 0.02)
    }

    override func textPrompt(_ d: Int, context: ForwardContext) -> Tensor { contextRow(d) }
}
