import VLModels
import VLTensor

/// Shared Separate (TuneVLSeg): one shared low-dimensional prompt S [D, n, s] projected per depth by two
/// plain Linear layers, P_t[d] = text_projections.d(S[d]) (width Dt) and P_v[d] = vision_projections.d(S[d])
/// (width Dv), placed as CoOp's (text) and VPT's (vision) prompts.
///
/// Tensors: `context_vectors` [D, n, s], then per depth `text_projections.{d}.weight` [Dt, s] and `.bias`,
/// `vision_projections.{d}.weight` [Dv, s] and `.bias`. Initialisation: S N(0, 0.02), projections
/// U(±1/√s), each depth drawn independently.
public final class SharedSeparate: PromptLearner {
    public static let methodName = "shared_separate"
    /// Width s of the shared prompt.
    public let sharedDim: Int

    public init(depth: Int, contextLength: Int, sharedDim: Int) {
        self.sharedDim = sharedDim
        super.init(
            name: Self.methodName, depth: depth, contextLength: contextLength, initPhrase: nil, text: true, vision: true
        )
    }

    static let family = TuningMethodFamily(
        name: methodName, summary: "one shared low-dimensional prompt projected to text and vision per depth",
        architectures: [.clipseg],
        options: PromptOptions.shared() + [
            TuningOption("shared_dim", .int, default: 64, help: "width of the shared prompt", minimum: 1)
        ]
    ) { o in
        try PromptOptions.configured(
            SharedSeparate(
                depth: try o.int("depth"), contextLength: try o.int("n_ctx"), sharedDim: try o.int("shared_dim")), o)
    }

    override func learnerShapes(_ config: CLIPSegConfig, contextLength n: Int) throws -> [(name: String, shape: [Int])]
    {
        let dt = config.textConfig.hiddenSize, dv = config.visionConfig.hiddenSize
        var shapes: [(name: String, shape: [Int])] = [("context_vectors", [depth, n, sharedDim])]
        for d in 0..<depth {
            shapes += [
                ("text_projections.\(d).weight", [dt, sharedDim]), ("text_projections.\(d).bias", [dt]),
                ("vision_projections.\(d).weight", [dv, sharedDim]), ("vision_projections.\(d).bias", [dv]),
            ]
        }
        return shapes
    }

    override func initialValue(_ name: String, shape: [Int], init rng: LearnerInit, config: CLIPSegConfig) -> Tensor {
        if name == "context_vectors" { return rng.normal(name, shape, std: 0.02) }
        return rng.linearDefault(name, shape, fanIn: sharedDim)
    }

    override func textPrompt(_ d: Int, context: ForwardContext) -> Tensor {
        linear(
            contextRow(d), weight: parameters["text_projections.\(d).weight"],
            bias: parameters["text_projections.\(d).bias"])
    }

    override func visionPrompt(_ d: Int, context: ForwardContext) -> Tensor {
        linear(
            contextRow(d), weight: parameters["vision_projections.\(d).weight"],
            bias: parameters["vision_projections.\(d).bias"])
    }
}
