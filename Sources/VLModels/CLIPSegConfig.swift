import Foundation

/// One CLIP tower's sizes, as in a Hugging Face `text_config` / `vision_config`.
public struct CLIPTowerConfig: Codable, Sendable, Equatable {
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numAttentionHeads: Int
    public var numHiddenLayers: Int
    public var layerNormEps: Float
    public var hiddenAct: String
    // Text only.
    public var vocabSize: Int?
    public var maxPositionEmbeddings: Int?
    public var eosTokenId: Int?
    public var bosTokenId: Int?
    public var padTokenId: Int?
    // Vision only.
    public var imageSize: Int?
    public var patchSize: Int?
    public var numChannels: Int?

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numAttentionHeads = "num_attention_heads", numHiddenLayers = "num_hidden_layers"
        case layerNormEps = "layer_norm_eps", hiddenAct = "hidden_act"
        case vocabSize = "vocab_size", maxPositionEmbeddings = "max_position_embeddings"
        case eosTokenId = "eos_token_id", bosTokenId = "bos_token_id", padTokenId = "pad_token_id"
        case imageSize = "image_size", patchSize = "patch_size", numChannels = "num_channels"
    }

    public init(
        hiddenSize: Int, intermediateSize: Int, numAttentionHeads: Int, numHiddenLayers: Int,
        layerNormEps: Float = 1e-5, hiddenAct: String = "quick_gelu"
    ) {
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numAttentionHeads = numAttentionHeads
        self.numHiddenLayers = numHiddenLayers
        self.layerNormEps = layerNormEps
        self.hiddenAct = hiddenAct
    }

    /// Decodes a tower with every key required (no tower kind is known here); `CLIPSegConfig`
    /// decodes its towers with Hugging Face's per-tower defaults instead.
    public init(from decoder: Decoder) throws {
        try self.init(from: decoder, defaults: nil)
    }

    /// Hugging Face's `CLIPSegTextConfig()`: what a key left out of `text_config` means.
    public static let textDefaults: CLIPTowerConfig = {
        var t = CLIPTowerConfig(hiddenSize: 512, intermediateSize: 2048, numAttentionHeads: 8, numHiddenLayers: 12)
        t.vocabSize = 49408
        t.maxPositionEmbeddings = 77
        t.padTokenId = 1
        t.bosTokenId = 49406
        t.eosTokenId = 49407
        return t
    }()

    /// Hugging Face's `CLIPSegVisionConfig()`: what a key left out of `vision_config` means.
    public static let visionDefaults: CLIPTowerConfig = {
        var v = CLIPTowerConfig(hiddenSize: 768, intermediateSize: 3072, numAttentionHeads: 12, numHiddenLayers: 12)
        v.numChannels = 3
        v.imageSize = 224
        v.patchSize = 32
        return v
    }()

    /// Keys present win; a missing key takes its value from `defaults`, or is an error for the four
    /// sizes when there are none.
    init(from decoder: Decoder, defaults d: CLIPTowerConfig?) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func size(_ key: CodingKeys, _ fallback: Int?) throws -> Int {
            if let fallback { return try c.decodeWholeNumberIfPresent(forKey: key) ?? fallback }
            return try c.decodeWholeNumber(forKey: key)
        }
        hiddenSize = try size(.hiddenSize, d?.hiddenSize)
        intermediateSize = try size(.intermediateSize, d?.intermediateSize)
        numAttentionHeads = try size(.numAttentionHeads, d?.numAttentionHeads)
        numHiddenLayers = try size(.numHiddenLayers, d?.numHiddenLayers)
        layerNormEps = try c.decodeIfPresent(Float.self, forKey: .layerNormEps) ?? 1e-5
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "quick_gelu"
        vocabSize = try c.decodeWholeNumberIfPresent(forKey: .vocabSize) ?? d?.vocabSize
        maxPositionEmbeddings =
            try c.decodeWholeNumberIfPresent(forKey: .maxPositionEmbeddings) ?? d?.maxPositionEmbeddings
        eosTokenId = try c.decodeWholeNumberIfPresent(forKey: .eosTokenId) ?? d?.eosTokenId
        bosTokenId = try c.decodeWholeNumberIfPresent(forKey: .bosTokenId) ?? d?.bosTokenId
        padTokenId = try c.decodeWholeNumberIfPresent(forKey: .padTokenId) ?? d?.padTokenId
        imageSize = try c.decodeWholeNumberIfPresent(forKey: .imageSize) ?? d?.imageSize
        patchSize = try c.decodeWholeNumberIfPresent(forKey: .patchSize) ?? d?.patchSize
        numChannels = try c.decodeWholeNumberIfPresent(forKey: .numChannels) ?? d?.numChannels
    }

    public var headDim: Int { hiddenSize / numAttentionHeads }

    // The optional sizes as the architecture uses them. A config read from a file always has them
    // (a missing key takes the tower's default) and `validate` refuses one without; the fallbacks,
    // Hugging Face's defaults, keep a config built in code without them from trapping.
    var vocabSizeOrDefault: Int { vocabSize ?? 49408 }
    var maxPositionEmbeddingsOrDefault: Int { maxPositionEmbeddings ?? 77 }
    var imageSizeOrDefault: Int { imageSize ?? 224 }
    var patchSizeOrDefault: Int { patchSize ?? 32 }
    var numChannelsOrDefault: Int { numChannels ?? 3 }
}

/// A Hugging Face `CLIPSegForImageSegmentation` config.json, every size the model needs.
public struct CLIPSegConfig: Codable, Sendable, Equatable, ModelConfigFile {
    public var textConfig: CLIPTowerConfig
    public var visionConfig: CLIPTowerConfig
    public var projectionDim: Int
    public var reduceDim: Int
    public var extractLayers: [Int]
    public var conditionalLayer: Int
    public var decoderNumAttentionHeads: Int
    public var decoderIntermediateSize: Int
    public var useComplexTransposedConvolution: Bool
    public var logitScaleInitValue: Float

    enum CodingKeys: String, CodingKey {
        case textConfig = "text_config", visionConfig = "vision_config", projectionDim = "projection_dim"
        case reduceDim = "reduce_dim", extractLayers = "extract_layers", conditionalLayer = "conditional_layer"
        case decoderNumAttentionHeads = "decoder_num_attention_heads"
        case decoderIntermediateSize = "decoder_intermediate_size"
        case useComplexTransposedConvolution = "use_complex_transposed_convolution"
        case logitScaleInitValue = "logit_scale_init_value"
    }

    /// Keys of configs written by early transformers versions, which override the towers' keys.
    private enum LegacyKeys: String, CodingKey {
        case textConfigDict = "text_config_dict", visionConfigDict = "vision_config_dict"
    }

    public init(
        textConfig: CLIPTowerConfig, visionConfig: CLIPTowerConfig, projectionDim: Int, reduceDim: Int,
        extractLayers: [Int], conditionalLayer: Int, decoderNumAttentionHeads: Int,
        decoderIntermediateSize: Int, useComplexTransposedConvolution: Bool, logitScaleInitValue: Float = 2.6592
    ) {
        self.textConfig = textConfig
        self.visionConfig = visionConfig
        self.projectionDim = projectionDim
        self.reduceDim = reduceDim
        self.extractLayers = extractLayers
        self.conditionalLayer = conditionalLayer
        self.decoderNumAttentionHeads = decoderNumAttentionHeads
        self.decoderIntermediateSize = decoderIntermediateSize
        self.useComplexTransposedConvolution = useComplexTransposedConvolution
        self.logitScaleInitValue = logitScaleInitValue
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // As Hugging Face reads a config: a tower's keys come from `<tower>_config_dict` when that
        // is present (configs written by early transformers versions carry both), else from
        // `<tower>_config`, and any key left out takes the tower class's default.
        let legacyKeys = try decoder.container(keyedBy: LegacyKeys.self)
        func tower(_ defaults: CLIPTowerConfig, _ main: CodingKeys, _ legacy: LegacyKeys) throws -> CLIPTowerConfig {
            if legacyKeys.contains(legacy), try !legacyKeys.decodeNil(forKey: legacy) {
                return try CLIPTowerConfig(from: legacyKeys.superDecoder(forKey: legacy), defaults: defaults)
            }
            if c.contains(main), try !c.decodeNil(forKey: main) {
                return try CLIPTowerConfig(from: c.superDecoder(forKey: main), defaults: defaults)
            }
            return defaults
        }
        textConfig = try tower(.textDefaults, .textConfig, .textConfigDict)
        visionConfig = try tower(.visionDefaults, .visionConfig, .visionConfigDict)
        projectionDim = try c.decodeWholeNumberIfPresent(forKey: .projectionDim) ?? 512
        reduceDim = try c.decodeWholeNumberIfPresent(forKey: .reduceDim) ?? 64
        extractLayers = try c.decodeWholeNumbersIfPresent(forKey: .extractLayers) ?? [3, 6, 9]
        conditionalLayer = try c.decodeWholeNumberIfPresent(forKey: .conditionalLayer) ?? 0
        decoderNumAttentionHeads = try c.decodeWholeNumberIfPresent(forKey: .decoderNumAttentionHeads) ?? 4
        decoderIntermediateSize = try c.decodeWholeNumberIfPresent(forKey: .decoderIntermediateSize) ?? 2048
        useComplexTransposedConvolution =
            try c.decodeIfPresent(Bool.self, forKey: .useComplexTransposedConvolution) ?? false
        logitScaleInitValue = try c.decodeIfPresent(Float.self, forKey: .logitScaleInitValue) ?? 2.6592
    }

    /// Checks every size on its own, then the relations between sizes the architecture relies on;
    /// errors name the key at fault (`text_config.hidden_size`, `extract_layers[1]`).
    ///
    /// Sizes are checked one by one before any relation, so `hidden_size: -48` is blamed on
    /// hidden_size rather than on the head count it fails to divide. A config that passes can be
    /// listed (`CLIPSegModel.expectedParameters`) without overflow; whether its weights fit in
    /// memory is `checkParameterMemory`'s question.
    public func validate(file: String) throws {
        func bad(_ key: String, _ reason: String) -> ModelLoadError {
            .invalidConfig(file: file, key: key, reason: reason)
        }
        for (name, t) in [("text_config", textConfig), ("vision_config", visionConfig)] {
            try ConfigCheck.positive(t.hiddenSize, "\(name).hidden_size", file: file)
            try ConfigCheck.positive(t.intermediateSize, "\(name).intermediate_size", file: file)
            try ConfigCheck.positive(t.numAttentionHeads, "\(name).num_attention_heads", file: file)
            try ConfigCheck.positive(t.numHiddenLayers, "\(name).num_hidden_layers", file: file)
            guard t.hiddenSize % t.numAttentionHeads == 0 else {
                throw bad(
                    "\(name).num_attention_heads",
                    "hidden_size \(t.hiddenSize) is not divisible by \(t.numAttentionHeads) heads")
            }
            guard ["quick_gelu", "gelu", "relu"].contains(t.hiddenAct) else {
                throw bad("\(name).hidden_act", "unsupported activation '\(t.hiddenAct)'")
            }
        }
        try ConfigCheck.positive(textConfig.vocabSize, "text_config.vocab_size", file: file)
        try ConfigCheck.positive(textConfig.maxPositionEmbeddings, "text_config.max_position_embeddings", file: file)
        try ConfigCheck.positive(visionConfig.imageSize, "vision_config.image_size", file: file)
        try ConfigCheck.positive(visionConfig.patchSize, "vision_config.patch_size", file: file)
        if let channels = visionConfig.numChannels {
            try ConfigCheck.positive(channels, "vision_config.num_channels", file: file)
        }
        // The position table has (image_size / patch_size)^2 + 1 rows.
        let grid = visionConfig.imageSizeOrDefault / visionConfig.patchSizeOrDefault
        _ = try ConfigCheck.fits(
            ConfigCheck.sum(ConfigCheck.product(grid, grid), 1), "vision_config.image_size",
            "the number of patch positions, (image_size / patch_size)^2 + 1,", file: file)
        try ConfigCheck.positive(projectionDim, "projection_dim", file: file)
        try ConfigCheck.positive(reduceDim, "reduce_dim", file: file)
        try ConfigCheck.positive(decoderNumAttentionHeads, "decoder_num_attention_heads", file: file)
        try ConfigCheck.positive(decoderIntermediateSize, "decoder_intermediate_size", file: file)
        guard !extractLayers.isEmpty else { throw bad("extract_layers", "needs at least one layer") }
        for (i, layer) in extractLayers.enumerated() {
            try ConfigCheck.nonNegative(layer, "extract_layers[\(i)]", file: file)
            guard layer < visionConfig.numHiddenLayers else {
                throw bad(
                    "extract_layers[\(i)]",
                    "\(layer) must name one of the layers 0..<\(visionConfig.numHiddenLayers) (vision_config.num_hidden_layers)"
                )
            }
        }
        try ConfigCheck.nonNegative(conditionalLayer, "conditional_layer", file: file)
        guard conditionalLayer < extractLayers.count else {
            throw bad(
                "conditional_layer",
                "\(conditionalLayer) must be below the number of decoder layers (\(extractLayers.count))")
        }
        guard reduceDim % decoderNumAttentionHeads == 0 else {
            throw bad(
                "decoder_num_attention_heads",
                "reduce_dim \(reduceDim) is not divisible by \(decoderNumAttentionHeads) heads")
        }
        if useComplexTransposedConvolution {
            let p = visionConfig.patchSizeOrDefault
            guard p % 4 == 0, p >= 4, reduceDim >= 2 else {
                throw bad("use_complex_transposed_convolution", "needs patch_size divisible by 4 and reduce_dim >= 2")
            }
        }
    }

    /// Encodes as a Hugging Face config.json (for `vlseg init-model`).
    public func jsonData() throws -> Data {
        // The encoder writes an object with both towers; checked rather than force-cast all the same.
        guard var object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(self)) as? [String: Any],
            var text = object["text_config"] as? [String: Any], var vision = object["vision_config"] as? [String: Any]
        else {
            throw ModelLoadError.invalidConfig(
                file: "config.json", key: "(file)", reason: "could not be encoded as a JSON object")
        }
        object["architectures"] = ["CLIPSegForImageSegmentation"]
        object["model_type"] = "clipseg"
        object["decoder_hidden_act"] = "quick_gelu"
        text["model_type"] = "clipseg_text_model"
        object["text_config"] = text
        vision["model_type"] = "clipseg_vision_model"
        object["vision_config"] = vision
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }

    /// Text pooling: `eos_token_id` 2 (the published configs) means "argmax of the ids" (the
    /// end-of-text token has the largest id); otherwise the first position holding eos_token_id.
    public var poolsAtArgmax: Bool { (textConfig.eosTokenId ?? 2) == 2 }

    /// Vision layers the text-prompted logits need: through the deepest extracted layer.
    public var visionLayersNeeded: Int { (extractLayers.max() ?? 0) + 1 }
}
