import VLTensor

/// Width and height of a sample's image as stored on disk, before any augmentation or resizing:
/// predictions are resized back to it when written.
public struct ImageSize: Sendable, Equatable, Hashable, Codable, CustomStringConvertible {
    public var width: Int
    public var height: Int

    public init(width: Int, height: Int) {
        self.width = width
        self.height = height
    }

    public var description: String { "\(width)x\(height)" }
}

/// A batch ready for the model: pixels and targets at the model's resolution, tokenised prompts, and
/// what evaluation and prediction need to map results back to files and classes.
///
/// Under `on_error: skip` a batch may hold fewer samples than the batch size (even none): every rank still
/// gets the same number of batches, so the trainer keeps entering its collectives in step; it must treat an
/// empty batch as a step with zero gradient.
// @unchecked Sendable: made by one loader worker and handed whole to the consumer; no thread writes
// its tensors after the hand-off.
public struct Batch: @unchecked Sendable {
    /// [B, 3, S, S], normalised.
    public var pixelValues: Tensor
    /// [B, S, S], 0 or 1.
    public var masks: Tensor
    /// [B][L] token ids, padded to the batch's text length (`<|endoftext|>` padding for CLIP).
    public var inputIDs: [[Int]]
    /// [B][L], 1 for real tokens, 0 for padding.
    public var attentionMask: [[Int]]
    /// Positions in the `SampleSet` (the randomness keys; stable across ranks and workers).
    public var sampleIndices: [Int]
    /// The annotation entries the samples come from (file, index, names).
    public var entries: [EntryReference]
    public var imageNames: [String]
    public var maskNames: [String]
    /// Sizes of the images on disk.
    public var originalSizes: [ImageSize]
    /// The prompt text each sample was tokenised from.
    public var prompts: [String]
    /// The prompt key (`p1`...) for medvlsm samples, nil for multi-class samples.
    public var promptKeys: [String?]
    /// The class of each sample in a multi-class dataset (nil for binary datasets). Absent-class samples carry
    /// the class their prompt names; their target is all background.
    public var classIDs: [Int?]
    /// The epoch and position of this batch in this rank's stream.
    public var cursor: SamplerCursor
    /// Where the stream stands after this batch: what a checkpoint taken after stepping on it stores.
    public var nextCursor: SamplerCursor

    public init(
        pixelValues: Tensor, masks: Tensor, inputIDs: [[Int]], attentionMask: [[Int]], sampleIndices: [Int],
        entries: [EntryReference], imageNames: [String], maskNames: [String], originalSizes: [ImageSize],
        prompts: [String], promptKeys: [String?], classIDs: [Int?], cursor: SamplerCursor, nextCursor: SamplerCursor
    ) {
        self.pixelValues = pixelValues
        self.masks = masks
        self.inputIDs = inputIDs
        self.attentionMask = attentionMask
        self.sampleIndices = sampleIndices
        self.entries = entries
        self.imageNames = imageNames
        self.maskNames = maskNames
        self.originalSizes = originalSizes
        self.prompts = prompts
        self.promptKeys = promptKeys
        self.classIDs = classIDs
        self.cursor = cursor
        self.nextCursor = nextCursor
    }

    /// A batch that comes from no file (benchmarks, tests): samples named by position, prompts as given.
    public init(
        synthetic pixelValues: Tensor, masks: Tensor, prompts: [String], inputIDs: [[Int]], attentionMask: [[Int]]
    ) {
        let n = pixelValues.shape.first ?? 0
        let size = ImageSize(
            width: pixelValues.shape.last ?? 0, height: pixelValues.shape.count > 2 ? pixelValues.shape[2] : 0)
        self.init(
            pixelValues: pixelValues, masks: masks, inputIDs: inputIDs, attentionMask: attentionMask,
            sampleIndices: Array(0..<n), entries: [], imageNames: (0..<n).map { "synthetic-\($0)" },
            maskNames: (0..<n).map { "synthetic-\($0)" }, originalSizes: Array(repeating: size, count: n),
            prompts: prompts, promptKeys: Array(repeating: nil, count: n), classIDs: Array(repeating: nil, count: n),
            cursor: SamplerCursor(), nextCursor: SamplerCursor())
    }

    /// Number of samples (may be below the configured batch size, see above).
    public var count: Int { sampleIndices.count }
    public var isEmpty: Bool { sampleIndices.isEmpty }
    /// Text length L of `inputIDs`.
    public var textLength: Int { inputIDs.first?.count ?? 0 }

    /// The token ids as a float tensor [B, L] (model code that embeds by index reads floats).
    public var inputIDsTensor: Tensor {
        Tensor(shape: [count, textLength], values: inputIDs.flatMap { $0.map(Float.init) })
    }

    /// The attention mask as a float tensor [B, L].
    public var attentionMaskTensor: Tensor {
        Tensor(shape: [count, textLength], values: attentionMask.flatMap { $0.map(Float.init) })
    }
}
