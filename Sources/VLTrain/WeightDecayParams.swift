import Foundation

/// Which trainable tensors AdamW's weight decay applies to (`trainer.weight_decay_params`).
///
/// VLSM-Adapter decays every trainable tensor (AdamW over `parameters()`); TuneVLSeg, when its weight
/// decay is above 0, decays only the weights of linear and convolution layers (and packed attention
/// `*proj_weight`s) and exempts everything else: biases, norm scales, embedding tables and any
/// free-standing learned tensor such as prompt vectors (its `get_optim_groups`). Parameter names here
/// follow the PyTorch state dicts, so the rule reads them the same way.
public enum WeightDecayParams: String, Sendable, Codable, CaseIterable {
    case all
    case linearConv = "linear_conv"

    /// Whether the tensor `name` of `shape` is decayed.
    public func decays(name: String, shape: [Int]) -> Bool {
        switch self {
        case .all: return true
        case .linearConv:
            // Linear weights are [out, in], convolution kernels [out, in, k...]; norm scales are rank 1.
            guard name.hasSuffix("weight"), shape.count >= 2 else { return false }
            // Embedding tables are rank-2 `*embedding.weight` (token and position tables); a patch
            // embedding is a convolution (rank 4) and decays.
            let module = name.split(separator: ".").dropLast().last.map(String.init) ?? ""
            return !(shape.count == 2 && module.contains("embedding"))
        }
    }

    /// The arena ranges decayed under this rule, or nil when every value is (`all`).
    public func decayedRanges(_ arena: ParameterArena) -> [Range<Int>]? {
        guard self != .all else { return nil }
        return arena.slots.filter { decays(name: $0.name, shape: $0.shape) }.map { $0.offset..<($0.offset + $0.count) }
    }
}
