import Foundation
import VLModels
import VLTensor

/// LoRA (Hu et al. 2021, as Hugging Face PEFT applies it): y = W x + b + (alpha / r) B (A x) on chosen
/// linear layers of every encoder block of the chosen towers; the checkpoint's W and b stay frozen.
///
/// Tensors: `<module>.lora_A` [r, in] and `<module>.lora_B` [out, r] under the layer's Hugging Face
/// module path, e.g. `clip.vision_model.encoder.layers.3.self_attn.q_proj.lora_A`. A starts as PEFT's
/// kaiming-uniform(a = sqrt 5), i.e. U(+-1/sqrt(in)); B starts at zero, so training starts from the
/// checkpoint's own logits. Every block gets its tensors, also vision blocks above the deepest tapped
/// layer, which the text-prompted logits never reach (their gradients stay zero).
public final class LoRATuning: TuningMethod, CLIPSegHooks {
    public let name: String
    public let rank: Int
    public let alpha: Double
    public let targets: [String]
    public let towers: [Tower]

    public static let defaultRank = 8
    public static let defaultAlpha = 16.0
    public static let defaultTargets = ["q_proj", "v_proj"]
    public static let defaultTowers: [Tower] = [.vision, .text]
    /// Target name -> module path inside an encoder block.
    public static let targetModules: [(target: String, module: String)] = [
        ("q_proj", "self_attn.q_proj"), ("k_proj", "self_attn.k_proj"), ("v_proj", "self_attn.v_proj"),
        ("out_proj", "self_attn.out_proj"), ("fc1", "mlp.fc1"), ("fc2", "mlp.fc2"),
    ]
    static let optionKeys = ["rank", "alpha", "targets", "towers"]

    /// Text-only LoRA leaves the vision tower frozen (its features can be cached).
    public var visionIsFrozen: Bool { !towers.contains(.vision) }
    public var textTowerIsFrozen: Bool { !towers.contains(.text) }

    /// One adapted linear layer.
    public struct Module: Sendable {
        public let prefix: String
        public let inFeatures: Int
        public let outFeatures: Int
        public var a: String { "\(prefix).lora_A" }
        public var b: String { "\(prefix).lora_B" }
    }

    private var store: ParameterStore?
    private var modules: [String: Module] = [:]
    private var ordered: [Module] = []

    /// The update's scale alpha / r.
    public var scale: Float { Float(alpha / Double(rank)) }

    public init(name: String = "lora", rank: Int = LoRATuning.defaultRank, alpha: Double = LoRATuning.defaultAlpha,
                targets: [String] = LoRATuning.defaultTargets, towers: [Tower] = LoRATuning.defaultTowers) throws {
        self.name = name
        guard rank >= 1 else { throw TuningError.invalidOption(method: name, key: "rank", reason: "must be at least 1") }
        guard alpha >= 0, alpha.isFinite else { throw TuningError.invalidOption(method: name, key: "alpha", reason: "must be a number >= 0") }
        let known = Self.targetModules.map(\.target)
        if let bad = targets.first(where: { !known.contains($0) }) {
            throw TuningError.invalidOption(method: name, key: "targets", reason: "'\(bad)' is not one of \(known.joined(separator: ", "))")
        }
        guard !targets.isEmpty else { throw TuningError.invalidOption(method: name, key: "targets", reason: "must name at least one layer") }
        guard !towers.isEmpty else { throw TuningError.invalidOption(method: name, key: "towers", reason: "must name at least one tower") }
        self.rank = rank
        self.alpha = alpha
        self.targets = targets
        self.towers = towers
    }

    /// From config options: `rank`, `alpha`, `targets` and `towers` (lists comma-separated).
    public convenience init(name: String = "lora", options: TuningOptions) throws {
        let r = try MethodOptionReader(method: name, options: options, known: Self.optionKeys)
        let towers = try r.list("towers", default: Self.defaultTowers.map(\.rawValue), allowed: ["vision", "text"]).map { Tower(rawValue: $0)! }
        try self.init(name: name, rank: try r.int("rank", default: Self.defaultRank),
                      alpha: try r.double("alpha", default: Self.defaultAlpha),
                      targets: try r.list("targets", default: Self.defaultTargets, allowed: Self.targetModules.map(\.target)),
                      towers: towers)
    }

    /// The adapted layers of a model of `config`, in the trainable order: towers in the given order,
    /// blocks in order, targets in the given order.
    public func modules(for config: CLIPSegConfig) -> [Module] {
        var out: [Module] = []
        for tower in towers {
            let t = tower == .vision ? config.visionConfig : config.textConfig
            let root = tower == .vision ? "clip.vision_model" : "clip.text_model"
            for layer in 0..<t.numHiddenLayers {
                for target in targets {
                    let module = Self.targetModules.first { $0.target == target }!.module
                    let (inF, outF): (Int, Int)
                    switch target {
                    case "fc1": (inF, outF) = (t.hiddenSize, t.intermediateSize)
                    case "fc2": (inF, outF) = (t.intermediateSize, t.hiddenSize)
                    default: (inF, outF) = (t.hiddenSize, t.hiddenSize)
                    }
                    out.append(Module(prefix: "\(root).encoder.layers.\(layer).\(module)", inFeatures: inF, outFeatures: outF))
                }
            }
        }
        return out
    }

    /// Names and shapes of every tensor this method adds (from the config alone).
    public func parameterShapes(for config: CLIPSegConfig) -> [(name: String, shape: [Int])] {
        modules(for: config).flatMap { [($0.a, [rank, $0.inFeatures]), ($0.b, [$0.outFeatures, rank])] }
    }

    public func prepare(_ model: SegmentationModel, seed: UInt64) throws -> [String] {
        let model = try requireCLIPSeg(model, method: name)
        ordered = modules(for: model.config)
        modules = Dictionary(uniqueKeysWithValues: ordered.map { ($0.prefix, $0) })
        var names: [String] = []
        for m in ordered {
            model.parameters.set(m.a, MethodInit.uniform([rank, m.inFeatures], bound: 1 / Float(m.inFeatures).squareRoot(), seed: seed, name: m.a))
            model.parameters.set(m.b, Tensor(zeros: [m.outFeatures, rank]))
            names += [m.a, m.b]
        }
        store = model.parameters
        model.hooks = self
        return names
    }

    // MARK: Hook

    public func linearDelta(_ x: Tensor, prefix: String) -> Tensor? {
        guard let store, let m = modules[prefix] else { return nil }
        // (alpha/r) B (A x): the scale goes on the r-wide intermediate, the cheapest place.
        let h = linear(x, weight: store[m.a]).scaled(scale)
        return linear(h, weight: store[m.b])
    }

    // MARK: Merging

    /// W' = W + (alpha / r) B A for every adapted layer, by weight name (`<module>.weight`), from the
    /// current values in the model (after `prepare` and loading trained tensors).
    public func mergedWeights() -> [(name: String, weight: Tensor)] {
        guard let store else { return [] }
        return GradMode.withoutGradients {
            ordered.map { m in
                let w = store["\(m.prefix).weight"].detached()
                let delta = matmul(store[m.b].detached(), store[m.a].detached())
                return ("\(m.prefix).weight", w + delta.scaled(scale))
            }
        }
    }
}

extension TuningRegistry {
    static let loraFactories: [String: Factory] = [
        "lora": { try LoRATuning(name: "lora", options: $0) },
    ]
}
