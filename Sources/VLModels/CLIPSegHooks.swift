import VLTensor

/// Which tower a hook call comes from.
public enum Tower: String, Sendable { case text, vision }

/// What a hook may need besides the tensor it transforms.
public struct ForwardContext {
    /// The query images [B, C, H, W] (image-conditioned prompts, e.g. CoCoOp, read them).
    public let pixels: Tensor?
    public let batchSize: Int
    public init(pixels: Tensor?, batchSize: Int) {
        self.pixels = pixels
        self.batchSize = batchSize
    }
}

/// The text sequence entering the text transformer: token embeddings (before positions), the
/// attention mask, and where each row's end-of-text feature is pooled.
public struct TextSequence {
    public var tokens: Tensor
    public var attentionMask: [[Int]]
    public var poolingPositions: [Int]
    public init(tokens: Tensor, attentionMask: [[Int]], poolingPositions: [Int]) {
        self.tokens = tokens
        self.attentionMask = attentionMask
        self.poolingPositions = poolingPositions
    }
}

/// The text tower's outputs a conditioning hook may read.
public struct TextEncoding {
    /// Raw hidden states: [0] = input of block 0 (embeddings + positions), [j+1] = output of block j
    /// (no final LayerNorm), each [B, T, Dt].
    public let hiddenStates: [Tensor]
    /// Final-LayerNorm output [B, T, Dt].
    public let lastHidden: Tensor
    /// The pooled end-of-text features [B, Dt] (before text_projection).
    public let pooled: Tensor
    /// End-of-text positions by argmax of the ids (the VLSM-Adapter taps use this rule).
    public let argmaxPositions: [Int]
}

/// Documented points where a tuning method changes CLIPSeg's forward pass.
///
/// Every method is the frozen model plus these transformations; the defaults change nothing. A
/// method's own tensors live in the model's `ParameterStore` under the method's names, so the
/// trainer, checkpoints and the all-reduce see them like any other trainable tensor.
public protocol CLIPSegHooks: AnyObject {
    /// The text tokens before position embeddings (CoOp-style context insertion).
    func textSequence(_ sequence: TextSequence, context: ForwardContext) -> TextSequence
    /// The input of text block `layer` (0-based), for `layer >= 1` (deep text prompts).
    func textLayerInput(_ x: Tensor, layer: Int, context: ForwardContext) -> Tensor
    /// The vision embeddings (class + patches + positions) before pre-LayerNorm (VPT-style prompts).
    func visionEmbeddings(_ x: Tensor, context: ForwardContext) -> Tensor
    /// The output of vision block `layer` (0-based) before it is recorded as a hidden state and fed
    /// to the next block (deep vision prompts).
    func visionLayerOutput(_ x: Tensor, layer: Int, context: ForwardContext) -> Tensor
    /// A block's attention branch output (after out_proj), before its residual add.
    func attentionOutput(_ h: Tensor, tower: Tower, layer: Int) -> Tensor
    /// A block's MLP branch output (after fc2), before its residual add.
    func mlpOutput(_ h: Tensor, tower: Tower, layer: Int) -> Tensor
    /// An additive change to a Linear layer's output, addressed by its checkpoint prefix (LoRA).
    func linearDelta(_ x: Tensor, prefix: String) -> Tensor?
    /// A tapped vision activation (decoder input `index`, shallowest first).
    func visionTap(_ activation: Tensor, index: Int) -> Tensor
    /// The conditional embedding [B, P] after text_projection (text prompts only).
    func conditional(_ cond: Tensor, text: TextEncoding, context: ForwardContext) -> Tensor
    /// Hidden states 0...`layers` of the PLAIN vision tower for these pixels when the method already
    /// computed them in this forward pass (CoCoOp runs the unprompted tower for its image feature), so
    /// the segmentation pass need not run the same layers again; nil runs the tower. Only a method that
    /// leaves the vision tower unchanged may return states.
    func plainVisionStates(_ pixels: Tensor, layers: Int) -> [Tensor]?
    /// The logits [B, 1, H, W] of the decoder's frozen head, given the features it read [B, R, gh, gw]
    /// (the decoder's last tokens without CLS or prompts): a trainable second head joins here.
    func decoderLogits(_ logits: Tensor, features: Tensor) -> Tensor
    /// True when the text conditioning depends on the query images (CoCoOp).
    var conditionsOnImages: Bool { get }
    /// True when the method changes nothing inside the text tower (it may still transform the
    /// tower's outputs in `conditional`): the tower's outputs per prompt may then be cached.
    var textTowerIsFrozen: Bool { get }
}

extension CLIPSegHooks {
    public var conditionsOnImages: Bool { false }
    public var textTowerIsFrozen: Bool { false }
    public func textSequence(_ sequence: TextSequence, context: ForwardContext) -> TextSequence { sequence }
    public func textLayerInput(_ x: Tensor, layer: Int, context: ForwardContext) -> Tensor { x }
    public func visionEmbeddings(_ x: Tensor, context: ForwardContext) -> Tensor { x }
    public func visionLayerOutput(_ x: Tensor, layer: Int, context: ForwardContext) -> Tensor { x }
    public func attentionOutput(_ h: Tensor, tower: Tower, layer: Int) -> Tensor { h }
    public func mlpOutput(_ h: Tensor, tower: Tower, layer: Int) -> Tensor { h }
    public func linearDelta(_ x: Tensor, prefix: String) -> Tensor? { nil }
    public func visionTap(_ activation: Tensor, index: Int) -> Tensor { activation }
    public func conditional(_ cond: Tensor, text: TextEncoding, context: ForwardContext) -> Tensor { cond }
    public func plainVisionStates(_ pixels: Tensor, layers: Int) -> [Tensor]? { nil }
    public func decoderLogits(_ logits: Tensor, features: Tensor) -> Tensor { logits }
}
