import Foundation
import Synchronization
import VLModels
import VLTensor

/// Errors configuring a tuning method; every option error names the key at fault.
public enum TuningError: Error, CustomStringConvertible {
    case unknownMethod(String, available: [String])
    case invalidOption(method: String, key: String, reason: String)
    case unknownOption(method: String, key: String, options: [String])
    case notAllowed(method: String, key: String, value: String, allowed: [String])
    case unsupportedModel(method: String, architecture: String, supported: [String])

    public var description: String {
        switch self {
        case let .unknownMethod(name, available):
            return "unknown tuning method '\(name)'; available: \(available.joined(separator: ", "))"
        case let .unsupportedModel(method, architecture, supported):
            return
                "tuning '\(method)' is not available for \(architecture) models (\(architecture) supports: \(supported.joined(separator: ", ")))"
        case let .invalidOption(method, key, _), let .unknownOption(method, key, _), let .notAllowed(method, key, _, _):
            return "tuning '\(method)': option '\(key)': \(reason)"
        }
    }

    /// The option at fault, for the option errors.
    public var key: String? {
        switch self {
        case let .invalidOption(_, key, _), let .unknownOption(_, key, _), let .notAllowed(_, key, _, _): return key
        case .unknownMethod, .unsupportedModel: return nil
        }
    }

    /// What is wrong, without the method and key (the config layer prefixes its own `tuning.KEY`).
    public var reason: String {
        switch self {
        case let .invalidOption(_, _, reason): return reason
        case let .unknownOption(method, _, options):
            let known = options.isEmpty ? "it has no options" : "its options: \(options.joined(separator: ", "))"
            return "unknown option of tuning method \(method) (\(known))"
        case let .notAllowed(_, _, value, allowed): return "'\(value)' is not one of \(allowed.joined(separator: ", "))"
        case .unknownMethod, .unsupportedModel: return description
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

/// The error for a method prepared on an architecture it does not declare; the supported list is the
/// registry's, so it cannot drift from the declarations.
func unsupported(_ model: SegmentationModel, method: String) -> TuningError {
    let supported = TuningArchitecture(model).map { TuningMethodRegistry.shared.names(supporting: $0) } ?? []
    return .unsupportedModel(method: method, architecture: model.architectureName, supported: supported)
}

/// Refuses a model whose architecture the method's declaration does not list, before any option is
/// checked against the model (an option error would hide that the method cannot run there at all).
func requireDeclaredArchitecture(_ model: SegmentationModel, method: String) throws {
    let declared = TuningMethodRegistry.shared.schema(named: method)?.architectures ?? []
    guard let architecture = TuningArchitecture(model), declared.contains(architecture) else {
        throw unsupported(model, method: method)
    }
}

/// The CLIPSeg a CLIPSeg-only method needs, or an error naming what the other architecture supports.
func requireCLIPSeg(_ model: SegmentationModel, method: String) throws -> CLIPSegModel {
    if let m = model as? CLIPSegModel { return m }
    throw unsupported(model, method: method)
}

/// The tuning methods by name: each method's file declares its `TuningMethodFamily` (options, presets,
/// architectures, factory) and `builtinFamilies` lists them. The config layer checks `tuning.*` against
/// this registry, and the trainer makes its method here from the checked values.
public final class TuningMethodRegistry: Sendable {
    private let schemas = Mutex<[String: TuningMethodSchema]>([:])

    /// The registry the loader and the trainer use by default, holding the built-in methods.
    public static let shared = TuningMethodRegistry(builtins: true)

    /// Every built-in family, one entry per method file.
    static let builtinFamilies: [TuningMethodFamily] = [
        DecoderOnlyTuning.family, FullFineTuning.family, ZeroShot.family,
        VLSMAdapterTuning.shallowFamily, VLSMAdapterTuning.denseFamily, LoRATuning.family,
        CoOp.family, CoCoOp.family, VPT.family, MaPLe.family, SharedSeparate.family, SharedAttention.family,
    ]

    public init(builtins: Bool = true) {
        if builtins { for family in Self.builtinFamilies { register(family) } }
    }

    /// Adds a family and its presets, replacing any method of the same name.
    public func register(_ family: TuningMethodFamily) {
        schemas.withLock { for s in family.schemas { $0[s.name] = s } }
    }

    public func schema(named name: String) -> TuningMethodSchema? { schemas.withLock { $0[name] } }

    /// Registered names (families and presets), sorted.
    public var names: [String] { schemas.withLock { $0.keys.sorted() } }

    /// Every registered method, sorted by name.
    public var all: [TuningMethodSchema] { schemas.withLock { $0.values.sorted { $0.name < $1.name } } }

    /// The methods that run on `architecture`, sorted.
    public func names(supporting architecture: TuningArchitecture) -> [String] {
        all.filter { $0.architectures.contains(architecture) }.map(\.name)
    }

    /// `options` checked against the method's schema and completed with its defaults.
    public func values(_ name: String, options: [String: ConfigValue] = [:]) throws -> TuningOptionValues {
        guard let schema = schema(named: name) else { throw TuningError.unknownMethod(name, available: names) }
        return try schema.values(options)
    }

    /// The method `name` made from `options` (checked, defaults filled in); not yet prepared on a model.
    public func make(_ name: String, options: [String: ConfigValue] = [:]) throws -> TuningMethod {
        guard let schema = schema(named: name) else { throw TuningError.unknownMethod(name, available: names) }
        return try schema.make(try schema.values(options))
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

    static let family = TuningMethodFamily(
        name: "decoder",
        summary: "only the decoder side trains (CLIPSeg's decoder; CRIS's neck, decoder and projector)",
        architectures: [.clipseg, .cris]
    ) { _ in DecoderOnlyTuning() }
}

/// Every weight trains (BN statistics stay fixed): the upper bound, whose all-reduce carries the whole model.
public final class FullFineTuning: TuningMethod {
    public let name = "full"
    public init() {}
    public func prepare(_ model: SegmentationModel, seed: UInt64) throws -> [String] { model.learnableParameterNames }

    static let family = TuningMethodFamily(
        name: "full", summary: "every weight trains (the upper bound; the all-reduce carries the whole model)",
        architectures: [.clipseg, .cris]
    ) { _ in FullFineTuning() }
}

/// Nothing trains: evaluate the checkpoint as published.
public final class ZeroShot: TuningMethod {
    public let name = "zero_shot"
    public var visionIsFrozen: Bool { true }
    public init() {}
    public func prepare(_ model: SegmentationModel, seed: UInt64) throws -> [String] { [] }

    static let family = TuningMethodFamily(
        name: "zero_shot", summary: "nothing trains: evaluate the pretrained model as it is",
        architectures: [.clipseg, .cris]
    ) { _ in ZeroShot() }
}
