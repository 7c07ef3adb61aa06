import Foundation
import VLModels
import VLTensor

// VLSM-Adapter (Dhakal et al., naamiinepal/vlsm-adapter `src/models/clipseg_adapter.py`): bottleneck
// adapters on a frozen CLIPSeg, either on the decoder's inputs (shallow) or inside the encoder blocks
// (dense). The math and the canonical tensor names are those of the seeds' code; every width comes
// from the model's config.

/// The VLSM-Adapter block: A(x) = x + ReLU(fc2(ReLU(fc1(x)))).
///
/// fc1 is [bottleneck, width] + [bottleneck], fc2 is [width, bottleneck] + [width]; there is a ReLU
/// after the up-projection too (the branch is >= 0), no scaling and no normalisation. Its tensors are
/// `<prefix>.fc1.weight`, `<prefix>.fc1.bias`, `<prefix>.fc2.weight`, `<prefix>.fc2.bias`.
public struct Adapter: Sendable {
    public let prefix: String
    public let width: Int
    public let bottleneck: Int
    let w1, b1, w2, b2: String

    public init(prefix: String, width: Int, bottleneck: Int) {
        self.prefix = prefix
        self.width = width
        self.bottleneck = bottleneck
        w1 = "\(prefix).fc1.weight"
        b1 = "\(prefix).fc1.bias"
        w2 = "\(prefix).fc2.weight"
        b2 = "\(prefix).fc2.bias"
    }

    /// Names and shapes in the fixed order fc1.weight, fc1.bias, fc2.weight, fc2.bias.
    public var parameterShapes: [(name: String, shape: [Int])] {
        [(w1, [bottleneck, width]), (b1, [bottleneck]), (w2, [width, bottleneck]), (b2, [width])]
    }

    public var parameterCount: Int { 2 * width * bottleneck + bottleneck + width }

    /// x [..., width] -> x + ReLU(fc2(ReLU(fc1 x))).
    public func callAsFunction(_ x: Tensor, _ p: ParameterStore) -> Tensor {
        let h = linearReLU(x, weight: p[w1], bias: p[b1])
        return x + linearReLU(h, weight: p[w2], bias: p[b2])
    }
}

/// Deterministic initial values for a method's own tensors, keyed by (seed, name): the same on every
/// rank and independent of the order tensors are created in.
enum MethodInit {
    static func generator(seed: UInt64, name: String) -> SplitMix64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in name.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return SplitMix64(seed: seed ^ hash ^ 0x5EED_AD4A_7E75_0001)
    }

    /// U(-bound, bound).
    static func uniform(_ shape: [Int], bound: Float, seed: UInt64, name: String) -> Tensor {
        var g = generator(seed: seed, name: name)
        return Tensor.randomUniform(shape, low: -bound, high: bound, generator: &g)
    }

    /// PyTorch's default nn.Linear init: weight and bias U(+-1/sqrt(fan_in)), fan_in = weight.shape[1].
    static func linearDefault(_ shape: [Int], fanIn: Int, seed: UInt64, name: String) -> Tensor {
        uniform(shape, bound: 1 / Float(max(fanIn, 1)).squareRoot(), seed: seed, name: name)
    }
}

/// VLSM-Adapter, shallow (`vlsm_shallow`) or dense (`vlsm_dense`), with parts v (vision), l (language)
/// and c (conditional embedding).
///
/// Dense: in every encoder block idx < min(max(extract_layers), L) of the vision tower (v) and of the
/// text tower (l), x += A_attn(attn(LN1 x)); x += A_out(mlp(LN2 x)); tensors `v_attn_adapters.{idx}`,
/// `v_out_adapters.{idx}`, `l_attn_adapters.{idx}`, `l_out_adapters.{idx}`.
///
/// Shallow: each tapped vision activation i goes through `vision_extract_adapters.{i}` (the residual
/// stream is untouched); for l, the raw text hidden state after block extract_layers[i] at the argmax
/// (end-of-text) position goes through `text_extract_adapters.{i}` and is added to the conditional
/// embedding, which needs text hidden_size == projection_dim and enough text layers.
///
/// Both: c puts `cond_adapter` (width projection_dim, bottleneck `cond_bottleneck`) on the conditional
/// embedding, before the shallow text-tap additions.
public final class VLSMAdapterTuning: TuningMethod, CLIPSegHooks {
    public enum Kind: String, Sendable { case shallow, dense }

    public let name: String
    public let kind: Kind
    public let vision: Bool
    public let language: Bool
    public let conditional: Bool
    public let bottleneck: Int
    public let condBottleneck: Int

    /// Shallow adapters act on the taps (after the frozen tower) and on the text side only, so the
    /// vision features can be cached; dense vision adapters change the tower itself.
    public var visionIsFrozen: Bool { kind == .shallow || !vision }
    /// Shallow text adapters read the tower's outputs; dense ones change its blocks.
    public var textTowerIsFrozen: Bool { kind == .shallow || !language }

    private var store: ParameterStore?
    // Dense: adapters of blocks 0..<count (later blocks are not adapted).
    private var visionAttention: [Adapter] = [], visionMLP: [Adapter] = []
    private var textAttention: [Adapter] = [], textMLP: [Adapter] = []
    // Shallow.
    private var visionTaps: [Adapter] = []
    private var textTaps: [(layer: Int, adapter: Adapter)] = []
    private var condAdapter: Adapter?

    public init(name: String, kind: Kind, parts: String, bottleneck: Int, condBottleneck: Int) throws {
        self.name = name
        self.kind = kind
        if let problem = Self.partsProblem(.string(parts)) {
            throw TuningError.invalidOption(method: name, key: "parts", reason: problem)
        }
        vision = parts.contains("v")
        language = parts.contains("l")
        conditional = parts.contains("c")
        self.bottleneck = bottleneck
        self.condBottleneck = condBottleneck
    }

    /// Why `tuning.parts` is not a set of parts, or nil: the option's check, also applied to direct callers.
    static let partsProblem: @Sendable (ConfigValue) -> String? = { value in
        guard let s = value.stringValue else { return "expected a string of v, l, c" }
        let chars = Array(s)
        if chars.isEmpty { return "must name at least one part (v, l, c)" }
        if let bad = chars.first(where: { !"vlc".contains($0) }) {
            return "unknown part '\(bad)'; parts are v (vision), l (language), c (conditional embedding)"
        }
        if Set(chars).count != chars.count { return "repeats a part" }
        return nil
    }

    /// A family (`vlsm_shallow`, `vlsm_dense`) with the papers' presets `_v`, `_vl`, `_vlc`; the method
    /// made from a preset carries the preset's name.
    static func family(_ kind: Kind, bottleneck: Int) -> TuningMethodFamily {
        let family = "vlsm_\(kind.rawValue)"
        let placement =
            kind == .shallow ? "shallow adapters (on the decoder's taps)" : "dense adapters (inside encoder blocks)"
        return TuningMethodFamily(
            name: family, summary: "VLSM-Adapter \(placement), parts chosen by tuning.parts", architectures: [.clipseg],
            options: [
                TuningOption(
                    "parts", .string, default: "v",
                    help:
                        "where adapters go: any of v (vision), l (language), c (conditional embedding), e.g. vl, vlc, vc",
                    check: partsProblem),
                TuningOption(
                    "bottleneck", .int, default: .int(bottleneck), help: "adapter bottleneck width", minimum: 1),
                TuningOption(
                    "cond_bottleneck", .int, default: 256,
                    help: "bottleneck of the conditional-embedding adapter (part c)", minimum: 1),
            ],
            presets: ["v", "vl", "vlc"].map { parts in
                TuningPreset(
                    "\(family)_\(parts)", summary: "VLSM-Adapter \(kind.rawValue) adapter, parts \(parts.uppercased())",
                    values: ["parts": .string(parts)])
            }
        ) { o in
            try VLSMAdapterTuning(
                name: o.method, kind: kind, parts: try o.string("parts"), bottleneck: try o.int("bottleneck"),
                condBottleneck: try o.int("cond_bottleneck"))
        }
    }

    static let shallowFamily = family(.shallow, bottleneck: 512)
    static let denseFamily = family(.dense, bottleneck: 64)

    public var parts: String { (vision ? "v" : "") + (language ? "l" : "") + (conditional ? "c" : "") }

    /// Blocks of a tower that get dense adapters: idx < min(max(extract_layers), layers).
    static func denseBlocks(_ config: CLIPSegConfig, layers: Int) -> Int {
        min(config.extractLayers.max() ?? 0, layers)
    }

    /// The adapters this method adds to a model of `config`, in the fixed (trainable) order; throws when
    /// the architecture cannot host a part. Needs only the config (no weights).
    func adapters(for config: CLIPSegConfig) throws -> (
        visionAttention: [Adapter], visionMLP: [Adapter], textAttention: [Adapter],
        textMLP: [Adapter], visionTaps: [Adapter], textTaps: [(layer: Int, adapter: Adapter)],
        cond: Adapter?
    ) {
        let dv = config.visionConfig.hiddenSize, dt = config.textConfig.hiddenSize, p = config.projectionDim
        var va: [Adapter] = [], vm: [Adapter] = [], ta: [Adapter] = [], tm: [Adapter] = [], vt: [Adapter] = []
        var tt: [(Int, Adapter)] = []
        switch kind {
        case .dense:
            if (vision || language) && Self.denseBlocks(config, layers: 1) == 0 {
                // max(extract_layers) == 0: no block lies below the deepest tap (the seeds create 0 adapters).
                throw TuningError.invalidOption(
                    method: name, key: "parts",
                    reason:
                        "dense adapters go into the blocks below the deepest tapped layer, and extract_layers \(config.extractLayers) leaves none; use the shallow adapter or part c"
                )
            }
            if vision {
                for idx in 0..<Self.denseBlocks(config, layers: config.visionConfig.numHiddenLayers) {
                    va.append(Adapter(prefix: "v_attn_adapters.\(idx)", width: dv, bottleneck: bottleneck))
                    vm.append(Adapter(prefix: "v_out_adapters.\(idx)", width: dv, bottleneck: bottleneck))
                }
            }
            if language {
                for idx in 0..<Self.denseBlocks(config, layers: config.textConfig.numHiddenLayers) {
                    ta.append(Adapter(prefix: "l_attn_adapters.\(idx)", width: dt, bottleneck: bottleneck))
                    tm.append(Adapter(prefix: "l_out_adapters.\(idx)", width: dt, bottleneck: bottleneck))
                }
            }
        case .shallow:
            if vision {
                vt = config.extractLayers.indices.map {
                    Adapter(prefix: "vision_extract_adapters.\($0)", width: dv, bottleneck: bottleneck)
                }
            }
            if language {
                guard dt == p else {
                    throw TuningError.invalidOption(
                        method: name, key: "parts",
                        reason:
                            "part l of the shallow adapter adds the raw text hidden state (text hidden_size \(dt)) to the conditional embedding (projection_dim \(p)); this model's widths differ, so only v and c are possible"
                    )
                }
                let lt = config.textConfig.numHiddenLayers
                if let deepest = config.extractLayers.max(), deepest + 1 > lt {
                    throw TuningError.invalidOption(
                        method: name, key: "parts",
                        reason:
                            "part l of the shallow adapter taps the text hidden state after block \(deepest) (extract_layers \(config.extractLayers)), but the text tower has only \(lt) layers; only v and c are possible"
                    )
                }
                tt = config.extractLayers.enumerated().map {
                    ($1, Adapter(prefix: "text_extract_adapters.\($0)", width: dt, bottleneck: bottleneck))
                }
            }
        }
        let cond = conditional ? Adapter(prefix: "cond_adapter", width: p, bottleneck: condBottleneck) : nil
        return (va, vm, ta, tm, vt, tt, cond)
    }

    /// The adapters in the trainable order: dense per block attention then MLP adapter (vision, then
    /// text), shallow vision taps, text taps; the conditional-embedding adapter last.
    func orderedAdapters(for config: CLIPSegConfig) throws -> [Adapter] {
        let a = try adapters(for: config)
        var blocks: [Adapter] = []
        for (x, y) in zip(a.visionAttention, a.visionMLP) { blocks += [x, y] }
        for (x, y) in zip(a.textAttention, a.textMLP) { blocks += [x, y] }
        blocks += a.visionTaps + a.textTaps.map(\.adapter)
        if let c = a.cond { blocks.append(c) }
        return blocks
    }

    /// Every tensor this method adds to a model of `config`, in the trainable order (no weights needed:
    /// counting the base architecture costs nothing).
    public func parameterShapes(for config: CLIPSegConfig) throws -> [(name: String, shape: [Int])] {
        try orderedAdapters(for: config).flatMap(\.parameterShapes)
    }

    public func prepare(_ model: SegmentationModel, seed: UInt64) throws -> [String] {
        let model = try requireCLIPSeg(model, method: name)
        let a = try adapters(for: model.config)
        var names: [String] = []
        for adapter in try orderedAdapters(for: model.config) {
            // PyTorch's Linear default: weight and bias U(+-1/sqrt(in)), in = the layer's input width.
            for (name, shape) in adapter.parameterShapes {
                let fanIn = name.contains(".fc1.") ? adapter.width : adapter.bottleneck
                model.parameters.set(name, MethodInit.linearDefault(shape, fanIn: fanIn, seed: seed, name: name))
                names.append(name)
            }
        }
        visionAttention = a.visionAttention
        visionMLP = a.visionMLP
        textAttention = a.textAttention
        textMLP = a.textMLP
        visionTaps = a.visionTaps
        textTaps = a.textTaps
        condAdapter = a.cond
        store = model.parameters
        model.hooks = self
        return names
    }

    // MARK: Hooks

    public func attentionOutput(_ h: Tensor, tower: Tower, layer: Int) -> Tensor {
        guard let store else { return h }
        let list = tower == .vision ? visionAttention : textAttention
        return layer < list.count ? list[layer](h, store) : h
    }

    public func mlpOutput(_ h: Tensor, tower: Tower, layer: Int) -> Tensor {
        guard let store else { return h }
        let list = tower == .vision ? visionMLP : textMLP
        return layer < list.count ? list[layer](h, store) : h
    }

    public func visionTap(_ activation: Tensor, index: Int) -> Tensor {
        guard let store, index < visionTaps.count else { return activation }
        return visionTaps[index](activation, store)
    }

    public func conditional(_ cond: Tensor, text: TextEncoding, context: ForwardContext) -> Tensor {
        guard let store else { return cond }
        var c = cond
        if let condAdapter { c = condAdapter(c, store) }
        for (layer, adapter) in textTaps {
            // The raw hidden state after block `layer` (no final LayerNorm, no projection) at the
            // end-of-text position by argmax of the ids, as the seeds' code does whatever the config says.
            let states = text.hiddenStates[layer + 1]
            let last = states.shape[1] - 1
            let eot = states.selectPerBatch(text.argmaxPositions.map { min(max($0, 0), last) })
            c = c + adapter(eot, store)
        }
        return c
    }
}
