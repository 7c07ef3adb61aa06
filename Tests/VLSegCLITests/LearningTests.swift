import Foundation
import XCTest

/// Learning, end to end, in CI: a tiny backbone is pretrained within the test on the generated source
/// scenes (`experiment=demo_pretrain`, shrunk), exported as a model directory, and evaluated zero-shot
/// on the shifted medical target domain; a parameter-efficient method trained on the target domain must
/// then beat zero-shot by a clear margin. A change that breaks learning (the optimiser, the schedule,
/// a method's gradient path, the export, the loaders) leaves the tuned model at zero-shot and fails here.
///
/// Sized for about a minute on two cores in release builds (one rank, two threads).
final class LearningTests: XCTestCase {
    static let work = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-cli-learning-\(getpid())")

    override func tearDown() { try? FileManager.default.removeItem(at: Self.work) }

    func vlseg(_ args: [String], timeout: Double = 120) throws -> ProcessRunner.Result {
        let r = try ProcessRunner.run(
            ProcessRunner.vlsegPath, args, environment: ProcessRunner.cleanEnvironment(), timeout: timeout)
        XCTAssertFalse(r.timedOut, "vlseg \(args.first ?? "") timed out:\n\(r.output)")
        return r
    }

    /// The value of "key" in the JSON object on the output's last line.
    func jsonNumber(_ output: String, _ key: String) throws -> Double {
        let line = output.split(separator: "\n").last.map(String.init) ?? ""
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        return try XCTUnwrap(object?[key] as? Double, "no \(key) in: \(output)")
    }

    func testAParameterEfficientMethodBeatsZeroShotOnTheTargetDomain() throws {
        let configs = ProcessRunner.repoRoot.appendingPathComponent("configs").path
        let w = Self.work
        let common = ["--config-dir", configs, "seed=3", "trainer.threads=2", "data.workers=1"]
        // 1. Pretrain the demo backbone's architecture briefly on the source scenes: every weight trains
        //    (full), at a constant rate; one evaluation at the end, so the export takes the last step.
        let pretrain = w.appendingPathComponent("pretrain")
        let p = try vlseg(
            ["train", "experiment=demo_pretrain"] + common + [
                "model.path=\(w.appendingPathComponent("init").path)",
                "data.root=\(w.appendingPathComponent("scenes").path)",
                "data.demo.count=300", "data.batch_size=16", "trainer.max_steps=150", "trainer.lr=2e-3",
                "trainer.schedule.name=constant",
                "trainer.schedule.warmup_steps=20", "trainer.eval_every=150", "trainer.checkpoint_every=150",
                "trainer.log_every=50",
                "run.dir=\(pretrain.path)",
            ], timeout: 150)
        XCTAssertEqual(p.status, 0, p.output)
        let backbone = w.appendingPathComponent("backbone")
        let e = try vlseg(["export", "--checkpoint", pretrain.path, "--out", backbone.path])
        XCTAssertEqual(e.status, 0, e.output)

        // 2. Zero-shot on the target domain, then the decoder alone trained there (the towers stay
        //    frozen; their features are cached from the second epoch, so 300 steps take seconds).
        let target =
            common + [
                "experiment=demo_target", "model.path=\(backbone.path)", "tuning=decoder",
                "data.root=\(w.appendingPathComponent("medical").path)", "data.demo.count=160",
            ]
        let adapted = w.appendingPathComponent("adapted")
        let z = try vlseg(["evaluate"] + target + ["run.dir=\(adapted.path)", "--checkpoint", "none", "--json"])
        XCTAssertEqual(z.status, 0, z.output)
        let zeroShot = try jsonNumber(z.output, "dice")
        let t = try vlseg(
            ["train"] + target + [
                "trainer.max_steps=300", "trainer.eval_every=50", "trainer.checkpoint_every=50",
                "run.dir=\(adapted.path)",
            ], timeout: 150)
        XCTAssertEqual(t.status, 0, t.output)
        let a = try vlseg(["evaluate"] + target + ["run.dir=\(adapted.path)", "--checkpoint", "best", "--json"])
        XCTAssertEqual(a.status, 0, a.output)
        let tuned = try jsonNumber(a.output, "dice")
        print(String(format: "learning test: target-domain test Dice zero-shot %.4f, decoder %.4f", zeroShot, tuned))
        XCTAssertGreaterThan(
            tuned, zeroShot + 0.15,
            String(
                format: "decoder tuning (Dice %.4f) does not clearly beat zero-shot (%.4f): learning is broken", tuned,
                zeroShot))
    }
}
