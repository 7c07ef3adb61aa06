import Foundation
import XCTest

@testable import VLModels

/// Reading configs as Hugging Face does: per-tower defaults for keys left out, the legacy
/// `*_config_dict` keys winning over the towers, and the processor file deciding the input size and
/// pixel statistics.
final class ConfigReadingTests: XCTestCase {
    var directories: [URL] = []
    override func tearDown() { for d in directories { try? FileManager.default.removeItem(at: d) } }

    func newDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        directories.append(dir)
        return dir
    }

    func decode(_ json: String) throws -> CLIPSegConfig {
        let dir = try newDirectory()
        let url = dir.appendingPathComponent("config.json")
        try json.write(to: url, atomically: true, encoding: .utf8)
        return try CLIPSegConfig.load(from: url)
    }

    func testKeysLeftOutTakeEachTowersDefaults() throws {
        let c = try decode(
            #"{"text_config": {"hidden_size": 64, "num_attention_heads": 2}, "vision_config": {"patch_size": 16}}"#)
        XCTAssertEqual(c.textConfig.hiddenSize, 64)
        XCTAssertEqual(c.textConfig.intermediateSize, 2048)
        XCTAssertEqual(c.textConfig.numHiddenLayers, 12)
        XCTAssertEqual(c.textConfig.vocabSize, 49408)
        XCTAssertEqual(c.textConfig.maxPositionEmbeddings, 77)
        XCTAssertEqual(c.textConfig.eosTokenId, 49407)
        XCTAssertEqual(c.visionConfig.hiddenSize, 768)
        XCTAssertEqual(c.visionConfig.numAttentionHeads, 12)
        XCTAssertEqual(c.visionConfig.imageSize, 224)
        XCTAssertEqual(c.visionConfig.patchSize, 16)
        XCTAssertEqual(c.extractLayers, [3, 6, 9])
        XCTAssertEqual(c.reduceDim, 64)
        XCTAssertFalse(c.useComplexTransposedConvolution)
        // No towers at all: the defaults of both, vision patch 32.
        let bare = try decode(#"{"model_type": "clipseg"}"#)
        XCTAssertEqual(bare.textConfig, .textDefaults)
        XCTAssertEqual(bare.visionConfig, .visionDefaults)
        XCTAssertEqual(bare.visionConfig.patchSize, 32)
    }

    func testLegacyConfigDictWinsOverTheTower() throws {
        let json = #"""
            {"text_config": {"hidden_size": 1280, "num_attention_heads": 20, "num_hidden_layers": 32, "intermediate_size": 5120, "eos_token_id": 2},
             "text_config_dict": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
             "vision_config": {"hidden_size": 48, "num_attention_heads": 4, "num_hidden_layers": 3, "intermediate_size": 96, "patch_size": 16, "image_size": 64},
             "vision_config_dict": null, "extract_layers": [0, 1, 2]}
            """#
        let c = try decode(json)
        XCTAssertEqual(c.textConfig.hiddenSize, 32)
        XCTAssertEqual(c.textConfig.numHiddenLayers, 2)
        XCTAssertEqual(c.textConfig.intermediateSize, 64)
        // As in transformers, the dict is completed with the tower class's defaults, which also
        // replace the tower's other values.
        XCTAssertEqual(c.textConfig.eosTokenId, 49407)
        XCTAssertEqual(c.visionConfig.hiddenSize, 48)  // a null dict leaves the tower alone
        XCTAssertEqual(c.visionConfig.imageSize, 64)
    }

    func testAMistypedTowerKeyIsNamed() throws {
        XCTAssertThrowsError(try decode(#"{"vision_config": {"hidden_size": "wide"}}"#)) { error in
            XCTAssertTrue("\(error)".contains("vision_config.hidden_size"), "\(error)")
        }
    }

    func writeProcessor(_ body: String, into dir: URL) throws {
        try body.write(
            to: dir.appendingPathComponent(ImagePreprocessing.processorFileName), atomically: true, encoding: .utf8)
    }

    func testProcessorFileDecidesSizeAndStatistics() throws {
        let dir = try newDirectory()
        try CLIPSegInitializer.write(config: CLIPSegPreset.tiny.config, seed: 1, to: dir)
        // No processor file: the vision config's image_size and ImageNet statistics.
        XCTAssertEqual(
            try ImagePreprocessing.of(directory: dir),
            ImagePreprocessing(size: 64, mean: ImagePreprocessing.imageNetMean, std: ImagePreprocessing.imageNetStd))
        try writeProcessor(
            #"{"size": {"height": 96, "width": 96}, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.5, 1.0]}"#,
            into: dir)
        XCTAssertEqual(
            try ImagePreprocessing.of(directory: dir),
            ImagePreprocessing(size: 96, mean: [0.5, 0.5, 0.5], std: [0.25, 0.5, 1.0]))
        try writeProcessor(#"{"size": 80}"#, into: dir)
        XCTAssertEqual(try ImagePreprocessing.of(directory: dir).size, 80)
        try writeProcessor(#"{"size": {"shortest_edge": 112}, "do_normalize": false}"#, into: dir)
        XCTAssertEqual(
            try ImagePreprocessing.of(directory: dir), ImagePreprocessing(size: 112, mean: [0, 0, 0], std: [1, 1, 1]))
        try writeProcessor(#"{"size": {"height": 96, "width": 128}}"#, into: dir)
        XCTAssertThrowsError(try ImagePreprocessing.of(directory: dir)) { error in
            XCTAssertTrue(
                "\(error)".contains("preprocessor_config.json") && "\(error)".contains("'size'")
                    && "\(error)".contains("96x128"), "\(error)")
        }
        try writeProcessor(#"{"size": 96, "image_std": [0.2, 0, 0.2]}"#, into: dir)
        XCTAssertThrowsError(try ImagePreprocessing.of(directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("image_std"), "\(error)")
        }
    }

    /// transformers' ViTImageProcessor rules: defaults for absent keys, and what VLSeg cannot follow
    /// refused naming the key rather than silently run differently.
    func testProcessorFileFollowsTransformersRules() throws {
        let dir = try newDirectory()
        try CLIPSegInitializer.write(config: CLIPSegPreset.tiny.config, seed: 1, to: dir)
        try writeProcessor("{}", into: dir)
        XCTAssertEqual(
            try ImagePreprocessing.of(directory: dir),
            ImagePreprocessing(
                size: 224, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], resample: 2, rescaleFactor: 1.0 / 255))
        try writeProcessor(#"{"size": 64, "resample": 3, "do_rescale": false, "image_std": 0.25}"#, into: dir)
        XCTAssertEqual(
            try ImagePreprocessing.of(directory: dir),
            ImagePreprocessing(
                size: 64, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], resample: 3, rescaleFactor: 1))
        let refused = [
            (
                #"{"resample": 1}"#,
                "'resample': PIL filter 1 is not supported; VLSeg resizes with 2 (bilinear), 3 (bicubic)"
            ),
            (
                #"{"image_processor_type": "CLIPImageProcessor"}"#,
                "'image_processor_type': CLIPImageProcessor: VLSeg applies the rules of ViTImageProcessor"
            ),
            (#"{"do_resize": false}"#, "'do_resize': false: the processor feeds images at their own size"),
            (#"{"rescale_factor": -1}"#, "'rescale_factor': expected a positive number"),
            (#"{"do_normalize": "yes"}"#, "'do_normalize': expected true or false"),
        ]
        for (body, message) in refused {
            try writeProcessor(body, into: dir)
            XCTAssertThrowsError(try ImagePreprocessing.of(directory: dir), body) { error in
                XCTAssertTrue("\(error)".contains("preprocessor_config.json: \(message)"), "\(body): \(error)")
            }
        }
    }

    /// The base preset, like the published checkpoints, declares 352 in a processor file although
    /// its vision config says 224; writing a preset without one removes a stale file.
    func testInitialiserWritesTheProcessorSize() throws {
        let dir = try newDirectory()
        XCTAssertEqual(CLIPSegPreset.base.processorSize, 352)
        XCTAssertEqual(CLIPSegPreset.base.config.visionConfig.imageSize, 224)
        try CLIPSegInitializer.write(config: CLIPSegPreset.tiny.config, seed: 1, to: dir, processorSize: 352)
        let written = try ImagePreprocessing.of(directory: dir)
        XCTAssertEqual(written.size, 352)
        XCTAssertEqual(written.mean, ImagePreprocessing.imageNetMean)
        try CLIPSegInitializer.write(config: CLIPSegPreset.tiny.config, seed: 1, to: dir)
        XCTAssertEqual(try ImagePreprocessing.of(directory: dir).size, 64)
    }
}
