import VLModels

/// Architectures for tests that must not depend on the fixture's configuration.
public enum TestModels {
    /// The prompts a reference file stores as int64 [B, T] ids and attention mask.
    public static func prompts(
        _ file: SafeTensorsFile, ids idKey: String = "input_ids",
        mask maskKey: String = "attention_mask"
    ) throws -> TextPrompts {
        let ids = try file.integers(idKey), mask = try file.integers(maskKey)
        let t = ids.shape[1]
        return TextPrompts(
            inputIDs: (0..<ids.shape[0]).map { Array(ids.values[$0 * t..<($0 + 1) * t]) },
            attentionMask: (0..<mask.shape[0]).map { Array(mask.values[$0 * t..<($0 + 1) * t]) })
    }

    /// A deliberately different CLIPSeg: other widths and heads, patch 8 on 32 px, 4 vision layers
    /// tapped at [0, 2], FiLM at the second decoder layer, first-eos pooling, the simple head, and
    /// text width != projection_dim.
    public static func variantConfig(textLayers: Int = 2) -> CLIPSegConfig {
        var c = CLIPSegPreset.tiny.config
        c.textConfig.hiddenSize = 24
        c.textConfig.numAttentionHeads = 3
        c.textConfig.intermediateSize = 40
        c.textConfig.numHiddenLayers = textLayers
        c.textConfig.eosTokenId = 49407
        c.visionConfig.hiddenSize = 20
        c.visionConfig.numAttentionHeads = 2
        c.visionConfig.intermediateSize = 28
        c.visionConfig.numHiddenLayers = 4
        c.visionConfig.patchSize = 8
        c.visionConfig.imageSize = 32
        c.extractLayers = [0, 2]
        c.conditionalLayer = 1
        c.reduceDim = 12
        c.decoderNumAttentionHeads = 3
        c.decoderIntermediateSize = 10
        c.projectionDim = 10
        c.useComplexTransposedConvolution = false
        return c
    }
}
