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

    /// Target name -> module path inside an encoder block.
    public static let targetModules: [(target: String, module: String)] = [
        ("q_proj", "self_attn.q_proj"), ("k_proj", "self_attn.k_proj"), ("v_proj", "self_attn.v_proj"),
        ("out_proj", "self_attn.out_proj"), ("fc1", "mlp.fc1"), ("fc2", "mlp.fc2"),
    ]

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

    /// The bounds of the values are the options' (`family`); an unknown target is refused here too, since
    /// `modules(for:)` looks every target up.
    public init(name: String, rank: Int, alpha: Double, targets: [String], towers: [Tower]) throws {
        self.name = name
        let known = Self.targetModules.map(\.target)
        if let bad = targets.first(where: { !known.contains($0) }) {
            throw TuningError.notAllowed(method: name, key: "targets", value: bad, allowed: known)
        }
        self.rank = rank
        self.alpha = alpha
        self.targets = targets
        self.towers = towers
    }

    /// The targets and towers must each name at least one layer, once: PEFT's lists are sets.
    static let nonEmptyUnique: @Sendable (ConfigValue) -> String? = { value in
        guard let items = value.stringsValue else { return "expected a list of strings" }
        if items.isEmpty { return "must name at least one" }
        if Set(items).count != items.count { return "repeats an entry" }
        return nil
    }

    static let family = TuningMethodFamily(
        name: "lora", summary: "low-rank updates on chosen linear layers of the towers", architectures: [.clipseg],
        options: [
            TuningOption("rank", .int, default: 8, help: "rank r of the update B A", minimum: 1),
            TuningOption(
                "alpha", .double, default: 16.0, help: "scale alpha (the update is multiplied by alpha / rank)",
                minimum: 0),
            TuningOption(
                "targets", .stringList, default: ["q_proj", "v_proj"], help: "linear layers to adapt in each block",
                allowed: targetModules.map(\.target), check: nonEmptyUnique),
            TuningOption(
                "towers", .stringList, default: ["vision", "text"], help: "towers whose blocks get updates",
                allowed: [Tower.vision.rawValue, Tower.text.rawValue], check: nonEmptyUnique),
        ]
    ) { o in
        try LoRATuning(
            name: o.method, rank: try o.int("rank"), alpha: try o.double("alpha"), targets: try o.strings("targets"),
            towers: try o.strings("towers").compactMap(Tower.init(rawValue:)))
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
                    out.append(
                        Module(prefix: "\(root).encoder.layers.\(layer).\(module)", inFeatures: inF, outFeatures: outF))
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
            model.parameters.set(
                m.a,
                MethodInit.uniform(
                    [rank, m.inFeatures], bound: 1 / Float(m.inFeatures).squareRoot(), seed: seed, name: m.a))
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
