import VLModels
import VLTensor

/// TuneVLSeg's additive decoder head (`tuning.new_last_layer`): a second, trainable way from the
/// decoder's last features to the logits, mixed with the frozen model's logits by a learnable ratio r:
///
///     logits = (1 - r) * L + r * head(F)
///
/// On CLIPSeg, F is the decoder's last tokens as a map [B, R, gh, gw] (CLS and vision prompts dropped:
/// the input of the transposed convolution), L the frozen head's logits [B, 1, H, W], and
/// head(F) = Conv5x5(Upsample_bilinear(F to H x W)). On CRIS, F is the decoder's output [B, 2·C, h, w]
/// (C = the projector's input width), L the bicubic-upsampled projector output, and
/// head(F) = Conv5x5(Upsample_bilinear(Conv1x1(F, 64 channels, no bias) to H x W)). Each 5x5 convolution
/// pads 2 by replicating the border ("same", replicate).
///
/// Tensors carry TuneVLSeg's state-dict names: `additive_decoder_layer.{i}.weight` / `.bias` (i the
/// layer's index in its `nn.Sequential`, the upsampling counting as one) and `residual_ratio` [1].
/// Initialisation as PyTorch's `Conv2d` default (weight and bias U(±1/√fan_in), fan_in = in channels ·
/// kernel area) and r = 0.5, as TuneVLSeg's configs. On CLIPSeg upstream upsamples by the patch size;
/// the frozen head's output is gh·patch x gw·patch, so resizing to its size is the same interpolation
/// (align_corners false, exact integer scale).
struct AdditiveDecoderHead {
    /// Channels of F.
    let featureWidth: Int
    /// CRIS's 1x1 reduction width (64 upstream), nil on CLIPSeg.
    let reduction: Int?

    static let ratioName = "residual_ratio"
    /// TuneVLSeg's `new_last_layer_kernel_size` (5 in every config it ships).
    static let kernel = 5
    /// TuneVLSeg's `residual_ratio` initial value.
    static let initialRatio: Float = 0.5
    /// TuneVLSeg's CRIS head width before the upsampling.
    static let crisReduction = 64

    static func clipseg(reduceDim: Int) -> AdditiveDecoderHead {
        AdditiveDecoderHead(featureWidth: reduceDim, reduction: nil)
    }

    static func cris(_ config: CRISConfig) -> AdditiveDecoderHead {
        AdditiveDecoderHead(featureWidth: 2 * config.projInDim, reduction: crisReduction)
    }

    /// Sequential index of the 5x5 convolution (after the optional 1x1 and the upsampling).
    private var convIndex: Int { reduction == nil ? 1 : 2 }
    var reductionName: String { "additive_decoder_layer.0.weight" }
    var weightName: String { "additive_decoder_layer.\(convIndex).weight" }
    var biasName: String { "additive_decoder_layer.\(convIndex).bias" }

    /// The head's tensors, in checkpoint order.
    var shapes: [(name: String, shape: [Int])] {
        let k = Self.kernel
        let convIn = reduction ?? featureWidth
        let first: [(name: String, shape: [Int])] = reduction.map { [(reductionName, [$0, featureWidth, 1, 1])] } ?? []
        return first + [(weightName, [1, convIn, k, k]), (biasName, [1]), (Self.ratioName, [1])]
    }

    func contains(_ name: String) -> Bool { shapes.contains { $0.name == name } }

    /// The initial value of one of `shapes`' tensors.
    func initialValue(_ name: String, shape: [Int], init rng: LearnerInit) -> Tensor {
        if name == Self.ratioName { return Tensor(filling: Self.initialRatio, shape: shape) }
        if name == reductionName { return rng.linearDefault(name, shape, fanIn: featureWidth) }
        // Conv2d's default: kaiming_uniform(a = √5) = U(±1/√fan_in) for the weight, the same bound for the bias.
        return rng.linearDefault(name, shape, fanIn: (reduction ?? featureWidth) * Self.kernel * Self.kernel)
    }

    /// The mixed logits [B, 1, H, W] from the frozen model's `logits` and the decoder `features`.
    func apply(logits: Tensor, features: Tensor, parameters p: ParameterStore) -> Tensor {
        let h = logits.shape[2], w = logits.shape[3]
        let reduced = reduction == nil ? features : conv2d(features, weight: p[reductionName])
        let up = reduced.resized(to: (height: h, width: w), mode: .bilinear, alignCorners: false)
        let head = conv2d(replicatePadded(up, Self.kernel / 2), weight: p[weightName], bias: p[biasName])
        let ratio = p[Self.ratioName].reshaped([1, 1, 1, 1])
        return (ratio.scaled(-1) + 1) * logits + ratio * head
    }
}

/// x [B, C, H, W] padded by `pad` on every side with copies of its border rows and columns
/// (PyTorch's `padding_mode="replicate"`), from slices, broadcasts and concatenation, so the gradient
/// of every copy flows back to the border it came from.
func replicatePadded(_ x: Tensor, _ pad: Int) -> Tensor {
    guard pad > 0 else { return x }
    let b = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    let top = x.slice(axis: 2, 0..<1).expanded(to: [b, c, pad, w])
    let bottom = x.slice(axis: 2, (h - 1)..<h).expanded(to: [b, c, pad, w])
    let rows = concat([top, x, bottom], axis: 2)
    let hp = h + 2 * pad
    let left = rows.slice(axis: 3, 0..<1).expanded(to: [b, c, hp, pad])
    let right = rows.slice(axis: 3, (w - 1)..<w).expanded(to: [b, c, hp, pad])
    return concat([left, rows, right], axis: 3)
}
