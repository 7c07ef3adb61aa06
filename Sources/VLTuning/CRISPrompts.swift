import VLModels
import VLTensor

/// CoOp / CoCoOp context on CRIS's text encoder, as TuneVLSeg's COOPCRIS applies them.
///
/// Row d of `context_vectors` [D, n, Dt] is depth d's context; CoCoOp adds, per image, the output of
/// meta-net d fed with the spatial mean of C5 (the attention-pool output after ReLU, not
/// normalised): ctx_d(f) = context_vectors[d] + metanet_d(f). Tensors are looked up by name at every
/// pass (the trainer replaces them by views into its arena).
final class CRISContextLearner: CRISTextContext {
    let parameters: ParameterStore
    let depth: Int
    let contextLength: Int
    let compatIndexing: Bool
    let metaNets: Bool

    init(parameters: ParameterStore, depth: Int, contextLength: Int, compatIndexing: Bool, metaNets: Bool) {
        self.parameters = parameters
        self.depth = depth
        self.contextLength = contextLength
        self.compatIndexing = compatIndexing
        self.metaNets = metaNets
    }

    var conditionsOnImages: Bool { metaNets }

    func context(index: Int, batchSize b: Int, c5: Tensor) -> Tensor {
        let ctx = parameters["context_vectors"]
        let n = ctx.shape[1], dt = ctx.shape[2]
        let row = ctx.slice(axis: 0, index..<(index + 1))  // [1, n, Dt]
        guard metaNets else { return row.expanded(to: [b, n, dt]) }
        let f = c5.mean(axes: [2, 3])  // [B, E]
        let shift = projectionMLP(f, parameters, prefix: "meta_nets.\(index)", normBias: false)  // [B, Dt]
        return row + shift.reshaped([b, 1, dt])
    }
}
