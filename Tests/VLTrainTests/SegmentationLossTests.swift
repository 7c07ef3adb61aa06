import VLTestSupport
import XCTest

@testable import VLTensor
@testable import VLTrain

final class SegmentationLossTests: XCTestCase {
    func testWeightedLossMatchesTheFormula() {
        let logits = Check.random([2, 3, 3], seed: 4, low: -3, high: 3)
        let target = Tensor(shape: [2, 3, 3], values: (0..<18).map { Float($0 % 3 == 0 ? 1 : 0) })
        let bce = binaryCrossEntropyWithLogits(logits, target: target).item
        let dice = softDiceLoss(logits, target: target).item
        XCTAssertEqual(SegmentationLoss()(logits, target: target).item, bce + dice, accuracy: 1e-6)
        XCTAssertEqual(
            SegmentationLoss(diceWeight: 0.3, bceWeight: 2)(logits, target: target).item, 0.3 * dice + 2 * bce,
            accuracy: 1e-6)
        XCTAssertEqual(SegmentationLoss(diceWeight: 0, bceWeight: 1)(logits, target: target).item, bce, accuracy: 1e-6)
        Check.gradients([logits]) { xs in SegmentationLoss(diceWeight: 0.5, bceWeight: 1.5)(xs[0], target: target) }
    }

    func testDiceAndIoUPerImage() {
        // Image 0: pred {0,1}, truth {1,2} -> inter 1, dice 2/4, iou 1/3. Image 1: both empty -> 1, 1.
        let logits = Tensor(shape: [2, 4], values: [1, 1, -1, -1, -1, -1, -1, -1])
        let target = Tensor(shape: [2, 4], values: [0, 1, 1, 0, 0, 0, 0, 0])
        var m = SegmentationMetrics()
        m.add(logits: logits, target: target, loss: 0.5)
        XCTAssertEqual(m.dice, (0.5 + 1) / 2, accuracy: 1e-12)
        XCTAssertEqual(m.iou, (1.0 / 3 + 1) / 2, accuracy: 1e-12)
        XCTAssertEqual(m.loss, 0.5)
        m.add(logits: logits.slice(axis: 0, 0..<1), target: target.slice(axis: 0, 0..<1), loss: 2)
        XCTAssertEqual(m.loss, (0.5 * 2 + 2) / 3, accuracy: 1e-12)
        // Empty truth with a non-empty prediction scores 0.
        var e = SegmentationMetrics()
        e.add(
            logits: Tensor(shape: [1, 2], values: [1, -1]), target: Tensor(shape: [1, 2], values: [0, 0]), loss: nil)
        XCTAssertEqual(e.dice, 0)
        XCTAssertEqual(SegmentationMetrics(reductionVector: m.reductionVector), m)
    }
}
