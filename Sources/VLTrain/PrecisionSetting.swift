import Foundation
import VLTensor

/// `trainer.precision`: the matrix products' input format as the config asks for it.
///
/// Both papers train with PyTorch's `16-mixed` (float16 autocast on a GPU). VLSeg's nearest CPU form is
/// bf16 products with float32 sums, which needs AVX512_BF16; `bf16_if_available` asks for it where the CPU
/// has it and runs float32 elsewhere, saying so once at the start of training, so one experiment config
/// serves every machine. `bf16` insists (an error on a CPU without it); `fp32` never uses it.
public enum PrecisionSetting: String, Sendable, Codable, CaseIterable {
    case fp32, bf16
    case bf16IfAvailable = "bf16_if_available"

    /// The precision to run and, for a fallback, the line that says so. `bf16Unavailable` is why bf16
    /// cannot run here (`MatmulPrecision.bf16Unavailable`), nil when it can.
    public func resolve(bf16Unavailable: String?) -> (precision: MatmulPrecision, note: String?) {
        switch self {
        case .fp32: return (.fp32, nil)
        case .bf16: return (.bf16, nil)
        case .bf16IfAvailable:
            guard let reason = bf16Unavailable else { return (.bf16, nil) }
            return (
                .fp32,
                "precision: trainer.precision=bf16_if_available runs float32 here (\(reason)); the papers' 16-mixed has no closer form on this CPU"
            )
        }
    }
}
