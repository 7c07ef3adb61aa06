import Foundation

/// The CLIP part of a CRIS model: a ModifiedResNet image encoder and CLIP's text transformer.
public struct CRISCLIPConfig: Codable, Sendable, Equatable {
    /// Attention-pool output width = text projection width (`word_dim` of the neck).
    public var embedDim: Int
    /// CLIP's pre-training resolution: the attention pool's position grid is `imageResolution / 32`.
    public var imageResolution: Int
    /// Bottleneck blocks per ResNet stage (four stages).
    public var visionLayers: [Int]
    public var visionWidth: Int
    public var visionHeads: Int
    public var contextLength: Int
    public var vocabSize: Int
    public var transformerWidth: Int
    public var transformerHeads: Int
    public var transformerLayers: Int

    enum CodingKeys: String, CodingKey {
        case embedDim = "embed_dim", imageResolution = "image_resolution", visionLayers = "vision_layers"
        case visionWidth = "vision_width", visionHeads = "vision_heads", contextLength = "context_length"
        case vocabSize = "vocab_size", transformerWidth = "transformer_width", transformerHeads = "transformer_heads"
        case transformerLayers = "transformer_layers"
    }

    public init(embedDim: Int, imageResolution: Int, visionLayers: [Int], visionWidth: Int, visionHeads: Int? = nil,
                contextLength: Int = 77, vocabSize: Int = 49408, transformerWidth: Int, transformerHeads: Int,
                transformerLayers: Int) {
        self.embedDim = embedDim
        self.imageResolution = imageResolution
        self.visionLayers = visionLayers
        self.visionWidth = visionWidth
        self.visionHeads = visionHeads ?? visionWidth * 32 / 64
        self.contextLength = contextLength
        self.vocabSize = vocabSize
        self.transformerWidth = transformerWidth
        self.transformerHeads = transformerHeads
        self.transformerLayers = transformerLayers
    }

    /// Channels entering the attention pool (the last stage's output): 32 x width.
    public var poolInputWidth: Int { visionWidth * 32 }
    /// Side of the attention pool's learned position grid.
    public var positionGrid: Int { imageResolution / 32 }
}

/// CoOp settings stored with a CRIS config (TuneVLSeg's `coop` block); informative only: the run's
/// `tuning.*` options decide what trains.
public struct CRISCoOpConfig: Codable, Sendable, Equatable {
    public var promptDepth: Int?
    public var numContext: Int?
    public var contextInitializer: String?
    public var vectorStd: Double?

    enum CodingKeys: String, CodingKey {
        case promptDepth = "prompt_depth", numContext = "num_context"
        case contextInitializer = "context_initializer", vectorStd = "vector_std"
    }
}

/// A CRIS model's sizes, as its `config.json` stores them (`model_type: "cris"`).
///
/// Everything the architecture needs is read from here (nothing assumes RN50 sizes), and the
/// redundant fields (`fpn_in`, `proj_in_dim`) are checked against what they must equal, so a
/// config that does not describe a buildable network fails at load, naming the key.
public struct CRISConfig: Codable, Sendable, Equatable, ModelConfigFile {
    public var modelType: String
    public var clip: CRISCLIPConfig
    /// Channels of C3, C4, C5 entering the neck.
    public var fpnIn: [Int]
    /// Neck widths: [f3 projection, vis_dim, f5].
    public var fpnOut: [Int]
    /// Decoder model width.
    public var visDim: Int
    /// Width of `state` (the projected end-of-text feature).
    public var wordDim: Int
    public var numLayers: Int
    public var numHead: Int
    public var dimFFN: Int
    public var dropout: Double
    public var returnIntermediate: Bool
    public var projInDim: Int
    public var projKernelSize: Int
    /// Input side; the logits are upsampled to the input size.
    public var imgSize: Int
    public var coop: CRISCoOpConfig?
    public var imageMean: [Double]
    public var imageStd: [Double]
    public var layerNormEps: Float
    public var batchNormEps: Float

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", clip, fpnIn = "fpn_in", fpnOut = "fpn_out", visDim = "vis_dim", wordDim = "word_dim"
        case numLayers = "num_layers", numHead = "num_head", dimFFN = "dim_ffn", dropout
        case returnIntermediate = "return_intermediate", projInDim = "proj_in_dim", projKernelSize = "proj_kernel_size"
        case imgSize = "img_size", coop, imageMean = "image_mean", imageStd = "image_std"
        case layerNormEps = "layer_norm_eps", batchNormEps = "batch_norm_eps"
    }

    public static let clipMean = [0.48145466, 0.4578275, 0.40821073]
    public static let clipStd = [0.26862954, 0.26130258, 0.27577711]

    public init(clip: CRISCLIPConfig, fpnOut: [Int], visDim: Int, numLayers: Int, numHead: Int, dimFFN: Int,
                projKernelSize: Int = 3, imgSize: Int = 416) {
        modelType = "cris"
        self.clip = clip
        let w = clip.visionWidth
        fpnIn = [w * 4 * 2, w * 4 * 4, clip.embedDim]
        self.fpnOut = fpnOut
        self.visDim = visDim
        wordDim = clip.embedDim
        self.numLayers = numLayers
        self.numHead = numHead
        self.dimFFN = dimFFN
        dropout = 0
        returnIntermediate = false
        projInDim = visDim / 2
        self.projKernelSize = projKernelSize
        self.imgSize = imgSize
        coop = nil
        imageMean = Self.clipMean
        imageStd = Self.clipStd
        layerNormEps = 1e-5
        batchNormEps = 1e-5
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType) ?? "cris"
        clip = try c.decode(CRISCLIPConfig.self, forKey: .clip)
        fpnIn = try c.decode([Int].self, forKey: .fpnIn)
        fpnOut = try c.decode([Int].self, forKey: .fpnOut)
        visDim = try c.decode(Int.self, forKey: .visDim)
        wordDim = try c.decodeIfPresent(Int.self, forKey: .wordDim) ?? clip.embedDim
        numLayers = try c.decode(Int.self, forKey: .numLayers)
        numHead = try c.decode(Int.self, forKey: .numHead)
        dimFFN = try c.decode(Int.self, forKey: .dimFFN)
        dropout = try c.decodeIfPresent(Double.self, forKey: .dropout) ?? 0
        returnIntermediate = try c.decodeIfPresent(Bool.self, forKey: .returnIntermediate) ?? false
        projInDim = try c.decodeIfPresent(Int.self, forKey: .projInDim) ?? visDim / 2
        projKernelSize = try c.decodeIfPresent(Int.self, forKey: .projKernelSize) ?? 3
        imgSize = try c.decodeIfPresent(Int.self, forKey: .imgSize) ?? 416
        coop = try c.decodeIfPresent(CRISCoOpConfig.self, forKey: .coop)
        imageMean = try c.decodeIfPresent([Double].self, forKey: .imageMean) ?? Self.clipMean
        imageStd = try c.decodeIfPresent([Double].self, forKey: .imageStd) ?? Self.clipStd
        layerNormEps = try c.decodeIfPresent(Float.self, forKey: .layerNormEps) ?? 1e-5
        batchNormEps = try c.decodeIfPresent(Float.self, forKey: .batchNormEps) ?? 1e-5
    }

    /// True when a config.json describes a CRIS model (`model_type: "cris"`).
    public static func isCRIS(configAt url: URL) -> Bool {
        guard let data = try? Data(contentsOf: url),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return false }
        return (object["model_type"] as? String) == "cris"
    }

    /// Checks that the sizes describe a network that can be built (divisibility, the derived fields).
    public func validate(file: String) throws {
        func fail(_ key: String, _ reason: String) -> ModelLoadError { .invalidConfig(file: file, key: key, reason: reason) }
        if modelType != "cris" { throw fail("model_type", "is '\(modelType)', expected 'cris'") }
        if clip.visionLayers.count != 4 || clip.visionLayers.contains(where: { $0 < 1 }) {
            throw fail("clip.vision_layers", "needs four stages of at least one block, got \(clip.visionLayers)")
        }
        if clip.visionWidth < 2 || clip.visionWidth % 2 != 0 { throw fail("clip.vision_width", "must be even and >= 2") }
        if clip.visionHeads < 1 || clip.poolInputWidth % clip.visionHeads != 0 {
            throw fail("clip.vision_heads", "\(clip.visionHeads) does not divide the pool width \(clip.poolInputWidth)")
        }
        if clip.positionGrid < 1 { throw fail("clip.image_resolution", "must be at least 32") }
        if clip.transformerHeads < 1 || clip.transformerWidth % clip.transformerHeads != 0 {
            throw fail("clip.transformer_heads", "\(clip.transformerHeads) does not divide transformer_width \(clip.transformerWidth)")
        }
        let w = clip.visionWidth
        if fpnIn != [w * 8, w * 16, clip.embedDim] {
            throw fail("fpn_in", "must be [C3, C4, C5] channels = [\(w * 8), \(w * 16), \(clip.embedDim)], got \(fpnIn)")
        }
        if fpnOut.count != 3 || fpnOut.contains(where: { $0 < 1 }) { throw fail("fpn_out", "needs three positive widths") }
        if fpnOut[1] != visDim { throw fail("fpn_out", "fpn_out[1] (\(fpnOut[1])) must equal vis_dim (\(visDim))") }
        if wordDim != clip.embedDim { throw fail("word_dim", "must equal clip.embed_dim (\(clip.embedDim))") }
        if numHead < 1 || visDim % numHead != 0 { throw fail("num_head", "\(numHead) does not divide vis_dim \(visDim)") }
        if visDim % 4 != 0 { throw fail("vis_dim", "must be a multiple of 4 (2-D sine position encoding)") }
        if visDim != clip.transformerWidth {
            throw fail("vis_dim", "word features of width \(clip.transformerWidth) feed the decoder of width \(visDim): they must be equal")
        }
        if projInDim != visDim / 2 { throw fail("proj_in_dim", "must be vis_dim / 2 = \(visDim / 2)") }
        if projKernelSize < 1 || projKernelSize % 2 == 0 { throw fail("proj_kernel_size", "must be odd") }
        if imgSize % 32 != 0 || imgSize < 32 { throw fail("img_size", "must be a positive multiple of 32") }
        if imageMean.count != 3 || imageStd.count != 3 { throw fail("image_mean", "mean and std need three channels") }
        if returnIntermediate { throw fail("return_intermediate", "intermediate decoder outputs are not supported") }
    }

    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }
}
