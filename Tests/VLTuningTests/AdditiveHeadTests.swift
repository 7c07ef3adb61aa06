import Foundation
import VLTestSupport
import XCTest

@testable import VLModels
@testable import VLTensor
@testable import VLTuning

/// TuneVLSeg's additive decoder head (`tuning.new_last_layer`): PyTorch parity of its output and
/// gradients, finite differences, what it adds to the trainable tensors, and a few steps that move r.
final class AdditiveHeadTests: XCTestCase {
    /// Two prompts of the fixture's vocabulary: the other method tests' pair.
    static func prompts(length t: Int = 8) -> TextPrompts { AdapterMethodTests.prompts(t) }

    static func pixels(size s: Int, seed: UInt64 = 5) -> Tensor {
        var g = SplitMix64(seed: seed)
        return Tensor.randomNormal([2, 3, s, s], generator: &g)
    }

    // MARK: - PyTorch parity

    /// The head as TuneVLSeg builds it (nn.Sequential of Upsample and Conv2d(padding="same",
    /// padding_mode="replicate"), the ratio an nn.Parameter), in float64, from the upstream formula. It
    /// reads raw little-endian float32 files and prints the output and the gradients of sum(out * g).
    static let reference = """
        import sys, json, numpy as np, torch
        from torch import nn
        d = sys.argv[1]
        B, C, h, w, H, W, reduction = map(int, sys.argv[2:9])
        def load(name, shape):
            return torch.from_numpy(np.fromfile(f"{d}/{name}.bin", dtype="<f4").astype(np.float64).reshape(shape))
        feats = load("features", (B, C, h, w))
        frozen = load("frozen", (B, 1, H, W))
        cin = reduction if reduction > 0 else C
        layers = []
        if reduction > 0:
            layers.append(nn.Conv2d(C, reduction, 1, bias=False))
            layers.append(nn.Upsample(size=(H, W), mode="bilinear"))
        else:
            layers.append(nn.Upsample(scale_factor=float(H // h), mode="bilinear"))
        conv = nn.Conv2d(cin, 1, kernel_size=5, padding="same", padding_mode="replicate")
        layers.append(conv)
        head = nn.Sequential(*layers).double()
        with torch.no_grad():
            if reduction > 0:
                layers[0].weight.copy_(load("reduction", (reduction, C, 1, 1)))
            conv.weight.copy_(load("weight", (1, cin, 5, 5)))
            conv.bias.copy_(load("bias", (1,)))
        ratio = nn.Parameter(load("ratio", (1,))[0].clone())
        out = (1 - ratio) * frozen + ratio * head(feats)
        (out * load("g", (B, 1, H, W))).sum().backward()
        result = {"out": out.flatten().tolist(), "weight": conv.weight.grad.flatten().tolist(),
                  "bias": conv.bias.grad.flatten().tolist(), "ratio": [ratio.grad.item()]}
        if reduction > 0:
            result["reduction"] = layers[0].weight.grad.flatten().tolist()
        print(json.dumps(result))
        """

    /// Max |VLSeg - PyTorch| of the output and the largest relative error of each gradient.
    struct Parity {
        var output: Float
        var gradients: [String: Float]

        /// Prints the comparison and holds the output and every gradient to 1e-5.
        func assertClose(_ label: String, file: StaticString = #filePath, line: UInt = #line) {
            print("additive head parity (\(label)): output max |diff| \(output), gradients \(gradients)")
            XCTAssertLessThan(output, 1e-5, file: file, line: line)
            for (key, error) in gradients { XCTAssertLessThan(error, 1e-5, key, file: file, line: line) }
        }
    }

    /// Runs the head on `features` and `frozen` logits with the store's tensors, and the reference on
    /// the same numbers.
    func parity(
        _ head: AdditiveDecoderHead, store: ParameterStore, features: Tensor, frozen: Tensor
    ) throws -> Parity {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-head-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let g = Check.random(frozen.shape, seed: 21)
        func write(_ name: String, _ t: Tensor) throws {
            let data = t.scalars.withUnsafeBufferPointer { Data(buffer: $0) }
            try data.write(to: dir.appendingPathComponent("\(name).bin"))
        }
        try write("features", features)
        try write("frozen", frozen)
        try write("g", g)
        try write("weight", store[head.weightName])
        try write("bias", store[head.biasName])
        try write("ratio", store[AdditiveDecoderHead.ratioName])
        if head.reduction != nil { try write("reduction", store[head.reductionName]) }

        var leaves: [String: Tensor] = [:]
        let original = head.shapes.map { ($0.name, store[$0.name]) }
        for (name, t) in original {
            leaves[name] = t.copy().requiringGrad(name: name)
            store.set(name, leaves[name]!)
        }
        defer { for (name, t) in original { store.set(name, t) } }
        let out = head.apply(logits: frozen, features: features, parameters: store)
        (out * g).sum().backward()

        let s = features.shape
        let text = try PythonReference.run(
            Self.reference,
            arguments: [dir.path]
                + [s[0], s[1], s[2], s[3], frozen.shape[2], frozen.shape[3], head.reduction ?? 0].map {
                    String($0)
                })
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: [Double]])
        func maxDiff(_ a: [Float], _ b: [Double]) -> Float {
            XCTAssertEqual(a.count, b.count)
            return zip(a, b).map { Float(abs(Double($0) - $1)) }.max() ?? .infinity
        }
        var result = Parity(output: maxDiff(out.scalars, try XCTUnwrap(json["out"])), gradients: [:])
        let keys =
            [("weight", head.weightName), ("bias", head.biasName), ("ratio", AdditiveDecoderHead.ratioName)]
            + (head.reduction == nil ? [] : [("reduction", head.reductionName)])
        for (key, name) in keys {
            let expected = try XCTUnwrap(json[key], key)
            let grad = try XCTUnwrap(leaves[name]?.grad, "\(name) got no gradient").scalars
            let scale = Float(expected.map(abs).max() ?? 0)
            result.gradients[key] = maxDiff(grad, expected) / max(scale, 1e-12)
        }
        return result
    }

    /// On the tiny CLIPSeg fixture (patch 16, 4 x 4 grid, R = 16): CoOp with the head, its features and
    /// frozen logits taken from the real forward pass, against PyTorch; and the model's logits are the
    /// head's output.
    func testCLIPSegHeadMatchesPyTorchOnTheTinyFixture() throws {
        let model = try CLIPSegModel.load(directory: try Fixtures.clipsegTiny())
        let method = try TuningMethodRegistry.shared.make("coop", options: ["new_last_layer": true])
        let names = try method.prepare(model, seed: 4)
        XCTAssertEqual(
            names,
            ["context_vectors", "additive_decoder_layer.1.weight", "additive_decoder_layer.1.bias", "residual_ratio"])
        XCTAssertEqual(model.parameters["residual_ratio"].scalars, [0.5])
        XCTAssertEqual(model.parameters["additive_decoder_layer.1.weight"].shape, [1, 16, 5, 5])
        // Conv2d's default bound 1/sqrt(16 * 25) = 0.05.
        XCTAssertLessThanOrEqual(model.parameters["additive_decoder_layer.1.weight"].scalars.map(abs).max()!, 0.05)
        model.parameters.set("residual_ratio", Tensor(shape: [1], values: [0.3]))
        let pixels = Self.pixels(size: 64)
        // The decoder's features and its frozen head's last stage, as the forward pass computed them.
        var features: Tensor?
        var stages: [Int: Tensor] = [:]
        let logits = GradMode.withoutGradients {
            model(
                pixels: pixels, text: Self.prompts(),
                observer: { name, t in
                    if name == "decoder.tconv_in" { features = t.copy() }
                    if name.hasPrefix("decoder.tconv."), let k = Int(name.dropFirst("decoder.tconv.".count)) {
                        stages[k] = t.copy()
                    }
                })
        }
        let hooks = model.hooks
        model.hooks = nil
        let plain = GradMode.withoutGradients { model(pixels: pixels, text: Self.prompts()) }
        model.hooks = hooks
        let frozen4 = try XCTUnwrap(stages.max { $0.key < $1.key }?.value)
        XCTAssertEqual(frozen4.shape, [2, 1, 64, 64])
        let f = try XCTUnwrap(features)
        XCTAssertEqual(f.shape, [2, 16, 4, 4])
        let head = AdditiveDecoderHead.clipseg(reduceDim: 16)
        let direct = GradMode.withoutGradients {
            head.apply(logits: frozen4, features: f, parameters: model.parameters)
        }
        XCTAssertEqual(logits.scalars, direct.scalars, "the model's logits are the head's mix")
        XCTAssertGreaterThan(zip(logits.scalars, frozen4.scalars).map { abs($0 - $1) }.max()!, 1e-3)
        XCTAssertNotEqual(logits.scalars, plain.scalars, "the plain model has neither context nor head")
        let p = try parity(head, store: model.parameters, features: f, frozen: frozen4)
        p.assertClose("CLIPSeg tiny")
    }

    /// CRIS's form (1x1 to 64 channels, upsampling to the output size, 5x5) on random features of a
    /// non-square grid, against PyTorch.
    func testCRISHeadMatchesPyTorch() throws {
        var config = CRISPreset.crisTiny.config
        config.projInDim = 6
        let head = AdditiveDecoderHead.cris(config)
        XCTAssertEqual(
            head.shapes.map(\.name),
            [
                "additive_decoder_layer.0.weight", "additive_decoder_layer.2.weight", "additive_decoder_layer.2.bias",
                "residual_ratio",
            ])
        let store = ParameterStore()
        let rng = LearnerInit(seed: 9)
        for (name, shape) in head.shapes { store.set(name, head.initialValue(name, shape: shape, init: rng)) }
        store.set("residual_ratio", Tensor(shape: [1], values: [0.65]))
        let p = try parity(
            head, store: store, features: Check.random([2, 12, 3, 5], seed: 3),
            frozen: Check.random([2, 1, 13, 20], seed: 4))
        p.assertClose("CRIS form")
    }

    // MARK: - Finite differences

    /// Gradients of every input of the head (frozen logits, features, each tensor, the ratio) against
    /// central differences, in both forms.
    func testHeadGradientsMatchFiniteDifferences() throws {
        var config = CRISPreset.crisTiny.config
        config.projInDim = 3
        for head in [AdditiveDecoderHead.clipseg(reduceDim: 4), AdditiveDecoderHead.cris(config)] {
            let c = head.featureWidth
            let inputs =
                [Check.random([2, 1, 12, 8], seed: 1), Check.random([2, c, 3, 2], seed: 2)]
                + head.shapes.enumerated().map { Check.random($0.element.shape, seed: 10 + UInt64($0.offset)) }
            let names = head.shapes.map(\.name)
            let store = ParameterStore()
            let errors = Check.gradients(inputs, eps: 1e-2, tolerance: 2e-3, samples: 40) { xs in
                for (i, name) in names.enumerated() { store.set(name, xs[2 + i]) }
                return head.apply(logits: xs[0], features: xs[1], parameters: store)
            }
            print("additive head gradient check (\(head.reduction == nil ? "CLIPSeg" : "CRIS")): \(errors)")
        }
    }

    // MARK: - What trains

    func testTheHeadAddsItsTensorsToEveryPromptMethodsCount() throws {
        let base = CLIPSegPreset.base.config
        for name in ["coop", "cocoop", "vpt", "maple", "shared_separate", "shared_attention"] {
            let off = try XCTUnwrap(try TuningMethodRegistry.shared.make(name, options: [:]) as? PromptLearner)
            let on = try XCTUnwrap(
                try TuningMethodRegistry.shared.make(name, options: ["new_last_layer": true]) as? PromptLearner)
            // 64 * 25 weights + 1 bias + 1 ratio on rd64 (reduce_dim 64).
            XCTAssertEqual(try on.parameterCount(for: base) - off.parameterCount(for: base), 1_602, name)
        }
        XCTAssertEqual(
            AdditiveDecoderHead.cris(CRISPreset.crisBase.config).shapes.reduce(0) { $0 + $1.shape.reduce(1, *) }, 34_370
        )
        // On CRIS the prepared names are the context's, then the head's, and the model mixes it in.
        let model = CRISInitializer.randomModel(config: CRISPreset.crisTiny.config, seed: 1)
        let method = try TuningMethodRegistry.shared.make("coop", options: ["new_last_layer": true])
        let names = try method.prepare(model, seed: 2)
        XCTAssertEqual(names.first, "context_vectors")
        XCTAssertEqual(Array(names.dropFirst()), AdditiveDecoderHead.cris(model.config).shapes.map(\.name))
        XCTAssertTrue(model.logitsHead === (method as AnyObject))
        let plain = try TuningMethodRegistry.shared.make("coop", options: [:])
        XCTAssertEqual(try plain.prepare(model, seed: 2), ["context_vectors"])
        XCTAssertNil(model.logitsHead, "preparing without the head removes it")
    }

    /// A few plain gradient steps on the head alone (everything else frozen) lower a loss and move r.
    func testAShortTrainingMovesTheRatio() throws {
        let model = CLIPSegInitializer.randomModel(config: TestModels.variantConfig(), seed: 11)
        let method = try TuningMethodRegistry.shared.make("vpt", options: ["new_last_layer": true])
        let names = try method.prepare(model, seed: 3)
        let pixels = Self.pixels(size: 32)
        let target = Check.random([2, 32, 32], seed: 8, low: 0, high: 1)
        // Mean squared error, so the step size does not grow with the image.
        func loss() -> Tensor {
            ((model(pixels: pixels, text: Self.prompts()) - target).square()).sum().scaled(1 / Float(target.count))
        }
        let start = GradMode.withoutGradients { loss() }.scalars[0]
        for _ in 0..<10 {
            var leaves: [String: Tensor] = [:]
            for n in names {
                leaves[n] = model.parameters[n].detached().requiringGrad(name: n)
                model.parameters.set(n, leaves[n]!)
            }
            loss().backward()
            for n in names {
                let p = leaves[n]!
                let step = try XCTUnwrap(p.grad, "\(n) got no gradient")
                model.parameters.set(n, (p.detached() - step.scaled(1e-2)).detached())
            }
        }
        let end = GradMode.withoutGradients { loss() }.scalars[0]
        let ratio = model.parameters["residual_ratio"].scalars[0]
        print("additive head training: loss \(start) -> \(end), residual_ratio 0.5 -> \(ratio)")
        XCTAssertLessThan(end, start)
        XCTAssertGreaterThan(abs(ratio - 0.5), 1e-4)
    }
}
