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

    public init(
        embedDim: Int, imageResolution: Int, visionLayers: [Int], visionWidth: Int, visionHeads: Int? = nil,
        contextLength: Int = 77, vocabSize: Int = 49408, transformerWidth: Int, transformerHeads: Int,
        transformerLayers: Int
    ) {
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

    /// Every key required; whole numbers read so that a bad one is named (`decodeWholeNumber`).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        embedDim = try c.decodeWholeNumber(forKey: .embedDim)
        imageResolution = try c.decodeWholeNumber(forKey: .imageResolution)
        visionLayers = try c.decodeWholeNumbers(forKey: .visionLayers)
        visionWidth = try c.decodeWholeNumber(forKey: .visionWidth)
        visionHeads = try c.decodeWholeNumber(forKey: .visionHeads)
        contextLength = try c.decodeWholeNumber(forKey: .contextLength)
        vocabSize = try c.decodeWholeNumber(forKey: .vocabSize)
        transformerWidth = try c.decodeWholeNumber(forKey: .transformerWidth)
        transformerHeads = try c.decodeWholeNumber(forKey: .transformerHeads)
        transformerLayers = try c.decodeWholeNumber(forKey: .transformerLayers)
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

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        promptDepth = try c.decodeWholeNumberIfPresent(forKey: .promptDepth)
        numContext = try c.decodeWholeNumberIfPresent(forKey: .numContext)
        contextInitializer = try c.decodeIfPresent(String.self, forKey: .contextInitializer)
        vectorStd = try c.decodeIfPresent(Double.self, forKey: .vectorStd)
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
        case modelType = "model_type", clip, fpnIn = "fpn_in", fpnOut = "fpn_out", visDim = "vis_dim", wordDim =
            "word_dim"
        case numLayers = "num_layers", numHead = "num_head", dimFFN = "dim_ffn", dropout
        case returnIntermediate = "return_intermediate", projInDim = "proj_in_dim", projKernelSize = "proj_kernel_size"
        case imgSize = "img_size", coop, imageMean = "image_mean", imageStd = "image_std"
        case layerNormEps = "layer_norm_eps", batchNormEps = "batch_norm_eps"
    }

    public static let clipMean = [0.48145466, 0.4578275, 0.40821073]
    public static let clipStd = [0.26862954, 0.26130258, 0.27577711]

    public init(
        clip: CRISCLIPConfig, fpnOut: [Int], visDim: Int, numLayers: Int, numHead: Int, dimFFN: Int,
        projKernelSize: Int = 3, imgSize: Int = 416
    ) {
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
        fpnIn = try c.decodeWholeNumbers(forKey: .fpnIn)
        fpnOut = try c.decodeWholeNumbers(forKey: .fpnOut)
        visDim = try c.decodeWholeNumber(forKey: .visDim)
        wordDim = try c.decodeWholeNumberIfPresent(forKey: .wordDim) ?? clip.embedDim
        numLayers = try c.decodeWholeNumber(forKey: .numLayers)
        numHead = try c.decodeWholeNumber(forKey: .numHead)
        dimFFN = try c.decodeWholeNumber(forKey: .dimFFN)
        dropout = try c.decodeIfPresent(Double.self, forKey: .dropout) ?? 0
        returnIntermediate = try c.decodeIfPresent(Bool.self, forKey: .returnIntermediate) ?? false
        projInDim = try c.decodeWholeNumberIfPresent(forKey: .projInDim) ?? visDim / 2
        projKernelSize = try c.decodeWholeNumberIfPresent(forKey: .projKernelSize) ?? 3
        imgSize = try c.decodeWholeNumberIfPresent(forKey: .imgSize) ?? 416
        coop = try c.decodeIfPresent(CRISCoOpConfig.self, forKey: .coop)
        imageMean = try c.decodeIfPresent([Double].self, forKey: .imageMean) ?? Self.clipMean
        imageStd = try c.decodeIfPresent([Double].self, forKey: .imageStd) ?? Self.clipStd
        layerNormEps = try c.decodeIfPresent(Float.self, forKey: .layerNormEps) ?? 1e-5
        batchNormEps = try c.decodeIfPresent(Float.self, forKey: .batchNormEps) ?? 1e-5
    }

    /// True when a config.json describes a CRIS model (`model_type: "cris"`).
    public static func isCRIS(configAt url: URL) -> Bool {
        guard let data = try? Data(contentsOf: url),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return false }
        return (object["model_type"] as? String) == "cris"
    }

    /// Checks that the sizes describe a network that can be built: each size on its own first
    /// (positive; errors name the key, `clip.transformer_width`, `fpn_out[2]`), then that the sizes
    /// derived from them fit in 64 bits, then divisibility and the derived fields. A config that
    /// passes can be listed (`CRISModel.expectedParameters`) without overflow; whether its weights
    /// fit in memory is `checkParameterMemory`'s question.
    public func validate(file: String) throws {
        func fail(_ key: String, _ reason: String) -> ModelLoadError {
            .invalidConfig(file: file, key: key, reason: reason)
        }
        if modelType != "cris" { throw fail("model_type", "is '\(modelType)', expected 'cris'") }
        let sizes: [(String, Int)] = [
            ("clip.embed_dim", clip.embedDim), ("clip.image_resolution", clip.imageResolution),
            ("clip.vision_width", clip.visionWidth), ("clip.vision_heads", clip.visionHeads),
            ("clip.context_length", clip.contextLength), ("clip.vocab_size", clip.vocabSize),
            ("clip.transformer_width", clip.transformerWidth), ("clip.transformer_heads", clip.transformerHeads),
            ("clip.transformer_layers", clip.transformerLayers), ("vis_dim", visDim), ("word_dim", wordDim),
            ("num_layers", numLayers), ("num_head", numHead), ("dim_ffn", dimFFN), ("proj_in_dim", projInDim),
            ("proj_kernel_size", projKernelSize), ("img_size", imgSize),
        ]
        for (key, value) in sizes { try ConfigCheck.positive(value, key, file: file) }
        if clip.visionLayers.count != 4 {
            throw fail("clip.vision_layers", "needs four stages, got \(clip.visionLayers)")
        }
        for (i, blocks) in clip.visionLayers.enumerated() {
            try ConfigCheck.positive(blocks, "clip.vision_layers[\(i)]", file: file)
        }
        if fpnIn.count != 3 { throw fail("fpn_in", "needs three widths [C3, C4, C5], got \(fpnIn)") }
        for (i, width) in fpnIn.enumerated() { try ConfigCheck.positive(width, "fpn_in[\(i)]", file: file) }
        if fpnOut.count != 3 { throw fail("fpn_out", "needs three widths, got \(fpnOut)") }
        for (i, width) in fpnOut.enumerated() { try ConfigCheck.positive(width, "fpn_out[\(i)]", file: file) }
        // Informative only, but a negative count is a broken file.
        if let depth = coop?.promptDepth { try ConfigCheck.nonNegative(depth, "coop.prompt_depth", file: file) }
        if let count = coop?.numContext { try ConfigCheck.nonNegative(count, "coop.num_context", file: file) }

        // Sizes the layers derive from these, which must not overflow when the model is built.
        _ = try ConfigCheck.fits(
            ConfigCheck.product(clip.visionWidth, 32), "clip.vision_width",
            "the attention pool's width, 32 x vision_width,", file: file)
        _ = try ConfigCheck.fits(
            ConfigCheck.sum(ConfigCheck.product(clip.positionGrid, clip.positionGrid), 1), "clip.image_resolution",
            "the attention pool's positions, (image_resolution / 32)^2 + 1,", file: file)
        _ = try ConfigCheck.fits(
            ConfigCheck.product(clip.transformerWidth, 4), "clip.transformer_width",
            "the text MLP's width, 4 x transformer_width,", file: file)
        _ = try ConfigCheck.fits(
            ConfigCheck.product(visDim, 3), "vis_dim", "the decoder's packed projection, 3 x vis_dim,", file: file)
        _ = try ConfigCheck.fits(
            ConfigCheck.sum(ConfigCheck.product(fpnOut[1], 3), fpnOut[0], fpnOut[2], 2), "fpn_out",
            "the neck's concatenated channels", file: file)
        _ = try ConfigCheck.fits(
            ConfigCheck.sum(ConfigCheck.product(projInDim, projKernelSize, projKernelSize), 1), "proj_kernel_size",
            "the projector's dynamic filter, proj_in_dim x proj_kernel_size^2 + 1,", file: file)

        if clip.visionWidth < 2 || clip.visionWidth % 2 != 0 {
            throw fail("clip.vision_width", "must be even and >= 2")
        }
        if clip.poolInputWidth % clip.visionHeads != 0 {
            throw fail("clip.vision_heads", "\(clip.visionHeads) does not divide the pool width \(clip.poolInputWidth)")
        }
        if clip.positionGrid < 1 { throw fail("clip.image_resolution", "must be at least 32") }
        if clip.transformerWidth % clip.transformerHeads != 0 {
            throw fail(
                "clip.transformer_heads",
                "\(clip.transformerHeads) does not divide transformer_width \(clip.transformerWidth)")
        }
        let w = clip.visionWidth
        if fpnIn != [w * 8, w * 16, clip.embedDim] {
            throw fail(
                "fpn_in", "must be [C3, C4, C5] channels = [\(w * 8), \(w * 16), \(clip.embedDim)], got \(fpnIn)")
        }
        if fpnOut[1] != visDim { throw fail("fpn_out", "fpn_out[1] (\(fpnOut[1])) must equal vis_dim (\(visDim))") }
        if wordDim != clip.embedDim { throw fail("word_dim", "must equal clip.embed_dim (\(clip.embedDim))") }
        if visDim % numHead != 0 { throw fail("num_head", "\(numHead) does not divide vis_dim \(visDim)") }
        if visDim % 4 != 0 { throw fail("vis_dim", "must be a multiple of 4 (2-D sine position encoding)") }
        if visDim != clip.transformerWidth {
            throw fail(
                "vis_dim",
                "word features of width \(clip.transformerWidth) feed the decoder of width \(visDim): they must be equal"
            )
        }
        if projInDim != visDim / 2 { throw fail("proj_in_dim", "must be vis_dim / 2 = \(visDim / 2)") }
        if projKernelSize % 2 == 0 { throw fail("proj_kernel_size", "must be odd") }
        if imgSize % 32 != 0 { throw fail("img_size", "must be a positive multiple of 32") }
        if imageMean.count != 3 || imageStd.count != 3 { throw fail("image_mean", "mean and std need three channels") }
        if returnIntermediate { throw fail("return_intermediate", "intermediate decoder outputs are not supported") }
    }

    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }
}

extension CRISConfig: ParameterCounting {
    var parameterParts: [ParameterPart] { CRISModel.parameterParts(self) }

    /// Sizes the weights grow with; each set to 1 only shrinks every derived size.
    static var shrinkableKeys: [(key: String, value: (CRISConfig) -> String, shrink: (inout CRISConfig) -> Void)] {
        typealias Entry = (key: String, value: (CRISConfig) -> String, shrink: (inout CRISConfig) -> Void)
        func size(_ key: String, _ path: WritableKeyPath<CRISConfig, Int>) -> Entry {
            (key, { "\($0[keyPath: path])" }, { $0[keyPath: path] = 1 })
        }
        var entries: [Entry] = [
            size("clip.embed_dim", \.clip.embedDim), size("clip.image_resolution", \.clip.imageResolution),
            size("clip.vision_width", \.clip.visionWidth), size("clip.context_length", \.clip.contextLength),
            size("clip.vocab_size", \.clip.vocabSize), size("clip.transformer_width", \.clip.transformerWidth),
            size("clip.transformer_layers", \.clip.transformerLayers), size("vis_dim", \.visDim),
            size("word_dim", \.wordDim),
            size("num_layers", \.numLayers), size("dim_ffn", \.dimFFN), size("proj_in_dim", \.projInDim),
            size("proj_kernel_size", \.projKernelSize),
        ]
        // Validated configs have four stages and three FPN widths.
        entries += (0..<4).map { size("clip.vision_layers[\($0)]", \.clip.visionLayers[$0]) }
        entries += (0..<3).map { size("fpn_in[\($0)]", \.fpnIn[$0]) }
        entries += (0..<3).map { size("fpn_out[\($0)]", \.fpnOut[$0]) }
        return entries
    }
}
