import Foundation

/// How images are prepared for a model directory: the square input side and the per-channel
/// mean/std of [0, 1] pixels.
///
/// The published CLIPSeg checkpoints say `image_size: 224` in their vision config (the size of
/// their position table) but were trained, and are run by Hugging Face's processor, at 352x352 with
/// interpolated positions. The processor's `preprocessor_config.json` is what records 352, so it
/// comes first; a directory without one falls back to the model's own config.
public struct ImagePreprocessing: Sendable, Equatable {
    public var size: Int
    public var mean: [Double]
    public var std: [Double]

    public init(size: Int, mean: [Double], std: [Double]) {
        self.size = size
        self.mean = mean
        self.std = std
    }

    /// ImageNet statistics: what CLIPSeg was trained with and its processor uses.
    public static let imageNetMean = [0.485, 0.456, 0.406]
    public static let imageNetStd = [0.229, 0.224, 0.225]

    public static let processorFileName = "preprocessor_config.json"

    /// For CRIS: its config's `img_size` and statistics. For CLIPSeg: `preprocessor_config.json`'s
    /// `size`, `image_mean` and `image_std` where present, else the vision config's `image_size`
    /// and ImageNet statistics.
    public static func of(directory: URL) throws -> ImagePreprocessing {
        let configURL = directory.appendingPathComponent("config.json")
        if CRISConfig.isCRIS(configAt: configURL) {
            let cris = try CRISConfig.load(from: configURL)
            return ImagePreprocessing(size: cris.imgSize, mean: cris.imageMean, std: cris.imageStd)
        }
        let vision = try CLIPSegConfig.load(from: configURL).visionConfig
        var result = ImagePreprocessing(size: vision.imageSize ?? 352, mean: imageNetMean, std: imageNetStd)
        let processorURL = directory.appendingPathComponent(processorFileName)
        if FileManager.default.fileExists(atPath: processorURL.path) {
            let processor = try ProcessorFile.read(processorURL)
            result.size = processor.size ?? result.size
            result.mean = processor.mean ?? result.mean
            result.std = processor.std ?? result.std
        }
        return result
    }

    /// The fields of a Hugging Face image processor config that decide the model's input.
    struct ProcessorFile {
        var size: Int?
        var mean: [Double]?
        var std: [Double]?

        /// `size` may be a number, `{"height": h, "width": w}` (square only) or `{"shortest_edge": n}`.
        static func read(_ url: URL) throws -> ProcessorFile {
            func bad(_ key: String, _ reason: String) -> ModelLoadError { .invalidConfig(file: url.path, key: key, reason: reason) }
            guard let data = FileManager.default.contents(atPath: url.path),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw bad("(file)", "not a valid JSON object")
            }
            var file = ProcessorFile()
            if (object["do_resize"] as? Bool) != false, let size = object["size"] {
                if let side = size as? Int {
                    file.size = side
                } else if let box = size as? [String: Any] {
                    if let h = box["height"] as? Int, let w = box["width"] as? Int {
                        guard h == w else { throw bad("size", "\(h)x\(w) is not square; set model.image_size") }
                        file.size = h
                    } else if let edge = box["shortest_edge"] as? Int {
                        file.size = edge
                    } else {
                        throw bad("size", "expected a number, {height, width} or {shortest_edge}")
                    }
                } else if !(size is NSNull) {
                    throw bad("size", "expected a number, {height, width} or {shortest_edge}")
                }
                if let side = file.size, side <= 0 { throw bad("size", "must be positive, found \(side)") }
            }
            if (object["do_normalize"] as? Bool) != false {
                for (key, assign) in [("image_mean", \ProcessorFile.mean), ("image_std", \ProcessorFile.std)] {
                    guard let value = object[key], !(value is NSNull) else { continue }
                    guard let numbers = value as? [Double], numbers.count == 3 else { throw bad(key, "expected three numbers") }
                    if key == "image_std", numbers.contains(where: { $0 <= 0 }) { throw bad(key, "must be positive") }
                    file[keyPath: assign] = numbers
                }
            } else {
                file.mean = [0, 0, 0]
                file.std = [1, 1, 1]
            }
            return file
        }
    }
}
