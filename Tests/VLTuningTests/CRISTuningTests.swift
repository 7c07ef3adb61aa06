import Foundation
import VLTestSupport
import XCTest

@testable import VLModels
@testable import VLTensor
@testable import VLTuning

/// Tuning CRIS: which methods run, what they train (full-size counts), CoOp/CoCoOp through the
/// registry against the reference fixture, and finite-difference gradients of the CoCoOp meta-nets.
final class CRISTuningTests: XCTestCase {
    static var fixture: URL { get throws { try Fixtures.crisTiny() } }

    func fixtureModel() throws -> (CRISModel, SafeTensorsFile, TextPrompts) {
        let model = try CRISModel.load(directory: Self.fixture)
        let ref = try SafeTensorsFile(url: Self.fixture.appendingPathComponent("reference.safetensors"))
        return (model, ref, try TestModels.prompts(ref))
    }

    /// The published RN50 sizes, without building weights: full = 146,849,122, decoder side = neck +
    /// decoder + projector.
    func testFullSizeCounts() throws {
        let config = CRISPreset.crisBase.config
        let shapes = CRISModel.expectedParameters(config)
        func count(_ filter: (String) -> Bool) -> Int {
            shapes.filter { filter($0.name) && !isBatchNormBuffer($0.name) }.reduce(0) { $0 + $1.shape.reduce(1, *) }
        }
        XCTAssertEqual(count { _ in true }, 146_849_122)
        XCTAssertEqual(count { $0.hasPrefix("backbone.") && !$0.hasPrefix("backbone.visual.") }, 63_690_241)
        XCTAssertEqual(count { $0.hasPrefix("backbone.visual.") }, 40_416_096)
        XCTAssertEqual(count { $0.hasPrefix("neck.") }, 24_142_336)
        XCTAssertEqual(count { $0.hasPrefix("decoder.") }, 12_631_552)
        XCTAssertEqual(count { $0.hasPrefix("proj.") }, 5_968_897)
        // The names and shapes are the published state dict's (its 662 keys less the BN counters).
        let keys = try String(contentsOf: Self.fixture.appendingPathComponent("full_rn50_keys.txt"), encoding: .utf8)
            .split(separator: "\n").map { $0.split(separator: "\t") }.filter { !$0[0].hasSuffix("num_batches_tracked") }
        XCTAssertEqual(shapes.map(\.name), keys.map { String($0[0]) })
        XCTAssertEqual(shapes.map { "\($0.shape)" }, keys.map { String($0[1]) })
    }

    func testWhichMethodsRunOnCRIS() throws {
        let model = CRISInitializer.randomModel(config: CRISPreset.crisTiny.config, seed: 1)
        XCTAssertEqual(
            try TuningMethodRegistry.shared.make("full").prepare(model, seed: 0).count,
            model.learnableParameterNames.count)
        XCTAssertFalse(
            try TuningMethodRegistry.shared.make("full").prepare(model, seed: 0).contains {
                $0.hasSuffix("running_mean")
            })
        let decoder = try TuningMethodRegistry.shared.make("decoder").prepare(model, seed: 0)
        XCTAssertTrue(decoder.allSatisfy { $0.hasPrefix("neck.") || $0.hasPrefix("decoder.") || $0.hasPrefix("proj.") })
        XCTAssertEqual(try TuningMethodRegistry.shared.make("zero_shot").prepare(model, seed: 0), [])
        for name in ["vpt", "maple", "lora", "vlsm_dense", "shared_attention"]
        where TuningMethodRegistry.shared.names.contains(name) {
            XCTAssertThrowsError(try TuningMethodRegistry.shared.make(name).prepare(model, seed: 0), name) { error in
                XCTAssertTrue("\(error)".contains("not available for CRIS"), "\(error)")
            }
        }
        XCTAssertThrowsError(try TuningMethodRegistry.shared.make("coop", options: ["cris_compat_indexing": "maybe"]))
    }

    /// CoOp from the registry, initialised from "a photo of a" like every TuneVLSeg CRIS config, and
    /// with the fixture's deeper rows: the reference logits for both indexings.
    func testCoOpThroughTheRegistryMatchesTheReference() throws {
        for (variant, compat) in [("intended", false), ("quirky", true)] {
            let (model, ref, prompts) = try fixtureModel()
            let method = try TuningMethodRegistry.shared.make(
                "coop",
                options: [
                    "depth": 2, "n_ctx": 4, "init": "a photo of a",
                    "cris_compat_indexing": .bool(compat),
                ])
            let names = try method.prepare(model, seed: 3)
            XCTAssertEqual(names, ["context_vectors"])
            let expected = try ref.tensor("coop.context_vectors")
            let ctx = model.parameters["context_vectors"]
            XCTAssertEqual(ctx.shape, [2, 4, 32])
            // Row 0 = token embeddings of the phrase (exactly), as the reference initialised it.
            XCTAssertEqual(Array(ctx.scalars[0..<128]), Array(expected.scalars[0..<128]))
            model.parameters.set("context_vectors", expected.copy())
            let pixels = try ref.tensor("pixel_values")
            let logits = GradMode.withoutGradients { model(pixels: pixels, text: prompts) }
            let reference = try ref.tensor("coop.\(variant).logits")
            let worst = zip(logits.scalars, reference.scalars).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(worst, 1e-4, "\(variant): max |diff| \(worst)")
        }
    }

    /// CoCoOp on CRIS: the meta-nets read mean(C5); with zero meta-net output it is CoOp; gradients of
    /// every tensor agree with finite differences.
    func testCoCoOpOnCRIS() throws {
        let config = CRISPreset.crisTiny.config
        let model = CRISInitializer.randomModel(config: config, seed: 5)
        let method = try TuningMethodRegistry.shared.make("cocoop", options: ["depth": 2, "n_ctx": 3])
        let names = try method.prepare(model, seed: 9)
        XCTAssertEqual(names.first, "context_vectors")
        XCTAssertEqual(model.parameters["meta_nets.0.0.weight"].shape, [64, config.clip.embedDim])
        XCTAssertEqual(model.parameters["meta_nets.1.2.weight"].shape, [config.clip.transformerWidth, 64])
        XCTAssertTrue(model.textDependsOnImages)
        var g = SplitMix64(seed: 2)
        let pixels = Tensor.randomNormal([2, 3, 64, 64], generator: &g)
        let e = try PromptMethodTests.loadedTokenizer.get().encodeBatch(
            ["a polyp", "left ventricle"], padding: .longest(max: 77))
        let prompts = TextPrompts(inputIDs: e.map(\.inputIDs), attentionMask: e.map(\.attentionMask))
        let visual = GradMode.withoutGradients { model.encodeImage(pixels) }
        let tokens = GradMode.withoutGradients { model.tokenEmbeddings(prompts, length: prompts.inputIDs[0].count) }
        for name in names {
            let original = model.parameters[name]
            Check.gradients([original.copy()], eps: 1e-2, tolerance: 2e-2, samples: 12) { xs in
                model.parameters.set(name, xs[0])
                return model.segment(visual: visual, tokenEmbeddings: tokens, prompts: prompts, outputSize: (16, 16))
            }
            model.parameters.set(name, original)
        }
    }
}
