import Foundation
import VLData
import VLModels

/// The test images a model does worst on, as small pictures for the report.
public enum WorstImages {
    public static let defaultCount = 10

    /// The `count` lowest Dice scores (model resolution, as `evaluate --per-image` ranks them),
    /// ties broken by sample order.
    public static func lowest(_ scores: [Inference.ImageScore], count: Int = defaultCount) -> [Inference.ImageScore] {
        Array(scores.sorted { ($0.dice, $0.sampleIndex) < ($1.dice, $1.sampleIndex) }.prefix(count))
    }

    /// Whether per-image scores read from a file still describe `samples`: every row's index names a
    /// sample with the same image and mask (a dataset edited since then does not match).
    public static func describe(_ scores: [Inference.ImageScore], samples: SampleSet) -> Bool {
        !scores.isEmpty
            && scores.allSatisfy { s in
                samples.samples.indices.contains(s.sampleIndex)
                    && samples.samples[s.sampleIndex].entry.imageName == s.image
                    && samples.samples[s.sampleIndex].entry.maskName == s.mask
            }
    }

    /// The pictures of `scores`' samples: each image with its target and with its prediction drawn
    /// over it, predicted again by `Inference.predictions` exactly as evaluation prepared it. Images
    /// are shrunk to at most `maxSide` pixels so ten of them keep the page small.
    public static func pictures(
        model: SegmentationModel, data: DataLoader, scores: [Inference.ImageScore], batchSize: Int,
        threshold: ProbabilityThreshold, resize: MaskResize, maxSide: Int = 160
    ) throws -> [ReportImage] {
        let predicted = try Inference.predictions(
            model: model, data: data, indices: scores.map(\.sampleIndex), batchSize: batchSize, threshold: threshold,
            resize: resize)
        return try zip(scores, predicted).map { score, p in
            var shown = score
            // The prompt the pictured prediction used (the same as the score's unless the file is stale).
            shown.prompt = p.prompt
            let truth = try Inference.originalTarget(p.sample, batchClass: score.classID)
            return try picture(
                score: shown, image: try ImageIO.readImage(p.sample.entry.imageURL), truth: truth,
                prediction: p.mask, maxSide: maxSide)
        }
    }

    /// Three PNGs of one sample: the image, the target over it (green), the prediction over it (red).
    public static func picture(
        score: Inference.ImageScore, image: RGBImage, truth: BinaryMask, prediction: BinaryMask, maxSide: Int
    ) throws -> ReportImage {
        let scale = min(1, Double(maxSide) / Double(max(image.width, image.height, 1)))
        let w = max(1, Int((Double(image.width) * scale).rounded()))
        let h = max(1, Int((Double(image.height) * scale).rounded()))
        let small = (w, h) == (image.width, image.height) ? image : image.resized(width: w, height: h)
        func fit(_ m: BinaryMask) -> BinaryMask {
            (m.width, m.height) == (w, h) ? m : m.resizedNearest(width: w, height: h)
        }
        return ReportImage(
            score: score, image: try PNGCodec.encode(small),
            truth: try PNGCodec.encode(ImageIO.overlay(image: small, mask: fit(truth), color: (0, 200, 0))),
            prediction: try PNGCodec.encode(ImageIO.overlay(image: small, mask: fit(prediction), color: (255, 0, 0))),
            width: w, height: h)
    }
}
