import Foundation
import VLTensor
import XCTest

/// `trainer.min_epochs` with early stopping, end to end: a stop signalled at the second evaluation ends
/// the run there without a minimum, and only after `min_epochs` complete epochs with one.
final class MinEpochsTests: XCTestCase {
    static let work = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-cli-minepochs-\(getpid())")

    override class func tearDown() { try? FileManager.default.removeItem(at: work) }

    /// Trains on the tiny demo with an evaluation per epoch and an improvement no loss can make
    /// (a drop of more than 100), so patience 1 signals the stop at the second evaluation.
    func epochsTrained(minEpochs: Int, extra: [String] = []) throws -> (epochs: Int, output: String) {
        let run = Self.work.appendingPathComponent("run-min\(minEpochs)-\(UUID().uuidString.prefix(8))")
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
            ] + extra, timeout: 300)
        XCTAssertEqual(r.status, 0, r.output)
        let data = try Data(contentsOf: run.appendingPathComponent("training.json"))
        let json = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        XCTAssertEqual(json?["stopped_early"] as? Bool, true, r.output)
        return (json?["epochs"] as? Int ?? -1, r.output)
    }

    func testEarlyStoppingWaitsForMinEpochs() throws {
        XCTAssertEqual(try epochsTrained(minEpochs: 0).epochs, 2)
        XCTAssertEqual(try epochsTrained(minEpochs: 4).epochs, 4)
    }

    /// bf16_if_available trains wherever it runs; without AVX512_BF16 the log says once that it is float32.
    func testBF16IfAvailableSaysItsFallbackOnce() throws {
        let r = try epochsTrained(minEpochs: 0, extra: ["trainer.precision=bf16_if_available"])
        let notes = r.output.components(separatedBy: "\n").filter {
            $0.contains("trainer.precision=bf16_if_available runs float32 here")
        }
        XCTAssertEqual(notes.count, MatmulPrecision.bf16Unavailable == nil ? 0 : 1, r.output)
        XCTAssertEqual(r.epochs, 2)
    }

    /// A bad value of a protocol key stops `vlseg config validate` with status 1 and names the key.
    func testBadProtocolValuesExitOneNamingTheKey() throws {
        for (override, key) in [
            ("trainer.early_stopping.monitor=val_iou", "trainer.early_stopping.monitor"),
            ("trainer.early_stopping.mode=up", "trainer.early_stopping.mode"),
            ("trainer.loss.dice_smooth=0", "trainer.loss.dice_smooth"),
            ("trainer.min_epochs=-1", "trainer.min_epochs"),
            ("trainer.weight_decay_params=biases", "trainer.weight_decay_params"),
            ("trainer.precision=fp16", "trainer.precision"),
            ("data.target=gray", "data.target"),
            ("data.resize=lanczos", "data.resize"),
        ] {
            let r = try ProcessRunner.run(
                ProcessRunner.vlsegPath, ["config", "validate", override],
                environment: ProcessRunner.cleanEnvironment([:]), timeout: 60,
                currentDirectory: URL(fileURLWithPath: "/"))
            XCTAssertEqual(r.status, 1, r.output)
            XCTAssertTrue(r.output.contains(key), "\(override): \(r.output)")
        }
    }
}
