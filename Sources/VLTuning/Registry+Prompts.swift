// Registration point of the prompt-tuning families (TuneVLSeg's methods).
extension TuningRegistry {
    static let promptFactories: [String: Factory] = [:]
}
