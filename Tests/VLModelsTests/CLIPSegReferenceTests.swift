import Foundation
import VLTestSupport
import XCTest

@testable import VLModels
@testable import VLTensor

/// CLIPSeg against the reference implementation's outputs on the tiny fixture checkpoint.
final class CLIPSegReferenceTests: XCTestCase {
    static var fixtureDir: URL { get throws { try Fixtures.clipsegTiny() } }

    var model: CLIPSegModel!
    var reference: SafeTensorsFile!
    var prompts: TextPrompts!

    override func setUpWithError() throws {
        model = try CLIPSegModel.load(directory: Self.fixtureDir)
        reference = try SafeTensorsFile(url: Self.fixtureDir.appendingPathComponent("reference.safetensors"))
        prompts = try TestModels.prompts(reference)
    }

    /// Absolute tolerance 1e-4, widened to 2e-6 relative for intermediates whose magnitude passes
    /// 50 (FiLM outputs reach ~170 here, where one float32 ulp is 1.5e-5 and summation order alone
    /// moves values by several ulps).
    func assertMatches(
        _ actual: Tensor, _ key: String, tolerance requested: Float = 1e-4, file: StaticString = #filePath,
        line: UInt = #line
    ) throws {
        let expected = try reference.tensor(key)
        let magnitude = expected.scalars.map(abs).max() ?? 0
        let tolerance = max(requested, 2e-6 * magnitude)
        XCTAssertEqual(
            actual.count, expected.count, "\(key): \(actual.shape) vs \(expected.shape)", file: file, line: line)
        guard actual.count == expected.count else { return }
        var worst: Float = 0
        for (a, e) in zip(actual.scalars, expected.scalars) { worst = max(worst, abs(a - e)) }
        XCTAssertLessThanOrEqual(worst, tolerance, "\(key): max |diff| \(worst)", file: file, line: line)
    }

    /// Relative to the largest magnitude of the reference tensor.
    func assertGradient(
        _ actual: Tensor?, _ key: String, absoluteFloor: Float = 0, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        guard let actual else { return XCTFail("\(key): no gradient", file: file, line: line) }
        let expected = try reference.tensor(key)
        XCTAssertEqual(actual.count, expected.count, key, file: file, line: line)
        let scale = expected.scalars.map(abs).max() ?? 0
        var worst: Float = 0
        for (a, e) in zip(actual.scalars, expected.scalars) { worst = max(worst, abs(a - e)) }
        XCTAssertLessThanOrEqual(
            worst, max(1e-4 * scale, absoluteFloor), "\(key): max |diff| \(worst), scale \(scale)", file: file,
            line: line)
    }

    func checkIntermediates(_ prefix: String) throws {
        let pixels = try reference.tensor("\(prefix).pixel_values")
        var seen: [String: Tensor] = [:]
        let observer: ForwardObserver = { name, t in seen[name] = t }
        let cond = model.conditionalEmbeddings(text: prompts, trimPadding: false, observer: observer)
        let logits = model.segment(pixels: pixels, conditional: cond, allVisionLayers: true, observer: observer)
        let keys = reference.names.filter { $0.hasPrefix("\(prefix).") && !$0.contains(".grad.") }
            .map { String($0.dropFirst(prefix.count + 1)) }
            .filter {
                !["pixel_values", "target", "loss", "loss_bce", "loss_dice", "loss_f64", "logits_f64"].contains($0)
            }
        XCTAssertGreaterThan(keys.count, 20)
        for key in keys {
            guard let t = seen[key] else {
                XCTFail("forward did not produce \(key)")
                continue
            }
            try assertMatches(t, "\(prefix).\(key)")
        }
        try assertMatches(logits, "\(prefix).logits")
        // The trimmed, text-only path gives the same conditional embedding.
        try assertMatches(model.conditionalEmbeddings(text: prompts), "\(prefix).conditional_embeddings")
    }

    func testNativeIntermediatesAndLogits() throws { try checkIntermediates("native") }
    func testResizedPositionEmbeddingsCase() throws { try checkIntermediates("interp") }

    func checkLossAndGradients(_ prefix: String) throws {
        for name in model.decoderParameterNames { model.parameters.markTrainable(name) }
        model.parameters.markTrainable("clip.text_model.embeddings.token_embedding.weight")
        let pixels = try reference.tensor("\(prefix).pixel_values").requiringGrad(name: "pixels")
        let target = try reference.tensor("\(prefix).target")
        let length = prompts.inputIDs[0].count
        let table = model.parameters["clip.text_model.embeddings.token_embedding.weight"]
        // Token embeddings as their own leaf (dL/d embeddings), fed by the trainable table.
        let ids = prompts.inputIDs.flatMap { $0 }
        let tokenLeaf = table.detached().indexSelect(rows: ids).reshaped([2, length, -1]).requiringGrad(name: "tokens")
        let tokensFromTable = table.indexSelect(rows: ids).reshaped([2, length, -1])
        let (_, pooled) = model.encodeText(
            tokenEmbeddings: tokenLeaf + tokensFromTable - tokensFromTable.detached(), prompts: prompts)
        let cond = model.textProjection(pooled, model.parameters)
        let logits = model.segment(pixels: pixels, conditional: cond)
        let bce = binaryCrossEntropyWithLogits(logits, target: target)
        let dice = softDiceLoss(logits, target: target)
        let loss = bce + dice
        try assertMatches(bce, "\(prefix).loss_bce", tolerance: 1e-5)
        try assertMatches(dice, "\(prefix).loss_dice", tolerance: 1e-5)
        try assertMatches(loss, "\(prefix).loss", tolerance: 1e-5)
        loss.backward()

        for name in model.decoderParameterNames {
            let floor: Float = name.contains("self_attn.k_proj.bias") ? 1e-6 : 0  // mathematically zero
            try assertGradient(model.parameters[name].grad, "\(prefix).grad.\(name)", absoluteFloor: floor)
        }
        try assertGradient(pixels.grad, "\(prefix).grad.pixel_values")
        try assertGradient(tokenLeaf.grad, "\(prefix).grad.text_inputs_embeds")
        // Token-table rows: the scatter-add of the embedding gradients.
        let rowIDs = try reference.integers("\(prefix).grad.token_embedding_row_ids").values
        let tableGrad = try XCTUnwrap(table.grad)
        let rows = tableGrad.indexSelect(rows: rowIDs)
        try assertGradient(rows, "\(prefix).grad.token_embedding_rows")
    }

    /// trainer.precision=bf16 against the float32 reference: logits and loss within the bfloat16
    /// rounding of the products' inputs, and the decoder's gradient as a whole (all its tensors as one
    /// vector) close in direction and size. Single tensors can differ far more: in this random model
    /// some gradients (the first decoder layer's query and key projections, FiLM) are small residues
    /// of large cancelling sums, where rounding the inputs to 8 significant bits moves them by as
    /// much as their own size.
    func testBF16PrecisionStaysNearTheReference() throws {
        try XCTSkipUnless(BF16GEMM.available, "no AVX512_BF16 on this CPU")
        try MatmulPrecision.set(.bf16)
        defer { try? MatmulPrecision.set(.fp32) }
        for name in model.decoderParameterNames { model.parameters.markTrainable(name) }
        let pixels = try reference.tensor("native.pixel_values"), target = try reference.tensor("native.target")
        let logits = model.segment(pixels: pixels, conditional: model.conditionalEmbeddings(text: prompts))
        let loss = binaryCrossEntropyWithLogits(logits, target: target) + softDiceLoss(logits, target: target)
        loss.backward()
        func relative(_ actual: Tensor, _ key: String) throws -> Float {
            let expected = try reference.tensor(key)
            let scale = expected.scalars.map(abs).max() ?? 1
            return zip(actual.scalars, expected.scalars).map { abs($0 - $1) }.max()! / scale
        }
        let logitError = try relative(logits, "native.logits"), lossError = try relative(loss, "native.loss")
        var difference = 0.0, norm = 0.0
        for name in model.decoderParameterNames {
            let got = try XCTUnwrap(model.parameters[name].grad).scalars,
                want = try reference.tensor("native.grad.\(name)").scalars
            for (g, w) in zip(got, want) { difference += Double(g - w) * Double(g - w); norm += Double(w) * Double(w) }
        }
        let gradientError = (difference / norm).squareRoot()
        print(
            String(
                format:
                    "bf16 vs the float32 reference: logits %.2e of their scale, loss %.2e, decoder gradient %.2e (relative L2)",
                logitError, lossError, gradientError))
        XCTAssertGreaterThan(logitError, 1e-5, "bf16 gave float32's logits: its kernel did not run")
        XCTAssertLessThan(logitError, 0.02)
        XCTAssertLessThan(lossError, 0.002)
        XCTAssertLessThan(gradientError, 0.1)
    }

    func testNativeLossAndGradients() throws { try checkLossAndGradients("native") }
    func testResizedLossAndGradients() throws { try checkLossAndGradients("interp") }

    func testImagePromptPath() throws {
        let promptPixels = try reference.tensor("visprompt.conditional_pixel_values")
        let cond = model.imageFeatures(promptPixels)
        try assertMatches(cond, "visprompt.conditional_embeddings")
        let logits = model.segment(pixels: try reference.tensor("native.pixel_values"), conditional: cond)
        try assertMatches(logits, "visprompt.logits")
    }

    /// The text-prompted path runs no vision layer above the deepest extracted one.
    func testTextPromptedPathStopsAtDeepestTap() throws {
        var layersRun: [String] = []
        let observer: ForwardObserver = { name, _ in
            if name.hasPrefix("vision.hidden_states.") { layersRun.append(name) }
        }
        _ = model(pixels: try reference.tensor("native.pixel_values"), text: prompts, observer: observer)
        let needed = (model.config.extractLayers.max() ?? 0) + 1
        XCTAssertEqual(layersRun.count, needed + 1, "\(layersRun)")
        XCTAssertFalse(layersRun.contains("vision.hidden_states.\(needed + 1)"))
    }
}
