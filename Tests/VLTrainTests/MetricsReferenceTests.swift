import Foundation
import VLData
import VLTestSupport
import XCTest

@testable import VLTensor
@testable import VLTrain

/// Per-image and pooled Dice/IoU against an independent computation in numpy, on masks that include
/// every empty case; the sharded reduction; the resize modes and the threshold.
final class MetricsReferenceTests: XCTestCase {
    /// Runs `script` (python3 with numpy, `VLTestSupport.PythonReference`) on `input`, given as JSON in
    /// its first argument, and returns the JSON it prints.
    func numpy(_ script: String, input: Any) throws -> [String: Any] {
        let argument = String(decoding: try JSONSerialization.data(withJSONObject: input), as: UTF8.self)
        let out = try PythonReference.run(script, arguments: [argument])
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], out)
    }

    /// Written from the definitions, not from VLSeg's code: foreground = sigmoid(logit) > p and
    /// target > 0.5; per image 2|A∩B|/(|A|+|B|) and |A∩B|/|A∪B|, 1 when both are empty; pooled over all
    /// pixels of all images, as torchmetrics' BinaryJaccardIndex accumulates its confusion matrix.
    static let reference = """
        import json, sys
        import numpy as np
        spec = json.loads(sys.argv[1])
        p = spec["threshold"]
        dice, iou = [], []
        inter = pred_sum = truth_sum = union = 0
        for image in spec["images"]:
            logits = np.asarray(image["logits"], dtype=np.float64)
            pred = 1.0 / (1.0 + np.exp(-logits)) > p
            truth = np.asarray(image["target"], dtype=np.float64) > 0.5
            i = np.logical_and(pred, truth).sum(); u = np.logical_or(pred, truth).sum()
            a = pred.sum(); b = truth.sum()
            dice.append(1.0 if a + b == 0 else 2.0 * i / (a + b))
            iou.append(1.0 if u == 0 else i / u)
            inter += i; pred_sum += a; truth_sum += b; union += u
        print(json.dumps({
            "dice": float(np.mean(dice)), "iou": float(np.mean(iou)),
            "dice_each": [float(x) for x in dice], "iou_each": [float(x) for x in iou],
            "dice_pooled": 1.0 if pred_sum + truth_sum == 0 else float(2.0 * inter / (pred_sum + truth_sum)),
            "iou_pooled": 1.0 if union == 0 else float(inter / union)}))
        """

    /// Images of several sizes: both masks empty, only the prediction empty, only the target empty,
    /// disjoint, identical, and random overlaps.
    static func images() -> [(logits: Tensor, target: Tensor)] {
        var rng = SplitMix(seed: 11)
        func random(_ n: Int, _ fraction: Double) -> [Float] {
            (0..<n).map { _ in rng.nextDouble() < fraction ? 1 : 0 }
        }
        func logits(_ n: Int) -> [Float] { (0..<n).map { _ in Float(rng.nextDouble() * 8 - 4) } }
        var out: [(Tensor, Tensor)] = []
        func add(_ h: Int, _ w: Int, _ l: [Float], _ t: [Float]) {
            out.append((Tensor(shape: [1, h, w], values: l), Tensor(shape: [1, h, w], values: t)))
        }
        add(5, 7, [Float](repeating: -3, count: 35), [Float](repeating: 0, count: 35))  // both empty
        add(5, 7, [Float](repeating: -3, count: 35), random(35, 0.4))  // prediction empty
        add(6, 4, logits(24).map { abs($0) + 0.1 }, [Float](repeating: 0, count: 24))  // target empty
        add(
            4, 4, [3, 3, -3, -3, 3, 3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3],
            [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0])  // disjoint
        let same = random(30, 0.5)
        add(5, 6, same.map { $0 > 0 ? 2 : -2 }, same)  // identical
        for (h, w) in [(9, 11), (16, 16), (3, 20), (12, 7)] { add(h, w, logits(h * w), random(h * w, 0.3)) }
        return out
    }

    func check(threshold p: Double) throws {
        let images = Self.images()
        let threshold = try XCTUnwrap(ProbabilityThreshold(probability: p))
        var all = SegmentationMetrics(), shards = [SegmentationMetrics(), SegmentationMetrics()]
        var each: [PixelCounts] = []
        for (k, image) in images.enumerated() {
            all.add(logits: image.logits, target: image.target, loss: nil, threshold: threshold)
            shards[k % 2].add(logits: image.logits, target: image.target, loss: nil, threshold: threshold)
            each.append(
                withTensorPointers(reading: image.logits, image.target) { pl, pt in
                    SegmentationMetrics.counts(logits: pl, target: pt, count: image.logits.count, threshold: threshold)
                })
        }
        let ref = try numpy(
            Self.reference,
            input: [
                "threshold": p,
                "images": images.map {
                    ["logits": $0.logits.scalars.map(Double.init), "target": $0.target.scalars.map(Double.init)]
                },
            ])
        func number(_ key: String) throws -> Double { try XCTUnwrap(ref[key] as? Double, key) }
        XCTAssertEqual(all.dice, try number("dice"), accuracy: 1e-12)
        XCTAssertEqual(all.iou, try number("iou"), accuracy: 1e-12)
        XCTAssertEqual(all.dicePooled, try number("dice_pooled"), accuracy: 1e-12)
        XCTAssertEqual(all.iouPooled, try number("iou_pooled"), accuracy: 1e-12)
        let diceEach = try XCTUnwrap(ref["dice_each"] as? [Double]),
            iouEach = try XCTUnwrap(ref["iou_each"] as? [Double])
        for (k, c) in each.enumerated() {
            XCTAssertEqual(c.dice, diceEach[k], accuracy: 1e-12, "image \(k)")
            XCTAssertEqual(c.iou, iouEach[k], accuracy: 1e-12, "image \(k)")
        }
        // The empty cases: both empty 1, exactly one empty 0.
        XCTAssertEqual(
            [each[0].dice, each[0].iou, each[1].dice, each[1].iou, each[2].dice, each[2].iou], [1, 1, 0, 0, 0, 0])
        XCTAssertEqual([each[3].dice, each[4].dice], [0, 1])
        // Ranks sum counts, not ratios: two shards reduce to exactly the single pass.
        let summed = SegmentationMetrics(
            reductionVector: zip(shards[0].reductionVector, shards[1].reductionVector).map { $0 + $1 })
        XCTAssertEqual(
            [summed.intersection, summed.predicted, summed.truth, Double(summed.images)],
            [all.intersection, all.predicted, all.truth, Double(all.images)])
        XCTAssertEqual(summed.dicePooled, all.dicePooled)
        XCTAssertEqual(summed.iouPooled, all.iouPooled)
        XCTAssertEqual(summed.dice, all.dice, accuracy: 1e-12)
        XCTAssertEqual(summed.iou, all.iou, accuracy: 1e-12)
        // ... whereas averaging each shard's pooled ratio would not.
        XCTAssertNotEqual((shards[0].iouPooled + shards[1].iouPooled) / 2, all.iouPooled, accuracy: 1e-6)
    }

    func testPerImageAndPooledScoresMatchNumpy() throws { try check(threshold: 0.5) }
    func testAnotherThresholdMatchesNumpy() throws { try check(threshold: 0.3) }

    func testPooledScoresOfAnAllEmptySplitAreOne() {
        var m = SegmentationMetrics()
        m.add(PixelCounts())
        m.add(PixelCounts())
        XCTAssertEqual([m.dice, m.iou, m.dicePooled, m.iouPooled], [1, 1, 1, 1])
        m.add(PixelCounts(intersection: 0, predicted: 3, truth: 0))
        XCTAssertEqual(m.dicePooled, 0)
        XCTAssertEqual(m.dice, 2.0 / 3, accuracy: 1e-15)
    }

    func testThresholdsOutsideTheOpenIntervalAreRefused() {
        XCTAssertNil(ProbabilityThreshold(probability: 0))
        XCTAssertNil(ProbabilityThreshold(probability: 1))
        XCTAssertNil(ProbabilityThreshold(probability: .nan))
        XCTAssertEqual(ProbabilityThreshold(probability: 0.5)?.logit, 0)
    }

    /// Nearest-exact against numpy's evaluation of torchvision's rule, on up- and downscaling.
    func testNearestResizeIsNearestExact() throws {
        let script = """
            import json, sys
            import numpy as np
            spec = json.loads(sys.argv[1])
            h, w, H, W = spec["h"], spec["w"], spec["H"], spec["W"]
            x = np.asarray(spec["logits"], dtype=np.float32).reshape(h, w) > 0
            sy = np.float32(h) / np.float32(H); sx = np.float32(w) / np.float32(W)
            ry = np.minimum(np.floor((np.arange(H, dtype=np.float32) + np.float32(0.5)) * sy).astype(int), h - 1)
            rx = np.minimum(np.floor((np.arange(W, dtype=np.float32) + np.float32(0.5)) * sx).astype(int), w - 1)
            print(json.dumps({"mask": x[ry][:, rx].astype(int).ravel().tolist()}))
            """
        var rng = SplitMix(seed: 3)
        for (h, w, H, W) in [(8, 8, 21, 13), (16, 12, 5, 7), (7, 9, 7, 9)] {
            let values = (0..<(h * w)).map { _ in Float(rng.nextDouble() * 2 - 1) }
            let mask = Inference.originalPrediction(
                Tensor(shape: [h, w], values: values), size: ImageSize(width: W, height: H), resize: .nearest)
            let ref = try numpy(script, input: ["h": h, "w": w, "H": H, "W": W, "logits": values.map(Double.init)])
            XCTAssertEqual(mask.values.map(Int.init), try XCTUnwrap(ref["mask"] as? [Int]), "\(h)x\(w) -> \(H)x\(W)")
        }
    }

    /// Bicubic interpolates probabilities (not logits) and keeps pixels at >= the threshold; bilinear
    /// interpolates logits and keeps pixels strictly above.
    func testBicubicThresholdsProbabilitiesAndBilinearLogits() throws {
        // Exactly probability 0.5 (logit 0) at the same size (both interpolations are then exact): foreground
        // under bicubic (>=), not under bilinear (>).
        let zero = Tensor(shape: [4, 6], values: [Float](repeating: 0, count: 24))
        let same = ImageSize(width: 6, height: 4)
        XCTAssertEqual(
            Inference.originalPrediction(zero, size: same, resize: .bicubic).values, [UInt8](repeating: 1, count: 24))
        XCTAssertEqual(
            Inference.originalPrediction(zero, size: same, resize: .bilinear).values, [UInt8](repeating: 0, count: 24))
        // Two columns, logits -1 and +9, to four at threshold 0.6: interpolated logits pass it from the
        // second column on (1.5 is probability 0.82); interpolated probabilities (0.27 and 1.0) only from the third.
        let step = Tensor(shape: [1, 2], values: [-1, 9])
        let wide = ImageSize(width: 4, height: 1)
        let p = try XCTUnwrap(ProbabilityThreshold(probability: 0.6))
        let bilinear = Inference.originalPrediction(step, size: wide, threshold: p, resize: .bilinear).values
        let bicubic = Inference.originalPrediction(step, size: wide, threshold: p, resize: .bicubic).values
        XCTAssertEqual(bilinear, [0, 1, 1, 1])
        XCTAssertEqual(bicubic.first, 0)
        XCTAssertEqual(bicubic.last, 1)
        XCTAssertLessThan(bicubic.reduce(0) { $0 + Int($1) }, bilinear.reduce(0) { $0 + Int($1) })
    }
}

/// metrics.csv gained columns; a run resumed from a file with the older header keeps writing its columns.
final class MetricsLogColumnsTests: XCTestCase {
    func testResumingAFileWithFewerColumnsKeepsItsHeader() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-metrics-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let old = "kind,step,epoch,loss,lr,images_per_s,val_loss,val_dice,val_iou,grad_norm,seconds"
        try (old + "\ntrain,1,0,0.5,0.001,3,,,,0.2,1\n").write(
            to: dir.appendingPathComponent("metrics.csv"), atomically: true, encoding: .utf8)
        let log = try MetricsLog(runDirectory: dir, resuming: true)
        try log.append(["kind": "val", "step": 2, "val_dice": 0.25, "val_dice_pooled": 0.5])
        let lines = try String(contentsOf: dir.appendingPathComponent("metrics.csv"), encoding: .utf8).split(
            separator: "\n"
        ).map(String.init)
        XCTAssertEqual(lines, [old, "train,1,0,0.5,0.001,3,,,,0.2,1", "val,2,,,,,,0.25,,,"])
        let fresh = try MetricsLog(runDirectory: dir, resuming: false)
        try fresh.append(["kind": "val", "step": 2, "val_dice_pooled": 0.5])
        let header = try String(contentsOf: dir.appendingPathComponent("metrics.csv"), encoding: .utf8).split(
            separator: "\n"
        ).first
        XCTAssertEqual(header.map(String.init), MetricsLog.columns.joined(separator: ","))
        withExtendedLifetime((log, fresh)) {}
    }
}

/// A small deterministic generator for test data (SplitMix64).
private struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func nextDouble() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
