import Foundation
import VLTensor

/// Tokenised text prompts: ids and attention masks, one row per batch item (any common length).
public struct TextPrompts: Sendable {
    public var inputIDs: [[Int]]
    public var attentionMask: [[Int]]

    public init(inputIDs: [[Int]], attentionMask: [[Int]]) {
        precondition(inputIDs.count == attentionMask.count, "ids and masks differ in batch size")
        self.inputIDs = inputIDs
        self.attentionMask = attentionMask
    }

    public var batchSize: Int { inputIDs.count }

    /// Per row, the first position of the largest id: CLIP's end-of-text position (49407 is the
    /// largest id), the rule the reference codes pool with.
    public var argmaxPositions: [Int] {
        inputIDs.map { row in
            var best = 0
            for (i, id) in row.enumerated() where id > row[best] { best = i }
            return best
        }
    }

    /// Length up to the last attended token of any row. The text encoder is causal, so the
    /// positions after it cannot change anything the pooled output depends on.
    public var attendedLength: Int {
        attentionMask.map { row in (row.lastIndex(of: 1) ?? 0) + 1 }.max() ?? 0
    }
}

/// CLIPSeg (Hugging Face `CLIPSegForImageSegmentation`) on the VLTensor engine.
///
/// Every size comes from the config; weights are addressed by their checkpoint names in
/// `parameters`. Forward passes compute only what the requested outputs need: the text-prompted
/// path stops the vision tower at the deepest extracted layer and trims padding tokens.
// @unchecked Sendable: configured (hooks, text cache) on one thread before use; a forward pass runs
// on one thread at a time, its ops spreading work over workers only inside themselves.
public final class CLIPSegModel: @unchecked Sendable {
    public let config: CLIPSegConfig
    public let parameters: ParameterStore
    /// The tuning method's changes to the forward pass (nil: the plain model).
    public var hooks: CLIPSegHooks?
    /// Per-prompt text features, used while the text tower is frozen (nil: always encode).
    public var textCache: TextFeatureCache?

    let textLayers: [CLIPEncoderLayer]
    let visionLayers: [CLIPEncoderLayer]
    let textFinalNorm: LayerNormLayer
    let visionPreNorm: LayerNormLayer
    let visionPostNorm: LayerNormLayer
    let textProjection: LinearLayer
    let visualProjection: LinearLayer
    let reduces: [LinearLayer]
    let decoderLayers: [CLIPSegDecoderLayer]
    let filmMul: LinearLayer
    let filmAdd: LinearLayer

    public convenience init(config: CLIPSegConfig, parameters: ParameterStore) {
        self.init(config: config, parameters: parameters, repeatedLayers: true)
    }

    /// `repeatedLayers: false` builds only the layers that occur once (a skeleton for listing the
    /// parameters part by part, which must not build one struct per layer of an unchecked config).
    fileprivate init(config: CLIPSegConfig, parameters: ParameterStore, repeatedLayers: Bool) {
        self.config = config
        self.parameters = parameters
        let t = config.textConfig, v = config.visionConfig
        textLayers = repeatedLayers ? (0..<t.numHiddenLayers).map { Self.textLayer(config, $0) } : []
        visionLayers = repeatedLayers ? (0..<v.numHiddenLayers).map { Self.visionLayer(config, $0) } : []
        textFinalNorm = LayerNormLayer(
            prefix: "clip.text_model.final_layer_norm", width: t.hiddenSize, eps: t.layerNormEps)
        visionPreNorm = LayerNormLayer(
            prefix: "clip.vision_model.pre_layrnorm", width: v.hiddenSize, eps: v.layerNormEps)
        visionPostNorm = LayerNormLayer(
            prefix: "clip.vision_model.post_layernorm", width: v.hiddenSize, eps: v.layerNormEps)
        textProjection = LinearLayer(
            prefix: "clip.text_projection", inFeatures: t.hiddenSize, outFeatures: config.projectionDim, hasBias: false)
        visualProjection = LinearLayer(
            prefix: "clip.visual_projection", inFeatures: v.hiddenSize, outFeatures: config.projectionDim,
            hasBias: false)
        reduces = repeatedLayers ? config.extractLayers.indices.map { Self.reduce(config, $0) } : []
        decoderLayers = repeatedLayers ? config.extractLayers.indices.map { Self.decoderLayer(config, $0) } : []
        filmMul = LinearLayer(
            prefix: "decoder.film_mul", inFeatures: config.projectionDim, outFeatures: config.reduceDim, hasBias: true)
        filmAdd = LinearLayer(
            prefix: "decoder.film_add", inFeatures: config.projectionDim, outFeatures: config.reduceDim, hasBias: true)
    }

    // The repeated layers, built by the model and, one at a time, by the parameter listing.
    static func textLayer(_ config: CLIPSegConfig, _ i: Int) -> CLIPEncoderLayer {
        CLIPEncoderLayer(prefix: "clip.text_model.encoder.layers.\(i)", config: config.textConfig)
    }

    static func visionLayer(_ config: CLIPSegConfig, _ i: Int) -> CLIPEncoderLayer {
        CLIPEncoderLayer(prefix: "clip.vision_model.encoder.layers.\(i)", config: config.visionConfig)
    }

    static func reduce(_ config: CLIPSegConfig, _ i: Int) -> LinearLayer {
        LinearLayer(
            prefix: "decoder.reduces.\(i)", inFeatures: config.visionConfig.hiddenSize, outFeatures: config.reduceDim,
            hasBias: true)
    }

    static func decoderLayer(_ config: CLIPSegConfig, _ i: Int) -> CLIPSegDecoderLayer {
        CLIPSegDecoderLayer(
            prefix: "decoder.layers.\(i)", width: config.reduceDim, heads: config.decoderNumAttentionHeads,
            intermediate: config.decoderIntermediateSize, eps: config.visionConfig.layerNormEps)
    }

    // MARK: - Parameters

    /// Transposed-convolution head layers: (checkpoint index, in, out, kernel, stride, padding, transposed).
    var headLayers: [(index: Int?, cin: Int, cout: Int, kernel: Int, stride: Int, padding: Int, transposed: Bool)] {
        let r = config.reduceDim, p = config.visionConfig.patchSizeOrDefault
        if config.useComplexTransposedConvolution {
            let k = p / 4
            return [(0, r, r, 3, 1, 1, false), (2, r, r / 2, k, k, 0, true), (4, r / 2, 1, k, k, 0, true)]
        }
        return [(nil, r, 1, p, p, 0, true)]
    }

    /// Every weight the architecture has, by checkpoint name, with its shape, in a fixed order.
    /// Call on a validated config (`CLIPSegConfig.validate`).
    public static func expectedParameters(_ config: CLIPSegConfig) -> [(name: String, shape: [Int])] {
        config.parameterParts.flatMap { part in (0..<part.repeats).flatMap(part.shapes) }
    }

    /// Loads a Hugging Face CLIPSeg directory (config.json + model.safetensors).
    ///
    /// The config is validated and its parameter bytes compared with `memoryLimit` (default: this
    /// machine's memory) before anything is built from it: the weights are memory-mapped, but the
    /// listing and the layers follow the config, and a config asking for 10^12 layers must be an
    /// error naming the key, not an allocation failure.
    public static func load(directory: URL, memoryLimit: UInt64 = MachineMemory.physical) throws -> CLIPSegModel {
        let configURL = directory.appendingPathComponent("config.json")
        let config = try CLIPSegConfig.load(from: configURL)
        try config.checkParameterMemory(file: configURL.path, memoryLimit: memoryLimit)
        // Buffers that transformers may save alongside the weights are not parameters.
        let store = try ParameterStore.load(
            directory: directory, expected: expectedParameters(config),
            ignoring: { $0.hasSuffix("position_ids") })
        return CLIPSegModel(config: config, parameters: store)
    }

    /// Names of the decoder's parameters (what "decoder-only" training trains).
    public var decoderParameterNames: [String] { parameters.names.filter { $0.hasPrefix("decoder.") } }

    // MARK: - Text tower

    /// Token embeddings (without positions) for the first `length` positions: [B, length, D].
    public func textTokenEmbeddings(_ prompts: TextPrompts, length: Int) -> Tensor {
        let ids = prompts.inputIDs.flatMap { Array($0.prefix(length)) }
        precondition(prompts.inputIDs.allSatisfy { $0.count >= length }, "prompt rows shorter than \(length)")
        let table = parameters["clip.text_model.embeddings.token_embedding.weight"]
        return table.indexSelect(rows: ids).reshaped([prompts.batchSize, length, config.textConfig.hiddenSize])
    }

    /// Where each row's end-of-text token sits, by the config's pooling rule.
    public func poolingPositions(_ prompts: TextPrompts) -> [Int] {
        let eos = config.textConfig.eosTokenId ?? 2
        if config.poolsAtArgmax { return prompts.argmaxPositions }
        return prompts.inputIDs.map { row in row.firstIndex(of: eos) ?? (row.count - 1) }
    }

    /// Runs the text transformer on token embeddings [B, T, D] (plain model, no sequence hook):
    /// returns the final-LN hidden states [B, T, D] and the pooled end-of-text features [B, D].
    public func encodeText(
        tokenEmbeddings: Tensor, prompts: TextPrompts,
        observer: ForwardObserver? = nil
    ) -> (lastHidden: Tensor, pooled: Tensor) {
        let len = tokenEmbeddings.shape[1]
        let sequence = TextSequence(
            tokens: tokenEmbeddings, attentionMask: prompts.attentionMask.map { Array($0.prefix(len)) },
            poolingPositions: poolingPositions(prompts))
        let e = encodeText(
            sequence, prompts: prompts, context: ForwardContext(pixels: nil, batchSize: prompts.batchSize),
            observer: observer)
        return (e.lastHidden, e.pooled)
    }

    /// Runs the text transformer on a token sequence (token embeddings before positions).
    public func encodeText(
        _ sequence: TextSequence, prompts: TextPrompts, context: ForwardContext,
        observer: ForwardObserver? = nil
    ) -> TextEncoding {
        let b = sequence.tokens.shape[0], len = sequence.tokens.shape[1]
        let maxPositions = config.textConfig.maxPositionEmbeddingsOrDefault
        precondition(len <= maxPositions, "text sequence of \(len) tokens exceeds \(maxPositions) positions")
        let positions = parameters["clip.text_model.embeddings.position_embedding.weight"].slice(axis: 0, 0..<len)
        var x = sequence.tokens + positions
        let mask = Tensor(
            shape: [b, len],
            values: sequence.attentionMask.flatMap { row in
                (0..<len).map { $0 < row.count ? Float(row[$0]) : 0 }
            })
        var states = [x]
        for (j, layer) in textLayers.enumerated() {
            if j >= 1, let hooks { x = hooks.textLayerInput(x, layer: j, context: context) }
            x = layer(x, parameters, causal: true, keyMask: mask, hooks: hooks, tower: .text, index: j)
            states.append(x)
        }
        let last = textFinalNorm(x, parameters)
        observer?("text.last_hidden_state", last)
        let pooled = last.selectPerBatch(sequence.poolingPositions.map { min(max($0, 0), len - 1) })
        observer?("text.pooled_output", pooled)
        let argmax = prompts.argmaxPositions
        return TextEncoding(hiddenStates: states, lastHidden: last, pooled: pooled, argmaxPositions: argmax)
    }

    /// The conditional embedding of text prompts: text_projection(pooled) [B, P].
    /// `trimPadding` drops positions after the last attended token (exact: the encoder is causal).
    /// `pixels` are the query images, for image-conditioned prompt methods.
    public func conditionalEmbeddings(
        text prompts: TextPrompts, trimPadding: Bool = true, pixels: Tensor? = nil,
        observer: ForwardObserver? = nil
    ) -> Tensor {
        if let textCache, trimPadding, observer == nil, prompts.batchSize > 0, textTowerIsFrozen {
            return cachedConditionalEmbeddings(prompts, cache: textCache, pixels: pixels)
        }
        let length =
            trimPadding
            ? max(1, min(prompts.attendedLength, prompts.inputIDs.first?.count ?? 0))
            : (prompts.inputIDs.first?.count ?? 0)
        let context = ForwardContext(pixels: pixels, batchSize: prompts.batchSize)
        var sequence = TextSequence(
            tokens: textTokenEmbeddings(prompts, length: length),
            attentionMask: prompts.attentionMask.map { Array($0.prefix(length)) },
            poolingPositions: poolingPositions(prompts).map { min($0, length - 1) })
        if let hooks { sequence = hooks.textSequence(sequence, context: context) }
        let encoding = encodeText(sequence, prompts: prompts, context: context, observer: observer)
        var cond = textProjection(encoding.pooled, parameters)
        if let hooks { cond = hooks.conditional(cond, text: encoding, context: context) }
        observer?("conditional_embeddings", cond)
        return cond
    }

    // MARK: - Vision tower

    /// Class + patch embeddings + (resized) positions, before pre-LayerNorm: [B, 1 + gh*gw, D].
    public func visionEmbeddings(_ pixels: Tensor) -> Tensor {
        let v = config.visionConfig, p = v.patchSizeOrDefault, d = v.hiddenSize
        precondition(
            pixels.rank == 4 && pixels.shape[1] == v.numChannelsOrDefault,
            "pixel values must be [B, \(v.numChannelsOrDefault), H, W], got \(pixels.shape)")
        let b = pixels.shape[0], gh = pixels.shape[2] / p, gw = pixels.shape[3] / p
        let patches = conv2d(
            pixels, weight: parameters["clip.vision_model.embeddings.patch_embedding.weight"], stride: (p, p)
        )
        .reshaped([b, d, gh * gw]).transposed(1, 2)
        let cls = parameters["clip.vision_model.embeddings.class_embedding"].reshaped([1, 1, d]).expanded(to: [b, 1, d])
        return concat([cls, patches], axis: 1) + positionEmbeddings(gridHeight: gh, gridWidth: gw)
    }

    /// Position embeddings for a gh x gw grid: the checkpoint's own, or its patch part resized
    /// bicubically (PyTorch semantics, align_corners false) with the class position untouched.
    public func positionEmbeddings(gridHeight gh: Int, gridWidth gw: Int) -> Tensor {
        let table = parameters["clip.vision_model.embeddings.position_embedding.weight"]
        let n = table.shape[0] - 1, d = table.shape[1]
        if gh * gw == n && gh == gw { return table }
        let side = Int(Double(n).squareRoot().rounded())
        let patchPositions = table.slice(axis: 0, 1..<(n + 1)).reshaped([side, side, d]).permuted([2, 0, 1])
        let resized = patchPositions.resized(to: (gh, gw), mode: .bicubic, alignCorners: false)
            .permuted([1, 2, 0]).reshaped([gh * gw, d])
        return concat([table.slice(axis: 0, 0..<1), resized], axis: 0)
    }

    /// Runs the vision tower through `layers` encoder layers; returns hidden states 0...layers
    /// (0 = pre-LayerNorm output, i+1 = output of layer i).
    /// `applyHooks: false` runs the plain tower even when a method is installed (CoCoOp's image
    /// feature comes from the unprompted tower).
    public func encodeVision(_ pixels: Tensor, layers: Int, applyHooks: Bool = true, observer: ForwardObserver? = nil)
        -> [Tensor]
    {
        let hooks = applyHooks ? self.hooks : nil
        if observer == nil, let states = hooks?.plainVisionStates(pixels, layers: layers) { return states }
        let context = ForwardContext(pixels: pixels, batchSize: pixels.shape[0])
        var emb = visionEmbeddings(pixels)
        observer?("vision.embeddings", emb)
        if let hooks { emb = hooks.visionEmbeddings(emb, context: context) }
        var x = visionPreNorm(emb, parameters)
        var states = [x]
        observer?("vision.hidden_states.0", x)
        for i in 0..<layers {
            x = visionLayers[i](x, parameters, hooks: hooks, tower: .vision, index: i)
            if let hooks { x = hooks.visionLayerOutput(x, layer: i, context: context) }
            states.append(x)
            observer?("vision.hidden_states.\(i + 1)", x)
        }
        return states
    }

    /// visual_projection(post_layernorm(CLS of the last layer)) [B, P]: the image feature used as
    /// CLIPSeg's image-prompt conditional embedding.
    public func imageFeatures(_ pixels: Tensor, applyHooks: Bool = true, observer: ForwardObserver? = nil) -> Tensor {
        let states = encodeVision(pixels, layers: visionLayers.count, applyHooks: applyHooks, observer: observer)
        return pooledImageFeatures(lastHidden: states.last!)
    }

    public func pooledImageFeatures(lastHidden: Tensor) -> Tensor {
        let cls = lastHidden.selectPerBatch([Int](repeating: 0, count: lastHidden.shape[0]))
        return visualProjection(visionPostNorm(cls, parameters), parameters)
    }

    // MARK: - Frozen vision features

    /// What the decoder reads from the vision tower: the tapped activations (before any tap hook)
    /// and the patch grid. When no trainable tensor acts on the vision tower, these are a fixed
    /// function of the image, which the trainer caches across epochs.
    public typealias VisionFeatures = FrozenFeatures

    /// Runs the vision tower through the deepest extracted layer and returns the taps.
    public func visionFeatures(_ pixels: Tensor, observer: ForwardObserver? = nil) -> VisionFeatures {
        let p = config.visionConfig.patchSizeOrDefault
        let states = encodeVision(pixels, layers: config.visionLayersNeeded, observer: observer)
        return VisionFeatures(
            activations: config.extractLayers.map { states[$0 + 1] },
            gridHeight: pixels.shape[2] / p, gridWidth: pixels.shape[3] / p)
    }

    /// Logits from vision features (tap hooks applied here) and a conditional embedding.
    public func segment(features: VisionFeatures, conditional: Tensor, observer: ForwardObserver? = nil) -> Tensor {
        var activations = features.activations
        if let hooks { activations = activations.enumerated().map { hooks.visionTap($1, index: $0) } }
        for (i, a) in activations.enumerated() { observer?("decoder.activation.\(i)", a) }
        let logits = decode(
            activations: activations, conditional: conditional, gridHeight: features.gridHeight,
            gridWidth: features.gridWidth, observer: observer)
        observer?("logits", logits)
        return logits
    }

    // MARK: - Decoder

    /// The decoder from tapped activations (shallowest first, as extracted) and conditional
    /// embeddings [B, P] to logits [B, H, W].
    public func decode(
        activations: [Tensor], conditional: Tensor, gridHeight gh: Int, gridWidth gw: Int,
        observer: ForwardObserver? = nil
    ) -> Tensor {
        precondition(activations.count == config.extractLayers.count)
        let b = conditional.shape[0], r = config.reduceDim
        var output: Tensor? = nil
        // k = 0 is the DEEPEST extracted layer.
        for (k, activation) in activations.reversed().enumerated() {
            let reduced = reduces[k](activation, parameters)
            observer?("decoder.reduce.\(k)", reduced)
            var x = output.map { reduced + $0 } ?? reduced
            if k == config.conditionalLayer {
                let mul = filmMul(conditional, parameters).reshaped([b, 1, r])
                let add = filmAdd(conditional, parameters).reshaped([b, 1, r])
                x = x * mul + add
            }
            observer?("decoder.layer_in.\(k)", x)
            x = decoderLayers[k](x, parameters)
            observer?("decoder.layer_out.\(k)", x)
            output = x
        }
        // Drop CLS, then [B, T, R] -> [B, R, gh, gw].
        let tokens = output!.slice(axis: 1, 1..<(1 + gh * gw))
        let features = tokens.transposed(1, 2).reshaped([b, r, gh, gw])
        var y = features
        observer?("decoder.tconv_in", y)
        var stage = 0
        for (i, h) in headLayers.enumerated() {
            let prefix = h.index.map { "decoder.transposed_convolution.\($0)" } ?? "decoder.transposed_convolution"
            let w = parameters["\(prefix).weight"], bias = parameters["\(prefix).bias"]
            y =
                h.transposed
                ? convTranspose2d(
                    y, weight: w, bias: bias, stride: (h.stride, h.stride), padding: (h.padding, h.padding))
                : conv2d(y, weight: w, bias: bias, stride: (h.stride, h.stride), padding: (h.padding, h.padding))
            observer?("decoder.tconv.\(stage)", y)
            stage += 1
            if i < headLayers.count - 1 {
                y = y.relu()
                observer?("decoder.tconv.\(stage)", y)
                stage += 1
            }
        }
        if let hooks { y = hooks.decoderLogits(y, features: features) }
        return y.reshaped([b, y.shape[2], y.shape[3]])
    }

    /// Segmentation logits [B, H, W] for images [B, C, H, W] and a conditional embedding [B, P].
    /// `allVisionLayers` runs the whole vision tower (for debugging output); otherwise only the
    /// layers through the deepest extracted one run.
    public func segment(
        pixels: Tensor, conditional: Tensor, allVisionLayers: Bool = false,
        observer: ForwardObserver? = nil
    ) -> Tensor {
        let p = config.visionConfig.patchSizeOrDefault
        let layers = allVisionLayers ? visionLayers.count : config.visionLayersNeeded
        let states = encodeVision(pixels, layers: layers, observer: observer)
        if allVisionLayers {
            observer?("vision.last_hidden_state", states.last!)
            observer?("pooled_output", pooledImageFeatures(lastHidden: states.last!))
        }
        var activations = config.extractLayers.map { states[$0 + 1] }
        if let hooks { activations = activations.enumerated().map { hooks.visionTap($1, index: $0) } }
        for (i, a) in activations.enumerated() { observer?("decoder.activation.\(i)", a) }
        let logits = decode(
            activations: activations, conditional: conditional,
            gridHeight: pixels.shape[2] / p, gridWidth: pixels.shape[3] / p, observer: observer)
        observer?("logits", logits)
        return logits
    }

    /// Text-prompted segmentation: logits [B, H, W].
    public func callAsFunction(pixels: Tensor, text: TextPrompts, observer: ForwardObserver? = nil) -> Tensor {
        segment(
            pixels: pixels, conditional: conditionalEmbeddings(text: text, pixels: pixels, observer: observer),
            observer: observer)
    }
}

extension CLIPSegConfig: ParameterCounting {
    /// The weights part by part, in checkpoint order: each tower's layers and the decoder's are one
    /// repeated part, so the byte count never builds one struct per layer.
    var parameterParts: [ParameterPart] {
        let config = self
        let m = CLIPSegModel(config: self, parameters: ParameterStore(), repeatedLayers: false)
        let t = textConfig, v = visionConfig, p = v.patchSizeOrDefault
        let grid = v.imageSizeOrDefault / p
        var head: [ParameterShape] = []
        for h in m.headLayers {
            let prefix = h.index.map { "decoder.transposed_convolution.\($0)" } ?? "decoder.transposed_convolution"
            let wshape = h.transposed ? [h.cin, h.cout, h.kernel, h.kernel] : [h.cout, h.cin, h.kernel, h.kernel]
            head += [("\(prefix).weight", wshape), ("\(prefix).bias", [h.cout])]
        }
        let textEmbeddings: [ParameterShape] = [
            ("clip.logit_scale", []),
            ("clip.text_model.embeddings.token_embedding.weight", [t.vocabSizeOrDefault, t.hiddenSize]),
            ("clip.text_model.embeddings.position_embedding.weight", [t.maxPositionEmbeddingsOrDefault, t.hiddenSize]),
        ]
        let visionEmbeddings: [ParameterShape] = [
            ("clip.vision_model.embeddings.class_embedding", [v.hiddenSize]),
            ("clip.vision_model.embeddings.patch_embedding.weight", [v.hiddenSize, v.numChannelsOrDefault, p, p]),
            ("clip.vision_model.embeddings.position_embedding.weight", [grid * grid + 1, v.hiddenSize]),
        ]
        var projections: [ParameterShape] = m.visionPostNorm.parameterShapes
        for layer in [m.visualProjection, m.textProjection, m.filmMul, m.filmAdd] {
            projections += layer.parameterShapes
        }
        var parts: [ParameterPart] = [.once(textEmbeddings)]
        parts.append(ParameterPart(repeats: t.numHiddenLayers) { CLIPSegModel.textLayer(config, $0).parameterShapes })
        parts.append(.once(m.textFinalNorm.parameterShapes))
        parts.append(.once(visionEmbeddings + m.visionPreNorm.parameterShapes))
        parts.append(ParameterPart(repeats: v.numHiddenLayers) { CLIPSegModel.visionLayer(config, $0).parameterShapes })
        parts.append(.once(projections))
        parts.append(ParameterPart(repeats: extractLayers.count) { CLIPSegModel.reduce(config, $0).parameterShapes })
        parts.append(
            ParameterPart(repeats: extractLayers.count) { CLIPSegModel.decoderLayer(config, $0).parameterShapes })
        parts.append(.once(head))
        return parts
    }

    /// Sizes the weights grow with (not patch_size: a smaller patch means more positions).
    static var shrinkableKeys: [(key: String, value: (CLIPSegConfig) -> String, shrink: (inout CLIPSegConfig) -> Void)]
    {
        typealias Entry = (key: String, value: (CLIPSegConfig) -> String, shrink: (inout CLIPSegConfig) -> Void)
        func size(_ key: String, _ path: WritableKeyPath<CLIPSegConfig, Int>) -> Entry {
            (key, { "\($0[keyPath: path])" }, { $0[keyPath: path] = 1 })
        }
        func optional(_ key: String, _ path: WritableKeyPath<CLIPSegConfig, Int?>) -> Entry {
            (key, { $0[keyPath: path].map { "\($0)" } ?? "(default)" }, { $0[keyPath: path] = 1 })
        }
        var entries: [Entry] = []
        let towers: [(String, WritableKeyPath<CLIPSegConfig, CLIPTowerConfig>)] = [
            ("text_config", \.textConfig), ("vision_config", \.visionConfig),
        ]
        for (name, tower) in towers {
            entries += [
                size("\(name).hidden_size", tower.appending(path: \.hiddenSize)),
                size("\(name).intermediate_size", tower.appending(path: \.intermediateSize)),
                size("\(name).num_hidden_layers", tower.appending(path: \.numHiddenLayers)),
            ]
        }
        entries += [
            optional("text_config.vocab_size", \.textConfig.vocabSize),
            optional("text_config.max_position_embeddings", \.textConfig.maxPositionEmbeddings),
            optional("vision_config.image_size", \.visionConfig.imageSize),
            optional("vision_config.num_channels", \.visionConfig.numChannels),
            size("projection_dim", \.projectionDim), size("reduce_dim", \.reduceDim),
            size("decoder_intermediate_size", \.decoderIntermediateSize),
            ("extract_layers", { "\($0.extractLayers)" }, { $0.extractLayers = [0] }),
        ]
        return entries
    }
}
