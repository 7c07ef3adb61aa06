import XCTest

@testable import VLModels
@testable import VLTuning

final class RegistryTests: XCTestCase {
    func testBaselinesAndUnknownNames() throws {
        let model = CLIPSegInitializer.randomModel(config: CLIPSegPreset.tiny.config, seed: 0)
        XCTAssertEqual(
            try TuningMethodRegistry.shared.make("decoder").prepare(model, seed: 0), model.decoderParameterNames)
        XCTAssertEqual(
            try TuningMethodRegistry.shared.make("full").prepare(model, seed: 0).count, model.parameters.names.count)
        XCTAssertEqual(try TuningMethodRegistry.shared.make("zero_shot").prepare(model, seed: 0), [])
        XCTAssertThrowsError(try TuningMethodRegistry.shared.make("nope")) {
            XCTAssertTrue("\($0)".contains("available"))
        }
    }

    func testBasePresetDecoderCount() throws {
        let config = CLIPSegPreset.base.config
        let count = CLIPSegModel.expectedParameters(config).filter { $0.name.hasPrefix("decoder.") }.reduce(0) {
            $0 + $1.shape.reduce(1, *)
        }
        XCTAssertEqual(count, 1_127_009)
    }
}

/// What the registry says about each method against what the method does.
final class RegistryDeclarationTests: XCTestCase {
    /// Every method prepares on the architectures it declares (or fails for another reason, e.g. a preset
    /// too deep for a tiny model), and refuses the others with the registry's list of what they support.
    func testDeclaredArchitecturesAreTheOnesThatRun() throws {
        let registry = TuningMethodRegistry.shared
        let models: [(TuningArchitecture, () -> SegmentationModel)] = [
            (.clipseg, { CLIPSegInitializer.randomModel(config: CLIPSegPreset.tiny.config, seed: 1) }),
            (.cris, { CRISInitializer.randomModel(config: CRISPreset.crisTiny.config, seed: 1) }),
        ]
        for schema in registry.all {
            for (architecture, model) in models {
                let m = model()
                XCTAssertEqual(TuningArchitecture(m), architecture)
                do {
                    _ = try registry.make(schema.name).prepare(m, seed: 0)
                    XCTAssertTrue(schema.architectures.contains(architecture), "\(schema.name) ran on \(architecture)")
                } catch let TuningError.unsupportedModel(method, name, supported) {
                    XCTAssertFalse(
                        schema.architectures.contains(architecture), "\(schema.name) refused \(architecture)")
                    XCTAssertEqual(method, schema.family == "vpt" ? "vpt" : schema.name)
                    XCTAssertEqual(name, architecture.rawValue)
                    XCTAssertEqual(supported, registry.names(supporting: architecture))
                } catch {
                    XCTAssertTrue(
                        schema.architectures.contains(architecture), "\(schema.name) on \(architecture): \(error)")
                }
            }
        }
    }

    /// Option errors name the method, the key and the reason, whichever way the value arrives.
    func testOptionErrorsNameTheKeyAndTheReason() {
        func message(_ name: String, _ options: [String: ConfigValue]) -> String {
            do {
                _ = try TuningMethodRegistry.shared.make(name, options: options)
                return "no error"
            } catch { return "\(error)" }
        }
        XCTAssertEqual(
            message("coop", ["depht": 2]),
            "tuning 'coop': option 'depht': unknown option of tuning method coop (its options: depth, n_ctx, init, new_last_layer, cris_compat_indexing)"
        )
        XCTAssertEqual(
            message("decoder", ["depth": 2]),
            "tuning 'decoder': option 'depth': unknown option of tuning method decoder (it has no options)")
        XCTAssertEqual(
            message("cocoop", ["hidden": "wide"]), "tuning 'cocoop': option 'hidden': expected an integer, found wide")
        XCTAssertEqual(
            message("coop", ["cris_compat_indexing": "maybe"]),
            "tuning 'coop': option 'cris_compat_indexing': expected true or false, found maybe")
        XCTAssertEqual(
            message("lora", ["alpha": .double(.infinity)]),
            "tuning 'lora': option 'alpha': expected a finite number, found inf")
        XCTAssertEqual(message("lora", ["towers": []]), "tuning 'lora': option 'towers': must name at least one")
        XCTAssertEqual(
            message("lora", ["targets": ["fc1", "fc1"]]), "tuning 'lora': option 'targets': repeats an entry")
        XCTAssertEqual(message("maple", ["hidden": 0]), "tuning 'maple': option 'hidden': must be at least 1, found 0")
        XCTAssertTrue(
            message("nope", [:]).hasPrefix("unknown tuning method 'nope'; available: cocoop, coop, decoder"),
            message("nope", [:]))
    }
}
