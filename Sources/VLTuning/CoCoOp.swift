import VLModels
import VLTensor

/// CoCoOp (Zhou et al., 2022b) as TuneVLSeg runs it on CLIPSeg: CoOp plus, per depth d, a meta-net
/// Linear(P, h) -> ReLU -> Linear(h, Dt, no bias) -> LayerNorm(Dt, no bias, eps 1e-5) fed with the
/// image feature f = visual_projection(post_layernorm(CLS)) of the UNprompted vision tower's last
/// layer; its output is added to every context vector of depth d, per image:
/// ctx_d(f) = context_vectors[d] + z_d(f).
///
/// Tensors: `context_vectors` [D, n, Dt], and per depth d `meta_nets.{d}.0.weight` [h, P], `.0.bias` [h],
/// `.2.weight` [Dt, h], `.3.weight` [Dt]. Initialisation: context N(0, 0.02) (or row 0 from `tuning.init`);
/// `.0.weight` kaiming-normal (N(0, √(2/P)), as TuneVLSeg), the rest PyTorch's defaults (U(±1/√in),
/// LayerNorm weight 1). f is used as it is (not L2-normalised), like the method's fixtures.
public final class CoCoOp: PromptLearner {
    public static let methodName = "cocoop"
    /// Meta-net hidden width h.
    public let hidden: Int

    /// The forward pass in progress: its query images, their image feature (read by the deep text prompts
    /// of the same pass) and the plain vision states the segmentation pass reuses (dropped once used).
    private var current: (pixels: Tensor, feature: Tensor, states: [Tensor]?)?

    /// f of images already seen, by the content of their pixels: f is a fixed function of the image (the
    /// tower is frozen and unprompted), so from the second epoch on (the trainer's feature cache serving
    /// the taps) CoCoOp runs no vision layer at all. Bounded: past `featureMemoCapacity` images nothing
    /// more is kept. A 128-bit hash of the pixel bits is the key.
    private var featureMemo: [ImageKey: [Float]] = [:]
    static let featureMemoCapacity = 1 << 15

    struct ImageKey: Hashable {
        let h1: UInt64, h2: UInt64, count: Int
    }

    public init(depth: Int, contextLength: Int, initPhrase: String?, hidden: Int) {
        self.hidden = hidden
        super.init(
            name: Self.methodName, depth: depth, contextLength: contextLength, initPhrase: initPhrase, text: true,
            vision: false)
    }

    static let family = TuningMethodFamily(
        name: methodName, summary: "CoCoOp: CoOp plus an image-conditioned meta-net per depth",
        architectures: [.clipseg, .cris],
        options: PromptOptions.shared(initPhrase: "none") + [
            TuningOption("hidden", .int, default: 64, help: "meta-net hidden width", minimum: 1),
            PromptOptions.crisCompatIndexing,
        ]
    ) { o in
        let method = CoCoOp(
            depth: try o.int("depth"), contextLength: try o.int("n_ctx"), initPhrase: try PromptOptions.phrase(o),
            hidden: try o.int("hidden"))
        method.crisCompatIndexing = try o.bool("cris_compat_indexing")
        return try PromptOptions.configured(method, o)
    }

    override public var conditionsOnImages: Bool { true }

    /// context_vectors and the meta-nets for a text tower `textWidth` wide fed with a `featureWidth`
    /// image feature.
    private func metaNetShapes(textWidth dt: Int, featureWidth f: Int, contextLength n: Int) -> [(
        name: String, shape: [Int]
    )] {
        var shapes: [(name: String, shape: [Int])] = [("context_vectors", [depth, n, dt])]
        for d in 0..<depth {
            shapes += [
                ("meta_nets.\(d).0.weight", [hidden, f]), ("meta_nets.\(d).0.bias", [hidden]),
                ("meta_nets.\(d).2.weight", [dt, hidden]), ("meta_nets.\(d).3.weight", [dt]),
            ]
        }
        return shapes
    }

    /// The initial value of one of `metaNetShapes`' tensors; the first bias's fan-in is the feature width.
    private func metaNetInitialValue(_ name: String, shape: [Int], init rng: LearnerInit, featureWidth: Int) -> Tensor {
        if name == "context_vectors" { return rng.normal(name, shape, std: 0.02) }
        if name.hasSuffix(".0.weight") { return rng.kaimingNormal(name, shape) }
        if name.hasSuffix(".0.bias") { return rng.linearDefault(name, shape, fanIn: featureWidth) }
        if name.hasSuffix(".2.weight") { return rng.linearDefault(name, shape, fanIn: shape[1]) }
        return Tensor(filling: 1, shape: shape)  // .3.weight (LayerNorm)
    }

    /// On CRIS the meta-nets read the mean of C5 over space (width embed_dim).
    override func crisLearnerShapes(_ config: CRISConfig, contextLength n: Int) throws -> [(name: String, shape: [Int])]
    {
        metaNetShapes(textWidth: config.clip.transformerWidth, featureWidth: config.clip.embedDim, contextLength: n)
    }

    override func crisInitialValue(_ name: String, shape: [Int], init rng: LearnerInit, config: CRISConfig) -> Tensor {
        metaNetInitialValue(name, shape: shape, init: rng, featureWidth: config.clip.embedDim)
    }

    override public func prepare(_ model: SegmentationModel, seed: UInt64) throws -> [String] {
        current = nil
        featureMemo = [:]  // features of another model's tower
        return try super.prepare(model, seed: seed)
    }

    override func learnerShapes(_ config: CLIPSegConfig, contextLength n: Int) throws -> [(name: String, shape: [Int])]
    {
        metaNetShapes(textWidth: config.textConfig.hiddenSize, featureWidth: config.projectionDim, contextLength: n)
    }

    override func initialValue(_ name: String, shape: [Int], init rng: LearnerInit, config: CLIPSegConfig) -> Tensor {
        metaNetInitialValue(name, shape: shape, init: rng, featureWidth: config.projectionDim)
    }

    /// f for these query images: the plain tower (no hooks), every layer, CLS -> post-LN -> projection.
    /// The states through the deepest extracted layer are kept for the segmentation pass, which would
    /// otherwise run the same unprompted layers again.
    func imageFeature(_ context: ForwardContext) -> Tensor {
        guard let pixels = context.pixels else {
            preconditionFailure(
                "CoCoOp conditions its prompts on the query images: the text must be encoded with pixels")
        }
        if let current, Self.same(current.pixels, pixels) { return current.feature }
        guard let model else { preconditionFailure("CoCoOp used after its model was released") }
        let b = pixels.shape[0], perImage = pixels.count / max(b, 1), p = config.projectionDim
        let memoise = !pixels.requiresGrad && b > 0
        let keys =
            memoise
            ? pixels.withUnsafePointer { pp in (0..<b).map { Self.key(pp + $0 * perImage, count: perImage) } } : []
        let missing = memoise ? (0..<b).filter { featureMemo[keys[$0]] == nil } : Array(0..<b)
        if memoise, missing.count < b {
            // Some (or all) images seen before: run the tower only on the others.
            if !missing.isEmpty {
                let subset = Tensor(uninitialized: [missing.count] + pixels.shape.dropFirst())
                withTensorPointers(writing: subset, reading: pixels) { ps, pp in
                    for (j, i) in missing.enumerated() {
                        (ps + j * perImage).update(from: pp + i * perImage, count: perImage)
                    }
                }
                let states = model.encodeVision(subset, layers: config.visionConfig.numHiddenLayers, applyHooks: false)
                remember(model.pooledImageFeatures(lastHidden: states.last!), keys: missing.map { keys[$0] })
            }
            if missing.allSatisfy({ featureMemo[keys[$0]] != nil }) {
                let feature = Tensor(shape: [b, p], values: keys.flatMap { featureMemo[$0]! })
                current = (pixels, feature, nil)
                return feature
            }
        }
        let states = model.encodeVision(pixels, layers: config.visionConfig.numHiddenLayers, applyHooks: false)
        let feature = model.pooledImageFeatures(lastHidden: states.last!)
        current = (pixels, feature, Array(states.prefix(config.visionLayersNeeded + 1)))
        if memoise { remember(feature, keys: keys) }
        return feature
    }

    private func remember(_ feature: Tensor, keys: [ImageKey]) {
        let p = feature.shape[1]
        for (i, key) in keys.enumerated() where featureMemo.count < Self.featureMemoCapacity {
            featureMemo[key] = feature.withUnsafePointer { Array(UnsafeBufferPointer(start: $0 + i * p, count: p)) }
        }
    }

    /// Two independent 64-bit hashes of the pixel bits.
    static func key(_ x: UnsafePointer<Float>, count: Int) -> ImageKey {
        var h1: UInt64 = 0xCBF2_9CE4_8422_2325, h2: UInt64 = 0x9E37_79B9_7F4A_7C15
        x.withMemoryRebound(to: UInt32.self, capacity: count) { w in
            for i in 0..<count {
                let v = UInt64(w[i])
                h1 = (h1 ^ v) &* 0x100_0000_01B3
                h2 = (h2 &+ v &* 0xBF58_476D_1CE4_E5B9)
                h2 = (h2 ^ (h2 >> 31)) &* 0x94D0_49BB_1331_11EB
            }
        }
        return ImageKey(h1: h1, h2: h2, count: count)
    }

    static func same(_ a: Tensor, _ b: Tensor) -> Bool {
        a.storage === b.storage && a.offset == b.offset && a.shape == b.shape
    }

    override public func textSequence(_ sequence: TextSequence, context: ForwardContext) -> TextSequence {
        current = nil  // a new forward pass: compute f afresh
        return super.textSequence(sequence, context: context)
    }

    override func textPrompt(_ d: Int, context: ForwardContext) -> Tensor {
        let f = imageFeature(context)  // [B, P]
        let z = projectionMLP(f, parameters, prefix: "meta_nets.\(d)", normBias: false)  // [B, Dt]
        return contextRow(d) + z.reshaped([z.shape[0], 1, z.shape[1]])  // [B, n, Dt]
    }

    override public func plainVisionStates(_ pixels: Tensor, layers: Int) -> [Tensor]? {
        guard let c = current, let states = c.states, Self.same(c.pixels, pixels), layers < states.count else {
            return nil
        }
        current = (c.pixels, c.feature, nil)  // used once
        return Array(states.prefix(layers + 1))
    }
}
