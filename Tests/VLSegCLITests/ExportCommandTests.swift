import Foundation
import VLModels
import XCTest

/// `vlseg export`: a `decoder` checkpoint becomes a complete model directory whose weights are the base
/// model's with the trained tensors replaced, and which evaluates zero-shot exactly as the checkpoint
/// evaluates through its run; checkpoints whose tensors have no place in the model, and occupied output
/// directories, are refused with one line and nothing written.
final class ExportCommandTests: XCTestCase {
    static let work = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-cli-export-\(getpid())")

    override class func tearDown() { try? FileManager.default.removeItem(at: work) }

    func vlseg(_ args: [String], timeout: Double = 120) throws -> ProcessRunner.Result {
        let r = try ProcessRunner.run(
            ProcessRunner.vlsegPath, args, environment: ProcessRunner.cleanEnvironment(), timeout: timeout)
        XCTAssertFalse(r.timedOut, "vlseg \(args.first ?? "") timed out:\n\(r.output)")
        return r
    }

    /// A tiny model and demo dataset shared by the tests (made by `vlseg train` on first use).
    func common(_ extra: [String]) -> [String] {
        [
            "--config-dir", ProcessRunner.repoRoot.appendingPathComponent("configs").path,
            "data.name=demo", "data.root=\(Self.work.appendingPathComponent("data").path)", "data.demo.count=40",
            "data.demo.size=64",
            "model.path=\(Self.work.appendingPathComponent("model").path)", "model.preset=tiny", "model.image_size=64",
            "data.batch_size=4", "trainer.global_batch_size=0", "data.workers=1", "trainer.threads=2", "seed=5",
        ] + extra
    }

    func train(_ tuning: String, run: URL) throws {
        let r = try vlseg(
            ["train"]
                + common([
                    "tuning=\(tuning)", "trainer.max_steps=6", "trainer.max_epochs=0",
                    "trainer.eval_every=6", "trainer.checkpoint_every=6", "trainer.lr=1e-2",
                    "run.dir=\(run.path)",
                ]))
        XCTAssertEqual(r.status, 0, r.output)
    }

    /// The value of "key" in the JSON object on the output's last line.
    func jsonNumber(_ output: String, _ key: String) throws -> Double {
        let line = output.split(separator: "\n").last.map(String.init) ?? ""
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        return try XCTUnwrap(object?[key] as? Double, "no \(key) in: \(output)")
    }

    func testDecoderCheckpointExportsAsAModelThatEvaluatesLikeTheRun() throws {
        let run = Self.work.appendingPathComponent("decoder-run")
        try train("decoder", run: run)
        let out = Self.work.appendingPathComponent("exported")
        let e = try vlseg(["export", "--checkpoint", run.path, "--out", out.path])
        XCTAssertEqual(e.status, 0, e.output)
        XCTAssertTrue(e.output.contains("exported step 6 of"), e.output)
        for file in ["config.json", "model.safetensors", "vocab.json", "merges.txt"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent(file).path), file)
        }

        // Weights: the trained tensors where the method trained, the base model's everywhere else.
        let base = try SafeTensorsFile(url: Self.work.appendingPathComponent("model/model.safetensors"))
        let exported = try SafeTensorsFile(url: out.appendingPathComponent("model.safetensors"))
        let trained = try SafeTensorsFile(
            url: run.appendingPathComponent("checkpoints/step-0000006/trainable.safetensors"))
        XCTAssertEqual(Set(exported.names), Set(base.names))
        XCTAssertFalse(trained.names.isEmpty)
        for name in exported.names {
            let want = trained.contains(name) ? try trained.tensor(name) : try base.tensor(name)
            XCTAssertEqual(try exported.tensor(name).scalars, want.scalars, name)
        }
        XCTAssertTrue(trained.names.allSatisfy { $0.hasPrefix("decoder.") }, "\(trained.names)")
        let changed = try trained.names.filter { try trained.tensor($0).scalars != base.tensor($0).scalars }
        XCTAssertFalse(changed.isEmpty, "training changed no decoder tensor")

        // The exported directory, zero-shot, scores exactly what the checkpoint scores through its run.
        let viaRun = try vlseg(
            ["evaluate"] + common(["tuning=decoder", "run.dir=\(run.path)", "--checkpoint", "best", "--json"]))
        XCTAssertEqual(viaRun.status, 0, viaRun.output)
        let viaModel = try vlseg(
            ["evaluate"]
                + common([
                    "model.path=\(out.path)", "tuning=zero_shot",
                    "run.dir=\(Self.work.appendingPathComponent("zero").path)",
                    "--checkpoint", "none", "--json",
                ]))
        XCTAssertEqual(viaModel.status, 0, viaModel.output)
        XCTAssertEqual(try jsonNumber(viaModel.output, "dice"), try jsonNumber(viaRun.output, "dice"))
        XCTAssertEqual(try jsonNumber(viaModel.output, "loss"), try jsonNumber(viaRun.output, "loss"))
    }

    func testRefusalsEndInOneLineAndWriteNothing() throws {
        let run = Self.work.appendingPathComponent("adapter-run")
        try train("vlsm_shallow_v", run: run)
        // Adapters are tensors the model does not have.
        let adapters = Self.work.appendingPathComponent("from-adapters")
        let a = try vlseg(["export", "--checkpoint", run.path, "--out", adapters.path])
        XCTAssertEqual(a.status, 1, a.output)
        XCTAssertTrue(a.output.contains("method 'vlsm_shallow_v' trained"), a.output)
        XCTAssertTrue(a.output.contains("only methods that train the model's own weights (full, decoder)"), a.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: adapters.path))

        // An occupied output directory is never touched.
        let occupied = Self.work.appendingPathComponent("occupied")
        try FileManager.default.createDirectory(at: occupied, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: occupied.appendingPathComponent("note.txt"))
        let o = try vlseg(["export", "--checkpoint", run.path, "--out", occupied.path])
        XCTAssertEqual(o.status, 1, o.output)
        XCTAssertTrue(o.output.contains("already exists and is not empty"), o.output)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: occupied.path), ["note.txt"])

        // A path that is no checkpoint.
        let missing = try vlseg([
            "export", "--checkpoint", Self.work.appendingPathComponent("nothing").path,
            "--out", Self.work.appendingPathComponent("x").path,
        ])
        XCTAssertEqual(missing.status, 1, missing.output)
        XCTAssertTrue(missing.output.contains("nothing"), missing.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: Self.work.appendingPathComponent("x").path))
    }
}
