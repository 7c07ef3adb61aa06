import Foundation
import VLTensor

/// CRIS architectures `vlseg init-model` can create without a download.
public enum CRISPreset: String, CaseIterable, Sendable {
    /// The reference fixture's sizes (2,144,542 parameters): tests and the CRIS demo.
    case crisTiny = "cris-tiny"
    /// CRIS with CLIP RN50, as published (146,849,122 parameters).
    case crisBase = "cris-base"

    public var config: CRISConfig {
        switch self {
        case .crisTiny:
            let clip = CRISCLIPConfig(
                embedDim: 64, imageResolution: 64, visionLayers: [1, 1, 1, 1], visionWidth: 8, visionHeads: 4,
                transformerWidth: 32, transformerHeads: 2, transformerLayers: 3)
            return CRISConfig(
                clip: clip, fpnOut: [16, 32, 48], visDim: 32, numLayers: 2, numHead: 2, dimFFN: 64, imgSize: 96)
        case .crisBase:
            let clip = CRISCLIPConfig(
                embedDim: 1024, imageResolution: 224, visionLayers: [3, 4, 6, 3], visionWidth: 64,
                transformerWidth: 512, transformerHeads: 8, transformerLayers: 12)
            return CRISConfig(
                clip: clip, fpnOut: [256, 512, 1024], visDim: 512, numLayers: 3, numHead: 8, dimFFN: 2048, imgSize: 416)
        }
    }
}

/// Random CRIS weights in the published state-dict layout.
public enum CRISInitializer {
    /// Initial value of one tensor, deterministic in (seed, name): PyTorch's defaults for convolutions
    /// and linears (U(±1/√fan_in)), Xavier for packed attention projections with zero biases,
    /// identity normalisations with neutral running statistics, CLIP's embedding scales.
    public static func initialValue(name: String, shape: [Int], config: CRISConfig, seed: UInt64) -> Tensor {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in "cris/\(name)".utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        var rng = SplitMix64(seed: seed ^ hash)
        let last = name.split(separator: ".").last.map(String.init) ?? name
        switch last {
        case "running_mean": return Tensor(zeros: shape)
        case "running_var": return Tensor(filling: 1, shape: shape)
        case "logit_scale": return Tensor(filling: Float(Foundation.log(1 / 0.07)), shape: shape)
        default: break
        }
        if name == "backbone.token_embedding.weight" { return Tensor.randomNormal(shape, std: 0.02, generator: &rng) }
        if name == "backbone.positional_embedding" { return Tensor.randomNormal(shape, std: 0.01, generator: &rng) }
        if name == "backbone.visual.attnpool.positional_embedding" {
            return Tensor.randomNormal(shape, std: 1 / Float(shape[1]).squareRoot(), generator: &rng)
        }
        if name == "backbone.text_projection" {
            return Tensor.randomNormal(shape, std: 1 / Float(shape[0]).squareRoot(), generator: &rng)
        }
        let expected = CRISModel.expectedParameters(config)
        if shape.count == 1, isNormalization(name, expected: Set(expected.map(\.name))) {
            return last == "weight" ? Tensor(filling: 1, shape: shape) : Tensor(zeros: shape)
        }
        if last == "in_proj_weight" {
            let bound = (6 / Float(shape[0] / 3 + shape[1])).squareRoot()
            return Tensor.randomUniform(shape, low: -bound, high: bound, generator: &rng)
        }
        if last == "in_proj_bias" || name.hasSuffix("out_proj.bias") { return Tensor(zeros: shape) }
        let fanIn: Int
        if shape.count >= 2 {
            fanIn = shape.dropFirst().reduce(1, *)
        } else {
            let weightName = String(name.dropLast("bias".count)) + "weight"
            fanIn = expected.first { $0.name == weightName }?.shape.dropFirst().reduce(1, *) ?? shape[0]
        }
        let bound = 1 / Float(max(fanIn, 1)).squareRoot()
        return Tensor.randomUniform(shape, low: -bound, high: bound, generator: &rng)
    }

    /// BatchNorm and LayerNorm vectors (weight 1, bias 0 at initialisation): a BN owns running
    /// statistics; LayerNorms are the `ln*`, `*norm*` modules and the FFN's inner norm (`ffn.3`).
    static func isNormalization(_ name: String, expected: Set<String>) -> Bool {
        guard let dot = name.lastIndex(of: ".") else { return false }
        let owner = String(name[..<dot])
        if expected.contains(owner + ".running_mean") { return true }
        let module = owner.split(separator: ".").last.map(String.init) ?? owner
        return module.hasPrefix("ln") || module.contains("norm") || owner.hasSuffix(".ffn.3")
    }

    /// A complete random model in memory.
    public static func randomModel(config: CRISConfig, seed: UInt64) -> CRISModel {
        let store = ParameterStore()
        for (name, shape) in CRISModel.expectedParameters(config) {
            store.set(name, initialValue(name: name, shape: shape, config: config, seed: seed))
        }
        return CRISModel(config: config, parameters: store)
    }

    /// Writes config.json, model.safetensors (with the BN `num_batches_tracked` counters a PyTorch
    /// state dict has) and the tokenizer files; returns the learnable parameter count.
    /// The config is validated and its parameter bytes compared with `memoryLimit` (default: this
    /// machine's memory) before the directory is created or any weight is made.
    @discardableResult
    public static func write(
        config: CRISConfig, seed: UInt64, to directory: URL,
        memoryLimit: UInt64 = MachineMemory.physical,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> Int {
        let configPath = directory.appendingPathComponent("config.json").path
        try config.validate(file: configPath)
        try config.checkParameterMemory(file: configPath, memoryLimit: memoryLimit)
        var learnable = 0
        try CLIPSegInitializer.writeModelDirectory(
            directory, config: config.jsonData(), tensors: CRISModel.expectedParameters(config),
            progress: progress
        ) { name, shape, writer in
            let t = initialValue(name: name, shape: shape, config: config, seed: seed)
            writer.add(name, t)
            if !isBatchNormBuffer(name) { learnable += t.count }
            if name.hasSuffix(".running_var") {
                writer.add(String(name.dropLast("running_var".count)) + "num_batches_tracked", int64: [0], shape: [])
            }
        }
        return learnable
    }
}
