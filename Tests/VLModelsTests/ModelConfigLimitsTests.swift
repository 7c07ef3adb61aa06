import Foundation
import VLTensor
import XCTest

@testable import VLModels

/// Model configs are checked before anything is allocated: every size is checked on its own with
/// the key named, values that are not whole numbers are refused at decoding with the key named, and
/// a model whose parameters would not fit in memory (or whose count overflows 64 bits) is refused
/// from the config alone, quickly, with the byte figure.
final class ModelConfigLimitsTests: XCTestCase {
    var directories: [URL] = []
    override func tearDown() { for d in directories { try? FileManager.default.removeItem(at: d) } }

    func newDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-limits-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        directories.append(dir)
        return dir
    }

    // MARK: - Writing mutated configs

    /// A place in a config.json: `["text_config", "hidden_size"]`, or `["extract_layers", "1"]` for an element.
    typealias KeyPath = [String]

    /// `base` with the value at `path` replaced by the JSON text `raw` (written as is, so `1e12`
    /// stays a float literal in the file).
    func mutated(_ base: Data, _ changes: [(KeyPath, String)]) throws -> String {
        func set(_ value: Any, at path: ArraySlice<String>, in node: Any) -> Any {
            guard let first = path.first else { return value }
            if var array = node as? [Any], let index = Int(first) {
                array[index] = set(value, at: path.dropFirst(), in: array[index])
                return array
            }
            var object = node as? [String: Any] ?? [:]
            object[first] = set(value, at: path.dropFirst(), in: object[first] ?? [String: Any]())
            return object
        }
        var root: Any = try JSONSerialization.jsonObject(with: base)
        for (i, (path, _)) in changes.enumerated() { root = set("__VALUE_\(i)__", at: path[...], in: root) }
        var text = String(
            decoding: try JSONSerialization.data(withJSONObject: root, options: [.sortedKeys]), as: UTF8.self)
        for (i, (_, raw)) in changes.enumerated() {
            text = text.replacingOccurrences(of: "\"__VALUE_\(i)__\"", with: raw)
        }
        return text
    }

    /// A directory holding only `config.json` (no weights: the checks must come first).
    func configDirectory(_ json: String) throws -> URL {
        let dir = try newDirectory()
        try json.write(to: dir.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        return dir
    }

    static func keyName(_ path: KeyPath) -> String {
        path.reduce("") { out, part in Int(part) != nil ? out + "[\(part)]" : (out.isEmpty ? part : out + "." + part) }
    }

    var clipsegTiny: Data { get throws { try CLIPSegPreset.tiny.config.jsonData() } }
    var crisTiny: Data { get throws { try CRISPreset.crisTiny.config.jsonData() } }

    /// The error of loading `json` as `T`'s config, or a failure when it loads.
    func loadError<T: ModelConfigFile>(
        _ type: T.Type, _ json: String, file: StaticString = #filePath, line: UInt = #line
    ) throws -> String {
        let url = try configDirectory(json).appendingPathComponent("config.json")
        do {
            _ = try T.load(from: url)
            XCTFail("config loaded: \(json)", file: file, line: line)
            return ""
        } catch let error as ModelLoadError {
            return error.description
        }
    }

    // MARK: - Sizes on their own

    static let clipsegSizes: [KeyPath] = [
        ["text_config", "hidden_size"], ["text_config", "intermediate_size"], ["text_config", "num_attention_heads"],
        ["text_config", "num_hidden_layers"], ["text_config", "vocab_size"],
        ["text_config", "max_position_embeddings"],
        ["vision_config", "hidden_size"], ["vision_config", "intermediate_size"],
        ["vision_config", "num_attention_heads"],
        ["vision_config", "num_hidden_layers"], ["vision_config", "image_size"], ["vision_config", "patch_size"],
        ["vision_config", "num_channels"], ["projection_dim"], ["reduce_dim"], ["decoder_num_attention_heads"],
        ["decoder_intermediate_size"],
    ]

    func testCLIPSegNegativeAndZeroSizesNameTheirKey() throws {
        let base = try clipsegTiny
        for path in Self.clipsegSizes {
            for value in [-48, 0] {
                let message = try loadError(CLIPSegConfig.self, mutated(base, [(path, "\(value)")]))
                XCTAssertTrue(
                    message.contains("'\(Self.keyName(path))': must be a positive whole number, got \(value)"), message)
            }
        }
        // Where 0 means something (a layer index), negatives are refused by element.
        for (path, value) in [(["extract_layers", "1"], -1), (["conditional_layer"], -1)] as [(KeyPath, Int)] {
            let message = try loadError(CLIPSegConfig.self, mutated(base, [(path, "\(value)")]))
            XCTAssertTrue(
                message.contains("'\(Self.keyName(path))': must be a non-negative whole number, got \(value)"), message)
        }
    }

    /// The reported case: hidden_size -48 was blamed on num_attention_heads.
    func testNegativeHiddenSizeIsBlamedOnHiddenSize() throws {
        let message = try loadError(
            CLIPSegConfig.self, mutated(clipsegTiny, [(["text_config", "hidden_size"], "-48")]))
        XCTAssertTrue(
            message.hasSuffix("config.json: 'text_config.hidden_size': must be a positive whole number, got -48"),
            message)
        XCTAssertFalse(message.contains("num_attention_heads"), message)
    }

    static let crisSizes: [KeyPath] = [
        ["clip", "embed_dim"], ["clip", "image_resolution"], ["clip", "vision_layers", "0"],
        ["clip", "vision_layers", "3"],
        ["clip", "vision_width"], ["clip", "vision_heads"], ["clip", "context_length"], ["clip", "vocab_size"],
        ["clip", "transformer_width"], ["clip", "transformer_heads"], ["clip", "transformer_layers"],
        ["fpn_in", "1"], ["fpn_out", "0"], ["fpn_out", "2"], ["vis_dim"], ["word_dim"], ["num_layers"], ["num_head"],
        ["dim_ffn"], ["proj_in_dim"], ["proj_kernel_size"], ["img_size"],
    ]

    func testCRISNegativeAndZeroSizesNameTheirKey() throws {
        let base = try crisTiny
        for path in Self.crisSizes {
            for value in [-48, 0] {
                let message = try loadError(CRISConfig.self, mutated(base, [(path, "\(value)")]))
                XCTAssertTrue(
                    message.contains("'\(Self.keyName(path))': must be a positive whole number, got \(value)"), message)
            }
        }
        let message = try loadError(
            CRISConfig.self, mutated(base, [(["coop"], #"{"prompt_depth": -1, "num_context": 4}"#)]))
        XCTAssertTrue(message.contains("'coop.prompt_depth': must be a non-negative whole number, got -1"), message)
    }

    // MARK: - Numbers that are not whole

    func testNonWholeNumbersAreRefusedAtDecodingWithTheKey() throws {
        let cases: [(cris: Bool, KeyPath, String, String)] = [
            (false, ["text_config", "hidden_size"], "4.5", "got 4.5"),
            (false, ["vision_config", "num_hidden_layers"], "1e30", "got 1e+30"),
            (false, ["extract_layers", "1"], "2.5", "got 2.5"),
            (true, ["clip", "transformer_width"], "-1e19", "got -1e+19"),
            (true, ["fpn_out", "0"], "1.5", "got 1.5"),
            (true, ["clip", "vision_layers", "2"], "0.5", "got 0.5"),
        ]
        for (cris, path, raw, shown) in cases {
            let json = try mutated(cris ? crisTiny : clipsegTiny, [(path, raw)])
            let message = cris ? try loadError(CRISConfig.self, json) : try loadError(CLIPSegConfig.self, json)
            XCTAssertTrue(
                message.contains("'\(Self.keyName(path))': must be a whole number within 64 bits, \(shown)"), message)
        }
        // A float literal that is a whole number is that number (then judged by the other checks).
        let url = try configDirectory(mutated(clipsegTiny, [(["text_config", "hidden_size"], "6.4e1")]))
            .appendingPathComponent("config.json")
        XCTAssertEqual(try CLIPSegConfig.load(from: url).textConfig.hiddenSize, 64)
    }

    // MARK: - Too large for memory

    /// Refused from the config alone: quickly, without allocating, with the byte figure and the key
    /// that contributes the most; by every entry point that builds weights from a config.
    func assertRefusedQuickly(
        _ json: String, key: String, cris: Bool, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let dir = try configDirectory(json)
        let configURL = dir.appendingPathComponent("config.json")
        // The exact figure the message must carry (decoding and validation alone allocate nothing).
        let bytes =
            cris
            ? try CRISConfig.load(from: configURL).parameterBytes()
            : try CLIPSegConfig.load(from: configURL).parameterBytes()
        let figure = MachineMemory.format(bytes: Double(try XCTUnwrap(bytes, file: file, line: line)))
        let peakBefore = ProcessMemory.peakRSSMB
        let out = try newDirectory().appendingPathComponent("model")
        let attempts: [(String, () throws -> Void)] = [
            ("ModelDirectory.load", { _ = try ModelDirectory.load(dir) }),
            (
                "load(directory:)",
                {
                    if cris {
                        _ = try CRISModel.load(directory: dir)
                    } else {
                        _ = try CLIPSegModel.load(directory: dir)
                    }
                }
            ),
            (
                "initializer",
                {
                    if cris {
                        try CRISInitializer.write(config: CRISConfig.load(from: configURL), seed: 0, to: out)
                    } else {
                        try CLIPSegInitializer.write(config: CLIPSegConfig.load(from: configURL), seed: 0, to: out)
                    }
                }
            ),
        ]
        for (name, attempt) in attempts {
            let start = Date()
            XCTAssertThrowsError(try attempt(), name, file: file, line: line) { error in
                let message = "\(error)"
                XCTAssertTrue(
                    message.contains(
                        "config.json: '\(key)': the model needs \(figure) for its parameters (float32), more than this machine's"
                    ),
                    "\(name): \(message)", file: file, line: line)
            }
            XCTAssertLessThan(Date().timeIntervalSince(start), 1, name, file: file, line: line)
        }
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: out.path), "the initializer created its directory", file: file,
            line: line)
        XCTAssertLessThan(
            ProcessMemory.peakRSSMB - peakBefore, 100, "memory grew while refusing", file: file, line: line)
    }

    func testCLIPSegHugeLayerCountIsRefusedQuickly() throws {
        let json = try mutated(clipsegTiny, [(["text_config", "num_hidden_layers"], "1e12")])
        try assertRefusedQuickly(json, key: "text_config.num_hidden_layers", cris: false)
        // The count is exact: the tiny model plus 10^12 - 2 more text layers.
        let tiny = CLIPSegPreset.tiny.config
        let layer = CLIPSegModel.expectedParameters(tiny).filter {
            $0.name.hasPrefix("clip.text_model.encoder.layers.0.")
        }
        .reduce(0) { $0 + $1.shape.reduce(1, *) }
        var huge = tiny
        huge.textConfig.numHiddenLayers = 1_000_000_000_000
        XCTAssertEqual(
            try huge.parameterBytes(), try XCTUnwrap(tiny.parameterBytes()) + (1_000_000_000_000 - 2) * layer * 4)
        // The vision tower alike.
        try assertRefusedQuickly(
            mutated(clipsegTiny, [(["vision_config", "num_hidden_layers"], "1e12")]),
            key: "vision_config.num_hidden_layers", cris: false)
    }

    func testCLIPSegHugeHiddenSizeIsRefusedQuickly() throws {
        try assertRefusedQuickly(
            mutated(clipsegTiny, [(["text_config", "hidden_size"], "4e6")]), key: "text_config.hidden_size", cris: false
        )
        try assertRefusedQuickly(
            mutated(clipsegTiny, [(["vision_config", "hidden_size"], "4e6")]), key: "vision_config.hidden_size",
            cris: false)
    }

    func testCRISHugeSizesAreRefusedQuickly() throws {
        try assertRefusedQuickly(
            mutated(crisTiny, [(["clip", "transformer_layers"], "1e12")]), key: "clip.transformer_layers", cris: true)
        try assertRefusedQuickly(
            mutated(crisTiny, [(["clip", "vision_layers", "2"], "1e12")]), key: "clip.vision_layers[2]", cris: true)
        try assertRefusedQuickly(mutated(crisTiny, [(["num_layers"], "1e12")]), key: "num_layers", cris: true)
        try assertRefusedQuickly(mutated(crisTiny, [(["dim_ffn"], "4e9")]), key: "dim_ffn", cris: true)
        // The text and decoder width together (they must be equal), as a hidden size of 4e6: the
        // neck, at that width, holds the most.
        let wide = try mutated(
            crisTiny,
            [
                (["clip", "transformer_width"], "4e6"), (["vis_dim"], "4e6"), (["fpn_out", "1"], "4e6"),
                (["proj_in_dim"], "2e6"),
            ])
        try assertRefusedQuickly(wide, key: "fpn_out[1]", cris: true)
    }

    // MARK: - Overflow

    /// Sizes whose products overflow 64 bits are errors naming a key, never a trap.
    func testOverflowingSizesAreErrorsNamingTheKey() throws {
        let huge = "1099511627776"  // 2^40: hidden x intermediate = 2^80
        let clipseg = try mutated(
            clipsegTiny,
            [
                (["text_config", "hidden_size"], huge), (["text_config", "intermediate_size"], huge),
                (["text_config", "num_attention_heads"], "1"),
            ])
        let dir = try configDirectory(clipseg)
        XCTAssertNil(try CLIPSegConfig.load(from: dir.appendingPathComponent("config.json")).parameterBytes())
        XCTAssertThrowsError(try CLIPSegModel.load(directory: dir)) { error in
            let message = "\(error)"
            XCTAssertTrue(
                message.contains("'text_config.hidden_size': the model needs")
                    || message.contains("'text_config.intermediate_size': the model needs"), message)
            XCTAssertTrue(message.contains("YB for its parameters"), message)
        }
        // Even with no memory limit at all, a count beyond 64 bits is refused.
        XCTAssertThrowsError(try CLIPSegModel.load(directory: dir, memoryLimit: .max)) { error in
            XCTAssertTrue("\(error)".contains("the model needs"), "\(error)")
        }
        // Derived sizes that would overflow while the model is built are refused by validation.
        let grid = try loadError(
            CLIPSegConfig.self, mutated(clipsegTiny, [(["vision_config", "image_size"], "4611686018427387904")]))
        XCTAssertTrue(grid.contains("'vision_config.image_size': the number of patch positions"), grid)
        for (path, raw) in [
            (["proj_kernel_size"], "1099511627777"), (["clip", "vision_width"], "1152921504606846976"),
            (["clip", "image_resolution"], "4611686018427387904"),
        ] as [(KeyPath, String)] {
            let message = try loadError(CRISConfig.self, mutated(crisTiny, [(path, raw)]))
            XCTAssertTrue(
                message.contains("'\(Self.keyName(path))'") && message.contains("overflows 64-bit sizes"), message)
        }
    }

    // MARK: - The memory limit

    func testInjectedLimitRefusesOrAcceptsTheTinyPresets() throws {
        let clipseg = CLIPSegPreset.tiny.config, cris = CRISPreset.crisTiny.config
        let clipsegBytes = try XCTUnwrap(clipseg.parameterBytes()), crisBytes = try XCTUnwrap(cris.parameterBytes())
        XCTAssertGreaterThan(clipsegBytes, 1_000_000)
        for (check, bytes) in [
            ({ try clipseg.checkParameterMemory(file: "config.json", memoryLimit: $0) }, clipsegBytes),
            ({ try cris.checkParameterMemory(file: "config.json", memoryLimit: $0) }, crisBytes),
        ] as [((UInt64) throws -> Void, Int)] {
            XCTAssertThrowsError(try check(1_000_000)) { error in
                let message = "\(error)"
                XCTAssertTrue(message.hasPrefix("config.json: '"), message)
                XCTAssertTrue(
                    message.contains(
                        "the model needs \(MachineMemory.format(bytes: Double(bytes))) for its parameters (float32), more than this machine's 1.0 MB of memory"
                    ), message)
            }
            XCTAssertNoThrow(try check(1 << 40))
            XCTAssertNoThrow(try check(UInt64(bytes)))  // exactly enough
            XCTAssertThrowsError(try check(UInt64(bytes) - 1))
        }
        // Through the loaders and initializers: nothing written when refused; a model when accepted.
        let dir = try newDirectory()
        XCTAssertThrowsError(
            try CLIPSegInitializer.write(
                config: clipseg, seed: 1, to: dir.appendingPathComponent("c"), memoryLimit: 1_000_000))
        XCTAssertThrowsError(
            try CRISInitializer.write(
                config: cris, seed: 1, to: dir.appendingPathComponent("r"), memoryLimit: 1_000_000))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("c").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("r").path))
        try CLIPSegInitializer.write(
            config: clipseg, seed: 1, to: dir.appendingPathComponent("c"), memoryLimit: 1 << 40)
        try CRISInitializer.write(config: cris, seed: 1, to: dir.appendingPathComponent("r"), memoryLimit: 1 << 40)
        for model in ["c", "r"] {
            let path = dir.appendingPathComponent(model)
            XCTAssertThrowsError(try ModelDirectory.load(path, memoryLimit: 1_000_000)) { error in
                XCTAssertTrue("\(error)".contains("more than this machine's 1.0 MB of memory"), "\(error)")
            }
            XCTAssertEqual(
                try ModelDirectory.load(path, memoryLimit: 1 << 40).parameters.parameterCount * 4,
                model == "c" ? clipsegBytes : crisBytes)
        }
        XCTAssertThrowsError(try CLIPSegModel.load(directory: dir.appendingPathComponent("c"), memoryLimit: 1_000_000))
        XCTAssertThrowsError(try CRISModel.load(directory: dir.appendingPathComponent("r"), memoryLimit: 1_000_000))
    }

    // MARK: - The estimate is exact

    /// The byte count equals 4 x the real parameter count (the listing, and for the tiny presets the
    /// tensors of a built model), for every preset and a few other shapes.
    func testEstimateIsTheRealParameterCountTimesFour() throws {
        func listed(_ shapes: [(name: String, shape: [Int])]) -> Int {
            shapes.reduce(0) { $0 + $1.shape.reduce(1, *) } * 4
        }
        XCTAssertEqual(
            try CLIPSegPreset.tiny.config.parameterBytes(),
            CLIPSegInitializer.randomModel(config: CLIPSegPreset.tiny.config, seed: 0).parameters.parameterCount * 4)
        XCTAssertEqual(
            try CRISPreset.crisTiny.config.parameterBytes(),
            CRISInitializer.randomModel(config: CRISPreset.crisTiny.config, seed: 0).parameters.parameterCount * 4)
        var clipsegConfigs = CLIPSegPreset.allCases.map(\.config)
        var plainHead = CLIPSegPreset.small.config
        plainHead.useComplexTransposedConvolution = false
        plainHead.extractLayers = [0, 2, 3, 5]
        plainHead.visionConfig.numChannels = 1
        clipsegConfigs.append(plainHead)
        for config in clipsegConfigs {
            try config.validate(file: "config.json")
            XCTAssertEqual(try config.parameterBytes(), listed(CLIPSegModel.expectedParameters(config)))
        }
        XCTAssertEqual(try CLIPSegPreset.base.config.parameterBytes(), 150_747_746 * 4)
        var crisConfigs = CRISPreset.allCases.map(\.config)
        var deep = CRISPreset.crisTiny.config
        deep.clip.visionLayers = [2, 3, 1, 4]
        deep.numLayers = 3
        deep.clip.transformerLayers = 5
        crisConfigs.append(deep)
        for config in crisConfigs {
            try config.validate(file: "config.json")
            XCTAssertEqual(try config.parameterBytes(), listed(CRISModel.expectedParameters(config)))
        }
        // The listing still has one copy per layer, in checkpoint order, as the model builds them.
        let names = CRISModel.expectedParameters(deep).map(\.name)
        XCTAssertEqual(
            names.filter { $0.hasSuffix(".conv1.weight") && $0.hasPrefix("backbone.visual.layer") }.count, 10)
        XCTAssertEqual(Set(names).count, names.count)
        let model = CRISInitializer.randomModel(config: deep, seed: 0)
        XCTAssertEqual(model.parameters.names, names)
    }

    /// The public count validates first, so a config built in code cannot trap it either.
    func testCountingAnInvalidConfigThrowsNamingTheKey() {
        var clipseg = CLIPSegPreset.tiny.config
        clipseg.visionConfig.numHiddenLayers = -3
        XCTAssertThrowsError(try clipseg.parameterBytes()) {
            XCTAssertTrue("\($0)".contains("'vision_config.num_hidden_layers'"), "\($0)")
        }
        var cris = CRISPreset.crisTiny.config
        cris.clip.visionLayers = [1, 1, 1]
        XCTAssertThrowsError(try cris.checkParameterMemory(file: "config.json")) {
            XCTAssertTrue("\($0)".contains("'clip.vision_layers'"), "\($0)")
        }
        cris.clip.visionLayers = [1, 1, 1, 1]
        cris.clip.visionWidth = Int.max / 16
        XCTAssertThrowsError(try cris.parameterBytes()) {
            XCTAssertTrue("\($0)".contains("'clip.vision_width'"), "\($0)")
        }
    }

    func testByteFormatting() {
        XCTAssertEqual(MachineMemory.format(bytes: 512), "512 B")
        XCTAssertEqual(MachineMemory.format(bytes: 1_000_000), "1.0 MB")
        XCTAssertEqual(MachineMemory.format(bytes: 2.3e12), "2.3 TB")
        XCTAssertEqual(MachineMemory.format(bytes: 5.08e16), "50.8 PB")
        XCTAssertEqual(MachineMemory.format(bytes: 4e30), "4.0e+30 B")
    }
}
