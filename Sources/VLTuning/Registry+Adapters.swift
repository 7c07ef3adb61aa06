// Registration point of the adapter and low-rank families (VLSM-Adapter, LoRA).
extension TuningRegistry {
    static let adapterFactories: [String: Factory] = vlsmAdapterFactories.merging(loraFactories) { $1 }
}
