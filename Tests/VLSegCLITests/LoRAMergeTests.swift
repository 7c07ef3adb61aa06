import Foundation
import VLModels
import VLTensor
import VLTestSupport
import XCTest

/// `vlseg lora merge`: the merged model directory, loaded by `vlseg forward` with no tuning method, gives
/// the un-merged LoRA logits (the fixture's reference) within 1e-4; bad inputs end in one clear line.
final class LoRAMergeTests: XCTestCase {
    static var tiny: URL { get throws { try Fixtures.clipsegTiny() } }
    let work = FileManager.default.temporaryDirectory.appendingPathComponent(
        "vlseg-lora-merge-\(getpid())-\(UUID().uuidString)")

    override func tearDown() { try? FileManager.default.removeItem(at: work) }

    func merge(_ out: URL, _ options: [String]) throws -> ProcessRunner.Result {
        try ProcessRunner.run(
            ProcessRunner.vlsegPath,
            [
                "lora", "merge", "--model", Self.tiny.path,
                "--trainable", Self.tiny.appendingPathComponent("methods/lora/trainable.safetensors").path, "--out",
                out.path,
            ] + options, timeout: 120)
    }

    /// The fixture's native inputs (pixel_values, input_ids, attention_mask) as `vlseg forward` reads them.
    func inputsFile() throws -> URL {
        let ref = try SafeTensorsFile(url: Self.tiny.appendingPathComponent("reference.safetensors"))
        var w = SafeTensorsWriter()
        w.add("pixel_values", try ref.tensor("native.pixel_values").copy())
        for key in ["input_ids", "attention_mask"] {
            let ints = try ref.integers(key)
            w.add(key, int64: ints.values, shape: ints.shape)
        }
        let url = work.appendingPathComponent("inputs.safetensors")
        try w.write(to: url)
        return url
    }

    func testMergedModelGivesTheUnmergedLogits() throws {
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let merged = work.appendingPathComponent("merged")
        let r = try merge(merged, ["tuning.rank=4", "tuning.alpha=8"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("merged 14 layers"), r.output)
        for file in ["config.json", "model.safetensors", "vocab.json", "merges.txt"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: merged.appendingPathComponent(file).path), file)
        }
        // The merged model has exactly the checkpoint's weights (no lora tensors) and only q/v changed.
        let base = try SafeTensorsFile(url: Self.tiny.appendingPathComponent("model.safetensors"))
        let mergedFile = try SafeTensorsFile(url: merged.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(Set(mergedFile.names), Set(base.names.filter { !$0.hasSuffix("position_ids") }))
        XCTAssertEqual(
            try mergedFile.tensor("clip.text_model.encoder.layers.1.self_attn.k_proj.weight").scalars,
            try base.tensor("clip.text_model.encoder.layers.1.self_attn.k_proj.weight").scalars)
        XCTAssertNotEqual(
            try mergedFile.tensor("clip.text_model.encoder.layers.1.self_attn.q_proj.weight").scalars,
            try base.tensor("clip.text_model.encoder.layers.1.self_attn.q_proj.weight").scalars)

        let inputs = try inputsFile()
        let out = work.appendingPathComponent("logits.safetensors")
        let f = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["forward", "--model", merged.path, "--inputs", inputs.path, "--out", out.path],
            timeout: 120)
        XCTAssertEqual(f.status, 0, f.output)
        let got = try SafeTensorsFile(url: out).tensor("logits")
        let want = try SafeTensorsFile(url: Self.tiny.appendingPathComponent("methods/lora/reference.safetensors"))
            .tensor("logits")
        XCTAssertEqual(got.count, want.count)
        let worst = zip(got.scalars, want.scalars).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(worst, 1e-4)
    }

    func testMistakesEndInOneLine() throws {
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        // Wrong rank: the shapes say so, and the message says what to pass.
        let wrongRank = try merge(work.appendingPathComponent("a"), ["tuning.rank=8"])
        XCTAssertEqual(wrongRank.status, 1, wrongRank.output)
        XCTAssertTrue(wrongRank.output.contains("tuning.rank"), wrongRank.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: work.appendingPathComponent("a").path))
        // Other targets than trained.
        let targets = try merge(work.appendingPathComponent("b"), ["tuning.rank=4", "tuning.targets=[q_proj]"])
        XCTAssertEqual(targets.status, 1, targets.output)
        XCTAssertTrue(targets.output.contains("unexpected"), targets.output)
        // An existing, non-empty output directory is never overwritten.
        let existing = work.appendingPathComponent("c")
        try FileManager.default.createDirectory(at: existing, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: existing.appendingPathComponent("note.txt"))
        let busy = try merge(existing, ["tuning.rank=4"])
        XCTAssertEqual(busy.status, 1, busy.output)
        XCTAssertTrue(busy.output.contains("not empty"), busy.output)
        XCTAssertEqual(try String(contentsOf: existing.appendingPathComponent("note.txt"), encoding: .utf8), "keep")
    }
}
