import Foundation
import VLTestSupport
import VLTokenizer
import XCTest

@testable import VLModels
@testable import VLTensor
@testable import VLTuning

/// TuneVLSeg's prompt methods: full-size parameter counts, finite-difference gradients, exact
/// identities with the plain model, the text placement rules, and another architecture.
final class PromptMethodTests: XCTestCase {
    static let methods = ["coop", "cocoop", "vpt", "maple", "shared_separate", "shared_attention"]

    /// Loaded once; a missing bundle fails the tests that need it, with the error.
    static let loadedTokenizer = Result { try BundledTokenizer.load() }

    static func prompts(_ texts: [String], length: Int = 77) throws -> TextPrompts {
        let e = try loadedTokenizer.get().encodeBatch(texts, padding: .maxLength(length))
        return TextPrompts(inputIDs: e.map(\.inputIDs), attentionMask: e.map(\.attentionMask))
    }

    static func pixels(_ config: CLIPSegConfig, batch: Int = 2, size: Int? = nil, seed: UInt64 = 7) -> Tensor {
        let s = size ?? config.visionConfig.imageSize!
        var g = SplitMix64(seed: seed)
        return Tensor.randomNormal([batch, 3, s, s], generator: &g)
    }

    /// A method with options given as the config would give them.
    static func method(_ name: String, _ options: [String: ConfigValue] = [:]) throws -> PromptLearner {
        let method = try TuningMethodRegistry.shared.make(name, options: options)
        guard let learner = method as? PromptLearner else { throw TuningError.unknownMethod(name, available: []) }
        return learner
    }

    // MARK: - Full-size parameter counts (shapes only: the 150M-parameter model is never built)

    func testBaseArchitectureCountsPerDepth() throws {
        let base = CLIPSegPreset.base.config
        XCTAssertEqual(
            [base.textConfig.hiddenSize, base.visionConfig.hiddenSize, base.projectionDim], [512, 768, 512])
        // TuneVLSeg's defaults (the configs/tuning files): n_ctx 4, hidden 64, shared_dim 64, heads 16, ffn 1536.
        let perDepth = [
            "coop": 2_048, "vpt": 3_072, "cocoop": 68_160, "maple": 85_568,
            "shared_separate": 83_456, "shared_attention": 10_503_936,
        ]
        for (name, count) in perDepth {
            for depth in [1, 10] {
                let m = try Self.method(name, ["depth": .int(depth)])
                XCTAssertEqual(try m.parameterCount(for: base), count * depth, "\(name) depth \(depth)")
            }
        }
        // CoCoOp per depth = context 2,048 + meta-net Linear(512,64)+b 32,832 + Linear(64,512) 32,768 + LN 512.
        XCTAssertEqual(
            try Self.method("cocoop").parameterShapes(for: base).filter { $0.name.hasPrefix("meta_nets.0.") }
                .reduce(0) { $0 + $1.shape.reduce(1, *) }, 66_112)
        // MaPLe's default init phrase "a photo of a" sets n_ctx = 4.
        XCTAssertEqual(try Self.method("maple").contextLength(base), 4)
        XCTAssertEqual(try Self.method("maple", ["init": "a photo of", "n_ctx": 4]).contextLength(base), 3)
    }

    /// prepare() adds exactly the counted tensors (on a weightless model: learners with init none
    /// read no checkpoint weight) and nothing else learns.
    func testPrepareOnTheBaseArchitectureMatchesTheShapes() throws {
        let base = CLIPSegPreset.base.config
        for name in Self.methods where name != "shared_attention" {
            let model = CLIPSegModel(config: base, parameters: ParameterStore())
            var options: [String: ConfigValue] = ["depth": 10]
            if ["coop", "cocoop", "maple"].contains(name) { options["init"] = "none" }
            let m = try Self.method(name, options)
            let names = try m.prepare(model, seed: 1)
            XCTAssertEqual(names, try m.parameterShapes(for: base).map(\.name), name)
            XCTAssertEqual(names.reduce(0) { $0 + model.parameters[$1].count }, try m.parameterCount(for: base), name)
            XCTAssertEqual(Set(model.parameters.names), Set(names), "\(name) adds only its own tensors")
            XCTAssertTrue(model.hooks === m)
        }
    }

    // MARK: - Names, order, options

    func testNamesFollowTheCanonicalOrder() throws {
        let tiny = CLIPSegPreset.tiny.config
        XCTAssertEqual(
            try Self.method("cocoop", ["depth": 2, "hidden": 8]).parameterShapes(for: tiny).map(\.name),
            [
                "context_vectors", "meta_nets.0.0.weight", "meta_nets.0.0.bias", "meta_nets.0.2.weight",
                "meta_nets.0.3.weight",
                "meta_nets.1.0.weight", "meta_nets.1.0.bias", "meta_nets.1.2.weight", "meta_nets.1.3.weight",
            ])
        let shapes = try Self.method("shared_attention", ["heads": 4, "ffn": 32]).parameterShapes(for: tiny)
        XCTAssertEqual(
            shapes.map(\.name),
            ["context_vectors"]
                + [
                    "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
                    "self_attn.out_proj.bias",
                    "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias", "norm1.weight", "norm1.bias",
                    "norm2.weight", "norm2.bias",
                ].map { "layers.0.\($0)" })
        XCTAssertEqual(shapes[0].shape, [1, 4, 32 + 48])
        XCTAssertEqual(
            try Self.method("maple", ["init": "none"]).parameterShapes(for: tiny).map(\.shape),
            [[1, 4, 32], [64, 32], [64], [48, 64], [48], [48]])
        XCTAssertEqual(
            try Self.method("shared_separate", ["shared_dim": 8]).parameterShapes(for: tiny).map(\.shape),
            [[1, 4, 8], [32, 8], [32], [48, 8], [48]])
        XCTAssertEqual(try Self.method("vpt", ["depth": 3]).parameterShapes(for: tiny).map(\.shape), [[3, 4, 48]])
        // Text-only methods leave the vision taps cacheable (the trainer's frozen-feature cache).
        for name in Self.methods {
            XCTAssertEqual(try Self.method(name).visionIsFrozen, ["coop", "cocoop"].contains(name), name)
        }
    }

    func testOptionErrorsNameTheKey() throws {
        let tiny = CLIPSegPreset.tiny.config  // 2 text layers, 3 vision layers
        XCTAssertThrowsError(try Self.method("coop", ["depht": 2])) {
            XCTAssertTrue("\($0)".contains("depht"), "\($0)")
        }
        XCTAssertThrowsError(try Self.method("vpt", ["depth": "x"])) {
            XCTAssertTrue("\($0)".contains("'depth'"), "\($0)")
        }
        XCTAssertThrowsError(try Self.method("coop", ["depth": 3]).parameterShapes(for: tiny)) {
            XCTAssertTrue("\($0)".contains("between 1 and 2"), "\($0)")
        }
        XCTAssertNoThrow(try Self.method("vpt", ["depth": 3]).parameterShapes(for: tiny))
        XCTAssertThrowsError(try Self.method("maple", ["depth": 3]).parameterShapes(for: tiny))
        XCTAssertThrowsError(try Self.method("shared_attention", ["heads": 7]).parameterShapes(for: tiny)) {
            XCTAssertTrue("\($0)".contains("heads") && "\($0)".contains("80"), "\($0)")
        }
        XCTAssertThrowsError(try Self.method("coop", ["n_ctx": 76]).parameterShapes(for: tiny)) {
            XCTAssertTrue("\($0)".contains("n_ctx"), "\($0)")
        }
    }

    func testInitialisationIsDeterministicAndUsesThePhrase() throws {
        let tiny = CLIPSegPreset.tiny.config
        func values(_ name: String, seed: UInt64, _ options: [String: ConfigValue] = [:]) throws -> [String: [Float]] {
            let model = CLIPSegInitializer.randomModel(config: tiny, seed: 3)
            let names = try Self.method(name, options).prepare(model, seed: seed)
            return Dictionary(uniqueKeysWithValues: names.map { ($0, model.parameters[$0].scalars) })
        }
        for name in Self.methods {
            let options: [String: ConfigValue] = name == "shared_attention" ? ["heads": 4, "depth": 2] : ["depth": 2]
            XCTAssertEqual(try values(name, seed: 5, options), try values(name, seed: 5, options), name)
            XCTAssertNotEqual(
                try values(name, seed: 5, options)["context_vectors"],
                try values(name, seed: 6, options)["context_vectors"], name)
        }
        // init "a photo of a": row 0 = the phrase's token embeddings, rows 1... stay random N(0, 0.02).
        let model = CLIPSegInitializer.randomModel(config: tiny, seed: 3)
        _ = try Self.method("coop", ["depth": 2, "init": "a photo of a"]).prepare(model, seed: 1)
        let ctx = model.parameters["context_vectors"]
        XCTAssertEqual(ctx.shape, [2, 4, 32])
        let ids: [Int] = try Self.loadedTokenizer.get().encode("a photo of a")
        XCTAssertEqual(ids, [320, 1125, 539, 320])
        let table = model.parameters["clip.text_model.embeddings.token_embedding.weight"]
        XCTAssertEqual(Array(ctx.scalars[0..<128]), table.indexSelect(rows: ids).scalars)
        let deep = Array(ctx.scalars[128...])
        let std = (deep.map { $0 * $0 }.reduce(0, +) / Float(deep.count)).squareRoot()
        XCTAssertEqual(std, 0.02, accuracy: 0.006)
    }

    // MARK: - Text placement rules

    func testTextPlacementInsertsTruncatesAndShiftsPooling() {
        let d = 2, n = 3
        func sequence(_ length: Int, attended: Int) -> TextSequence {
            // row t holds t
            let tokens = Tensor(shape: [1, length, d], values: (0..<(length * d)).map { Float($0 / d) })
            return TextSequence(
                tokens: tokens, attentionMask: [(0..<length).map { $0 < attended ? 1 : 0 }],
                poolingPositions: [attended - 1])
        }
        let ctx = Tensor(shape: [1, n, d], values: (0..<(n * d)).map { -1 - Float($0 / d) })  // rows -1, -2, -3
        func rows(_ t: Tensor) -> [Float] { stride(from: 0, to: t.count, by: d).map { t.scalars[$0] } }

        // Short: [BOS][ctx][1 ..< L-1][L-1]: the sequence grows by n.
        let short = PromptPlacement.insertTextContext(sequence(6, attended: 4), context: ctx, maxPositions: 77)
        XCTAssertEqual(rows(short.tokens), [0, -1, -2, -3, 1, 2, 3, 4, 5])
        XCTAssertEqual(short.attentionMask, [[1, 1, 1, 1, 1, 1, 1, 0, 0]])
        XCTAssertEqual(short.poolingPositions, [6])

        // Full 77: cut to 77 keeping tokens 1 ..< 73 and the last one; pooling capped at 76.
        let full = PromptPlacement.insertTextContext(sequence(77, attended: 77), context: ctx, maxPositions: 77)
        XCTAssertEqual(rows(full.tokens), [0, -1, -2, -3] + (1..<73).map(Float.init) + [76])
        XCTAssertEqual(full.attentionMask[0].count, 77)
        XCTAssertEqual(full.poolingPositions, [76])

        // Deep prompts replace rows 1 ... n.
        let replaced = PromptPlacement.replaceTextContext(sequence(6, attended: 6).tokens, context: ctx)
        XCTAssertEqual(rows(replaced), [0, -1, -2, -3, 4, 5])
        let vision = PromptPlacement.replaceVisionPrompts(
            PromptPlacement.appendVisionPrompts(sequence(5, attended: 5).tokens, prompts: ctx),
            prompts: ctx.scaled(2))
        XCTAssertEqual(rows(vision), [0, 1, 2, 3, 4, -2, -4, -6])
    }

    /// Padding after the longest prompt changes nothing, prompts or not (the model trims it).
    func testTrimmedPaddingGivesTheSameConditionalEmbedding() throws {
        let config = CLIPSegPreset.tiny.config
        let pixels = Self.pixels(config)
        let prompts = try Self.prompts(["a polyp", "left ventricle's endocardium"])
        for name in Self.methods {
            let model = CLIPSegInitializer.randomModel(config: config, seed: 2)
            _ = try Self.method(name, name == "shared_attention" ? ["depth": 2, "heads": 4] : ["depth": 2]).prepare(
                model, seed: 4)
            let full = model.conditionalEmbeddings(text: prompts, trimPadding: false, pixels: pixels)
            let trimmed = model.conditionalEmbeddings(text: prompts, trimPadding: true, pixels: pixels)
            Check.assertClose(trimmed, full.scalars, tolerance: 2e-5, name)
        }
    }

    /// CoCoOp's segmentation pass reuses the plain vision states its image feature was computed from:
    /// the logits are those of running the tower again.
    func testCoCoOpReusesThePlainVisionStatesExactly() throws {
        let config = CLIPSegPreset.tiny.config
        let pixels = Self.pixels(config)
        let prompts = try Self.prompts(["a polyp", "left ventricle's endocardium"], length: 12)
        let model = CLIPSegInitializer.randomModel(config: config, seed: 12)
        _ = try Self.method("cocoop", ["depth": 2]).prepare(model, seed: 1)
        let reused = model(pixels: pixels, text: prompts)
        // Reused once only: a second segmentation pass runs the tower.
        XCTAssertNil(model.hooks?.plainVisionStates(pixels, layers: config.visionLayersNeeded))
        let cond = model.conditionalEmbeddings(text: prompts, pixels: pixels)
        XCTAssertNil(
            model.hooks?.plainVisionStates(Self.pixels(config, seed: 99), layers: config.visionLayersNeeded),
            "other pixels")
        // an observer disables reuse
        let rerun = model.segment(pixels: pixels, conditional: cond, observer: { _, _ in })
        Check.assertClose(reused, rerun.scalars, tolerance: 0)
        // Image features remembered per image: a batch of one seen and one new image.
        let cocoop = try XCTUnwrap(model.hooks as? CoCoOp)
        let fresh = Self.pixels(config, seed: 77)
        let perImage = pixels.count / 2
        let mixed = Tensor(
            shape: pixels.shape, values: Array(pixels.scalars[perImage...]) + Array(fresh.scalars[..<perImage]))
        let expected = model.imageFeatures(mixed, applyHooks: false)
        _ = cocoop.textSequence(
            TextSequence(
                tokens: Tensor(zeros: [2, 2, 32]), attentionMask: [[1, 1], [1, 1]], poolingPositions: [1, 1]),
            context: ForwardContext(pixels: mixed, batchSize: 2))
        Check.assertClose(
            cocoop.imageFeature(ForwardContext(pixels: mixed, batchSize: 2)), expected.scalars, tolerance: 1e-5)
    }

    // MARK: - Identities

    /// METHODS.md's identity: CoOp (and CoCoOp with its meta-nets' last Linear at zero) with
    /// ctx[0] = the token embeddings of "a photo of a" and the deep rows = the plain model's states at
    /// positions 1...4 reproduces the plain model on "a photo of a <prompt>".
    func testCoOpAndCoCoOpReproduceThePlainModelOnTheFullPrompt() throws {
        let config = CLIPSegPreset.tiny.config
        let pixels = Self.pixels(config)
        let stripped = try Self.prompts(["polyp", "left ventricle's endocardium"])
        let full = try Self.prompts(["a photo of a polyp", "a photo of a left ventricle's endocardium"])
        for name in ["coop", "cocoop"] {
            let model = CLIPSegInitializer.randomModel(config: config, seed: 12)
            let plain = model(pixels: pixels, text: full)
            // Plain text states of block inputs 0...: positions 1...4 hold "a photo of a" (causal: the same in every row).
            let seq = TextSequence(
                tokens: model.textTokenEmbeddings(full, length: 77), attentionMask: full.attentionMask,
                poolingPositions: model.poolingPositions(full))
            let states = model.encodeText(seq, prompts: full, context: ForwardContext(pixels: nil, batchSize: 2))
                .hiddenStates
            let names = try Self.method(name, ["depth": 2, "init": "a photo of a"]).prepare(model, seed: 3)
            let ctx = model.parameters["context_vectors"].copy()
            let dt = config.textConfig.hiddenSize
            withTensorPointers(writing: ctx, reading: states[1]) { ($0 + 4 * dt).update(from: $1 + dt, count: 4 * dt) }
            model.parameters.set("context_vectors", ctx)
            for n in names where n.hasSuffix(".2.weight") {
                model.parameters.set(n, Tensor(zeros: model.parameters[n].shape))
            }
            let prompted = model(pixels: pixels, text: stripped)
            Check.assertClose(prompted, plain.scalars, tolerance: 1e-5, name)
        }
    }

    /// With zero prompt tokens every method is exactly the plain model (placement, masks, pooling and
    /// the decoder's slicing add nothing). n = 0 is not a configuration (see the next test), so the
    /// methods are built here through their initialisers, which take it.
    func testZeroSizeContextIsThePlainModel() throws {
        let config = CLIPSegPreset.tiny.config
        let pixels = Self.pixels(config)
        let prompts = try Self.prompts(["a polyp", "left ventricle's endocardium"], length: 12)
        let model = CLIPSegInitializer.randomModel(config: config, seed: 12)
        let plain = model(pixels: pixels, text: prompts)
        for name in Self.methods {
            var options: [String: ConfigValue] = ["depth": 2]
            if name == "shared_attention" { options["heads"] = 4 }
            if ["coop", "cocoop", "maple"].contains(name) { options["init"] = "none" }
            let m4 = try Self.method(name, options)
            let m = try Self.withoutContext(m4)
            XCTAssertEqual(m.name, name)
            _ = try m.prepare(model, seed: 1)
            Check.assertClose(model(pixels: pixels, text: prompts), plain.scalars, tolerance: 0, name)
            // ... and with prompts the logits do change.
            _ = try m4.prepare(model, seed: 1)
            let changed =
                zip(model(pixels: pixels, text: prompts).scalars, plain.scalars).map { abs($0 - $1) }.max() ?? 0
            XCTAssertGreaterThan(changed, 1e-6, name)
            model.hooks = nil
        }
    }

    /// The same method with n = 0 prompt tokens and no init phrase.
    static func withoutContext(_ m: PromptLearner) throws -> PromptLearner {
        switch m {
        case let m as CoOp: return CoOp(depth: m.depth, contextLength: 0, initPhrase: nil)
        case let m as CoCoOp: return CoCoOp(depth: m.depth, contextLength: 0, initPhrase: nil, hidden: m.hidden)
        case let m as VPT: return VPT(depth: m.depth, contextLength: 0)
        case let m as MaPLe: return MaPLe(depth: m.depth, contextLength: 0, initPhrase: nil, hidden: m.hidden)
        case let m as SharedSeparate: return SharedSeparate(depth: m.depth, contextLength: 0, sharedDim: m.sharedDim)
        case let m as SharedAttention:
            return SharedAttention(depth: m.depth, contextLength: 0, heads: m.heads, feedForward: m.feedForward)
        default: throw TuningError.unknownMethod(m.name, available: methods)
        }
    }

    /// n_ctx = 0 is refused as a configuration by every prompt method, with the reason the config also
    /// gives (`vlseg config validate tuning=coop tuning.n_ctx=0`): a method with no prompt tokens trains
    /// nothing (that is zero_shot). The smallest context, 1, is accepted.
    func testNoPromptTokensIsNotAConfiguration() throws {
        for name in Self.methods + ["vpt_shallow", "vpt_deep"] {
            XCTAssertThrowsError(try TuningMethodRegistry.shared.make(name, options: ["n_ctx": 0]), name) {
                XCTAssertEqual("\($0)", "tuning '\(name)': option 'n_ctx': must be at least 1, found 0")
            }
            var smallest: [String: ConfigValue] = ["n_ctx": 1]
            if ["coop", "cocoop", "maple"].contains(name) { smallest["init"] = "none" }
            XCTAssertEqual(try Self.method(name, smallest).contextLength(CLIPSegPreset.tiny.config), 1, name)
        }
        XCTAssertEqual(TuningMethodRegistry.shared.schema(named: "coop")?.option("n_ctx")?.minimum, 1)
    }

    /// Against the reference on the fixture checkpoint: CoOp's identity gives its stored plain logits.
    func testCoOpIdentityAgainstTheFixtureLogits() throws {
        let tiny = try Fixtures.clipsegTiny()
        let model = try CLIPSegModel.load(directory: tiny)
        let ref = try SafeTensorsFile(url: tiny.appendingPathComponent("reference.safetensors"))
        let pixels = try ref.tensor("native.pixel_values").copy()
        _ = try Self.method("coop", ["depth": 1, "init": "a photo of a"]).prepare(model, seed: 0)
        let logits = model(pixels: pixels, text: try Self.prompts(["polyp", "left ventricle's endocardium"]))
        let expected = try ref.tensor("native.logits")
        let hw = expected.count / 2
        Check.assertClose(
            Tensor(shape: [hw], values: Array(logits.scalars[0..<hw])), Array(expected.scalars[0..<hw]), tolerance: 1e-4
        )
    }

    // MARK: - Gradients

    /// Options of the gradient checks: small hidden sizes, but wide enough that no meta-net/coupling
    /// unit is dead for every image (a LayerNorm of an all-zero vector is the one place where these
    /// learners are far from linear on the scale of a finite-difference step).
    static func gradientCheckOptions(_ name: String) -> [String: ConfigValue] {
        switch name {
        case "cocoop", "maple": return ["depth": 2, "hidden": 16]
        case "shared_separate": return ["depth": 2, "shared_dim": 6]
        case "shared_attention": return ["depth": 2, "heads": 4, "ffn": 12]
        default: return ["depth": 2]
        }
    }

    /// A tiny random model with the method prepared and its context drawn larger than the N(0, 0.02)
    /// start, so that the prompts matter.
    static func preparedModel(_ name: String) throws -> (CLIPSegModel, PromptLearner, [String]) {
        let model = CLIPSegInitializer.randomModel(config: CLIPSegPreset.tiny.config, seed: 21)
        let m = try method(name, gradientCheckOptions(name))
        let names = try m.prepare(model, seed: 8)
        var g = SplitMix64(seed: 30)
        let ctx = model.parameters["context_vectors"]
        model.parameters.set("context_vectors", Tensor.randomNormal(ctx.shape, std: 0.5, generator: &g))
        return (model, m, names)
    }

    /// The placement op alone (linear: exact up to rounding), with shared and per-image sources.
    func testPlacementGradients() {
        let x = Check.random([2, 7, 3], seed: 1), shared = Check.random([1, 2, 3], seed: 2),
            perImage = Check.random([2, 2, 3], seed: 3)
        let seq = TextSequence(
            tokens: x, attentionMask: [[1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]], poolingPositions: [3, 6])
        for ctx in [shared, perImage] {
            Check.gradients([x, ctx], tolerance: 1e-3) {
                PromptPlacement.insertTextContext(
                    TextSequence(
                        tokens: $0[0], attentionMask: seq.attentionMask, poolingPositions: seq.poolingPositions),
                    context: $0[1], maxPositions: 8
                ).tokens
            }
            Check.gradients([x, ctx], tolerance: 1e-3) { PromptPlacement.replaceTextContext($0[0], context: $0[1]) }
            Check.gradients([x, ctx], tolerance: 1e-3) { PromptPlacement.appendVisionPrompts($0[0], prompts: $0[1]) }
            Check.gradients([x, ctx], tolerance: 1e-3) { PromptPlacement.replaceVisionPrompts($0[0], prompts: $0[1]) }
        }
    }

    /// Each learner's prompts of every depth as functions of its tensors (the learners' own math, free
    /// of the frozen network's float32 noise): finite differences of sum(prompts * w).
    func testLearnerGradientsMatchFiniteDifferences() throws {
        let config = CLIPSegPreset.tiny.config
        let context = ForwardContext(pixels: Self.pixels(config), batchSize: 2)
        for name in Self.methods {
            let (model, m, names) = try Self.preparedModel(name)
            let originals = names.map { model.parameters[$0] }
            Check.gradients(originals, eps: 1e-3, tolerance: 1e-2, samples: 12) { xs in
                for (n, x) in zip(names, xs) { model.parameters.set(n, x) }
                if name == "cocoop" {
                    _ = m.textSequence(
                        TextSequence(
                            tokens: Tensor(zeros: [2, 2, 32]), attentionMask: [[1, 1], [1, 1]],
                            poolingPositions: [1, 1]), context: context)
                }
                var parts: [Tensor] = []
                for d in 0..<m.depth {
                    if m.promptsText {
                        parts.append(m.textPrompt(d, context: context).expanded(to: [2, 4, 32]).reshaped([-1]))
                    }
                    if m.promptsVision { parts.append(m.visionPrompt(d, context: context).reshaped([-1])) }
                }
                return concat(parts, axis: 0)
            }
            for (n, t) in zip(names, originals) { model.parameters.set(n, t) }
        }
    }

    /// Finite differences of L = sum(logits * w) through the whole tiny model, every trainable tensor of
    /// every method. Float32 differences through a random network with ReLU kinks carry a few percent
    /// of noise, hence the tolerance; the exact agreement (1e-4 relative) is the fixtures' test
    /// against reference gradients that were themselves checked in float64.
    func testGradientsMatchFiniteDifferences() throws {
        let config = CLIPSegPreset.tiny.config
        let pixels = Self.pixels(config, size: 32)  // a 2x2 grid (positions resized): a faster forward
        let prompts = try Self.prompts(["a polyp", "left ventricle's endocardium"], length: 10)
        for name in Self.methods {
            let (model, _, names) = try Self.preparedModel(name)
            let originals = names.map { model.parameters[$0] }
            let errors = Check.gradients(originals, eps: 2e-3, tolerance: 4e-2, samples: 4) { xs in
                for (n, x) in zip(names, xs) { model.parameters.set(n, x) }
                return model(pixels: pixels, text: prompts)
            }
            print("\(name): finite-difference errors \(errors.map { String(format: "%.3f", $0) })")
            XCTAssertEqual(errors.count, names.count, name)
            for (n, t) in zip(names, originals) { model.parameters.set(n, t) }
        }
    }

    // MARK: - Learning

    /// Every method lowers BCE + Dice on a fixed batch, step after step, with Adam on its tensors alone;
    /// the frozen model's weights stay bit-identical.
    func testEveryMethodLearnsAFixedBatch() throws {
        let config = CLIPSegPreset.tiny.config
        let pixels = Self.pixels(config)
        let prompts = try Self.prompts(["a polyp", "left ventricle's endocardium"], length: 10)
        let target = Tensor(
            shape: [2, 64, 64],
            values: (0..<(2 * 64 * 64)).map { i in
                let b = i / 4096, y = (i % 4096) / 64, x = i % 64
                return (x - 20 - 12 * b) * (x - 20 - 12 * b) + (y - 30) * (y - 30) < 150 ? 1 : 0
            })
        for name in Self.methods {
            let model = CLIPSegInitializer.randomModel(config: config, seed: 5)
            let names = try Self.method(name, Self.gradientCheckOptions(name)).prepare(model, seed: 3)
            for n in names { model.parameters.markTrainable(n) }
            var m1 = names.map { [Float](repeating: 0, count: model.parameters[$0].count) }, m2 = m1
            var losses: [Float] = []
            for step in 1...8 {
                for n in names { model.parameters[n].node?.clearGradient() }
                let logits = model(pixels: pixels, text: prompts)
                let loss = binaryCrossEntropyWithLogits(logits, target: target) + softDiceLoss(logits, target: target)
                losses.append(loss.item)
                loss.backward()
                for (k, n) in names.enumerated() {  // Adam, lr 0.02
                    let t = model.parameters[n], g = t.grad!.scalars
                    t.withUnsafeMutablePointer { p in
                        for i in 0..<t.count {
                            m1[k][i] = 0.9 * m1[k][i] + 0.1 * g[i]
                            m2[k][i] = 0.999 * m2[k][i] + 0.001 * g[i] * g[i]
                            let mh = m1[k][i] / (1 - pow(0.9, Float(step))),
                                vh = m2[k][i] / (1 - pow(0.999, Float(step)))
                            p[i] -= 0.02 * mh / (vh.squareRoot() + 1e-8)
                        }
                    }
                }
            }
            print("\(name): fixed-batch loss \(losses.map { String(format: "%.4f", $0) })")
            // The random frozen decoder barely listens to its conditioning (changes are ~1e-4), but the
            // descent is steady and far above float32 noise.
            XCTAssertLessThan(losses.last!, losses.first! - 2e-5, "\(name) does not learn: \(losses)")
            for i in 2..<losses.count {
                XCTAssertLessThanOrEqual(losses[i], losses[i - 1] + 1e-6, "\(name): \(losses)")
            }
            let frozenAfter = model.parameters.fingerprint(excluding: Set(names))
            let frozenBefore = CLIPSegInitializer.randomModel(config: config, seed: 5).parameters.fingerprint()
            XCTAssertEqual(frozenAfter, frozenBefore, "\(name) changed a frozen weight")
        }
    }

    // MARK: - Another architecture

    /// Different widths and layers, first-eos pooling, taps [0, 2], FiLM at decoder layer 1, a simple
    /// head, patch 8: every method prepares, runs, and gives every tensor a gradient.
    func testEveryMethodRunsOnAnotherArchitecture() throws {
        let c = TestModels.variantConfig(textLayers: 3)
        let prompts = try Self.prompts(["a polyp", "left ventricle's endocardium"], length: 9)
        for name in Self.methods {
            let model = CLIPSegInitializer.randomModel(config: c, seed: 4)
            let plain = GradMode.withoutGradients { model(pixels: Self.pixels(c, seed: 32), text: prompts) }
            let m = try Self.method(
                name, name == "shared_attention" ? ["depth": 3, "heads": 4, "ffn": 16] : ["depth": 3])
            let names = try m.prepare(model, seed: 2)
            for n in names { model.parameters.markTrainable(n) }
            for size in [32, 40] {  // native grid, and resized positions
                let pixels = Self.pixels(c, size: size, seed: 32)
                let logits = model(pixels: pixels, text: prompts)
                XCTAssertEqual(logits.shape, [2, size, size], name)
                XCTAssertTrue(logits.scalars.allSatisfy(\.isFinite), name)
                if size == 32 {
                    let diff = zip(logits.scalars, plain.scalars).map { abs($0 - $1) }.max() ?? 0
                    XCTAssertGreaterThan(diff, 0, "\(name) changes the logits")
                    (logits * logits).sum().backward()
                    for n in names {
                        let grad = try XCTUnwrap(model.parameters[n].grad, "\(name): \(n)")
                        XCTAssertTrue(grad.scalars.contains { $0 != 0 }, "\(name): \(n) has an all-zero gradient")
                    }
                }
            }
            // The frozen model stays frozen.
            XCTAssertEqual(model.parameters.trainableNames, Set(names), name)
        }
    }
}
