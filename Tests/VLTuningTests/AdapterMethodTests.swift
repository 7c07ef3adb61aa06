import Foundation
import VLTestSupport
import XCTest

@testable import VLModels
@testable import VLTensor
@testable import VLTuning

/// VLSM-Adapter (shallow, dense) and LoRA: parameter counts on the rd64-refined architecture, gradients
/// against finite differences, identities, other architectures, options, and the LoRA merge.
final class AdapterMethodTests: XCTestCase {
    // MARK: Models

    /// Tiny, with text width == projection_dim and enough text layers for the shallow L part.
    static func shallowCapableConfig() -> CLIPSegConfig {
        var c = CLIPSegPreset.tiny.config
        c.textConfig.hiddenSize = 16
        c.textConfig.intermediateSize = 24
        c.textConfig.numAttentionHeads = 2
        c.textConfig.numHiddenLayers = 4
        c.projectionDim = 16
        c.visionConfig.hiddenSize = 24
        c.visionConfig.intermediateSize = 40
        c.visionConfig.numAttentionHeads = 3
        c.visionConfig.numHiddenLayers = 4
        c.visionConfig.imageSize = 32
        c.visionConfig.patchSize = 8
        c.extractLayers = [0, 2, 3]
        return c
    }

    /// A deliberately different architecture: other widths and heads, 4 vision layers tapped at [0, 2],
    /// FiLM at the second decoder layer, first-eos pooling, simple head, text width != projection_dim.
    static func variantConfig() -> CLIPSegConfig { TestModels.variantConfig() }

    static func prompts(_ t: Int = 8) -> TextPrompts {
        TextPrompts(
            inputIDs: [
                [49406, 320, 1125, 49407] + Array(repeating: 49407, count: t - 4),
                [49406, 500, 49407] + Array(repeating: 49407, count: t - 3),
            ],
            attentionMask: [
                [1, 1, 1, 1] + Array(repeating: 0, count: t - 4), [1, 1, 1] + Array(repeating: 0, count: t - 3),
            ])
    }

    static func pixels(_ config: CLIPSegConfig, seed: UInt64 = 5) -> Tensor {
        var g = SplitMix64(seed: seed)
        let s = config.visionConfig.imageSize!
        return Tensor.randomNormal([2, 3, s, s], generator: &g)
    }

    /// A random model with `method` prepared.
    func prepared(
        _ name: String, _ options: [String: ConfigValue] = [:], config: CLIPSegConfig = shallowCapableConfig(),
        seed: UInt64 = 3
    ) throws -> (CLIPSegModel, TuningMethod, [String]) {
        let model = CLIPSegInitializer.randomModel(config: config, seed: 11)
        let method = try TuningMethodRegistry.shared.make(name, options: options)
        let names = try method.prepare(model, seed: seed)
        return (model, method, names)
    }

    func plainLogits(_ model: CLIPSegModel, pixels: Tensor) -> Tensor {
        let hooks = model.hooks
        model.hooks = nil
        defer { model.hooks = hooks }
        return GradMode.withoutGradients { model(pixels: pixels, text: Self.prompts()) }
    }

    // MARK: Counts on the rd64-refined architecture (shapes only: no 150M-float model)

    /// Trainable parameters of `name` on the base architecture, through the method's real `prepare`
    /// on a model whose store holds no checkpoint weights (the methods read only the config).
    func baseCount(_ name: String, _ options: [String: ConfigValue] = [:]) throws -> Int {
        let model = CLIPSegModel(config: CLIPSegPreset.base.config, parameters: ParameterStore())
        let method = try TuningMethodRegistry.shared.make(name, options: options)
        let names = try method.prepare(model, seed: 0)
        XCTAssertEqual(Set(names).count, names.count, "\(name): duplicate names")
        return names.reduce(0) { $0 + model.parameters[$1].count }
    }

    func testParameterCountsOnTheBaseArchitecture() throws {
        XCTAssertEqual(try baseCount("vlsm_shallow_v"), 2_363_136)
        XCTAssertEqual(try baseCount("vlsm_shallow_vl"), 3_939_072)
        XCTAssertEqual(try baseCount("vlsm_shallow_vlc"), 4_201_984)
        XCTAssertEqual(try baseCount("vlsm_dense_v"), 1_784_448)
        XCTAssertEqual(try baseCount("vlsm_dense_vl"), 2_974_464)
        XCTAssertEqual(try baseCount("vlsm_dense_vlc"), 3_237_376)
        // The families with tuning.parts equal the presets.
        XCTAssertEqual(try baseCount("vlsm_shallow", ["parts": "vlc"]), 4_201_984)
        XCTAssertEqual(
            try baseCount("vlsm_dense", ["parts": "vl", "bottleneck": 64, "cond_bottleneck": 256]), 2_974_464)
        XCTAssertEqual(try baseCount("lora", ["rank": 4, "alpha": 8]), 245_760)
        // Of these, vision layers 10 and 11 never reach the text-prompted logits.
        let lora = try XCTUnwrap(
            try TuningMethodRegistry.shared.make("lora", options: ["rank": 4, "alpha": 8]) as? LoRATuning)
        let unreached = lora.parameterShapes(for: CLIPSegPreset.base.config)
            .filter {
                $0.name.contains("vision_model.encoder.layers.10.")
                    || $0.name.contains("vision_model.encoder.layers.11.")
            }
        XCTAssertEqual(unreached.reduce(0) { $0 + $1.shape.reduce(1, *) }, 24_576)
        let decoder = CLIPSegModel.expectedParameters(CLIPSegPreset.base.config).filter {
            $0.name.hasPrefix("decoder.")
        }
        XCTAssertEqual(decoder.reduce(0) { $0 + $1.shape.reduce(1, *) }, 1_127_009)
    }

    func testShapesFromTheConfigMatchPrepare() throws {
        let config = CLIPSegPreset.base.config
        let shallow = try XCTUnwrap(try TuningMethodRegistry.shared.make("vlsm_shallow_vlc") as? VLSMAdapterTuning)
        let shapes = try shallow.parameterShapes(for: config)
        XCTAssertEqual(shapes.reduce(0) { $0 + $1.shape.reduce(1, *) }, 4_201_984)
        XCTAssertEqual(
            shapes.map(\.name).prefix(4),
            [
                "vision_extract_adapters.0.fc1.weight", "vision_extract_adapters.0.fc1.bias",
                "vision_extract_adapters.0.fc2.weight", "vision_extract_adapters.0.fc2.bias",
            ])
        XCTAssertTrue(shapes.contains { $0.name == "text_extract_adapters.2.fc2.weight" && $0.shape == [512, 512] })
        XCTAssertTrue(shapes.contains { $0.name == "cond_adapter.fc1.weight" && $0.shape == [256, 512] })
        let dense = try XCTUnwrap(try TuningMethodRegistry.shared.make("vlsm_dense_vlc") as? VLSMAdapterTuning)
        let denseNames = try dense.parameterShapes(for: config).map(\.name)
        XCTAssertTrue(
            denseNames.contains("v_attn_adapters.8.fc1.weight") && !denseNames.contains("v_attn_adapters.9.fc1.weight"))
        XCTAssertTrue(
            denseNames.contains("l_out_adapters.8.fc2.bias") && !denseNames.contains("l_out_adapters.9.fc2.bias"))
    }

    // MARK: Names, order, initialisation

    func testFixtureNamesAndDeterministicInit() throws {
        // The fixture's tiny architecture (text 32 x 3, vision 48 x 4, taps [1, 2, 3]).
        var c = CLIPSegPreset.tiny.config
        c.textConfig.numHiddenLayers = 3
        c.visionConfig.numHiddenLayers = 4
        c.extractLayers = [1, 2, 3]
        let model = CLIPSegModel(config: c, parameters: ParameterStore())
        let names = try TuningMethodRegistry.shared.make(
            "vlsm_dense_vlc", options: ["bottleneck": 8, "cond_bottleneck": 8]
        ).prepare(model, seed: 7)
        XCTAssertEqual(names.count, 2 * 3 * 4 * 2 + 4)
        XCTAssertEqual(
            Array(names.prefix(8)),
            [
                "v_attn_adapters.0.fc1.weight", "v_attn_adapters.0.fc1.bias", "v_attn_adapters.0.fc2.weight",
                "v_attn_adapters.0.fc2.bias", "v_out_adapters.0.fc1.weight", "v_out_adapters.0.fc1.bias",
                "v_out_adapters.0.fc2.weight", "v_out_adapters.0.fc2.bias",
            ])
        XCTAssertEqual(names.reduce(0) { $0 + model.parameters[$1].count }, 8536)
        XCTAssertEqual(model.parameters["l_attn_adapters.2.fc1.weight"].shape, [8, 32])
        XCTAssertEqual(model.parameters["cond_adapter.fc2.weight"].shape, [16, 8])
        // PyTorch's Linear default: U(+-1/sqrt(in)) for weight and bias.
        let w1 = model.parameters["v_attn_adapters.1.fc1.weight"].scalars,
            b2 = model.parameters["v_attn_adapters.1.fc2.bias"].scalars
        XCTAssertLessThanOrEqual(w1.map(abs).max()!, 1 / Float(48).squareRoot())
        XCTAssertGreaterThan(w1.map(abs).max()!, 0.8 / Float(48).squareRoot())
        XCTAssertLessThanOrEqual(b2.map(abs).max()!, 1 / Float(8).squareRoot())
        XCTAssertGreaterThan(b2.map(abs).max()!, 0.5 / Float(8).squareRoot())
        // Deterministic in (seed, name); different names and seeds differ.
        let again = CLIPSegModel(config: c, parameters: ParameterStore())
        _ = try TuningMethodRegistry.shared.make("vlsm_dense_vlc", options: ["bottleneck": 8, "cond_bottleneck": 8])
            .prepare(again, seed: 7)
        XCTAssertEqual(again.parameters["v_attn_adapters.1.fc1.weight"].scalars, w1)
        XCTAssertNotEqual(model.parameters["v_out_adapters.1.fc1.weight"].scalars, w1)
        let other = CLIPSegModel(config: c, parameters: ParameterStore())
        _ = try TuningMethodRegistry.shared.make("vlsm_dense_vlc", options: ["bottleneck": 8, "cond_bottleneck": 8])
            .prepare(other, seed: 8)
        XCTAssertNotEqual(other.parameters["v_attn_adapters.1.fc1.weight"].scalars, w1)

        let loraModel = CLIPSegModel(config: c, parameters: ParameterStore())
        let loraNames = try TuningMethodRegistry.shared.make("lora", options: ["rank": 4, "alpha": 8]).prepare(
            loraModel, seed: 7)
        XCTAssertEqual(loraNames.count, 28)
        XCTAssertEqual(loraNames.first, "clip.vision_model.encoder.layers.0.self_attn.q_proj.lora_A")
        XCTAssertEqual(loraNames.last, "clip.text_model.encoder.layers.2.self_attn.v_proj.lora_B")
        XCTAssertEqual(loraModel.parameters["clip.text_model.encoder.layers.0.self_attn.v_proj.lora_A"].shape, [4, 32])
        XCTAssertEqual(
            loraModel.parameters["clip.vision_model.encoder.layers.3.self_attn.q_proj.lora_B"].shape, [48, 4])
        XCTAssertTrue(
            loraModel.parameters["clip.vision_model.encoder.layers.3.self_attn.q_proj.lora_B"].scalars.allSatisfy {
                $0 == 0
            })
        let a = loraModel.parameters["clip.vision_model.encoder.layers.0.self_attn.q_proj.lora_A"].scalars
        XCTAssertLessThanOrEqual(a.map(abs).max()!, 1 / Float(48).squareRoot())
        XCTAssertGreaterThan(a.map(abs).max()!, 0.8 / Float(48).squareRoot())
    }

    // MARK: Identities

    func zeroUpProjections(_ model: CLIPSegModel, _ names: [String]) {
        for n in names where n.contains(".fc2.") { model.parameters.set(n, Tensor(zeros: model.parameters[n].shape)) }
    }

    func testZeroUpProjectionGivesThePlainModel() throws {
        for (method, options) in [
            ("vlsm_dense_vlc", ["bottleneck": 6, "cond_bottleneck": 5]),
            ("vlsm_dense", ["parts": "l", "bottleneck": 6]),
            ("vlsm_shallow", ["parts": "vc", "bottleneck": 6, "cond_bottleneck": 5]),
        ] as [(String, [String: ConfigValue])] {
            let (model, _, names) = try prepared(method, options)
            let pixels = Self.pixels(model.config)
            let plain = plainLogits(model, pixels: pixels)
            let adapted = GradMode.withoutGradients { model(pixels: pixels, text: Self.prompts()) }
            XCTAssertGreaterThan(
                zip(adapted.scalars, plain.scalars).map { abs($0 - $1) }.max()!, 1e-4,
                "\(method): the adapters change nothing")
            zeroUpProjections(model, names)
            let identity = GradMode.withoutGradients { model(pixels: pixels, text: Self.prompts()) }
            XCTAssertEqual(identity.scalars, plain.scalars, "\(method) with fc2 = 0")
        }
    }

    /// Shallow L with fc2 = 0 is not the plain model: the raw end-of-text hidden state after each tapped
    /// text block is added to the conditional embedding.
    func testShallowTextTapsAddTheRawEndOfTextState() throws {
        let (model, _, names) = try prepared("vlsm_shallow", ["parts": "l", "bottleneck": 6])
        zeroUpProjections(model, names)
        let prompts = Self.prompts()
        let adapted = GradMode.withoutGradients { model.conditionalEmbeddings(text: prompts) }
        model.hooks = nil
        var states: [Tensor] = []
        let plain = GradMode.withoutGradients { () -> Tensor in
            let len = prompts.attendedLength
            let tokens = model.textTokenEmbeddings(prompts, length: len)
            let seq = TextSequence(
                tokens: tokens, attentionMask: prompts.attentionMask.map { Array($0.prefix(len)) },
                poolingPositions: model.poolingPositions(prompts))
            let e = model.encodeText(seq, prompts: prompts, context: ForwardContext(pixels: nil, batchSize: 2))
            states = e.hiddenStates
            return model.conditionalEmbeddings(text: prompts)
        }
        var expected = plain.scalars
        for layer in model.config.extractLayers {
            let eot = states[layer + 1].selectPerBatch([3, 2]).scalars  // argmax of the ids: the first end-of-text
            for i in expected.indices { expected[i] += eot[i] }
        }
        Check.assertClose(adapted, expected, tolerance: 1e-5)
    }

    func testLoRAStartsAtThePlainModelAndMovesWithB() throws {
        let (model, _, names) = try prepared(
            "lora", ["rank": 3, "alpha": 6, "targets": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]])
        XCTAssertEqual(names.count, 2 * 6 * (4 + 4))
        let pixels = Self.pixels(model.config)
        let plain = plainLogits(model, pixels: pixels)
        let start = GradMode.withoutGradients { model(pixels: pixels, text: Self.prompts()) }
        XCTAssertEqual(start.scalars, plain.scalars, "B = 0 must give the plain logits")
        var g = SplitMix64(seed: 1)
        for n in names where n.hasSuffix("lora_B") {
            model.parameters.set(n, Tensor.randomNormal(model.parameters[n].shape, std: 0.2, generator: &g))
        }
        let moved = GradMode.withoutGradients { model(pixels: pixels, text: Self.prompts()) }
        XCTAssertGreaterThan(zip(moved.scalars, plain.scalars).map { abs($0 - $1) }.max()!, 1e-3)
    }

    // MARK: Gradients against finite differences

    /// Central differences of sum(logits * w) for a sample of elements of each named trainable tensor.
    func checkGradients(_ model: CLIPSegModel, names: [String], file: StaticString = #filePath, line: UInt = #line) {
        let pixels = Self.pixels(model.config)
        let prompts = Self.prompts()
        for name in names {
            let original = model.parameters[name]
            // Float32 logits put ~1e-3 of noise on each difference and ReLU kinks (inside the adapters and
            // the frozen towers) add more: a few percent at most, where real errors are O(1). The reference
            // fixtures hold the tight (1e-4) comparison.
            let errors = Check.gradients([original], eps: 3e-3, tolerance: 5e-2, samples: 16, file: file, line: line) {
                xs in
                model.parameters.set(name, xs[0])
                return model(pixels: pixels, text: prompts)
            }
            model.parameters.set(name, original)
            // And the tensor is alive: its gradient is not identically zero.
            let leaf = original.copy().requiringGrad(name: name)
            model.parameters.set(name, leaf)
            model(pixels: pixels, text: prompts).sum().backward()
            XCTAssertGreaterThan(
                leaf.grad?.scalars.map(abs).max() ?? 0, 0, "\(name): no gradient", file: file, line: line)
            model.parameters.set(name, original)
            if ProcessInfo.processInfo.environment["VLSEG_TEST_VERBOSE"] != nil {
                print("grad check \(name): \(errors)")
            }
        }
    }

    func testDenseGradientsMatchFiniteDifferences() throws {
        let (model, _, names) = try prepared("vlsm_dense_vlc", ["bottleneck": 6, "cond_bottleneck": 5])
        for n in [
            "v_attn_adapters.0.fc1.weight", "v_out_adapters.1.fc2.weight", "l_attn_adapters.2.fc2.bias",
            "l_out_adapters.0.fc1.bias",
            "cond_adapter.fc1.weight", "cond_adapter.fc2.bias",
        ] {
            XCTAssertTrue(names.contains(n), n)
        }
        checkGradients(
            model,
            names: [
                "v_attn_adapters.0.fc1.weight", "v_out_adapters.1.fc2.weight", "v_attn_adapters.2.fc2.bias",
                "l_attn_adapters.2.fc2.bias", "l_out_adapters.0.fc1.bias", "l_out_adapters.1.fc1.weight",
                "cond_adapter.fc1.weight", "cond_adapter.fc2.bias",
            ])
    }

    func testShallowGradientsMatchFiniteDifferences() throws {
        let (model, _, _) = try prepared("vlsm_shallow_vlc", ["bottleneck": 6, "cond_bottleneck": 5])
        checkGradients(
            model,
            names: [
                "vision_extract_adapters.0.fc1.weight", "vision_extract_adapters.2.fc2.weight",
                "vision_extract_adapters.1.fc1.bias", "text_extract_adapters.1.fc2.weight",
                "text_extract_adapters.2.fc1.weight", "cond_adapter.fc1.bias", "cond_adapter.fc2.weight",
            ])
    }

    func testLoRAGradientsMatchFiniteDifferences() throws {
        let (model, _, names) = try prepared(
            "lora", ["rank": 3, "alpha": 6, "targets": ["q_proj", "v_proj", "fc1", "out_proj"]])
        var g = SplitMix64(seed: 2)
        for n in names where n.hasSuffix("lora_B") {
            model.parameters.set(n, Tensor.randomNormal(model.parameters[n].shape, std: 0.2, generator: &g))
        }
        checkGradients(
            model,
            names: [
                "clip.vision_model.encoder.layers.0.self_attn.q_proj.lora_A",
                "clip.vision_model.encoder.layers.2.self_attn.v_proj.lora_B",
                "clip.vision_model.encoder.layers.1.mlp.fc1.lora_A",
                "clip.text_model.encoder.layers.1.self_attn.out_proj.lora_B",
                "clip.text_model.encoder.layers.0.self_attn.q_proj.lora_A",
                "clip.text_model.encoder.layers.2.mlp.fc1.lora_B",
            ])
    }

    // MARK: Other architectures

    func testEveryMethodPreparesAndRunsOnAnotherArchitecture() throws {
        let config = Self.variantConfig()
        let cases: [(String, [String: ConfigValue], Int)] = [
            // dense: blocks < min(max [0, 2] = 2, L) in both towers; widths 20 (vision), 24 (text), 10 (projection)
            ("vlsm_dense_v", ["bottleneck": 4], 2 * 2 * (2 * 20 * 4 + 4 + 20)),
            (
                "vlsm_dense_vlc", ["bottleneck": 4, "cond_bottleneck": 3],
                2 * 2 * (2 * 20 * 4 + 4 + 20) + 2 * 2 * (2 * 24 * 4 + 4 + 24) + (2 * 10 * 3 + 3 + 10)
            ),
            ("vlsm_shallow_v", ["bottleneck": 7], 2 * (2 * 20 * 7 + 7 + 20)),
            (
                "vlsm_shallow", ["parts": "vc", "bottleneck": 7, "cond_bottleneck": 3],
                2 * (2 * 20 * 7 + 7 + 20) + (2 * 10 * 3 + 3 + 10)
            ),
            ("vlsm_shallow", ["parts": "c", "cond_bottleneck": 3], 2 * 10 * 3 + 3 + 10),
            (
                "lora", ["rank": 2, "targets": ["k_proj", "fc2"], "towers": ["text"]],
                2 * (2 * 24 + 24 * 2) + 2 * (2 * 24 + 40 * 2)
            ),
            ("lora", [:], 4 * 2 * (8 * 20 * 2) + 2 * 2 * (8 * 24 * 2)),
        ]
        let pixels = Self.pixels(config)
        for (name, options, count) in cases {
            let (model, _, names) = try prepared(name, options, config: config)
            XCTAssertEqual(names.reduce(0) { $0 + model.parameters[$1].count }, count, "\(name) \(options)")
            for n in names { model.parameters.markTrainable(n) }
            let logits = model(pixels: pixels, text: Self.prompts())
            XCTAssertEqual(logits.shape, [2, 32, 32])
            let target = Tensor(shape: logits.shape, values: (0..<logits.count).map { Float(($0 / 5) % 2) })
            let loss = binaryCrossEntropyWithLogits(logits, target: target) + softDiceLoss(logits, target: target)
            XCTAssertTrue(loss.item.isFinite)
            loss.backward()
            // Every tensor that reaches the logits gets a gradient (LoRA on vision layer 3 cannot: taps [0, 2]).
            for n in names where !n.contains("vision_model.encoder.layers.3.") {
                let grad = model.parameters[n].grad
                XCTAssertNotNil(grad, "\(name): \(n) got no gradient")
                XCTAssertTrue(grad?.scalars.allSatisfy(\.isFinite) ?? false, "\(name): \(n)")
            }
        }
    }

    func testPartsAreRefusedWhereTheArchitectureCannotHostThem() throws {
        // Text width 24 != projection_dim 10.
        XCTAssertThrowsError(try prepared("vlsm_shallow_vl", config: Self.variantConfig())) { error in
            let text = "\(error)"
            XCTAssertTrue(
                text.contains("vlsm_shallow_vl") && text.contains("text hidden_size 24")
                    && text.contains("projection_dim 10"), text)
        }
        // Widths agree, but the text tower is shallower than the deepest tap.
        var c = Self.shallowCapableConfig()
        c.textConfig.numHiddenLayers = 3
        c.extractLayers = [1, 3]
        XCTAssertThrowsError(try prepared("vlsm_shallow_vlc", config: c)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("after block 3") && text.contains("only 3 layers"), text)
        }
        XCTAssertNoThrow(try prepared("vlsm_shallow_vlc", config: Self.shallowCapableConfig()))
        // Dense adapters sit in blocks below the deepest tap: taps [0] leave none.
        var c0 = Self.variantConfig()
        c0.extractLayers = [0]
        c0.conditionalLayer = 0
        XCTAssertThrowsError(try prepared("vlsm_dense_v", config: c0)) {
            XCTAssertTrue("\($0)".contains("leaves none"), "\($0)")
        }
        XCTAssertEqual(try prepared("vlsm_dense", ["parts": "c"], config: c0).2.count, 4)
    }

    func testOptionErrorsNameTheOption() {
        func message(_ name: String, _ options: [String: ConfigValue]) -> String {
            do {
                _ = try TuningMethodRegistry.shared.make(name, options: options)
                return "no error"
            } catch { return "\(error)" }
        }
        XCTAssertTrue(message("vlsm_dense", ["parts": "vx"]).contains("unknown part 'x'"))
        XCTAssertTrue(message("vlsm_dense", ["parts": ""]).contains("parts"))
        XCTAssertTrue(message("vlsm_shallow_vl", ["bottleneck": 0]).contains("'bottleneck'"))
        XCTAssertTrue(message("vlsm_shallow_vl", ["bottleneck": "big"]).contains("expected an integer"))
        XCTAssertTrue(message("vlsm_shallow_vl", ["rank": 4]).contains("unknown option"))
        XCTAssertTrue(message("lora", ["targets": ["q_proj", "zz"]]).contains("'zz' is not one of"))
        XCTAssertTrue(message("lora", ["towers": ["audio"]]).contains("towers"))
        XCTAssertTrue(message("lora", ["rank": 0]).contains("'rank'"))
        XCTAssertTrue(message("lora", ["alpha": -1]).contains("'alpha'"))
        let presets = ["v", "vl", "vlc"].flatMap { ["vlsm_shallow_\($0)", "vlsm_dense_\($0)"] }
        for name in ["vlsm_shallow", "vlsm_dense", "lora"] + presets {
            XCTAssertTrue(TuningMethodRegistry.shared.names.contains(name), name)
        }
        XCTAssertEqual(try TuningMethodRegistry.shared.make("vlsm_dense_vl").name, "vlsm_dense_vl")
        XCTAssertEqual((try TuningMethodRegistry.shared.make("vlsm_dense_vl") as? VLSMAdapterTuning)?.parts, "vl")
        XCTAssertEqual(
            (try TuningMethodRegistry.shared.make("vlsm_shallow_vlc") as? VLSMAdapterTuning)?.bottleneck, 512)
        XCTAssertEqual((try TuningMethodRegistry.shared.make("vlsm_dense_v") as? VLSMAdapterTuning)?.bottleneck, 64)
        XCTAssertEqual(
            (try TuningMethodRegistry.shared.make("lora", options: ["targets": ["q_proj", "fc2"]]) as? LoRATuning)?
                .targets, ["q_proj", "fc2"])
    }

    // MARK: Learning

    /// A few Adam steps on `names` of `model` for one fixed batch; returns the losses.
    func fit(
        _ model: CLIPSegModel, _ names: [String], pixels: Tensor, target: Tensor, prompts: TextPrompts,
        steps: Int, lr: Float
    ) -> [Float] {
        for n in names { model.parameters.markTrainable(n) }
        let m = names.map { Tensor(zeros: model.parameters[$0].shape) },
            v = names.map { Tensor(zeros: model.parameters[$0].shape) }
        var losses: [Float] = []
        for step in 1...steps {
            for n in names { model.parameters[n].node?.clearGradient() }
            let logits = model(pixels: pixels, text: prompts)
            let loss = binaryCrossEntropyWithLogits(logits, target: target) + softDiceLoss(logits, target: target)
            losses.append(loss.item)
            loss.backward()
            let c1 = 1 - pow(0.9, Float(step)), c2 = 1 - pow(0.999, Float(step))
            for (i, n) in names.enumerated() {
                let p = model.parameters[n]
                guard let grad = p.grad else { continue }
                withTensorPointers(writing: p, m[i], v[i], reading: grad) { pp, mp, vp, gp in
                    for j in 0..<p.count {
                        mp[j] = 0.9 * mp[j] + 0.1 * gp[j]
                        vp[j] = 0.999 * vp[j] + 0.001 * gp[j] * gp[j]
                        pp[j] -= lr * (mp[j] / c1) / ((vp[j] / c2).squareRoot() + 1e-8)
                    }
                }
            }
        }
        return losses
    }

    /// With a random frozen decoder the logits hardly depend on the encoders (a frozen random CLIPSeg
    /// is no test of a parameter-efficient method); with a trained one, as in the papers' setting, every
    /// method must fit a new target quickly.
    func testEveryMethodLearnsOnTopOfATrainedDecoder() throws {
        let config = CLIPSegPreset.tiny.config
        func disks(_ cx: [Int], _ cy: [Int], _ r2: Int) -> Tensor {
            var t = [Float](repeating: 0, count: 2 * 64 * 64)
            for b in 0..<2 {
                for y in 0..<64 {
                    for x in 0..<64 where (x - cx[b]) * (x - cx[b]) + (y - cy[b]) * (y - cy[b]) < r2 {
                        t[b * 4096 + y * 64 + x] = 1
                    }
                }
            }
            return Tensor(shape: [2, 64, 64], values: t)
        }
        var g = SplitMix64(seed: 1)
        let pixelsA = Tensor.randomNormal([2, 3, 64, 64], generator: &g),
            pixelsB = Tensor.randomNormal([2, 3, 64, 64], generator: &g)
        let targetA = disks([20, 28], [32, 32], 200), targetB = disks([40, 36], [20, 25], 150)
        let prompts = TextPrompts(
            inputIDs: [[49406, 320, 1125, 49407], [49406, 500, 49407, 49407]],
            attentionMask: [[1, 1, 1, 1], [1, 1, 1, 0]])
        // The "pretrained" model: its decoder fitted to batch A.
        let base = CLIPSegInitializer.randomModel(config: config, seed: 3)
        let decoderLosses = fit(
            base, base.decoderParameterNames, pixels: pixelsA, target: targetA, prompts: prompts, steps: 20, lr: 2e-2)
        XCTAssertLessThan(decoderLosses.last!, 0.6 * decoderLosses.first!)
        for (name, options) in [
            ("vlsm_dense_vlc", ["bottleneck": 16, "cond_bottleneck": 8]),
            ("vlsm_shallow", ["parts": "vc", "bottleneck": 32]),
            ("lora", ["rank": 4]),
        ] as [(String, [String: ConfigValue])] {
            let model = CLIPSegModel(config: config, parameters: ParameterStore.copy(of: base.parameters))
            let names = try TuningMethodRegistry.shared.make(name, options: options).prepare(model, seed: 0)
            let losses = fit(model, names, pixels: pixelsB, target: targetB, prompts: prompts, steps: 12, lr: 2e-2)
            XCTAssertLessThan(losses.last!, 0.5 * losses.first!, "\(name): \(losses)")
            if ProcessInfo.processInfo.environment["VLSEG_TEST_VERBOSE"] != nil { print("fit \(name): \(losses)") }
        }
    }

    // MARK: LoRA merge

    func testMergedWeightsGiveTheSameLogits() throws {
        for config in [Self.shallowCapableConfig(), Self.variantConfig()] {
            let (model, method, names) = try prepared(
                "lora", ["rank": 3, "alpha": 5, "targets": ["q_proj", "v_proj", "out_proj", "fc2"]], config: config)
            var g = SplitMix64(seed: 4)
            for n in names where n.hasSuffix("lora_B") {
                model.parameters.set(n, Tensor.randomNormal(model.parameters[n].shape, std: 0.2, generator: &g))
            }
            let pixels = Self.pixels(config)
            let adapted = GradMode.withoutGradients { model(pixels: pixels, text: Self.prompts()) }
            let merged = (method as! LoRATuning).mergedWeights()
            XCTAssertEqual(merged.count, names.count / 2)
            let store = ParameterStore()
            let replaced = Dictionary(uniqueKeysWithValues: merged.map { ($0.name, $0.weight) })
            for (name, _) in CLIPSegModel.expectedParameters(config) {
                store.set(name, replaced[name] ?? model.parameters[name])
            }
            let plainMerged = CLIPSegModel(config: config, parameters: store)
            let logits = GradMode.withoutGradients { plainMerged(pixels: pixels, text: Self.prompts()) }
            Check.assertClose(logits, adapted.scalars, tolerance: 1e-4)
            XCTAssertGreaterThan(
                zip(logits.scalars, plainLogits(model, pixels: pixels).scalars).map { abs($0 - $1) }.max()!, 1e-3)
        }
    }
}
