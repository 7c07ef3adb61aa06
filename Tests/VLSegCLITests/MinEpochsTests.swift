import Foundation
import XCTest

/// `trainer.min_epochs` with early stopping, end to end: a stop signalled at the second evaluation ends
/// the run there without a minimum, and only after `min_epochs` complete epochs with one.
final class MinEpochsTests: XCTestCase {
    static let work = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-cli-minepochs-\(getpid())")

    override class func tearDown() { try? FileManager.default.removeItem(at: work) }

    /// Trains on the tiny demo with an evaluation per epoch and an improvement no loss can make
    /// (a drop of more than 100), so patience 1 signals the stop at the second evaluation.
    func epochsTrained(minEpochs: Int) throws -> Int {
        let run = Self.work.appendingPathComponent("run-min\(minEpochs)")
        let r = try ProcessRunner.vlseg(
            ranks: 1,
            [
                "train", "--config-dir", ProcessRunner.repoRoot.appendingPathComponent("configs").path,
                "data.name=demo", "data.root=\(Self.work.appendingPathComponent("data").path)", "data.demo.count=40",
                "data.demo.size=64", "model.path=\(Self.work.appendingPathComponent("model").path)",
                "model.preset=tiny", "model.image_size=64", "data.batch_size=4", "trainer.global_batch_size=0",
                "data.workers=1", "trainer.threads=1", "trainer.max_steps=0", "trainer.max_epochs=6",
                "trainer.eval_every=0", "trainer.checkpoint_every=0", "trainer.test.at_end=false",
                "trainer.early_stopping.patience=1", "trainer.early_stopping.monitor=val_loss",
                "trainer.early_stopping.mode=min", "trainer.early_stopping.min_delta=100",
                "trainer.min_epochs=\(minEpochs)", "run.dir=\(run.path)", "seed=3",
            ], timeout: 300)
        XCTAssertEqual(r.status, 0, r.output)
        let data = try Data(contentsOf: run.appendingPathComponent("training.json"))
        let json = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        XCTAssertEqual(json?["stopped_early"] as? Bool, true, r.output)
        return json?["epochs"] as? Int ?? -1
    }

    func testEarlyStoppingWaitsForMinEpochs() throws {
        XCTAssertEqual(try epochsTrained(minEpochs: 0), 2)
        XCTAssertEqual(try epochsTrained(minEpochs: 4), 4)
    }
}
