/// Counter-based randomness keyed by (seed, epoch, sample index, purpose).
///
/// A sample's augmentation and prompt choice come from a generator derived from its own key, not
/// from a stream shared by a rank or a loader thread, so they are identical whatever the rank, the
/// world size, the worker that decodes it, or whether the run was resumed.
public struct CounterRandom: RandomNumberGenerator, Sendable {
    /// What the numbers are for; each purpose gets an independent stream.
    public enum Purpose: UInt64, Sendable {
        case permutation = 1, prompt = 2, augmentation = 3, demoData = 4, classSampling = 5, initialization = 6
        /// The generated scene (source) and shifted medical (target) domains of the demo backbone.
        case sceneData = 7, shiftedDomainData = 8
    }

    private var state: UInt64
    private var counter: UInt64 = 0

    public init(seed: UInt64, epoch: UInt64 = 0, index: UInt64 = 0, purpose: Purpose) {
        var h = Self.mix(seed ^ 0x243F_6A88_85A3_08D3)
        h = Self.mix(h ^ (epoch &* 0x9E37_79B9_7F4A_7C15))
        h = Self.mix(h ^ (index &* 0xC2B2_AE3D_27D4_EB4F))
        h = Self.mix(h ^ (purpose.rawValue &* 0x1656_67B1_9E37_79F9))
        state = h
    }

    /// The SplitMix64 finaliser: a bijective 64-bit mixer.
    @inline(__always)
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func next() -> UInt64 {
        counter &+= 1
        return Self.mix(state &+ counter &* 0xD1B5_4A32_D192_ED03)
    }

    /// Uniform in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Uniform in [low, high).
    public mutating func uniform(_ low: Double, _ high: Double) -> Double { low + (high - low) * unit() }

    /// True with probability p.
    public mutating func bernoulli(_ p: Double) -> Bool { unit() < p }
}
