import Foundation
import VLData
import VLModels
import VLTestSupport
import VLTrain
import XCTest

/// A model directory's `preprocessor_config.json` gives the pixel values transformers' own image
/// processor gives for the same file: defaults for absent keys (mean and std 0.5, not ImageNet's),
/// `resample` 3 (bicubic), `do_rescale`, `do_normalize`; on a real photo (scikit-image's astronaut).
final class ProcessorParityTests: XCTestCase {
    let work = FileManager.default.temporaryDirectory.appendingPathComponent(
        "vlseg-processor-\(getpid())-\(UUID().uuidString)")

    override func tearDown() { try? FileManager.default.removeItem(at: work) }

    /// transformers' processor on `photo`, with the directory's processor file, as float32 CHW.
    func transformersPixels(model: URL, photo: URL, output: URL) throws -> [Float] {
        let script = """
            import sys, numpy as np
            from PIL import Image
            from transformers import AutoImageProcessor
            processor = AutoImageProcessor.from_pretrained(sys.argv[1])
            image = np.asarray(Image.open(sys.argv[2]).convert("RGB"))
            values = processor(images=image, return_tensors="np").pixel_values[0].astype(np.float32)
            values.tofile(sys.argv[3])
            print(type(processor).__name__, values.shape)
            """
        _ = try PythonReference.run(script, arguments: [model.path, photo.path, output.path], timeout: 300)
        let data = try Data(contentsOf: output)
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    func testPixelValuesMatchTransformersProcessor() throws {
        let model = work.appendingPathComponent("model")
        try CLIPSegInitializer.write(config: CLIPSegPreset.tiny.config, seed: 1, to: model)
        let photo = work.appendingPathComponent("astronaut.png")
        _ = try PythonReference.run(
            """
            import sys
            from PIL import Image
            from skimage import data
            Image.fromarray(data.astronaut()).save(sys.argv[1])
            """, arguments: [photo.path])
        let rgb = try ImageIO.readImage(photo)
        let cases = [
            // No statistics: ViTImageProcessor's 0.5, not ImageNet's; bicubic.
            #"{"image_processor_type": "ViTImageProcessor", "size": {"height": 96, "width": 96}, "resample": 3}"#,
            // The published CLIPSeg file's form (feature extractor, bilinear, ImageNet statistics).
            #"{"feature_extractor_type": "ViTFeatureExtractor", "do_normalize": true, "do_resize": true, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "resample": 2, "size": 80}"#,
            // No rescale, other factor, no normalisation; every default otherwise (224, bilinear).
            #"{"do_rescale": false, "do_normalize": false}"#,
            #"{"rescale_factor": 0.002, "image_mean": 0.25, "size": 64, "resample": 3}"#,
        ]
        for (i, processor) in cases.enumerated() {
            try Data(processor.utf8).write(to: model.appendingPathComponent("preprocessor_config.json"))
            let preprocessing = try ImagePreprocessing.of(directory: model)
            let size = preprocessing.size
            let ours = rgb.resized(width: size, height: size, filter: ResizeFilter(preprocessing))
                .normalizedTensor(Normalization(preprocessing)).scalars
            let theirs = try transformersPixels(
                model: model, photo: photo, output: work.appendingPathComponent("\(i).f32"))
            XCTAssertEqual(ours.count, theirs.count, processor)
            let worst = zip(ours, theirs).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(worst, 1e-5, "\(processor): max difference \(worst)")
            print(
                "processor parity \(i): \(size)x\(size), filter \(ResizeFilter(preprocessing)), max relative difference \(worst)"
            )
        }
    }
}
