import Foundation
import VLModels
import XCTest

/// A prompt method through the whole training pipeline on two ranks: CoCoOp (image-conditioned text
/// prompts, vision feature cache on, its own image-feature memo), checkpointed under its own names.
final class PromptTrainingTests: XCTestCase {
    static let work = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-cli-prompts-\(getpid())")

    override class func tearDown() { try? FileManager.default.removeItem(at: work) }

    /// Every prompt config (`configs/tuning/*.yaml`, defaults as written there) builds its method on the
    /// tiny model (Dt 32, Dv 48, P 16; 2 text and 3 vision layers), with the expected count.
    func testEveryPromptConfigDryRunsWithItsCount() throws {
        let expected = [
            "coop": "128", "cocoop": "3,296", "vpt": "192", "vpt_shallow": "192", "maple": "5,408",
            "shared_separate": "5,456", "shared_attention": "273,936",
        ]
        for (name, count) in expected.sorted(by: { $0.key < $1.key }) {
            let r = try ProcessRunner.run(
                ProcessRunner.vlsegPath,
                ["train", "--dry-run"] + common(run: Self.work.appendingPathComponent("dry"))
                    + ["tuning=\(name)"], timeout: 60)
            XCTAssertEqual(r.status, 0, "\(name): \(r.output)")
            XCTAssertTrue(r.output.contains("trainable parameters: \(count)\n"), "\(name): \(r.output)")
        }
        // vpt_deep (depth 10) does not fit a 3-layer vision tower: one clear line.
        let r = try ProcessRunner.run(
            ProcessRunner.vlsegPath,
            ["train", "--dry-run"] + common(run: Self.work.appendingPathComponent("dry"))
                + ["tuning=vpt_deep"], timeout: 60)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.output.contains("option 'depth': must be between 1 and 3"), r.output)
    }

    func common(run: URL) -> [String] {
        [
            "--config-dir", TrainingTests.packageRoot.appendingPathComponent("configs").path,
            "data.name=demo", "data.root=\(Self.work.appendingPathComponent("data").path)", "data.demo.count=40",
            "data.demo.size=64",
            "model.path=\(Self.work.appendingPathComponent("model").path)", "model.preset=tiny", "model.image_size=64",
            "data.batch_size=4", "trainer.global_batch_size=0", "data.workers=1", "trainer.threads=1",
            "run.dir=\(run.path)", "seed=5",
        ]
    }

    func testCoCoOpTrainsOnTwoRanksWithTheFeatureCache() throws {
        guard let mpirun = ProcessRunner.which("mpirun") else { throw XCTSkip("mpirun not installed") }
        let run = Self.work.appendingPathComponent("run-cocoop")
        let args =
            common(run: run) + [
                "trainer.max_steps=8", "trainer.max_epochs=0", "trainer.log_every=4", "trainer.eval_every=8",
                "trainer.checkpoint_every=8", "tuning=cocoop", "tuning.depth=2",
            ]
        let r = try ProcessRunner.run(
            mpirun, ProcessRunner.mpirunFlags + ["-np", "2", ProcessRunner.vlsegPath, "train"] + args,
            environment: ProcessRunner.cleanEnvironment(), timeout: 120)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("training 'cocoop'"), r.output)
        XCTAssertTrue(r.output.contains("feature cache on"), r.output)
        let file = try SafeTensorsFile(
            url: run.appendingPathComponent("checkpoints/step-0000008/trainable.safetensors"))
        // Tiny: Dt 32, P 16, n 4, hidden 64, depth 2.
        XCTAssertEqual(
            Set(file.names),
            Set(
                ["context_vectors"]
                    + (0..<2).flatMap { d in
                        ["0.weight", "0.bias", "2.weight", "3.weight"].map { "meta_nets.\(d).\($0)" }
                    }))
        XCTAssertEqual(try file.tensor("context_vectors").shape, [2, 4, 32])
        XCTAssertEqual(try file.tensor("meta_nets.1.0.weight").shape, [64, 16])
    }

    /// `tuning.new_last_layer=true` through the whole pipeline on two ranks: the head's 402 tensors on the
    /// tiny model (R = 16: 16 * 25 + 1 + 1) join the count, the all-reduce and the checkpoint, and the
    /// ratio learns.
    func testTheAdditiveHeadTrainsOnTwoRanks() throws {
        guard let mpirun = ProcessRunner.which("mpirun") else { throw XCTSkip("mpirun not installed") }
        let dry = try ProcessRunner.run(
            ProcessRunner.vlsegPath,
            ["train", "--dry-run"] + common(run: Self.work.appendingPathComponent("dry-head"))
                + ["tuning=coop", "tuning.new_last_layer=true"], timeout: 60)
        XCTAssertEqual(dry.status, 0, dry.output)
        XCTAssertTrue(dry.output.contains("trainable parameters: 530\n"), dry.output)
        let run = Self.work.appendingPathComponent("run-head")
        let args =
            common(run: run) + [
                "trainer.max_steps=6", "trainer.max_epochs=0", "trainer.log_every=3", "trainer.eval_every=6",
                "trainer.checkpoint_every=6", "tuning=coop", "tuning.new_last_layer=true", "trainer.lr=0.01",
            ]
        let r = try ProcessRunner.run(
            mpirun, ProcessRunner.mpirunFlags + ["-np", "2", ProcessRunner.vlsegPath, "train"] + args,
            environment: ProcessRunner.cleanEnvironment(), timeout: 120)
        XCTAssertEqual(r.status, 0, r.output)
        let file = try SafeTensorsFile(
            url: run.appendingPathComponent("checkpoints/step-0000006/trainable.safetensors"))
        XCTAssertEqual(
            Set(file.names),
            ["context_vectors", "additive_decoder_layer.1.weight", "additive_decoder_layer.1.bias", "residual_ratio"])
        XCTAssertEqual(try file.tensor("additive_decoder_layer.1.weight").shape, [1, 16, 5, 5])
        let ratio = try file.tensor("residual_ratio").scalars[0]
        print("additive head on two ranks: residual_ratio 0.5 -> \(ratio) after 6 steps")
        XCTAssertGreaterThan(abs(ratio - 0.5), 1e-3)
    }
}
