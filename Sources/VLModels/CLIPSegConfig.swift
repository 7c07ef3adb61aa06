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

    public init(hiddenSize: Int, intermediateSize: Int, numAttentionHeads: Int, numHiddenLayers: Int,
                layerNormEps: Float = 1e-5, hiddenAct: String = "quick_gelu") {
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
            if let fallback { return try c.decodeIfPresent(Int.self, forKey: key) ?? fallback }
            return try c.decode(Int.self, forKey: key)
        }
        hiddenSize = try size(.hiddenSize, d?.hiddenSize)
        intermediateSize = try size(.intermediateSize, d?.intermediateSize)
        numAttentionHeads = try size(.numAttentionHeads, d?.numAttentionHeads)
        numHiddenLayers = try size(.numHiddenLayers, d?.numHiddenLayers)
        layerNormEps = try c.decodeIfPresent(Float.self, forKey: .layerNormEps) ?? 1e-5
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "quick_gelu"
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? d?.vocabSize
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? d?.maxPositionEmbeddings
        eosTokenId = try c.decodeIfPresent(Int.self, forKey: .eosTokenId) ?? d?.eosTokenId
        bosTokenId = try c.decodeIfPresent(Int.self, forKey: .bosTokenId) ?? d?.bosTokenId
        padTokenId = try c.decodeIfPresent(Int.self, forKey: .padTokenId) ?? d?.padTokenId
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? d?.imageSize
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? d?.patchSize
        numChannels = try c.decodeIfPresent(Int.self, forKey: .numChannels) ?? d?.numChannels
    }

    public var headDim: Int { hiddenSize / numAttentionHeads }
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
    private enum LegacyKeys: String, CodingKey { case textConfigDict = "text_config_dict", visionConfigDict = "vision_config_dict" }

    public init(textConfig: CLIPTowerConfig, visionConfig: CLIPTowerConfig, projectionDim: Int, reduceDim: Int,
                extractLayers: [Int], conditionalLayer: Int, decoderNumAttentionHeads: Int,
                decoderIntermediateSize: Int, useComplexTransposedConvolution: Bool, logitScaleInitValue: Float = 2.6592) {
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
        projectionDim = try c.decodeIfPresent(Int.self, forKey: .projectionDim) ?? 512
        reduceDim = try c.decodeIfPresent(Int.self, forKey: .reduceDim) ?? 64
        extractLayers = try c.decodeIfPresent([Int].self, forKey: .extractLayers) ?? [3, 6, 9]
        conditionalLayer = try c.decodeIfPresent(Int.self, forKey: .conditionalLayer) ?? 0
        decoderNumAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .decoderNumAttentionHeads) ?? 4
        decoderIntermediateSize = try c.decodeIfPresent(Int.self, forKey: .decoderIntermediateSize) ?? 2048
        useComplexTransposedConvolution = try c.decodeIfPresent(Bool.self, forKey: .useComplexTransposedConvolution) ?? false
        logitScaleInitValue = try c.decodeIfPresent(Float.self, forKey: .logitScaleInitValue) ?? 2.6592
    }

    /// Checks the relations between sizes that the architecture relies on.
    public func validate(file: String) throws {
        func bad(_ key: String, _ reason: String) -> ModelLoadError { .invalidConfig(file: file, key: key, reason: reason) }
        for (name, t) in [("text_config", textConfig), ("vision_config", visionConfig)] {
            guard t.hiddenSize > 0, t.numAttentionHeads > 0, t.hiddenSize % t.numAttentionHeads == 0 else {
                throw bad("\(name).num_attention_heads", "hidden_size \(t.hiddenSize) is not divisible by \(t.numAttentionHeads) heads")
            }
            guard t.numHiddenLayers > 0, t.intermediateSize > 0 else { throw bad("\(name).num_hidden_layers", "must be positive") }
            guard ["quick_gelu", "gelu", "relu"].contains(t.hiddenAct) else { throw bad("\(name).hidden_act", "unsupported activation '\(t.hiddenAct)'") }
        }
        guard visionConfig.patchSize ?? 0 > 0 else { throw bad("vision_config.patch_size", "missing or not positive") }
        guard visionConfig.imageSize ?? 0 > 0 else { throw bad("vision_config.image_size", "missing or not positive") }
        guard textConfig.vocabSize ?? 0 > 0 else { throw bad("text_config.vocab_size", "missing or not positive") }
        guard textConfig.maxPositionEmbeddings ?? 0 > 0 else { throw bad("text_config.max_position_embeddings", "missing or not positive") }
        guard !extractLayers.isEmpty, extractLayers.allSatisfy({ $0 >= 0 && $0 < visionConfig.numHiddenLayers }) else {
            throw bad("extract_layers", "\(extractLayers) must name layers 0..<\(visionConfig.numHiddenLayers)")
        }
        guard conditionalLayer >= 0, conditionalLayer < extractLayers.count else {
            throw bad("conditional_layer", "\(conditionalLayer) must be below the number of decoder layers (\(extractLayers.count))")
        }
        guard reduceDim > 0, decoderNumAttentionHeads > 0, reduceDim % decoderNumAttentionHeads == 0 else {
            throw bad("decoder_num_attention_heads", "reduce_dim \(reduceDim) is not divisible by \(decoderNumAttentionHeads) heads")
        }
        if useComplexTransposedConvolution {
            guard visionConfig.patchSize! % 4 == 0, visionConfig.patchSize! >= 4, reduceDim >= 2 else {
                throw bad("use_complex_transposed_convolution", "needs patch_size divisible by 4 and reduce_dim >= 2")
            }
        }
    }

    /// Encodes as a Hugging Face config.json (for `vlseg init-model`).
    public func jsonData() throws -> Data {
        var object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(self)) as! [String: Any]
        object["architectures"] = ["CLIPSegForImageSegmentation"]
        object["model_type"] = "clipseg"
        object["decoder_hidden_act"] = "quick_gelu"
        var text = object["text_config"] as! [String: Any]
        text["model_type"] = "clipseg_text_model"
        object["text_config"] = text
        var vision = object["vision_config"] as! [String: Any]
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
