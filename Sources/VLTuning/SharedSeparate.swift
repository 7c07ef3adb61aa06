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

    public init(depth: Int = 1, contextLength: Int = 4, sharedDim: Int = 64) {
        self.sharedDim = sharedDim
        super.init(name: Self.methodName, depth: depth, contextLength: contextLength, initPhrase: nil, text: true, vision: true)
    }

    convenience init(options: TuningOptions) throws {
        var r = PromptOptionReader(method: Self.methodName, options: options)
        let depth = try r.int("depth", default: 1), n = try r.int("n_ctx", default: 4, minimum: 0)
        let s = try r.int("shared_dim", default: 64)
        try r.finish()
        self.init(depth: depth, contextLength: n, sharedDim: s)
    }

    override func learnerShapes(_ config: CLIPSegConfig, contextLength n: Int) throws -> [(name: String, shape: [Int])] {
        let dt = config.textConfig.hiddenSize, dv = config.visionConfig.hiddenSize
        var shapes: [(name: String, shape: [Int])] = [("context_vectors", [depth, n, sharedDim])]
        for d in 0..<depth {
            shapes += [("text_projections.\(d).weight", [dt, sharedDim]), ("text_projections.\(d).bias", [dt]),
                       ("vision_projections.\(d).weight", [dv, sharedDim]), ("vision_projections.\(d).bias", [dv])]
        }
        return shapes
    }

    override func initialValue(_ name: String, shape: [Int], init rng: LearnerInit, config: CLIPSegConfig) -> Tensor {
        if name == "context_vectors" { return rng.normal(name, shape, std: 0.02) }
        return rng.linearDefault(name, shape, fanIn: sharedDim)
    }

    override func textPrompt(_ d: Int, context: ForwardContext) -> Tensor {
        linear(contextRow(d), weight: parameters["text_projections.\(d).weight"], bias: parameters["text_projections.\(d).bias"])
    }

    override func visionPrompt(_ d: Int, context: ForwardContext) -> Tensor {
        linear(contextRow(d), weight: parameters["vision_projections.\(d).weight"], bias: parameters["vision_projections.\(d).bias"])
    }
}
