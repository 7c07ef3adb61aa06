import Foundation
import VLTestSupport
import XCTest

@testable import VLModels
@testable import VLTensor
@testable import VLTrain

/// The settings that make an experiment run as its paper's code runs it (docs/protocols.md): early
/// stopping's monitor, mode, min_delta and min_epochs; weight-decay groups; Dice smoothing; VLSM-Adapter's
/// double sigmoid; bf16 with a float32 fallback.
final class ProtocolSettingsTests: XCTestCase {
    // MARK: Early stopping

    /// Lightning's rule for mode min: an improvement is a drop by more than min_delta.
    func testEarlyStoppingOnLossWithModeMin() {
        var e = EarlyStopping(patience: 2, minDelta: 0.01, monitor: .valLoss, mode: .min)
        XCTAssertEqual(e.observe(1.0).improved, true)
        XCTAssertEqual(e.observe(0.995).improved, false)  // a drop of 0.005 <= min_delta
        XCTAssertEqual(e.observe(0.98).improved, true)  // 0.02 below the best
        XCTAssertEqual(e.observe(1.5).shouldStop, false)
        XCTAssertEqual(e.observe(0.975).shouldStop, true)  // second evaluation without a drop > 0.01
        var m = SegmentationMetrics()
        m.diceSum = 3
        m.images = 4
        m.lossSum = 2
        m.batches = 4
        XCTAssertEqual(e.value(of: m), 0.5)
        XCTAssertEqual(EarlyStopping(patience: 1).value(of: m), 0.75)
    }

    /// Once patience ran out the stop stays signalled (Lightning ORs it into should_stop), even if the
    /// value improves before min_epochs lets the run end.
    func testASignalledStopStays() {
        var e = EarlyStopping(patience: 1, monitor: .valDice, mode: .max)
        _ = e.observe(0.5)
        XCTAssertEqual(e.observe(0.4).shouldStop, true)
        let later = e.observe(0.9)
        XCTAssertEqual(later.improved, true)
        XCTAssertEqual(later.shouldStop, true)
    }

    /// Checkpoints written before monitor/mode existed resume as validation Dice, higher better.
    func testEarlyStoppingStateFromBeforeTheMonitorDecodes() throws {
        let json = #"{"patience": 3, "minDelta": 0, "best": 0.7, "evaluationsWithoutImprovement": 1}"#
        let e = try JSONDecoder().decode(EarlyStopping.self, from: Data(json.utf8))
        XCTAssertEqual(e.monitor, .valDice)
        XCTAssertEqual(e.mode, .max)
        XCTAssertEqual(e.best, 0.7)
        XCTAssertFalse(e.signalled)
        let round = try JSONDecoder().decode(
            EarlyStopping.self,
            from: try JSONEncoder().encode(EarlyStopping(patience: 2, minDelta: 1e-4, monitor: .valLoss, mode: .min)))
        XCTAssertEqual(round.monitor, .valLoss)
        XCTAssertEqual(round.mode, .min)
    }

    // MARK: Weight decay groups

    func testLinearConvRuleExemptsBiasesNormsEmbeddingsAndPrompts() {
        let rule = WeightDecayParams.linearConv
        XCTAssertTrue(rule.decays(name: "decoder.film_mul.weight", shape: [64, 512]))
        XCTAssertTrue(
            rule.decays(name: "clip.vision_model.embeddings.patch_embedding.weight", shape: [768, 3, 16, 16]))
        XCTAssertTrue(rule.decays(name: "decoder.layers.0.self_attn.in_proj_weight", shape: [192, 64]))
        XCTAssertFalse(rule.decays(name: "decoder.film_mul.bias", shape: [64]))
        XCTAssertFalse(rule.decays(name: "decoder.layers.0.layer_norm1.weight", shape: [64]))
        XCTAssertFalse(rule.decays(name: "clip.text_model.embeddings.token_embedding.weight", shape: [49408, 512]))
        XCTAssertFalse(rule.decays(name: "backbone.token_embedding.weight", shape: [49408, 512]))
        XCTAssertFalse(rule.decays(name: "context_vectors", shape: [1, 4, 512]))
        XCTAssertFalse(rule.decays(name: "backbone.text_projection", shape: [512, 1024]))
        XCTAssertTrue(WeightDecayParams.all.decays(name: "context_vectors", shape: [1, 4, 512]))
    }

    /// With zero gradients an AdamW step only decays: under linear_conv only the linear weight shrinks.
    func testAdamWDecaysOnlyTheRangesOfTheRule() {
        let store = ParameterStore()
        store.set("head.weight", Tensor(shape: [2, 2], values: [1, 2, 3, 4]))
        store.set("head.bias", Tensor(shape: [2], values: [5, 6]))
        store.set("context_vectors", Tensor(shape: [1, 2], values: [7, 8]))
        let names = ["head.weight", "head.bias", "context_vectors"]
        for (rule, expected) in [
            (WeightDecayParams.linearConv, [0.95, 1.9, 2.85, 3.8, 5, 6, 7, 8]),
            (.all, [0.95, 1.9, 2.85, 3.8, 4.75, 5.7, 6.65, 7.6]),
        ] {
            let copy = ParameterStore()
            for n in names { copy.set(n, store[n]) }
            let arena = ParameterArena(store: copy, names: names)
            arena.decayedRanges = rule.decayedRanges(arena)
            var opt = AdamW(weightDecay: 0.5)
            opt.update(arena, lr: 0.1)
            let got = arena.values.scalars
            for i in 0..<expected.count {
                XCTAssertEqual(Double(got[i]), expected[i], accuracy: 1e-6, "\(rule) value \(i)")
            }
        }
    }

    // MARK: Loss

    /// dice_smooth enters numerator and denominator: 1 - (2I + s) / (P + T + s) per image, then the mean.
    func testDiceSmoothingMatchesTheFormula() {
        let logits = Check.random([2, 3, 3], seed: 8, low: -3, high: 3)
        let target = Tensor(shape: [2, 3, 3], values: (0..<18).map { Float($0 % 4 == 0 ? 1 : 0) })
        let p = logits.scalars.map { 1 / (1 + exp(-Double($0))) }, t = target.scalars.map(Double.init)
        for smooth in [1e-5, 1.0] {
            var expected = 0.0
            for b in 0..<2 {
                let r = (9 * b)..<(9 * b + 9)
                let inter = r.reduce(0.0) { $0 + p[$1] * t[$1] }
                let sum = r.reduce(0.0) { $0 + p[$1] + t[$1] }
                expected += (1 - (2 * inter + smooth) / (sum + smooth)) / 2
            }
            let loss = SegmentationLoss(diceWeight: 1, bceWeight: 0, diceSmooth: Float(smooth))
            XCTAssertEqual(Double(loss(logits, target: target).item), expected, accuracy: 1e-6)
        }
    }

    /// The compat BCE term is BCE(sigmoid(sigmoid(x)), t); its gradient matches finite differences.
    func testDoubleSigmoidCompatIsBCEOfTheSigmoidTwice() {
        let logits = Check.random([2, 4], seed: 5, low: -4, high: 4)
        let target = Tensor(shape: [2, 4], values: [0, 1, 0.5, 1, 0, 0, 1, 0.25])
        var expected = 0.0
        for (x, t) in zip(logits.scalars.map(Double.init), target.scalars.map(Double.init)) {
            let q = 1 / (1 + exp(-(1 / (1 + exp(-x)))))
            expected -= (t * log(q) + (1 - t) * log(1 - q)) / 8
        }
        let compat = SegmentationLoss(diceWeight: 0, bceWeight: 1, compatDoubleSigmoid: true)
        XCTAssertEqual(Double(compat(logits, target: target).item), expected, accuracy: 1e-6)
        let intended = SegmentationLoss(diceWeight: 0, bceWeight: 1)
        XCTAssertEqual(
            intended(logits, target: target).item, binaryCrossEntropyWithLogits(logits, target: target).item)
        XCTAssertNotEqual(Double(intended(logits, target: target).item), expected, accuracy: 1e-3)
        Check.gradients([logits]) { xs in
            SegmentationLoss(diceWeight: 1.5, bceWeight: 1, diceSmooth: 1e-5, compatDoubleSigmoid: true)(
                xs[0], target: target)
        }
    }

    // MARK: Precision

    func testBF16IfAvailableFallsBackWithOneNote() {
        let here = PrecisionSetting.bf16IfAvailable.resolve(bf16Unavailable: nil)
        XCTAssertEqual(here.precision, .bf16)
        XCTAssertNil(here.note)
        let fallback = PrecisionSetting.bf16IfAvailable.resolve(bf16Unavailable: "no AVX512_BF16")
        XCTAssertEqual(fallback.precision, .fp32)
        XCTAssertEqual(
            fallback.note,
            "precision: trainer.precision=bf16_if_available runs float32 here (no AVX512_BF16); the papers' 16-mixed has no closer form on this CPU"
        )
        XCTAssertEqual(PrecisionSetting.fp32.resolve(bf16Unavailable: nil).precision, .fp32)
        XCTAssertEqual(PrecisionSetting.bf16.resolve(bf16Unavailable: "x").precision, .bf16)
    }

    /// On this machine: bf16_if_available sets what the CPU supports and the run's options carry the
    /// fallback line exactly when bf16 is unavailable.
    func testBF16IfAvailableOnThisCPU() throws {
        let resolved = try ConfigLoader(configDir: ConfigTests.configDir, environment: ["HOME": "/home/tester"]).load(
            overrides: ["trainer.precision=bf16_if_available"])
        defer { try? MatmulPrecision.set(.fp32) }
        try RunSetup.configureCompute(resolved.config, ranksOnThisMachine: 1)
        let options = RunSetup.trainingOptions(resolved, batchSize: 1)
        if let reason = MatmulPrecision.bf16Unavailable {
            XCTAssertEqual(MatmulPrecision.current, .fp32)
            XCTAssertEqual(options.precisionNote?.contains(reason), true)
        } else {
            XCTAssertEqual(MatmulPrecision.current, .bf16)
            XCTAssertNil(options.precisionNote)
        }
    }
}

extension ProtocolSettingsTests {
    /// Every new key refuses a bad value with an error that names it.
    func testBadValuesAreRefusedNamingTheKey() {
        let loader = ConfigLoader(configDir: ConfigTests.configDir, environment: ["HOME": "/home/tester"])
        let cases: [(String, String)] = [
            ("trainer.early_stopping.monitor=val_iou", "trainer.early_stopping.monitor"),
            ("trainer.early_stopping.mode=up", "trainer.early_stopping.mode"),
            ("trainer.loss.dice_smooth=0", "trainer.loss.dice_smooth"),
            ("trainer.loss.compat_double_sigmoid=sometimes", "trainer.loss.compat_double_sigmoid"),
            ("trainer.min_epochs=-1", "trainer.min_epochs"),
            ("trainer.min_epochs=300", "trainer.min_epochs"),
            ("trainer.weight_decay_params=biases", "trainer.weight_decay_params"),
            ("trainer.precision=fp16", "trainer.precision"),
            ("data.target=gray", "data.target"),
            ("data.append_period=maybe", "data.append_period"),
            ("data.resize=lanczos", "data.resize"),
        ]
        for (override, key) in cases {
            do {
                _ = try loader.load(overrides: [override])
                XCTFail("\(override) was accepted")
            } catch {
                XCTAssertTrue("\(error)".contains(key), "\(override): \(error)")
            }
        }
    }
}
