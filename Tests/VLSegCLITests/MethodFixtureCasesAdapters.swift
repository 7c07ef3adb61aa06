// Reference cases of the adapter and low-rank methods (VLSM-Adapter, LoRA).
extension MethodFixtureCases {
    static let adapters: [MethodFixtureCase] = []
}
