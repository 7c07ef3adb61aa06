// Registration point of the prompt-tuning families (TuneVLSeg's methods). `vpt_shallow` and `vpt_deep`
// are config presets of `vpt` (family vpt, depth 1 / 10).
extension TuningRegistry {
    static let promptFactories: [String: Factory] = [
        CoOp.methodName: { try CoOp(options: $0) },
        CoCoOp.methodName: { try CoCoOp(options: $0) },
        VPT.methodName: { try VPT(options: $0) },
        MaPLe.methodName: { try MaPLe(options: $0) },
        SharedSeparate.methodName: { try SharedSeparate(options: $0) },
        SharedAttention.methodName: { try SharedAttention(options: $0) },
    ]
}
