// Reference cases of the prompt-tuning methods (TuneVLSeg).
extension MethodFixtureCases {
    static let prompts: [MethodFixtureCase] = []
}
