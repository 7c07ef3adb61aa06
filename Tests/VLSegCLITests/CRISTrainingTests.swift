import Foundation
import VLModels
import VLTensor
import VLTestSupport
import XCTest

/// CRIS through the command line: init-model sizes, forward against the reference fixture, and CoOp
/// training on two ranks.
final class CRISTrainingTests: XCTestCase {
    static let work = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-cli-cris-\(getpid())")
    static var fixture: URL { get throws { try Fixtures.crisTiny() } }

    override class func tearDown() { try? FileManager.default.removeItem(at: work) }

    func common(run: URL) -> [String] {
        [
            "--config-dir", TrainingTests.packageRoot.appendingPathComponent("configs").path, "experiment=cris_demo",
            "data.root=\(Self.work.appendingPathComponent("data").path)", "data.demo.count=40", "data.demo.size=64",
            "model.path=\(Self.work.appendingPathComponent("model").path)", "model.image_size=64",
            "data.batch_size=4", "data.workers=1", "trainer.threads=1", "run.dir=\(run.path)", "seed=3",
        ]
    }

    func testInitModelCRISBaseCount() throws {
        let out = Self.work.appendingPathComponent("cris-base")
        defer { try? FileManager.default.removeItem(at: out) }
        let r = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["init-model", "--preset", "cris-base", "--out", out.path], timeout: 300)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("146,849,122 parameters"), r.output)
        // The written directory loads as CRIS with the published key set (BN counters included).
        let file = try SafeTensorsFile(url: out.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(file.names.count, 662)
    }

    /// `vlseg forward` on the fixture writes the reference's names; the listed outputs agree.
    func testForwardWritesTheFixtureNames() throws {
        let out = Self.work.appendingPathComponent("forward.safetensors")
        try FileManager.default.createDirectory(at: Self.work, withIntermediateDirectories: true)
        let reference = try Self.fixture.appendingPathComponent("reference.safetensors")
        let r = try ProcessRunner.run(
            ProcessRunner.vlsegPath,
            [
                "forward", "--model", Self.fixture.path, "--inputs", reference.path,
                "--out", out.path,
            ], timeout: 120)
        XCTAssertEqual(r.status, 0, r.output)
        let mine = try SafeTensorsFile(url: out), ref = try SafeTensorsFile(url: reference)
        for key in [
            "vis.C3", "vis.C4", "vis.C5", "text.word_feats", "text.state", "neck.out", "decoder.out", "proj.out",
            "logits",
        ] {
            let a = try mine.tensor(key), b = try ref.tensor(key)
            XCTAssertEqual(a.shape, b.shape, key)
            let worst = zip(a.scalars, b.scalars).map { abs($0 - $1) }.max() ?? .infinity
            let scale = b.scalars.map(abs).max() ?? 0
            XCTAssertLessThanOrEqual(worst, max(1e-4, 4e-6 * scale), "\(key): max |diff| \(worst)")
        }
    }

    func testDryRunCountsOnTinyCRIS() throws {
        let expected = ["full": "2,144,542", "decoder": "161,409", "coop": "128", "zero_shot": "0"]
        for (name, count) in expected.sorted(by: { $0.key < $1.key }) where name != "zero_shot" {
            let r = try ProcessRunner.run(
                ProcessRunner.vlsegPath,
                ["train", "--dry-run"] + common(run: Self.work.appendingPathComponent("dry"))
                    + ["tuning=\(name)"], timeout: 120)
            XCTAssertEqual(r.status, 0, "\(name): \(r.output)")
            XCTAssertTrue(r.output.contains("trainable parameters: \(count)\n"), "\(name): \(r.output)")
            XCTAssertTrue(r.output.contains("model: CRIS"), r.output)
        }
        let r = try ProcessRunner.run(
            ProcessRunner.vlsegPath,
            ["train", "--dry-run"] + common(run: Self.work.appendingPathComponent("dry"))
                + ["tuning=vpt"], timeout: 60)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.output.contains("tuning 'vpt' is not available for CRIS models"), r.output)
    }

    /// CoOp (128 parameters) on a tiny random CRIS, two ranks: the training loss goes down.
    func testCoOpTrainsOnTwoRanks() throws {
        guard let mpirun = ProcessRunner.which("mpirun") else { throw XCTSkip("mpirun not installed") }
        let run = Self.work.appendingPathComponent("run-coop")
        let args =
            common(run: run) + [
                "trainer.max_steps=20", "trainer.log_every=2", "trainer.eval_every=20", "trainer.checkpoint_every=20",
            ]
        let r = try ProcessRunner.run(
            mpirun, ProcessRunner.mpirunFlags + ["-np", "2", ProcessRunner.vlsegPath, "train"] + args,
            environment: ProcessRunner.cleanEnvironment(), timeout: 180)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("training 'coop': 128 trainable parameters"), r.output)
        let losses = r.output.split(separator: "\n").compactMap { line -> Double? in
            guard line.hasPrefix("step "), let range = line.range(of: "  loss ") else { return nil }
            return Double(line[range.upperBound...].prefix { !$0.isWhitespace })
        }
        XCTAssertEqual(losses.count, 10, r.output)
        XCTAssertLessThan(losses.last!, losses.first! - 0.05, "losses \(losses)")
        let file = try SafeTensorsFile(
            url: run.appendingPathComponent("checkpoints/step-0000020/trainable.safetensors"))
        XCTAssertEqual(file.names, ["context_vectors"])
    }
}
