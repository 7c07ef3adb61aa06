// Reference cases of the adapter and low-rank methods (VLSM-Adapter, LoRA), with the hyper-parameters
// of each fixture's settings.json.
extension MethodFixtureCases {
    static let adapters: [MethodFixtureCase] = [
        MethodFixtureCase(fixture: "vlsm_dense_vl", tuning: "vlsm_dense_vl", options: ["tuning.bottleneck=8"]),
        MethodFixtureCase(
            fixture: "vlsm_dense_vlc", tuning: "vlsm_dense_vlc",
            options: ["tuning.bottleneck=8", "tuning.cond_bottleneck=8"]),
        MethodFixtureCase(
            fixture: "vlsm_shallow_vc", tuning: "vlsm_shallow",
            options: ["tuning.parts=vc", "tuning.bottleneck=8", "tuning.cond_bottleneck=8"]),
        MethodFixtureCase(fixture: "lora", tuning: "lora", options: ["tuning.rank=4", "tuning.alpha=8"]),
    ]
}
