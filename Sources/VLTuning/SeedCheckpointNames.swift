import VLModels
import VLTensor

/// How the tensors of the seeds' Lightning checkpoints map onto VLSeg names.
///
/// Their `LightningModule` keeps the model as `self.net`, so state-dict keys are `net.<module path>`.
/// In naamiinepal/vlsm-adapter (`src/models/clipseg_adapter.py`, `CLIPSegShallowAdapter` /
/// `CLIPSegDenseAdapter`) that module holds the frozen Hugging Face CLIPSeg as `clipseg` (the shallow
/// adapter also aliases `clipseg.clip` as `clip`, so those weights appear twice) and the adapters as
/// `vision_extract_adapters.{i}`, `text_extract_adapters.{i}`, `v_attn_adapters.{i}`,
/// `v_out_adapters.{i}`, `l_attn_adapters.{i}`, `l_out_adapters.{i}` and `cond_adapter`, each an
/// `Adapter` with `fc1` and `fc2` Linear layers. VLSeg's VLSM-Adapter (`VLTuning/VLSMAdapter.swift`)
/// uses exactly these names, so after `net.` they map to themselves. medvlsm's end-to-end `CLIPSeg`
/// wrapper also holds the model as `clipseg`; TuneVLSeg's `HFCLIPSegWrapper` holds it as `model`.
/// Other modules (TuneVLSeg's `context_learner.*` prompt learners, whose projection layers are named
/// and shared differently from VLSeg's) have no established mapping and are reported, not guessed.
public enum SeedCheckpointNames {
    public enum Mapping: Equatable, Sendable {
        /// A tuning method's own tensor, under its VLSeg name.
        case trainable(String, method: String)
        /// A weight of the CLIPSeg model itself, under its Hugging Face (= VLSeg) name.
        case base(String)
        case unmapped
    }

    static let adapterFamilies: Set<String> = [
        "vision_extract_adapters", "text_extract_adapters", "v_attn_adapters", "v_out_adapters",
        "l_attn_adapters", "l_out_adapters",
    ]
    static let baseModelRoots = ["clip.", "decoder."]

    /// Maps one name (with `net.` already removed).
    public static func map(_ name: String) -> Mapping {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        let layer = ["fc1", "fc2"], param = ["weight", "bias"]
        if parts.count == 4, adapterFamilies.contains(parts[0]), let i = Int(parts[1]), i >= 0, String(i) == parts[1],
            layer.contains(parts[2]), param.contains(parts[3])
        {
            return .trainable(name, method: "VLSM-Adapter")
        }
        if parts.count == 3, parts[0] == "cond_adapter", layer.contains(parts[1]), param.contains(parts[2]) {
            return .trainable(name, method: "VLSM-Adapter")
        }
        for wrapper in ["clipseg.", "model."] where name.hasPrefix(wrapper) {
            let rest = String(name.dropFirst(wrapper.count))
            if baseModelRoots.contains(where: { rest.hasPrefix($0) }) { return .base(rest) }
        }
        if name.hasPrefix("clip.") { return .base(name) }  // the shallow adapter's alias of clipseg.clip
        return .unmapped
    }

    /// The result of mapping a whole state dict.
    public struct Conversion {
        public var trainable: [(name: String, tensor: TorchTensorData)] = []
        public var base: [(name: String, tensor: TorchTensorData)] = []
        /// Source names dropped because another name already gave the same tensor (aliases).
        public var aliases: [String] = []
        /// Source names with no VLSeg name.
        public var unmapped: [String] = []
        /// The methods the trainable tensors belong to.
        public var methods: [String] = []
    }

    /// Maps `tensors` (names without `net.`). Two sources of one VLSeg name must hold equal values
    /// (the alias case); otherwise the second is reported as unmapped rather than silently chosen.
    public static func convert(_ tensors: [(name: String, tensor: TorchTensorData)]) -> Conversion {
        var c = Conversion()
        var seen: [String: (kind: Int, index: Int)] = [:]
        for (name, t) in tensors {
            switch map(name) {
            case let .trainable(target, method):
                guard seen[target] == nil else { c.unmapped.append(name); continue }
                seen[target] = (0, c.trainable.count)
                c.trainable.append((target, t))
                if !c.methods.contains(method) { c.methods.append(method) }
            case let .base(target):
                if let s = seen[target] {
                    let other = s.kind == 0 ? c.trainable[s.index].tensor : c.base[s.index].tensor
                    if sameValues(other, t) { c.aliases.append(name) } else { c.unmapped.append(name) }
                    continue
                }
                seen[target] = (1, c.base.count)
                c.base.append((target, t))
            case .unmapped:
                c.unmapped.append(name)
            }
        }
        return c
    }

    static func sameValues(_ a: TorchTensorData, _ b: TorchTensorData) -> Bool {
        guard a.shape == b.shape else { return false }
        switch (a.values, b.values) {
        case let (.float32(x), .float32(y)):
            return x.withUnsafeBufferPointer { xb in
                y.withUnsafeBufferPointer { yb in zip(xb, yb).allSatisfy { $0.bitPattern == $1.bitPattern } }
            }
        case let (.integers(x), .integers(y)): return x == y
        default: return false
        }
    }
}
