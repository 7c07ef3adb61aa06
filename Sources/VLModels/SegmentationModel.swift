import Foundation
import VLTensor

/// Image features that no trainable tensor influences when the image encoder is frozen: the
/// trainer may cache them across epochs. CLIPSeg: the tapped ViT activations and the patch grid;
/// CRIS: C3, C4 and C5.
public struct FrozenFeatures {
    public var activations: [Tensor]
    public var gridHeight: Int
    public var gridWidth: Int
    public init(activations: [Tensor], gridHeight: Int = 0, gridWidth: Int = 0) {
        self.activations = activations
        self.gridHeight = gridHeight
        self.gridWidth = gridWidth
    }
}

/// What training, evaluation and prediction need from a text-prompted segmentation model.
///
/// The trainer sees parameters by name and logits; which architecture produced them (CLIPSeg's
/// ViT + FiLM decoder, or CRIS's ResNet + FPN + transformer decoder) stays behind this protocol.
public protocol SegmentationModel: AnyObject {
    /// Weights by checkpoint name (frozen ones memory-mapped, trainable ones owned).
    var parameters: ParameterStore { get }
    /// Short architecture name for logs ("CLIPSeg", "CRIS").
    var architectureName: String { get }
    /// Every learnable tensor (what full fine-tuning trains; buffers such as BN statistics excluded).
    var learnableParameterNames: [String] { get }
    /// The decoder side (what "decoder" tuning trains).
    var decoderParameterNames: [String] { get }
    /// True when the text conditioning depends on the query images (image-conditioned prompts), so
    /// prompts cannot be encoded once and shared across images.
    var textDependsOnImages: Bool { get }
    /// Checks that an input size suits the architecture; the error says why not.
    func validateInputSize(_ size: Int) throws

    /// Logits [B, H, W] at the input size for pixels [B, 3, H, W] and one prompt per image.
    func segmentationLogits(pixels: Tensor, text: TextPrompts) -> Tensor
    /// The frozen image features (for the feature cache).
    func frozenFeatures(pixels: Tensor) -> FrozenFeatures
    /// Logits from cached frozen features (`pixels` are still passed for image-conditioned prompts).
    func segmentationLogits(features: FrozenFeatures, pixels: Tensor, text: TextPrompts) -> Tensor
}

extension SegmentationModel {
    /// Learnable parameter count (the figure papers quote).
    public var learnableParameterCount: Int { learnableParameterNames.reduce(0) { $0 + parameters[$1].count } }
}

/// Opens a model directory by what its config.json describes.
public enum ModelDirectory {
    /// CRIS when `model_type` is "cris", otherwise a Hugging Face CLIPSeg. The config is checked,
    /// and its parameters compared with `memoryLimit` (default: this machine's memory), before
    /// anything is built from it.
    public static func load(_ directory: URL, memoryLimit: UInt64 = MachineMemory.physical) throws -> SegmentationModel
    {
        let configURL = directory.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: configURL.path) else {
            throw ModelLoadError.missingFile(path: configURL.path)
        }
        if CRISConfig.isCRIS(configAt: configURL) {
            return try CRISModel.load(directory: directory, memoryLimit: memoryLimit)
        }
        return try CLIPSegModel.load(directory: directory, memoryLimit: memoryLimit)
    }
}

extension CLIPSegModel: SegmentationModel {
    public var architectureName: String { "CLIPSeg" }
    public var learnableParameterNames: [String] { parameters.names }
    public var textDependsOnImages: Bool { hooks?.conditionsOnImages ?? false }

    public func validateInputSize(_ size: Int) throws {
        let p = config.visionConfig.patchSizeOrDefault
        guard size % p == 0 else {
            throw ModelLoadError.unsupportedInputSize(
                size: size, reason: "CLIPSeg needs a multiple of its patch size \(p)")
        }
    }

    public func segmentationLogits(pixels: Tensor, text: TextPrompts) -> Tensor { self(pixels: pixels, text: text) }

    public func frozenFeatures(pixels: Tensor) -> FrozenFeatures { visionFeatures(pixels) }

    public func segmentationLogits(features: FrozenFeatures, pixels: Tensor, text: TextPrompts) -> Tensor {
        segment(features: features, conditional: conditionalEmbeddings(text: text, pixels: pixels))
    }
}

extension CRISModel: SegmentationModel {
    public var architectureName: String { "CRIS" }
    public var textDependsOnImages: Bool { textContext?.conditionsOnImages ?? false }

    public func validateInputSize(_ size: Int) throws {
        guard size % 32 == 0 else {
            throw ModelLoadError.unsupportedInputSize(
                size: size,
                reason:
                    "CRIS needs a multiple of 32 (its FPN joins /32 and /16 maps); it was trained at \(config.imgSize)")
        }
    }

    public func segmentationLogits(pixels: Tensor, text: TextPrompts) -> Tensor {
        let logits = self(pixels: pixels, text: text)
        return logits.reshaped([logits.shape[0], logits.shape[2], logits.shape[3]])
    }

    public func frozenFeatures(pixels: Tensor) -> FrozenFeatures {
        let v = encodeImage(pixels)
        return FrozenFeatures(activations: [v.c3, v.c4, v.c5])
    }

    public func segmentationLogits(features: FrozenFeatures, pixels: Tensor, text: TextPrompts) -> Tensor {
        let f = features.activations
        let visual = VisualFeatures(c3: f[0], c4: f[1], c5: f[2])
        let embeddings = tokenEmbeddings(text, length: Self.textLength(text, trimPadding: true))
        let logits = segment(
            visual: visual, tokenEmbeddings: embeddings, prompts: text, outputSize: (pixels.shape[2], pixels.shape[3]))
        return logits.reshaped([logits.shape[0], logits.shape[2], logits.shape[3]])
    }
}
