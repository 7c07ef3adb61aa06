import Foundation
import VLData
import VLModels
import VLTensor
import VLTestSupport
import XCTest

/// `vlseg convert` on `.pth` files written here the way `torch.save` lays them out: a model checkpoint
/// becomes a model directory, a Lightning checkpoint becomes trainable.safetensors, and a file whose
/// pickle names code ends in one line and exit status 1, leaving nothing behind.
final class TorchCheckpointConvertCommandTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-convert-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: tmp)
    }

    enum Values {
        case f32([Float])
        case i64([Int])
    }

    /// A minimal torch.save (zip format, pickle protocol 2): `{key: value, ..., 'state_dict':
    /// OrderedDict(name -> _rebuild_tensor_v2(('storage', torch.FloatStorage|LongStorage, i, 'cpu', n),
    /// 0, size, stride, False, OrderedDict()))}`, then `extra` raw pickle items (key, value) at the top level.
    static func torchSave(_ tensors: [(String, [Int], Values)], top: [(String, Int)] = [], extra: [UInt8] = []) -> Data
    {
        func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        func str(_ s: String) -> [UInt8] { [0x58] + le(UInt32(s.utf8.count)) + Array(s.utf8) }
        func int(_ i: Int) -> [UInt8] { [0x4A] + le(Int32(i)) }
        func global(_ m: String, _ n: String) -> [UInt8] { [0x63] + Array("\(m)\n\(n)\n".utf8) }
        func tuple(_ ints: [Int]) -> [UInt8] { [0x28] + ints.flatMap(int) + [0x74] }
        var p: [UInt8] = [0x80, 2, 0x7D, 0x28]
        for (k, v) in top { p += str(k) + int(v) }
        p += str("state_dict") + global("collections", "OrderedDict") + [0x29, 0x52, 0x28]
        var records: [(String, [UInt8])] = []
        for (i, (name, shape, values)) in tensors.enumerated() {
            var stride = [Int](repeating: 1, count: shape.count)
            for d in stride.indices.reversed().dropFirst() { stride[d] = stride[d + 1] * shape[d + 1] }
            let (cls, bytes, n): (String, [UInt8], Int)
            switch values {
            case let .f32(v): (cls, bytes, n) = ("FloatStorage", v.flatMap { le($0.bitPattern) }, v.count)
            case let .i64(v): (cls, bytes, n) = ("LongStorage", v.flatMap { le(Int64($0)) }, v.count)
            }
            records.append(("archive/data/\(i)", bytes))
            p += str(name) + global("torch._utils", "_rebuild_tensor_v2") + [0x28]
            p += [0x28] + str("storage") + global("torch", cls) + str(String(i)) + str("cpu") + int(n) + [0x74, 0x51]
            p +=
                int(0) + tuple(shape) + tuple(stride) + [0x89] + global("collections", "OrderedDict") + [
                    0x29, 0x52, 0x74, 0x52,
                ]
        }
        p += [0x75] + extra + [0x75, 0x2E]
        records.insert(("archive/data.pkl", p), at: 0)
        records.append(("archive/version", Array("3\n".utf8)))

        // Stored zip records with CRC-32, then the central directory.
        func crc32(_ bytes: [UInt8]) -> UInt32 {
            var c: UInt32 = 0xFFFF_FFFF
            for b in bytes {
                c ^= UInt32(b)
                for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
            }
            return ~c
        }
        var out: [UInt8] = [], central: [UInt8] = []
        for (name, data) in records {
            let offset = out.count, crc = crc32(data), n = Array(name.utf8)
            let sizes = le(crc) + le(UInt32(data.count)) + le(UInt32(data.count)) + le(UInt16(n.count)) + le(UInt16(0))
            out += le(UInt32(0x0403_4B50)) + le(UInt16(20)) + [0, 0, 0, 0, 0, 0, 0, 0] + sizes + n + data
            central += le(UInt32(0x0201_4B50)) + le(UInt16(20)) + le(UInt16(20)) + [0, 0, 0, 0, 0, 0, 0, 0] + sizes
            central += [0, 0, 0, 0, 0, 0, 0, 0, 0, 0] + le(UInt32(offset)) + n
        }
        let cdOffset = out.count
        out += central + le(UInt32(0x0605_4B50)) + [0, 0, 0, 0] + le(UInt16(records.count)) + le(UInt16(records.count))
        out += le(UInt32(central.count)) + le(UInt32(cdOffset)) + [0, 0]
        return Data(out)
    }

    func write(_ data: Data, _ name: String) throws -> URL {
        let url = tmp.appendingPathComponent(name)
        try data.write(to: url)
        return url
    }

    /// A CLIPSeg published as `pytorch_model.bin` beside its config, tokenizer and a processor config
    /// whose size differs from the vision config's: the converted directory carries the processor
    /// config, so `forward --image` runs at the same size and gives the same mask as the original.
    func testConvertedCLIPSegKeepsItsProcessorAndSegmentsLikeTheOriginal() throws {
        let tiny = try Fixtures.clipsegTiny()
        let original = tmp.appendingPathComponent("original")
        try FileManager.default.createDirectory(at: original, withIntermediateDirectories: true)
        for file in ["config.json", "vocab.json", "merges.txt"] {
            try FileManager.default.copyItem(
                at: tiny.appendingPathComponent(file).resolvingSymlinksInPath(),
                to: original.appendingPathComponent(file))
        }
        // 96, not the vision config's 64: a converted directory without this file would run at 64.
        let processor =
            #"{"do_normalize": true, "do_resize": true, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "resample": 2, "size": 96}"#
        try Data(processor.utf8).write(to: original.appendingPathComponent("preprocessor_config.json"))
        let weights = try SafeTensorsFile(url: tiny.appendingPathComponent("model.safetensors"))
        let tensors: [(String, [Int], Values)] = try weights.names.map {
            ($0, try weights.entry($0).shape, .f32(try weights.tensor($0).scalars))
        }
        try Self.torchSave(tensors).write(to: original.appendingPathComponent("pytorch_model.bin"))

        let converted = tmp.appendingPathComponent("converted")
        let r = try ProcessRunner.run(
            ProcessRunner.vlsegPath,
            [
                "convert", "--from", original.appendingPathComponent("pytorch_model.bin").path,
                "--to", converted.path, "--config", original.appendingPathComponent("config.json").path,
            ])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("copied preprocessor_config.json, vocab.json, merges.txt"), r.output)
        XCTAssertEqual(
            try Data(contentsOf: converted.appendingPathComponent("preprocessor_config.json")), Data(processor.utf8))
        XCTAssertEqual(try ImagePreprocessing.of(directory: converted).size, 96)

        // The same photo-like image through both directories: the original loads pytorch_model.bin directly.
        var rng = SplitMix64(seed: 11)
        var pixels = [UInt8](repeating: 0, count: 120 * 90 * 3)
        for i in pixels.indices {
            let ramp = (i % 360) / 2, noise = Int(rng.next() % 40)
            pixels[i] = UInt8(ramp + noise)
        }
        let image = tmp.appendingPathComponent("photo.png")
        try ImageIO.writePNG(RGBImage(width: 120, height: 90, pixels: pixels), to: image)
        var masks: [Data] = []
        for dir in [original, converted] {
            let out = tmp.appendingPathComponent("\(dir.lastPathComponent)-mask.png")
            let f = try ProcessRunner.run(
                ProcessRunner.vlsegPath,
                [
                    "forward", "--model", dir.path, "--image", image.path,
                    "--prompt", "a bright stripe", "--out", out.path,
                ])
            XCTAssertEqual(f.status, 0, f.output)
            XCTAssertTrue(f.output.contains("model input 96x96"), f.output)
            masks.append(try Data(contentsOf: out))
        }
        XCTAssertEqual(masks[0], masks[1])
    }

    /// A prompt longer than the text tower's 77 tokens is cut as transformers cuts it, with one warning.
    func testALongPromptIsCutWithOneWarning() throws {
        let image = tmp.appendingPathComponent("plain.png")
        try ImageIO.writePNG(
            RGBImage(width: 64, height: 64, pixels: [UInt8](repeating: 90, count: 64 * 64 * 3)), to: image)
        let long = Array(repeating: "a polyp", count: 50).joined(separator: " and ")
        let out = tmp.appendingPathComponent("mask.png")
        let r = try ProcessRunner.run(
            ProcessRunner.vlsegPath,
            [
                "forward", "--model", try Fixtures.clipsegTiny().path, "--image", image.path,
                "--prompt", long, "--out", out.path,
            ])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertEqual(r.output.components(separatedBy: "warning: the prompt").count - 1, 1, r.output)
        XCTAssertTrue(
            r.output.contains("has 201 tokens; the text tower takes 77, so it is cut to its first 75"), r.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.path))
        let short = try ProcessRunner.run(
            ProcessRunner.vlsegPath,
            [
                "forward", "--model", try Fixtures.clipsegTiny().path, "--image", image.path,
                "--prompt", "a polyp", "--out", out.path,
            ])
        XCTAssertEqual(short.status, 0, short.output)
        XCTAssertFalse(short.output.contains("warning"), short.output)
    }

    /// The tiny CRIS fixture's state dict saved as a DDP `.pth` (every name under `module.`, BN counters
    /// as int64): it converts into a directory that loads as CRIS with bit-identical weights, and runs.
    func testConvertsAPthIntoAModelDirectory() throws {
        let fixture = try Fixtures.crisTiny()
        let weights = try SafeTensorsFile(url: fixture.appendingPathComponent("model.safetensors"))
        let tensors: [(String, [Int], Values)] = try weights.names.map { name in
            let e = try weights.entry(name)
            if e.dtype == .i64 { return ("module." + name, e.shape, .i64(try weights.integers(name).values)) }
            return ("module." + name, e.shape, .f32(try weights.tensor(name).scalars))
        }
        let pth = try write(Self.torchSave(tensors), "cris_best.pth")
        let config = fixture.appendingPathComponent("config.json")
        let out = tmp.appendingPathComponent("model")
        let r = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["convert", "--from", pth.path, "--to", out.path, "--config", config.path])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(
            r.output.contains("state dict: 'state_dict', \(weights.names.count) tensors, prefix 'module.' stripped"),
            r.output)
        XCTAssertTrue(r.output.contains("loads as CRIS: 2,144,542 parameters"), r.output)

        let st = try SafeTensorsFile(url: out.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(st.names.sorted(), weights.names.sorted())
        for name in weights.names {
            let e = try weights.entry(name)
            XCTAssertEqual(try st.entry(name).dtype, e.dtype, name)
            if e.dtype == .i64 {
                XCTAssertEqual(try st.integers(name).values, try weights.integers(name).values, name)
            } else {
                XCTAssertEqual(
                    try st.tensor(name).scalars.map(\.bitPattern), try weights.tensor(name).scalars.map(\.bitPattern),
                    name)
            }
        }
        XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("config.json")), try Data(contentsOf: config))
        for file in ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent(file).path), file)
        }
        // The converted directory is a working model.
        let forward = try ProcessRunner.run(
            ProcessRunner.vlsegPath,
            [
                "forward", "--model", out.path, "--inputs",
                fixture.appendingPathComponent("reference.safetensors").path,
                "--out", tmp.appendingPathComponent("fwd.safetensors").path,
            ])
        XCTAssertEqual(forward.status, 0, forward.output)

        // Weights that do not fit the config: one line naming what is missing, and nothing written.
        let partial = try write(Self.torchSave(Array(tensors.prefix(5))), "partial.pth")
        let bad = tmp.appendingPathComponent("bad")
        let r2 = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["convert", "--from", partial.path, "--to", bad.path, "--config", config.path])
        XCTAssertEqual(r2.status, 1, r2.output)
        XCTAssertTrue(r2.output.contains("missing"), r2.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: bad.path))
    }

    func testLightningCheckpointBecomesTrainableTensors() throws {
        let ckpt = try write(
            Self.torchSave(
                [
                    ("net.clipseg.decoder.reduce.weight", [2], .f32([1, 2])),
                    ("net.cond_adapter.fc1.weight", [1, 2], .f32([3, 4])),
                    ("net.cond_adapter.fc1.bias", [1], .f32([5])),
                    ("net.prompt_learner.ctx", [2], .f32([6, 7])),
                ], top: [("epoch", 3), ("global_step", 120)]), "epoch_003.ckpt")
        let out = tmp.appendingPathComponent("adapters")
        let r = try ProcessRunner.run(ProcessRunner.vlsegPath, ["convert", "--from", ckpt.path, "--to", out.path])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("Lightning checkpoint, epoch 3, global step 120"), r.output)
        XCTAssertTrue(r.output.contains("wrote 2 tensors (3 parameters; VLSM-Adapter)"), r.output)
        XCTAssertTrue(r.output.contains("1 tensor of the frozen CLIPSeg was not written"), r.output)
        XCTAssertTrue(r.output.contains("1 tensor has no VLSeg name: prompt_learner.ctx"), r.output)
        let st = try SafeTensorsFile(url: out.appendingPathComponent("trainable.safetensors"))
        XCTAssertEqual(st.names.sorted(), ["cond_adapter.fc1.bias", "cond_adapter.fc1.weight"])
        XCTAssertEqual(try st.tensor("cond_adapter.fc1.weight").scalars, [3, 4])
    }

    func testHostilePthEndsInOneLineAndLeavesNothing() throws {
        // Next to a valid tensor: 'hp': os.system('touch <marker>').
        let marker = tmp.appendingPathComponent("pwned")
        func str(_ s: String) -> [UInt8] {
            [0x58] + withUnsafeBytes(of: UInt32(s.utf8.count).littleEndian) { Array($0) } + Array(s.utf8)
        }
        let evil = str("hp") + [0x63] + Array("os\nsystem\n".utf8) + str("touch \(marker.path)") + [0x85, 0x52]
        let pth = try write(Self.torchSave([("w", [1], .f32([1]))], extra: evil), "evil.pth")
        let out = tmp.appendingPathComponent("out")
        let r = try ProcessRunner.run(ProcessRunner.vlsegPath, ["convert", "--from", pth.path, "--to", out.path])
        XCTAssertEqual(r.status, 1, r.output)
        let lines = r.output.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, r.output)
        XCTAssertTrue(
            r.output.hasPrefix("vlseg: error: \(pth.path): refused: the pickle calls 'os.system' (byte "), r.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker.path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp.path).sorted(), ["evil.pth"])

        // A damaged file and a non-empty destination are one line too.
        var cut = try Data(contentsOf: pth)
        cut.removeLast(30)
        let truncated = try write(cut, "cut.pth")
        let r2 = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["convert", "--from", truncated.path, "--to", out.path])
        XCTAssertEqual(r2.status, 1, r2.output)
        XCTAssertTrue(r2.output.hasPrefix("vlseg: error: \(truncated.path): not a readable zip archive:"), r2.output)
        XCTAssertEqual(r2.output.split(separator: "\n").count, 1, r2.output)
    }
}
