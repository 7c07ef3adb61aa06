import Foundation
import VLModels
import VLTestSupport
import XCTest

/// Model directories as transformers itself writes them: a small CLIPSeg saved as one safetensors file,
/// as sharded safetensors, as a zip `pytorch_model.bin` and as a legacy (pre-1.6) one. VLSeg loads every
/// form without conversion and gives bit-identical logits across them, matching transformers' own logits;
/// a directory converted from the `.bin` segments a photo exactly as the directory it came from.
final class HuggingFaceFormsTests: XCTestCase {
    static let work = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-hf-forms-\(getpid())")

    override class func tearDown() { try? FileManager.default.removeItem(at: work) }

    static let makeScript = """
        import os, shutil, sys
        import numpy as np, torch
        from PIL import Image
        from safetensors.numpy import save_file
        from skimage import data
        from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, ViTImageProcessor
        out, vocab = sys.argv[1], sys.argv[2]
        config = CLIPSegConfig(
            text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
            vision_config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
                               image_size=64, patch_size=16),
            projection_dim=32, reduce_dim=16, extract_layers=[1, 3], decoder_num_attention_heads=2,
            decoder_intermediate_size=32)
        torch.manual_seed(0)
        model = CLIPSegForImageSegmentation(config).eval()
        model.save_pretrained(f"{out}/single", safe_serialization=True)
        model.save_pretrained(f"{out}/sharded", safe_serialization=True, max_shard_size="200KB")
        model.save_pretrained(f"{out}/bin", safe_serialization=False)
        os.makedirs(f"{out}/legacy")
        shutil.copy(f"{out}/single/config.json", f"{out}/legacy/config.json")
        torch.save(model.state_dict(), f"{out}/legacy/pytorch_model.bin", _use_new_zipfile_serialization=False)
        # The processor at 96 (not the vision config's 64), bicubic, default statistics (0.5).
        processor = ViTImageProcessor(size={"height": 96, "width": 96}, resample=3)
        for form in ["single", "sharded", "bin", "legacy"]:
            for name in ["vocab.json", "merges.txt"]:
                shutil.copy(os.path.join(vocab, name), f"{out}/{form}/{name}")
            processor.save_pretrained(f"{out}/{form}")
        Image.fromarray(data.astronaut()).save(f"{out}/photo.png")
        # Fixed model inputs and transformers' logits for them.
        g = torch.Generator().manual_seed(1)
        pixels = torch.randn(2, 3, 64, 64, generator=g)
        ids = torch.tensor([[49406, 320, 1125, 539, 320, 49407, 49407], [49406, 320, 2433, 49407, 49407, 49407, 49407]])
        mask = (torch.arange(7)[None, :] < torch.tensor([[6], [4]])).long()
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, pixel_values=pixels).logits
        save_file({"pixel_values": pixels.numpy(), "input_ids": ids.numpy(), "attention_mask": mask.numpy()}, f"{out}/inputs.safetensors")
        save_file({"logits": logits.numpy()}, f"{out}/transformers.safetensors")
        for form in ["single", "sharded", "bin", "legacy"]:
            print(form, sorted(os.listdir(f"{out}/{form}")))
        """

    func vlseg(_ args: [String]) throws -> ProcessRunner.Result {
        let r = try ProcessRunner.run(ProcessRunner.vlsegPath, args, timeout: 120)
        XCTAssertEqual(r.status, 0, "vlseg \(args.joined(separator: " ")):\n\(r.output)")
        return r
    }

    func testEveryFormLoadsAndGivesTransformersLogits() throws {
        let w = Self.work
        try? FileManager.default.removeItem(at: w)
        try FileManager.default.createDirectory(at: w, withIntermediateDirectories: true)
        let vocab = try Fixtures.bundledTokenizer()
        let listing = try PythonReference.run(Self.makeScript, arguments: [w.path, vocab.path], timeout: 300)
        XCTAssertTrue(listing.contains("model-00001-of-"), listing)
        XCTAssertTrue(listing.contains("model.safetensors.index.json"), listing)
        XCTAssertTrue(listing.contains("pytorch_model.bin"), listing)

        let want = try SafeTensorsFile(url: w.appendingPathComponent("transformers.safetensors")).tensor("logits")
            .scalars
        var first: [Float]?
        for form in ["single", "sharded", "bin", "legacy"] {
            let out = w.appendingPathComponent("\(form).safetensors")
            _ = try vlseg([
                "forward", "--model", w.appendingPathComponent(form).path,
                "--inputs", w.appendingPathComponent("inputs.safetensors").path, "--out", out.path,
            ])
            let got = try SafeTensorsFile(url: out).tensor("logits").scalars
            XCTAssertEqual(got.count, want.count, form)
            let worst = zip(got, want).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(worst, 1e-4, "\(form): max |logit - transformers| \(worst)")
            if let first { XCTAssertEqual(got, first, "\(form) differs from single") } else { first = got }
        }

        // pytorch_model.bin converted: the processor file comes along, so the photo is segmented at 96
        // with bicubic resizing and 0.5 statistics, exactly as from the published directory.
        let converted = w.appendingPathComponent("converted")
        let c = try vlseg([
            "convert", "--from", w.appendingPathComponent("bin/pytorch_model.bin").path, "--to", converted.path,
            "--config", w.appendingPathComponent("bin/config.json").path,
        ])
        XCTAssertTrue(c.output.contains("preprocessor_config.json"), c.output)
        var masks: [Data] = []
        for dir in [w.appendingPathComponent("bin"), converted] {
            let mask = w.appendingPathComponent("\(dir.lastPathComponent)-mask.png")
            let f = try vlseg([
                "forward", "--model", dir.path, "--image", w.appendingPathComponent("photo.png").path,
                "--prompt", "a person in a space suit", "--out", mask.path,
            ])
            XCTAssertTrue(f.output.contains("model input 96x96"), f.output)
            masks.append(try Data(contentsOf: mask))
        }
        XCTAssertEqual(masks[0], masks[1], "the converted directory's mask differs from the original's")
    }
}
