import Foundation
import VLTensor
import VLTestSupport
import XCTest

@testable import VLModels

/// A model directory loads from each weight form Hugging Face publishes — one safetensors file, sharded
/// safetensors with their index, `pytorch_model.bin` in the zip and the legacy format — and every form
/// gives bit-identical logits; broken indexes and missing weights are errors naming the file.
final class ModelWeightFormsTests: XCTestCase {
    let work = FileManager.default.temporaryDirectory.appendingPathComponent(
        "vlseg-weight-forms-\(getpid())-\(UUID().uuidString)")

    override func tearDown() { try? FileManager.default.removeItem(at: work) }

    /// A copy of the tiny CLIPSeg fixture's directory without its weights.
    func directory(_ name: String) throws -> URL {
        let tiny = try Fixtures.clipsegTiny()
        let dir = work.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for file in ["config.json", "vocab.json", "merges.txt"] {
            try FileManager.default.copyItem(
                at: tiny.appendingPathComponent(file), to: dir.appendingPathComponent(file))
        }
        return dir
    }

    func logits(_ dir: URL) throws -> [Float] {
        let model = try CLIPSegModel.load(directory: dir)
        let reference = try SafeTensorsFile(url: Fixtures.clipsegTiny().appendingPathComponent("reference.safetensors"))
        let pixels = try reference.tensor("native.pixel_values"), prompts = try TestModels.prompts(reference)
        return GradMode.withoutGradients { model(pixels: pixels, text: prompts) }.scalars
    }

    /// The fixture's tensors, in file order.
    func fixtureTensors() throws -> [(name: String, tensor: Tensor)] {
        let file = try SafeTensorsFile(url: Fixtures.clipsegTiny().appendingPathComponent("model.safetensors"))
        return try file.names.map { ($0, try file.tensor($0).copy()) }
    }

    /// The state dict as `torch.save` writes it: an OrderedDict of float tensors, each with its own storage.
    func pytorchStateDict(_ tensors: [(name: String, tensor: Tensor)], halfPrecision: Bool = false) -> PyValue {
        let items: [(String, PyValue)] = tensors.enumerated().map { i, item in
            let values = item.tensor.scalars
            let storage = halfPrecision ? StorageSpec.bfloat16("\(i)", values) : StorageSpec.float32("\(i)", values)
            return (item.name, .tensor(.contiguous(storage, item.tensor.shape)))
        }
        return .orderedDict(items, metadata: nil)
    }

    func testEveryPublishedFormGivesTheSameLogits() throws {
        let tensors = try fixtureTensors()
        let single = try directory("single")
        var writer = SafeTensorsWriter()
        for (name, t) in tensors { writer.add(name, t) }
        try writer.write(to: single.appendingPathComponent("model.safetensors"))
        let expected = try logits(single)

        // Sharded: three shards, the index naming each tensor's shard.
        let sharded = try directory("sharded")
        var map: [String: String] = [:]
        let per = (tensors.count + 2) / 3
        for shard in 0..<3 {
            let fileName = String(format: "model-%05d-of-00003.safetensors", shard + 1)
            var w = SafeTensorsWriter()
            for (name, t) in tensors[(shard * per)..<min(tensors.count, (shard + 1) * per)] {
                w.add(name, t)
                map[name] = fileName
            }
            try w.write(to: sharded.appendingPathComponent(fileName))
        }
        let index = try JSONSerialization.data(
            withJSONObject: ["metadata": ["total_size": 0], "weight_map": map], options: [.sortedKeys])
        try index.write(to: sharded.appendingPathComponent(ModelWeights.shardIndexFile))
        XCTAssertEqual(try logits(sharded), expected)
        XCTAssertEqual(try ModelWeights.open(directory: sharded).names.count, tensors.count)

        // pytorch_model.bin, zip and legacy.
        for (name, data) in [
            ("bin-zip", TorchSave.zip(pytorchStateDict(tensors), archive: "pytorch_model")),
            ("bin-legacy", TorchSave.legacy(pytorchStateDict(tensors))),
        ] {
            let dir = try directory(name)
            try data.write(to: dir.appendingPathComponent(ModelWeights.pytorchFile))
            XCTAssertTrue(try ModelWeights.open(directory: dir) is TorchWeightFile, name)
            XCTAssertEqual(try logits(dir), expected, name)
        }

        // bf16 weights load (converted), like bf16 safetensors.
        let bf16 = try directory("bin-bf16")
        try TorchSave.zip(pytorchStateDict(tensors, halfPrecision: true)).write(
            to: bf16.appendingPathComponent(ModelWeights.pytorchFile))
        let rounded = try CLIPSegModel.load(directory: bf16)
        let name = tensors[0].name
        XCTAssertEqual(
            rounded.parameters[name].scalars,
            tensors[0].tensor.scalars.map { Float(bitPattern: $0.bitPattern & 0xFFFF_0000) })

        // When several forms are present, the single safetensors file wins.
        XCTAssertEqual(ModelWeights.file(in: single)?.lastPathComponent, "model.safetensors")
    }

    func testMissingAndInconsistentWeightsNameTheFile() throws {
        let empty = try directory("empty")
        XCTAssertThrowsError(try CLIPSegModel.load(directory: empty)) { error in
            XCTAssertEqual(
                "\(error)",
                "\(empty.path): no model weights (looked for model.safetensors, model.safetensors.index.json, pytorch_model.bin)"
            )
        }

        let tensors = try fixtureTensors()
        func index(_ dir: URL, _ object: Any) throws {
            try JSONSerialization.data(withJSONObject: object).write(
                to: dir.appendingPathComponent(ModelWeights.shardIndexFile))
        }
        // A shard the index names but the directory lacks.
        let missingShard = try directory("missing-shard")
        try index(missingShard, ["weight_map": [tensors[0].name: "model-00001-of-00002.safetensors"]])
        XCTAssertThrowsError(try ModelWeights.open(directory: missingShard)) { error in
            XCTAssertTrue(
                "\(error)".contains(
                    "invalid shard index: its shard model-00001-of-00002.safetensors is not in the directory"),
                "\(error)")
        }
        // An index that maps a tensor to a shard without it.
        let wrongShard = try directory("wrong-shard")
        var w = SafeTensorsWriter()
        w.add(tensors[1].name, tensors[1].tensor)
        try w.write(to: wrongShard.appendingPathComponent("a.safetensors"))
        try index(wrongShard, ["weight_map": [tensors[0].name: "a.safetensors"]])
        XCTAssertThrowsError(try ModelWeights.open(directory: wrongShard)) { error in
            XCTAssertTrue(
                "\(error)".contains(
                    "invalid shard index: it maps '\(tensors[0].name)' to a.safetensors, which does not hold it"),
                "\(error)")
        }
        // Shard names outside the directory are refused before anything is opened.
        for bad in ["../model.safetensors", "/etc/passwd", ""] {
            let dir = try directory("escape-\(UUID().uuidString)")
            try index(dir, ["weight_map": [tensors[0].name: bad]])
            XCTAssertThrowsError(try ModelWeights.open(directory: dir)) { error in
                XCTAssertTrue("\(error)".contains("is not a file name in the index's directory"), "\(error)")
            }
        }
        // Not an index at all.
        let garbage = try directory("garbage")
        try Data("[1, 2]".utf8).write(to: garbage.appendingPathComponent(ModelWeights.shardIndexFile))
        XCTAssertThrowsError(try ModelWeights.open(directory: garbage)) { error in
            XCTAssertTrue("\(error)".contains("invalid shard index: not a JSON object"), "\(error)")
        }
    }

    func testAPytorchFileNeedingOtherGlobalsIsRefused() throws {
        let dir = try directory("hostile")
        let hostile: PyValue = .dict([
            (.str("w"), .call(module: "os", name: "system", args: [.str("true")], state: nil))
        ])
        try TorchSave.zip(hostile).write(to: dir.appendingPathComponent(ModelWeights.pytorchFile))
        XCTAssertThrowsError(try ModelWeights.open(directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("os.system"), "\(error)")
        }
    }

    func testWeightFileNamesCoverEveryForm() throws {
        let dir = try directory("names")
        for f in [
            "model.safetensors", "pytorch_model.bin", "model-00001-of-00002.safetensors",
            "pytorch_model-00002-of-00002.bin",
            "model.safetensors.index.json", "tf_model.h5", "preprocessor_config.json", "model-final.safetensors",
        ] {
            try Data().write(to: dir.appendingPathComponent(f))
        }
        XCTAssertEqual(
            ModelWeights.weightFileNames(in: dir),
            [
                "model.safetensors", "pytorch_model.bin", "model-00001-of-00002.safetensors",
                "pytorch_model-00002-of-00002.bin",
                "model.safetensors.index.json", "tf_model.h5",
            ])
    }
}
