import Foundation
import VLTestSupport
import XCTest

@testable import VLModels
@testable import VLTensor

/// CLIPSeg beyond the fixture's configuration: other sizes, heads, patch sizes, taps, FiLM layer,
/// pooling rule and head, checked for shapes, save/load and gradients against finite differences.
final class CLIPSegConfigurationsTests: XCTestCase {
    /// A deliberately different architecture: simple head, FiLM at the second decoder layer,
    /// first-eos pooling, patch 8, taps [0, 2], 3 text heads.
    static func variantConfig() -> CLIPSegConfig { TestModels.variantConfig() }

    func prompts(_ t: Int = 10) -> TextPrompts {
        TextPrompts(
            inputIDs: [
                [49406, 320, 1125, 49407] + Array(repeating: 49407, count: t - 4),
                [49406, 500, 49407] + Array(repeating: 49407, count: t - 3),
            ],
            attentionMask: [
                [1, 1, 1, 1] + Array(repeating: 0, count: t - 4), [1, 1, 1] + Array(repeating: 0, count: t - 3),
            ])
    }

    func testPoolingRules() {
        let argmaxModel = CLIPSegInitializer.randomModel(config: CLIPSegPreset.tiny.config, seed: 1)
        let eosModel = CLIPSegInitializer.randomModel(config: Self.variantConfig(), seed: 1)
        let p = TextPrompts(
            inputIDs: [[49406, 7, 49407, 49407], [49406, 49407, 3, 49407]],
            attentionMask: [[1, 1, 1, 0], [1, 1, 0, 0]])
        XCTAssertEqual(argmaxModel.poolingPositions(p), [2, 1])
        XCTAssertEqual(eosModel.poolingPositions(p), [2, 1])
        var c = Self.variantConfig()
        c.textConfig.eosTokenId = 7  // a custom end token: first position holding it
        let custom = CLIPSegInitializer.randomModel(config: c, seed: 1)
        XCTAssertEqual(custom.poolingPositions(p), [1, 3])
    }

    func testVariantShapesSaveLoadAndTrimming() throws {
        let config = Self.variantConfig()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-variant-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try CLIPSegInitializer.write(config: config, seed: 3, to: dir)
        let model = try CLIPSegModel.load(directory: dir)
        XCTAssertEqual(model.config, config)
        var g = SplitMix64(seed: 5)
        for size in [32, 48, 24] {  // native grid, larger (positions resized), smaller
            let pixels = Tensor.randomNormal([2, 3, size, size], generator: &g)
            let logits = model(pixels: pixels, text: prompts())
            XCTAssertEqual(logits.shape, [2, size, size])
            XCTAssertTrue(logits.scalars.allSatisfy(\.isFinite))
        }
        // Dropping padding changes nothing (causal text encoder).
        let full = model.conditionalEmbeddings(text: prompts(), trimPadding: false)
        let trimmed = model.conditionalEmbeddings(text: prompts(), trimPadding: true)
        Check.assertClose(trimmed, full.scalars, tolerance: 1e-6)
    }

    func testWholeModelGradientsMatchFiniteDifferences() {
        let model = CLIPSegInitializer.randomModel(config: Self.variantConfig(), seed: 11)
        let names = [
            "decoder.film_mul.weight", "decoder.reduces.0.weight", "decoder.layers.1.mlp.fc1.bias",
            "decoder.transposed_convolution.weight", "clip.vision_model.encoder.layers.0.mlp.fc2.weight",
            "clip.text_model.encoder.layers.1.self_attn.q_proj.weight",
        ]
        var g = SplitMix64(seed: 9)
        let pixels = Tensor.randomNormal([2, 3, 16, 16], generator: &g)
        let target = Tensor(shape: [2, 16, 16], values: (0..<512).map { Float(($0 / 7) % 2) })
        for name in names {
            let original = model.parameters[name]
            // L = sum(logits * w): large, well-conditioned gradients for float32 differences. Through
            // a whole network with ReLU kinks, differences carry ~0.5 % noise; real errors show as O(1).
            Check.gradients([original], eps: 3e-3, tolerance: 1e-2) { xs in
                model.parameters.set(name, xs[0])
                return model(pixels: pixels, text: prompts())
            }
            model.parameters.set(name, original)
        }
        // And the input pixels.
        Check.gradients([pixels], eps: 3e-3, tolerance: 1e-2) { xs in model(pixels: xs[0], text: prompts()) }
        // The loss itself on top (its own gradient is checked in the op tests and against the reference).
        let logits = model(pixels: pixels, text: prompts())
        XCTAssertTrue(
            (binaryCrossEntropyWithLogits(logits, target: target) + softDiceLoss(logits, target: target)).item.isFinite)
    }

    func testLoadErrorsNameTheKeys() throws {
        let config = Self.variantConfig()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-bad-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try CLIPSegInitializer.write(config: config, seed: 3, to: dir)
        // Rewrite the weights with one key missing, one extra, and one mis-shaped.
        let file = try SafeTensorsFile(url: dir.appendingPathComponent("model.safetensors"))
        var w = SafeTensorsWriter()
        for name in file.names where name != "decoder.film_add.bias" {
            w.add(name, try file.tensor(name).copy())
        }
        w.add("decoder.extra.weight", Tensor(zeros: [2]))
        try w.write(to: dir.appendingPathComponent("model.safetensors"))
        XCTAssertThrowsError(try CLIPSegModel.load(directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("missing 1 weight(s): decoder.film_add.bias"), "\(error)")
        }
        var w2 = SafeTensorsWriter()
        for name in file.names { w2.add(name, try file.tensor(name).copy()) }
        w2.add("decoder.extra.weight", Tensor(zeros: [2]))
        try w2.write(to: dir.appendingPathComponent("model.safetensors"))
        XCTAssertThrowsError(try CLIPSegModel.load(directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("unexpected weight(s): decoder.extra.weight"), "\(error)")
        }
        // A config that disagrees with the weights: shape mismatch names the key.
        var wrong = config
        wrong.reduceDim = 15
        wrong.decoderNumAttentionHeads = 5
        try wrong.jsonData().write(to: dir.appendingPathComponent("config.json"))
        try w.write(to: dir.appendingPathComponent("model.safetensors"))
        XCTAssertThrowsError(try CLIPSegModel.load(directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("decoder.film_add.bias") || "\(error)".contains("shape"), "\(error)")
        }
    }

    func testBasePresetHasThePublishedParameterCount() {
        let count = CLIPSegModel.expectedParameters(CLIPSegPreset.base.config).reduce(0) { $0 + $1.shape.reduce(1, *) }
        XCTAssertEqual(count, 150_747_746)
    }
}
