import Foundation
import Synchronization
import VLModels
import VLTensor

/// Errors configuring a tuning method.
public enum TuningError: Error, CustomStringConvertible {
    case unknownMethod(String, available: [String])
    case invalidOption(method: String, key: String, reason: String)
    case unsupportedModel(method: String, architecture: String, supported: [String])

    public var description: String {
        switch self {
        case let .unknownMethod(name, available):
            return "unknown tuning method '\(name)'; available: \(available.joined(separator: ", "))"
        case let .invalidOption(method, key, reason):
            return "tuning '\(method)': option '\(key)': \(reason)"
        case let .unsupportedModel(method, architecture, supported):
            return "tuning '\(method)' is not available for \(architecture) models (\(architecture) supports: \(supported.joined(separator: ", ")))"
        }
    }
}

/// A parameter-efficient tuning method: which named tensors learn, and what it adds to the model.
///
/// A method may add its own tensors to the model's parameter store (adapters, prompts) and hook
/// into documented points of the forward pass; everything else stays frozen. The trainer only
/// sees the trainable tensors by name, never which method runs.
public protocol TuningMethod: AnyObject {
    /// The registered name (`tuning=NAME`).
    var name: String { get }
    /// Prepares the model (adds tensors, installs hooks) and returns the trainable tensor names,
    /// in a fixed order that is identical on every rank.
    func prepare(_ model: SegmentationModel, seed: UInt64) throws -> [String]
    /// True when no trainable tensor of the method acts on the vision tower before the decoder's
    /// taps (tap hooks excepted): the taps are then a fixed function of the image and may be cached.
    var visionIsFrozen: Bool { get }
}

extension TuningMethod {
    public var visionIsFrozen: Bool { false }
}

/// The CLIPSeg a CLIPSeg-only method needs, or an error naming what the other architecture supports.
func requireCLIPSeg(_ model: SegmentationModel, method: String) throws -> CLIPSegModel {
    if let m = model as? CLIPSegModel { return m }
    throw TuningError.unsupportedModel(method: method, architecture: model.architectureName, supported: TuningRegistry.crisMethods)
}

/// Options a method reads from the config (`tuning.*`), as plain values.
public typealias TuningOptions = [String: String]

/// Methods by name: one file per method registers a factory here.
public enum TuningRegistry {
    /// Sendable: the factories are process-wide constants, read from any thread.
    public typealias Factory = @Sendable (TuningOptions) throws -> TuningMethod

    static let baselineFactories: [String: Factory] = [
        "decoder": { _ in DecoderOnlyTuning() },
        "full": { _ in FullFineTuning() },
        "zero_shot": { _ in ZeroShot() },
    ]

    /// Each family of methods contributes its factories from its own file; `register` adds more.
    private static let factories = Mutex<[String: Factory]>(
        baselineFactories.merging(adapterFactories) { $1 }.merging(promptFactories) { $1 })

    public static var names: [String] { factories.withLock { $0.keys.sorted() } }

    /// Methods that run on CRIS (the rest hook into CLIPSeg's ViT towers).
    public static let crisMethods = ["cocoop", "coop", "decoder", "full", "zero_shot"]

    public static func register(_ name: String, factory: @escaping Factory) { factories.withLock { $0[name] = factory } }

    public static func make(_ name: String, options: TuningOptions = [:]) throws -> TuningMethod {
        guard let factory = factories.withLock({ $0[name] }) else { throw TuningError.unknownMethod(name, available: names) }
        return try factory(options)
    }
}

/// Trains only the decoder side: CLIPSeg's decoder (FiLM, reduces, decoder layers, head), or CRIS's
/// neck + decoder + projector; the CLIP encoders stay frozen. What the papers' "end-to-end"
/// baselines actually trained.
public final class DecoderOnlyTuning: TuningMethod {
    public let name = "decoder"
    public var visionIsFrozen: Bool { true }
    public init() {}
    public func prepare(_ model: SegmentationModel, seed: UInt64) throws -> [String] { model.decoderParameterNames }
}

/// Every weight trains (BN statistics stay fixed): the upper bound, whose all-reduce carries the whole model.
public final class FullFineTuning: TuningMethod {
    public let name = "full"
    public init() {}
    public func prepare(_ model: SegmentationModel, seed: UInt64) throws -> [String] { model.learnableParameterNames }
}

/// Nothing trains: evaluate the checkpoint as published.
public final class ZeroShot: TuningMethod {
    public let name = "zero_shot"
    public var visionIsFrozen: Bool { true }
    public init() {}
    public func prepare(_ model: SegmentationModel, seed: UInt64) throws -> [String] { [] }
}
