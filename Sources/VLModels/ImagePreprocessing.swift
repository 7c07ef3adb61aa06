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
    /// PIL's filter code for the resize (2 bilinear, 3 bicubic), as the processor's `resample`.
    public var resample: Int = ImagePreprocessing.bilinear
    /// The factor that turns bytes into the values normalised (`rescale_factor` when `do_rescale`,
    /// 1/255 by default; 1 when the processor does not rescale).
    public var rescaleFactor: Double = 1.0 / 255

    public init(
        size: Int, mean: [Double], std: [Double], resample: Int = ImagePreprocessing.bilinear,
        rescaleFactor: Double = 1.0 / 255
    ) {
        self.size = size
        self.mean = mean
        self.std = std
        self.resample = resample
        self.rescaleFactor = rescaleFactor
    }

    /// ImageNet statistics: what CLIPSeg was trained with and its published processor files name.
    public static let imageNetMean = [0.485, 0.456, 0.406]
    public static let imageNetStd = [0.229, 0.224, 0.225]
    /// transformers' `IMAGENET_STANDARD_MEAN`/`STD`: ViTImageProcessor's defaults when a file names none.
    public static let standardMean = [0.5, 0.5, 0.5]
    public static let standardStd = [0.5, 0.5, 0.5]
    /// PIL filter codes VLSeg resizes with, bit-identically to Pillow.
    public static let bilinear = 2, bicubic = 3
    public static let supportedResample = [bilinear: "bilinear", bicubic: "bicubic"]

    public static let processorFileName = "preprocessor_config.json"
    /// The processor classes whose rules these are (CLIPSeg's processor uses ViTImageProcessor; older
    /// files name the feature extractor). A file naming no class is read as ViTImageProcessor.
    public static let processorClasses = ["ViTImageProcessor", "ViTImageProcessorFast", "ViTFeatureExtractor"]

    /// For CRIS: its config's `img_size` and statistics. For CLIPSeg with a `preprocessor_config.json`:
    /// what transformers' ViTImageProcessor does with that file, its defaults for absent keys included
    /// (size 224, bilinear, rescale 1/255, mean and std 0.5). Without one: the vision config's
    /// `image_size` and ImageNet statistics (the statistics CLIPSeg was trained with).
    public static func of(directory: URL) throws -> ImagePreprocessing {
        let configURL = directory.appendingPathComponent("config.json")
        if CRISConfig.isCRIS(configAt: configURL) {
            let cris = try CRISConfig.load(from: configURL)
            return ImagePreprocessing(size: cris.imgSize, mean: cris.imageMean, std: cris.imageStd)
        }
        let vision = try CLIPSegConfig.load(from: configURL).visionConfig
        let processorURL = directory.appendingPathComponent(processorFileName)
        guard FileManager.default.fileExists(atPath: processorURL.path) else {
            return ImagePreprocessing(size: vision.imageSize ?? 352, mean: imageNetMean, std: imageNetStd)
        }
        return try ProcessorFile.read(processorURL)
    }

    /// A Hugging Face ViT image processor config, read with transformers' defaults.
    enum ProcessorFile {
        /// `size` may be a number, `{"height": h, "width": w}` (square only) or `{"shortest_edge": n}`.
        static func read(_ url: URL) throws -> ImagePreprocessing {
            func bad(_ key: String, _ reason: String) -> ModelLoadError {
                .invalidConfig(file: url.path, key: key, reason: reason)
            }
            guard let data = FileManager.default.contents(atPath: url.path),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else {
                throw bad("(file)", "not a valid JSON object")
            }
            for key in ["image_processor_type", "feature_extractor_type"] {
                guard let name = object[key] as? String else { continue }
                guard processorClasses.contains(name) else {
                    throw bad(
                        key,
                        "\(name): VLSeg applies the rules of \(processorClasses.joined(separator: "/")) (CLIPSeg's processor)"
                    )
                }
            }
            func flag(_ key: String) throws -> Bool {
                guard let value = object[key], !(value is NSNull) else { return true }
                guard let b = value as? Bool else { throw bad(key, "expected true or false") }
                return b
            }
            var result = ImagePreprocessing(size: 224, mean: standardMean, std: standardStd)
            guard try flag("do_resize") else {
                throw bad(
                    "do_resize",
                    "false: the processor feeds images at their own size, but a batch needs one size; set do_resize true and size"
                )
            }
            if let size = object["size"], !(size is NSNull) {
                if let side = size as? Int {
                    result.size = side
                } else if let box = size as? [String: Any] {
                    if let h = box["height"] as? Int, let w = box["width"] as? Int {
                        guard h == w else { throw bad("size", "\(h)x\(w) is not square; set model.image_size") }
                        result.size = h
                    } else if let edge = box["shortest_edge"] as? Int {
                        result.size = edge
                    } else {
                        throw bad("size", "expected a number, {height, width} or {shortest_edge}")
                    }
                } else {
                    throw bad("size", "expected a number, {height, width} or {shortest_edge}")
                }
                guard result.size > 0 else { throw bad("size", "must be positive, found \(result.size)") }
            }
            if let value = object["resample"], !(value is NSNull) {
                guard let code = value as? Int else { throw bad("resample", "expected a PIL filter code") }
                guard supportedResample[code] != nil else {
                    let known = supportedResample.sorted { $0.key < $1.key }.map { "\($0.key) (\($0.value))" }.joined(
                        separator: ", ")
                    throw bad("resample", "PIL filter \(code) is not supported; VLSeg resizes with \(known)")
                }
                result.resample = code
            }
            if try flag("do_rescale") {
                if let value = object["rescale_factor"], !(value is NSNull) {
                    guard let factor = value as? Double, factor > 0 else {
                        throw bad("rescale_factor", "expected a positive number")
                    }
                    result.rescaleFactor = factor
                }
            } else {
                result.rescaleFactor = 1
            }
            if try flag("do_normalize") {
                for (key, assign) in [("image_mean", \ImagePreprocessing.mean), ("image_std", \ImagePreprocessing.std)]
                {
                    guard let value = object[key], !(value is NSNull) else { continue }
                    let numbers: [Double]
                    if let one = value as? Double {
                        numbers = [one, one, one]  // transformers broadcasts a single number
                    } else if let three = value as? [Double], three.count == 3 {
                        numbers = three
                    } else {
                        throw bad(key, "expected a number or three numbers")
                    }
                    if key == "image_std", numbers.contains(where: { $0 <= 0 }) { throw bad(key, "must be positive") }
                    result[keyPath: assign] = numbers
                }
            } else {
                result.mean = [0, 0, 0]
                result.std = [1, 1, 1]
            }
            return result
        }
    }
}
