import VLModels

/// Architectures for tests that must not depend on the fixture's configuration.
public enum TestModels {
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
