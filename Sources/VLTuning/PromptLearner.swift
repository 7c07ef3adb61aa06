import Foundation
import VLModels
import VLTensor

/// What every TuneVLSeg prompt method shares: a learnable context of shape (depth D, n_ctx, width)
/// whose row 0 enters the input and whose rows 1..D-1 replace the prompt slots at the input of
/// layers 1..D-1 (deep prompts; D = 1 is shallow), placed as `PromptPlacement` says.
///
/// A subclass declares its tensors (`learnerShapes`), their initial values, and the text and/or vision
/// prompts of each depth, computed from the tensors as they are at that forward pass (the trainer may
/// replace them by views into its arena, so they are always looked up by name, never cached). The
/// whole CLIPSeg, decoder included, stays frozen: `prepare` returns only the learner's names.
public class PromptLearner: TuningMethod, CLIPSegHooks {
    public let name: String
    /// Prompt depth D.
    public let depth: Int
    /// `tuning.init` phrase (text context row 0 from its token embeddings), nil for random.
    public let initPhrase: String?
    /// n_ctx as configured; a phrase overrides it with its token count (see `contextLength(_:)`).
    let configuredContextLength: Int
    /// Whether the method prompts the text tower and/or the vision tower.
    let promptsText: Bool
    let promptsVision: Bool

    /// Set by `prepare`.
    public private(set) var contextLength = 0
    private(set) var parameters: ParameterStore!
    private(set) var config: CLIPSegConfig!
    weak var model: CLIPSegModel?

    init(name: String, depth: Int, contextLength: Int, initPhrase: String?, text: Bool, vision: Bool) {
        self.name = name
        self.depth = depth
        self.configuredContextLength = contextLength
        self.initPhrase = initPhrase
        self.promptsText = text
        self.promptsVision = vision
    }

    /// Text-only methods leave the vision tower as it is: its taps may be cached (the trainer's feature cache).
    public var visionIsFrozen: Bool { !promptsVision }

    /// Image-conditioned methods (CoCoOp) override this.
    public var conditionsOnImages: Bool { false }

    /// Vision-only prompts (VPT) leave the text tower as it is.
    public var textTowerIsFrozen: Bool { !promptsText }

    /// `tuning.cris_compat_indexing`: on CRIS, TuneVLSeg's deep-prompt indexing (see `CRISTextContext`).
    var crisCompatIndexing = false

    /// `tuning.new_last_layer`: TuneVLSeg's additive decoder head (see `AdditiveDecoderHead`), trained
    /// with the prompts.
    var newLastLayer = false
    /// The additive head and the store holding its tensors, set by `prepare` when `newLastLayer` is on.
    private(set) var head: AdditiveDecoderHead?
    private var headStore: ParameterStore?

    /// The learner on CRIS's text encoder, when prepared on a CRIS model.
    private(set) var crisContext: CRISContextLearner?

    // MARK: Subclass interface

    /// The learner's tensors in their fixed (checkpoint) order, for n prompt tokens per layer.
    func learnerShapes(_ config: CLIPSegConfig, contextLength n: Int) throws -> [(name: String, shape: [Int])] {
        fatalError("subclass responsibility")
    }

    /// Initial value of one tensor (the context's row 0 is then overwritten by an init phrase).
    func initialValue(_ name: String, shape: [Int], init rng: LearnerInit, config: CLIPSegConfig) -> Tensor {
        fatalError("subclass responsibility")
    }

    /// Text prompts of depth d: [1, n, Dt] (shared) or [B, n, Dt] (per image).
    func textPrompt(_ d: Int, context: ForwardContext) -> Tensor { fatalError("subclass responsibility") }

    /// Vision prompts of depth d: [1, n, Dv] (shared) or [B, n, Dv].
    func visionPrompt(_ d: Int, context: ForwardContext) -> Tensor { fatalError("subclass responsibility") }

    // MARK: Shapes without a model

    /// n_ctx for this configuration: the init phrase's token count when a phrase is given.
    public func contextLength(_ config: CLIPSegConfig) throws -> Int {
        guard let phrase = initPhrase, promptsText else { return configuredContextLength }
        let ids = try PromptTokenizer.ids(of: phrase, method: name)
        guard !ids.isEmpty else {
            throw TuningError.invalidOption(method: name, key: "init", reason: "phrase '\(phrase)' has no tokens")
        }
        return ids.count
    }

    /// The learner's tensors and shapes for a configuration, without building or loading a model (the
    /// full-size parameter counts come from here).
    public func parameterShapes(for config: CLIPSegConfig) throws -> [(name: String, shape: [Int])] {
        let n = try contextLength(config)
        try validate(config, contextLength: n)
        return try learnerShapes(config, contextLength: n) + (clipsegHead(config)?.shapes ?? [])
    }

    /// The additive decoder head on a CLIPSeg when `tuning.new_last_layer` is on.
    func clipsegHead(_ config: CLIPSegConfig) -> AdditiveDecoderHead? {
        newLastLayer ? .clipseg(reduceDim: config.reduceDim) : nil
    }

    /// Adds the head's tensors (after the learner's, so the learner's names keep their order).
    private func installHead(_ head: AdditiveDecoderHead?, into store: ParameterStore, init rng: LearnerInit)
        -> [String]
    {
        self.head = head
        headStore = head == nil ? nil : store
        guard let head else { return [] }
        for (tensorName, shape) in head.shapes {
            store.set(tensorName, head.initialValue(tensorName, shape: shape, init: rng))
        }
        return head.shapes.map(\.name)
    }

    /// Number of trainable parameters on a configuration.
    public func parameterCount(for config: CLIPSegConfig) throws -> Int {
        try parameterShapes(for: config).reduce(0) { $0 + $1.shape.reduce(1, *) }
    }

    func validate(_ config: CLIPSegConfig, contextLength n: Int) throws {
        let lt = config.textConfig.numHiddenLayers, lv = config.visionConfig.numHiddenLayers
        let maxDepth = promptsText && promptsVision ? min(lt, lv) : (promptsText ? lt : lv)
        let towers =
            promptsText && promptsVision
            ? "the shallower tower has" : (promptsText ? "the text tower has" : "the vision tower has")
        guard depth >= 1, depth <= maxDepth else {
            throw TuningError.invalidOption(
                method: name, key: "depth",
                reason: "must be between 1 and \(maxDepth) (\(towers) \(maxDepth) layers), found \(depth)")
        }
        if promptsText {
            let maxPositions = config.textConfig.maxPositionEmbeddings ?? 77
            guard n + 2 <= maxPositions else {
                throw TuningError.invalidOption(
                    method: name, key: "n_ctx",
                    reason: "\(n) prompt tokens leave no room for BOS and EOS in \(maxPositions) text positions")
            }
        }
        // n = 0 (no prompt tokens) is accepted: the method is then exactly the plain model, which the tests use.
        guard n >= 0 else {
            throw TuningError.invalidOption(method: name, key: "n_ctx", reason: "must not be negative")
        }
    }

    // MARK: TuningMethod

    public func prepare(_ model: SegmentationModel, seed: UInt64) throws -> [String] {
        if let cris = model as? CRISModel {
            try requireDeclaredArchitecture(cris, method: name)
            return try prepareCRIS(cris, seed: seed)
        }
        let model = try requireCLIPSeg(model, method: name)
        if crisCompatIndexing {
            throw TuningError.invalidOption(
                method: name, key: "cris_compat_indexing", reason: "applies to CRIS models only")
        }
        let config = model.config
        let n = try contextLength(config)
        try validate(config, contextLength: n)
        let shapes = try learnerShapes(config, contextLength: n)
        let rng = LearnerInit(seed: seed)
        let phraseRows =
            promptsText
            ? try phraseEmbeddings(model.parameters, vocabulary: "clip.text_model.embeddings.token_embedding.weight")
            : nil
        install(shapes, into: model.parameters, phraseRows: phraseRows) {
            initialValue($0, shape: $1, init: rng, config: config)
        }
        let headNames = installHead(clipsegHead(config), into: model.parameters, init: rng)
        contextLength = n
        parameters = model.parameters
        self.config = config
        self.model = model
        model.hooks = self
        return shapes.map(\.name) + headNames
    }

    /// Token embeddings [n, Dt] of `tuning.init` (context row 0) from the store's `vocabulary` table,
    /// or nil without a phrase (the table is then not read: shape-only models have none).
    func phraseEmbeddings(_ store: ParameterStore, vocabulary: String) throws -> Tensor? {
        guard let phrase = initPhrase else { return nil }
        let vocab = store[vocabulary]
        let ids = try PromptTokenizer.ids(of: phrase, method: name)
        guard !ids.isEmpty else {
            throw TuningError.invalidOption(method: name, key: "init", reason: "phrase '\(phrase)' has no tokens")
        }
        if let bad = ids.first(where: { $0 >= vocab.shape[0] }) {
            throw TuningError.invalidOption(
                method: name, key: "init",
                reason: "token id \(bad) of '\(phrase)' is outside the model's vocabulary of \(vocab.shape[0])")
        }
        return GradMode.withoutGradients { vocab.indexSelect(rows: ids) }
    }

    /// Adds the learner's tensors to the store: `value` for each, with context row 0 replaced by the
    /// phrase's token embeddings when there is one.
    func install(
        _ shapes: [(name: String, shape: [Int])], into store: ParameterStore, phraseRows: Tensor?,
        value: (String, [Int]) -> Tensor
    ) {
        for (tensorName, shape) in shapes {
            var t = value(tensorName, shape)
            if tensorName == "context_vectors", let rows = phraseRows {
                t = t.copy()
                // row 0 = the phrase
                withTensorPointers(writing: t, reading: rows) { $0.update(from: $1, count: rows.count) }
            }
            store.set(tensorName, t)
        }
    }

    // MARK: CRIS

    /// The learner's tensors on CRIS (CoOp and CoCoOp override this; other methods hook into ViT towers).
    func crisLearnerShapes(_ config: CRISConfig, contextLength n: Int) throws -> [(name: String, shape: [Int])] {
        throw TuningError.unsupportedModel(
            method: name, architecture: TuningArchitecture.cris.rawValue,
            supported: TuningMethodRegistry.shared.names(supporting: .cris))
    }

    func crisInitialValue(_ name: String, shape: [Int], init rng: LearnerInit, config: CRISConfig) -> Tensor {
        rng.normal(name, shape, std: 0.02)
    }

    /// Adds the context (and meta-nets) to a CRIS model and installs them in its text encoder.
    func prepareCRIS(_ model: CRISModel, seed: UInt64) throws -> [String] {
        let clip = model.config.clip
        let phraseRows = try phraseEmbeddings(model.parameters, vocabulary: "backbone.token_embedding.weight")
        let n = phraseRows?.shape[0] ?? configuredContextLength
        guard depth >= 1, depth <= clip.transformerLayers else {
            throw TuningError.invalidOption(
                method: name, key: "depth",
                reason:
                    "must be between 1 and \(clip.transformerLayers) (the text encoder has \(clip.transformerLayers) blocks), found \(depth)"
            )
        }
        guard n + 2 <= clip.contextLength else {
            throw TuningError.invalidOption(
                method: name, key: "n_ctx",
                reason: "\(n) context tokens leave no room for BOS and EOS in \(clip.contextLength) positions")
        }
        let shapes = try crisLearnerShapes(model.config, contextLength: n)
        let rng = LearnerInit(seed: seed)
        install(shapes, into: model.parameters, phraseRows: phraseRows) {
            crisInitialValue($0, shape: $1, init: rng, config: model.config)
        }
        contextLength = n
        let learner = CRISContextLearner(
            parameters: model.parameters, depth: depth, contextLength: n,
            compatIndexing: crisCompatIndexing, metaNets: conditionsOnImages)
        crisContext = learner
        model.textContext = learner
        let headNames = installHead(newLastLayer ? .cris(model.config) : nil, into: model.parameters, init: rng)
        model.logitsHead = head == nil ? nil : self
        return shapes.map(\.name) + headNames
    }

    // MARK: Hooks

    /// context_vectors[d] as [1, n, width] (a view).
    func contextRow(_ d: Int) -> Tensor {
        let ctx = parameters["context_vectors"]
        return ctx.slice(axis: 0, d..<(d + 1))
    }

    var maxTextPositions: Int { config.textConfig.maxPositionEmbeddings ?? 77 }

    public func textSequence(_ sequence: TextSequence, context: ForwardContext) -> TextSequence {
        guard promptsText else { return sequence }
        return PromptPlacement.insertTextContext(
            sequence, context: textPrompt(0, context: context), maxPositions: maxTextPositions)
    }

    public func textLayerInput(_ x: Tensor, layer: Int, context: ForwardContext) -> Tensor {
        guard promptsText, layer >= 1, layer < depth else { return x }
        return PromptPlacement.replaceTextContext(x, context: textPrompt(layer, context: context))
    }

    public func visionEmbeddings(_ x: Tensor, context: ForwardContext) -> Tensor {
        guard promptsVision else { return x }
        return PromptPlacement.appendVisionPrompts(x, prompts: visionPrompt(0, context: context))
    }

    public func plainVisionStates(_ pixels: Tensor, layers: Int) -> [Tensor]? { nil }

    public func decoderLogits(_ logits: Tensor, features: Tensor) -> Tensor {
        guard let head, let headStore else { return logits }
        return head.apply(logits: logits, features: features, parameters: headStore)
    }
}

extension PromptLearner: CRISLogitsHead {
    public func logits(_ logits: Tensor, features: Tensor) -> Tensor { decoderLogits(logits, features: features) }

    public func visionLayerOutput(_ x: Tensor, layer: Int, context: ForwardContext) -> Tensor {
        // The output of block `layer` is the input of block layer + 1: deep prompts of that depth.
        guard promptsVision, layer + 1 < depth else { return x }
        return PromptPlacement.replaceVisionPrompts(x, prompts: visionPrompt(layer + 1, context: context))
    }
}

// MARK: - Small differentiable building blocks of the learners

/// Linear -> ReLU -> Linear (no bias) -> LayerNorm, the CoCoOp meta-net and MaPLe coupling function.
func projectionMLP(_ x: Tensor, _ p: ParameterStore, prefix: String, normBias: Bool, eps: Float = 1e-5) -> Tensor {
    let h = linear(x, weight: p["\(prefix).0.weight"], bias: p["\(prefix).0.bias"]).relu()
    let y = linear(h, weight: p["\(prefix).2.weight"])
    return layerNorm(y, weight: p["\(prefix).3.weight"], bias: normBias ? p["\(prefix).3.bias"] : nil, eps: eps)
}
