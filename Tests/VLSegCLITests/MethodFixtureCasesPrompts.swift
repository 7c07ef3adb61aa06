// Reference cases of the prompt-tuning methods (TuneVLSeg), with the hyper-parameters of each fixture's
// settings.json. The trainable values are loaded, so init is none.
extension MethodFixtureCases {
    static let prompts: [MethodFixtureCase] = [
        MethodFixtureCase(
            fixture: "coop", tuning: "coop", options: ["tuning.depth=2", "tuning.n_ctx=4", "tuning.init=none"]),
        MethodFixtureCase(
            fixture: "coop_shallow", tuning: "coop", options: ["tuning.depth=1", "tuning.n_ctx=4", "tuning.init=none"]),
        MethodFixtureCase(
            fixture: "cocoop", tuning: "cocoop",
            options: ["tuning.depth=2", "tuning.n_ctx=4", "tuning.hidden=8", "tuning.init=none"]),
        MethodFixtureCase(fixture: "vpt", tuning: "vpt", options: ["tuning.depth=2", "tuning.n_ctx=4"]),
        MethodFixtureCase(
            fixture: "maple", tuning: "maple",
            options: ["tuning.depth=2", "tuning.n_ctx=4", "tuning.hidden=8", "tuning.init=none"]),
        MethodFixtureCase(
            fixture: "shared_separate", tuning: "shared_separate",
            options: ["tuning.depth=2", "tuning.n_ctx=4", "tuning.shared_dim=8"]),
        MethodFixtureCase(
            fixture: "shared_attention", tuning: "shared_attention",
            options: ["tuning.depth=2", "tuning.n_ctx=4", "tuning.heads=4", "tuning.ffn=32"]),
    ]
}
