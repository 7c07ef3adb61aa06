import Foundation
import VLTensor
import VLTokenizer

/// Named CLIPSeg architectures for `vlseg init-model`: randomly initialised models in the Hugging
/// Face format, for tests, the demo and benchmarks (no download needed).
public enum CLIPSegPreset: String, CaseIterable, Sendable {
    /// A few hundred thousand parameters: fast tests.
    case tiny
    /// A scaled-down ViT (a few million parameters): the built-in demo.
    case small
    /// The architecture of `CIDAS/clipseg-rd64-refined` (150,747,746 parameters).
    case base
    /// The demo backbone (4,102,754 parameters, 128x128 input, ViT/16): small enough that
    /// `experiment=demo_pretrain` trains both towers and the decoder from scratch within minutes on two
    /// cores, large enough that its text tower learns the scene vocabulary. Both towers have four
    /// blocks, so every method applies (the shallow VL adapter taps block 3 of the text tower too).
    /// The decoder is 64 wide (as the published rd64), not 32: the FiLM conditioning has to carry
    /// colour, shape, texture, size and position at once, and at 32 the pretrained backbone's held-out
    /// Dice stayed 0.06 lower at the same steps and cost (0.517 against 0.578 at 1,500 steps).
    case scene

    /// The input side the preset's directory declares in `preprocessor_config.json`: base, like the
    /// published checkpoints, has 224 in its vision config but runs at 352; the others run at their
    /// vision `image_size` and need no processor file.
    public var processorSize: Int? { self == .base ? 352 : nil }

    public var config: CLIPSegConfig {
        // Hugging Face's tower defaults with the preset's sizes; eos_token_id 2 as in the published
        // configs (pooling at the argmax of the ids).
        func sized(_ defaults: CLIPTowerConfig, _ d: Int, _ layers: Int, _ heads: Int) -> CLIPTowerConfig {
            var t = defaults
            t.hiddenSize = d
            t.intermediateSize = 4 * d
            t.numAttentionHeads = heads
            t.numHiddenLayers = layers
            return t
        }
        func text(_ d: Int, _ layers: Int, _ heads: Int) -> CLIPTowerConfig {
            var t = sized(.textDefaults, d, layers, heads)
            t.eosTokenId = 2
            return t
        }
        func vision(_ d: Int, _ layers: Int, _ heads: Int, image: Int, patch: Int) -> CLIPTowerConfig {
            var v = sized(.visionDefaults, d, layers, heads)
            v.imageSize = image
            v.patchSize = patch
            return v
        }
        switch self {
        case .tiny:
            return CLIPSegConfig(
                textConfig: text(32, 2, 2), visionConfig: vision(48, 3, 4, image: 64, patch: 16),
                projectionDim: 16, reduceDim: 16, extractLayers: [0, 1, 2], conditionalLayer: 0,
                decoderNumAttentionHeads: 4, decoderIntermediateSize: 32, useComplexTransposedConvolution: true)
        case .small:
            return CLIPSegConfig(
                textConfig: text(128, 4, 4), visionConfig: vision(192, 6, 6, image: 224, patch: 16),
                projectionDim: 128, reduceDim: 32, extractLayers: [1, 3, 5], conditionalLayer: 0,
                decoderNumAttentionHeads: 4, decoderIntermediateSize: 256, useComplexTransposedConvolution: true)
        case .scene:
            return CLIPSegConfig(
                textConfig: text(64, 4, 4), visionConfig: vision(96, 4, 4, image: 128, patch: 16),
                projectionDim: 64, reduceDim: 64, extractLayers: [1, 2, 3], conditionalLayer: 0,
                decoderNumAttentionHeads: 4, decoderIntermediateSize: 128, useComplexTransposedConvolution: true)
        case .base:
            return CLIPSegConfig(
                textConfig: text(512, 12, 8), visionConfig: vision(768, 12, 12, image: 224, patch: 16),
                projectionDim: 512, reduceDim: 64, extractLayers: [3, 6, 9], conditionalLayer: 0,
                decoderNumAttentionHeads: 4, decoderIntermediateSize: 2048, useComplexTransposedConvolution: true)
        }
    }
}

/// Writes randomly initialised CLIPSeg model directories in the Hugging Face layout.
public enum CLIPSegInitializer {
    /// Initial values for one named weight, deterministic in (seed, name).
    ///
    /// Linear and convolution weights follow PyTorch's default (uniform +-1/sqrt(fan_in)), so
    /// activations keep a sensible scale through random frozen towers; LayerNorms start at
    /// identity; embeddings are N(0, 0.02) as in CLIP's initialisation.
    public static func initialValues(name: String, shape: [Int], config: CLIPSegConfig, seed: UInt64) -> Tensor {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in name.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        var rng = SplitMix64(seed: seed ^ hash)
        if name == "clip.logit_scale" { return Tensor(filling: config.logitScaleInitValue, shape: shape) }
        if name.hasSuffix("layer_norm1.weight") || name.hasSuffix("layer_norm2.weight")
            || name.hasSuffix("layernorm.weight")
            || name.hasSuffix("layrnorm.weight") || name.hasSuffix("final_layer_norm.weight")
        {
            return Tensor(filling: 1, shape: shape)
        }
        if name.contains("norm") && name.hasSuffix(".bias") { return Tensor(zeros: shape) }
        if name.contains("embedding") {
            let std: Float = name.hasSuffix("class_embedding") ? 1 / Float(shape[0]).squareRoot() : 0.02
            if name.hasSuffix("patch_embedding.weight") {
                let fanIn = shape.dropFirst().reduce(1, *)
                let bound = 1 / Float(fanIn).squareRoot()
                return Tensor.randomUniform(shape, low: -bound, high: bound, generator: &rng)
            }
            return Tensor.randomNormal(shape, std: std, generator: &rng)
        }
        // Linear [out, in] / Conv2d [out, in, kh, kw] / ConvTranspose2d [in, out, kh, kw] and biases.
        let weightName = name.hasSuffix(".bias") ? String(name.dropLast(5)) + ".weight" : name
        let fanIn: Int
        if let wshape = CLIPSegModel.expectedParameters(config).first(where: { $0.name == weightName })?.shape,
            wshape.count >= 2
        {
            // PyTorch's fan_in is dim 1 x kernel for every layout (for ConvTranspose2d's [in, out, k, k]
            // that is out x k x k, as PyTorch computes it too).
            fanIn = wshape[1] * wshape.dropFirst(2).reduce(1, *)
        } else {
            fanIn = shape.last ?? 1
        }
        let bound = 1 / Float(max(fanIn, 1)).squareRoot()
        return Tensor.randomUniform(shape, low: -bound, high: bound, generator: &rng)
    }

    /// A complete random model in memory.
    public static func randomModel(config: CLIPSegConfig, seed: UInt64) -> CLIPSegModel {
        let store = ParameterStore()
        for (name, shape) in CLIPSegModel.expectedParameters(config) {
            store.set(name, initialValues(name: name, shape: shape, config: config, seed: seed))
        }
        return CLIPSegModel(config: config, parameters: store)
    }

    /// Writes config.json, model.safetensors and the tokenizer files into `directory`.
    /// Returns the number of parameters written. `processorSize`, when given, is written as a Hugging
    /// Face `preprocessor_config.json` (resize to that side, ImageNet statistics), as the published
    /// checkpoints ship one.
    ///
    /// The config is validated and its parameter bytes compared with `memoryLimit` (default: this
    /// machine's memory) before the directory is created or any weight is made.
    @discardableResult
    public static func write(
        config: CLIPSegConfig, seed: UInt64, to directory: URL, processorSize: Int? = nil,
        memoryLimit: UInt64 = MachineMemory.physical,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> Int {
        let configPath = directory.appendingPathComponent("config.json").path
        try config.validate(file: configPath)
        try config.checkParameterMemory(file: configPath, memoryLimit: memoryLimit)
        var count = 0
        try writeModelDirectory(
            directory, config: config.jsonData(), tensors: CLIPSegModel.expectedParameters(config),
            progress: progress
        ) { name, shape, writer in
            let t = initialValues(name: name, shape: shape, config: config, seed: seed)
            writer.add(name, t)
            count += t.count
        }
        let processorURL = directory.appendingPathComponent(ImagePreprocessing.processorFileName)
        if let processorSize {
            let processor: [String: Any] = [
                "image_processor_type": "ViTImageProcessor", "processor_class": "CLIPSegProcessor",
                "do_resize": true, "size": ["height": processorSize, "width": processorSize], "resample": 2,
                "do_rescale": true, "rescale_factor": 1.0 / 255, "do_normalize": true,
                "image_mean": ImagePreprocessing.imageNetMean, "image_std": ImagePreprocessing.imageNetStd,
            ]
            try JSONSerialization.data(withJSONObject: processor, options: [.prettyPrinted, .sortedKeys]).write(
                to: processorURL, options: .atomic)
        } else if FileManager.default.fileExists(atPath: processorURL.path) {
            try FileManager.default.removeItem(at: processorURL)  // a stale one would override the new config
        }
        return count
    }

    /// A model directory: config.json, model.safetensors with the tensors `add` writes for each
    /// expected (name, shape), in order, and the bundled tokenizer files.
    static func writeModelDirectory(
        _ directory: URL, config: Data, tensors: [(name: String, shape: [Int])],
        progress: ((Int, Int) -> Void)?,
        add: (String, [Int], inout SafeTensorsWriter) -> Void
    ) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try config.write(to: directory.appendingPathComponent("config.json"), options: .atomic)
        var writer = SafeTensorsWriter()
        writer.metadata = ["format": "pt"]
        for (i, (name, shape)) in tensors.enumerated() {
            add(name, shape, &writer)
            progress?(i + 1, tensors.count)
        }
        try writer.write(to: directory.appendingPathComponent("model.safetensors"))
        try BundledTokenizer.copy(to: directory)
    }
}
