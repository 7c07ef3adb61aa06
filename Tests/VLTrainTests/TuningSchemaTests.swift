import Foundation
import VLTuning
import XCTest

@testable import VLTrain

/// The tuning methods' declarations (VLTuning's registry) against everything that repeats them: the YAML
/// of configs/tuning, the option tables of docs/methods.md, and the config's checks.
final class TuningSchemaTests: XCTestCase {
    static let tuningDir = ConfigTests.configDir.appendingPathComponent("tuning")

    /// What a configs/tuning file sets that its method's registered schema does not say: a key the method
    /// does not have, or a value other than the default (for a preset, the default is the preset's value).
    static func yamlMismatches(_ text: String, file: String, registry: TuningMethodRegistry = .shared) throws
        -> [String]
    {
        let node = try ConfigYAML.parse(text, source: .file(file))
        guard let method = node["method"]?.scalarText, let schema = registry.schema(named: method) else {
            return ["\(file): names no registered method"]
        }
        var mismatches: [String] = []
        for (key, child) in node.pairs ?? [] where key != "method" && key != "defaults" {
            guard let option = schema.option(key) else {
                mismatches.append("\(file): '\(key)' is not an option of \(method)")
                continue
            }
            let value = try TuningConfig.checked(child, option, method: method)
            if value != option.defaultValue {
                mismatches.append("\(file): \(key) is \(value), but \(method) declares \(option.defaultValue)")
            }
        }
        return mismatches
    }

    func tuningFiles() throws -> [URL] {
        try FileManager.default.contentsOfDirectory(at: Self.tuningDir, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "yaml" }.sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    func testEveryTuningYAMLRepeatsItsMethodsDefaults() throws {
        let files = try tuningFiles()
        XCTAssertEqual(files.count, TuningMethodRegistry.shared.names.count)
        for url in files {
            let text = try String(contentsOf: url, encoding: .utf8)
            XCTAssertEqual(try Self.yamlMismatches(text, file: "configs/tuning/\(url.lastPathComponent)"), [])
        }
        // One file per registered method (families and presets), named after it.
        XCTAssertEqual(files.map { $0.deletingPathExtension().lastPathComponent }, TuningMethodRegistry.shared.names)
    }

    func testAYAMLThatDisagreesWithItsMethodFails() throws {
        XCTAssertEqual(
            try Self.yamlMismatches("method: maple\ndepth: 1\nhidden: 32\n", file: "maple.yaml"),
            ["maple.yaml: hidden is 32, but maple declares 64"])
        // A preset's defining value is its own default, not the family's.
        XCTAssertEqual(try Self.yamlMismatches("method: vlsm_dense_vl\nparts: vl\n", file: "a.yaml"), [])
        XCTAssertEqual(
            try Self.yamlMismatches("method: vlsm_dense_vl\nparts: v\n", file: "b.yaml"),
            ["b.yaml: parts is v, but vlsm_dense_vl declares vl"])
        XCTAssertEqual(
            try Self.yamlMismatches("method: vpt_deep\ndepth: 1\n", file: "c.yaml"),
            ["c.yaml: depth is 1, but vpt_deep declares 10"])
        XCTAssertEqual(
            try Self.yamlMismatches("method: lora\nalpha: 16\ntargets: [q_proj, v_proj]\n", file: "d.yaml"), [])
        XCTAssertEqual(
            try Self.yamlMismatches("method: coop\nrank: 4\n", file: "e.yaml"),
            ["e.yaml: 'rank' is not an option of coop"])
    }

    /// Every default and every preset value passes its own option's checks, and presets only set options
    /// their family declares.
    func testDefaultsAndPresetValuesAreValid() throws {
        let registry = TuningMethodRegistry.shared
        for schema in registry.all {
            let values = try registry.values(schema.name)
            for option in schema.options {
                XCTAssertEqual(
                    try option.validated(option.defaultValue, method: schema.name), option.defaultValue,
                    "\(schema.name).\(option.name)")
                XCTAssertEqual(values[option.name], option.defaultValue)
            }
            let family = try XCTUnwrap(registry.schema(named: schema.family))
            for (key, value) in schema.presetValues {
                XCTAssertNotNil(family.option(key), "\(schema.name) sets \(key), which \(family.name) does not declare")
                XCTAssertEqual(schema.option(key)?.defaultValue, value, schema.name)
            }
            XCTAssertEqual(schema.isPreset, !schema.presetValues.isEmpty, schema.name)
        }
        XCTAssertEqual(registry.schema(named: "vlsm_dense_vlc")?.presetValues, ["parts": "vlc"])
        XCTAssertEqual(registry.schema(named: "vpt_deep")?.option("depth")?.defaultValue, 10)
        XCTAssertEqual(registry.names(supporting: .cris), ["cocoop", "coop", "decoder", "full", "zero_shot"])
    }

    /// docs/methods.md embeds `vlseg config list --markdown`; regenerate the block when this fails.
    func testTheDocsEmbedTheGeneratedOptionTables() throws {
        let docs = try String(
            contentsOf: ConfigTests.repoRoot.appendingPathComponent("docs/methods.md"), encoding: .utf8)
        let block = try XCTUnwrap(TuningMethodReference.embedded(in: docs), "docs/methods.md has no generated block")
        XCTAssertEqual(block, TuningMethodReference.markdown())
    }

    /// n_ctx = 0 is refused by the config with the registry's own reason, so `vlseg config validate` and
    /// the methods agree; the smallest context is accepted.
    func testNoPromptTokensIsRefusedByTheConfigAsByTheMethod() throws {
        let loader = ConfigLoader(configDir: ConfigTests.configDir, environment: ["HOME": "/home/tester"])
        for method in ["coop", "cocoop", "vpt", "vpt_deep", "maple", "shared_separate", "shared_attention"] {
            do {
                _ = try loader.load(overrides: ["tuning=\(method)", "tuning.n_ctx=0"])
                XCTFail("\(method): n_ctx 0 accepted")
            } catch let e as ConfigError {
                XCTAssertEqual(e.kind, .invalidValue)
                XCTAssertEqual(e.path, "tuning.n_ctx")
                XCTAssertEqual(e.source, .override("tuning.n_ctx=0"))
                XCTAssertEqual(e.message, "must be at least 1, found 0")
                XCTAssertThrowsError(try TuningMethodRegistry.shared.make(method, options: ["n_ctx": 0])) { error in
                    XCTAssertEqual((error as? TuningError)?.reason, e.message)
                }
            }
            let config = try loader.load(overrides: ["tuning=\(method)", "tuning.n_ctx=1"]).config
            XCTAssertEqual(try config.tuning.int("n_ctx"), 1)
            XCTAssertNoThrow(try RunSetup.method(config.tuning), method)
        }
    }

    /// The config hands the method typed values: what the method reads is what the config shows.
    func testTheMethodIsMadeFromTheConfigsTypedValues() throws {
        let loader = ConfigLoader(configDir: ConfigTests.configDir, environment: ["HOME": "/home/tester"])
        let lora = try loader.load(overrides: ["tuning=lora", "tuning.rank=4", "tuning.alpha=8", "tuning.towers=text"])
            .config
        let method = try XCTUnwrap(try RunSetup.method(lora.tuning) as? LoRATuning)
        XCTAssertEqual([method.rank, Int(method.alpha)], [4, 8])
        XCTAssertEqual(method.targets, ["q_proj", "v_proj"])
        XCTAssertEqual(method.towers, [.text])
        let dense = try loader.load(overrides: ["tuning=vlsm_dense_vlc", "tuning.bottleneck=8"]).config
        let adapter = try XCTUnwrap(try RunSetup.method(dense.tuning) as? VLSMAdapterTuning)
        XCTAssertEqual([adapter.name, adapter.parts], ["vlsm_dense_vlc", "vlc"])
        XCTAssertEqual([adapter.bottleneck, adapter.condBottleneck], [8, 256])
        // A null option is the declared default, as for an absent one.
        let deep = try loader.load(overrides: ["tuning=vpt_deep", "tuning.depth=null"]).config
        XCTAssertEqual((try RunSetup.method(deep.tuning) as? PromptLearner)?.depth, 10)
    }
}
