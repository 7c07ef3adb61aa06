import Foundation
import VLData
import VLDistributed
import VLModels
import VLTensor
import VLTokenizer

/// Evaluation and prediction with a trained checkpoint.
public enum Inference {
    /// Loads `trainable.safetensors` (a checkpoint directory or the file itself) into the model:
    /// every tensor must name a parameter the model (with its tuning method prepared) has.
    @discardableResult
    public static func loadTrainable(_ path: String, into model: SegmentationModel) throws -> Int {
        var url = URL(fileURLWithPath: path)
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue {
            url = url.appendingPathComponent(CheckpointStore.trainableFile)
        }
        guard FileManager.default.fileExists(atPath: url.path) else { throw CheckpointError.notFound(path: url.path) }
        let file = try SafeTensorsFile(url: url)
        let unknown = file.names.filter { !model.parameters.contains($0) }
        if !unknown.isEmpty {
            throw CheckpointError.incompatible(
                path: url.path,
                reason:
                    "tensors the model does not have (wrong tuning method or model?): \(unknown.prefix(5).joined(separator: ", "))"
            )
        }
        for name in file.names {
            let t = try file.tensor(name)
            guard t.shape == model.parameters[name].shape else {
                throw CheckpointError.incompatible(
                    path: url.path,
                    reason: "'\(name)' has shape \(t.shape), the model expects \(model.parameters[name].shape)")
            }
            model.parameters.set(name, t)
        }
        return file.names.count
    }

    /// The target mask of a sample at its original resolution (1 = foreground).
    static func originalTarget(_ sample: Sample, batchClass: Int?) throws -> BinaryMask {
        switch sample.target {
        case .binary:
            return try ImageIO.readMask(sample.entry.maskURL)
        case let .classPresent(id):
            let m = try ImageIO.readClassIndices(sample.entry.maskURL)
            return BinaryMask(width: m.width, height: m.height, values: m.values.map { Int($0) == id ? 1 : 0 })
        case .classAbsent:
            let m = try ImageIO.readClassIndices(sample.entry.maskURL)
            return BinaryMask(width: m.width, height: m.height)
        }
    }

    /// Logits [H, W] brought to the original size and thresholded, the way `resize` names.
    static func originalPrediction(
        _ logits: Tensor, size: ImageSize, threshold: ProbabilityThreshold = .half,
        resize: MaskResize = .bilinear
    ) -> BinaryMask {
        let h = logits.shape[0], w = logits.shape[1], n = size.width * size.height
        var values = [UInt8](repeating: 0, count: n)
        switch resize {
        case .bilinear:
            let resized = logits.reshaped([1, h, w]).resized(to: (size.height, size.width), mode: .bilinear)
            let cut = threshold.logit
            resized.withUnsafeBufferPointer { p in
                for i in 0..<n where p[i] > cut { values[i] = 1 }
            }
        case .nearest:
            // PyTorch's "nearest-exact" (torchvision NEAREST_EXACT): source index floor((i + 0.5) * in / out),
            // computed in float as PyTorch does, clamped to the last row or column.
            let cut = threshold.logit
            let sy = Float(h) / Float(size.height), sx = Float(w) / Float(size.width)
            let columns = (0..<size.width).map { min(Int(((Float($0) + 0.5) * sx).rounded(.down)), w - 1) }
            logits.withUnsafeBufferPointer { p in
                for y in 0..<size.height {
                    let row = min(Int(((Float(y) + 0.5) * sy).rounded(.down)), h - 1) * w
                    for x in 0..<size.width where p[row + columns[x]] > cut { values[y * size.width + x] = 1 }
                }
            }
        case .bicubic:
            // Probabilities, not logits, are interpolated (the sigmoid does not commute with it); a
            // pixel is foreground at probability >= threshold, as TuneVLSeg's 8-bit PNG read back > 127.
            let sigmoid = logits.withUnsafeBufferPointer { src in (0..<(h * w)).map { stableSigmoid(src[$0]) } }
            let resized = Tensor(shape: [1, h, w], values: sigmoid).resized(
                to: (size.height, size.width), mode: .bicubic)
            let cut = Float(threshold.probability)
            resized.withUnsafeBufferPointer { p in
                for i in 0..<n where p[i] >= cut { values[i] = 1 }
            }
        }
        return BinaryMask(width: size.width, height: size.height, values: values)
    }

    static func counts(_ pred: BinaryMask, _ truth: BinaryMask) -> PixelCounts {
        var inter = 0, p = 0, t = 0
        for i in 0..<min(pred.values.count, truth.values.count) {
            let a = pred.values[i] != 0, b = truth.values[i] != 0
            if a { p += 1 }
            if b { t += 1 }
            if a && b { inter += 1 }
        }
        return PixelCounts(intersection: inter, predicted: p, truth: t)
    }

    public struct EvaluationResult: Sendable {
        public var modelResolution: SegmentationMetrics
        public var originalResolution: SegmentationMetrics?
        /// Per class id (multi-class datasets): Dice and IoU at model resolution.
        public var perClass: [Int: SegmentationMetrics]
        /// One row per evaluated sample in sample order, when asked for (on every rank).
        public var perImage: [ImageScore] = []
    }

    /// One sample's scores: which files and prompt, Dice and IoU at model resolution and (when
    /// computed) at the image's own size. Finding the images a model fails on starts here.
    public struct ImageScore: Sendable, Codable, Equatable {
        public var sampleIndex: Int
        public var image: String
        public var mask: String
        public var prompt: String
        public var classID: Int?
        public var dice: Double
        public var iou: Double
        public var diceOriginal: Double?
        public var iouOriginal: Double?

        /// The CSV header matching `csvRow`.
        public static let csvHeader = "index,image,mask,prompt,class,dice,iou,dice_original,iou_original"

        /// RFC 4180 fields: text quoted when it holds a comma, quote or line break.
        public var csvRow: String {
            func text(_ s: String) -> String {
                s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" })
                    ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
            }
            func number(_ x: Double?) -> String { x.map { String(format: "%.6f", $0) } ?? "" }
            return [
                String(sampleIndex), text(image), text(mask), text(prompt), classID.map(String.init) ?? "",
                number(dice), number(iou), number(diceOriginal), number(iouOriginal),
            ].joined(separator: ",")
        }
    }

    /// Sharded evaluation over every rank; the result is the same on every rank.
    public static func evaluate(
        model: SegmentationModel, data: DataLoader, loss: SegmentationLoss, comm: Communicator,
        originalResolution: Bool, cache: FeatureCache? = nil, perImage: Bool = false,
        threshold: ProbabilityThreshold = .half, resize: MaskResize = .bilinear,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> EvaluationResult {
        var atModel = SegmentationMetrics(), atOriginal = SegmentationMetrics()
        var perClass: [Int: SegmentationMetrics] = [:]
        var rows: [ImageScore] = []
        try forEachBatch(model: model, data: data, cache: cache, progress: progress) { batch, logits in
            atModel.add(
                logits: logits, target: batch.masks, loss: Double(loss(logits, target: batch.masks).item),
                threshold: threshold)
            let per = logits.count / batch.count
            for i in 0..<batch.count {
                var row: ImageScore? = nil
                if batch.classIDs[i] != nil || perImage {
                    let s = withTensorPointers(reading: logits, batch.masks) { pl, pt in
                        SegmentationMetrics.counts(
                            logits: pl + i * per, target: pt + i * per, count: per, threshold: threshold)
                    }
                    if let cls = batch.classIDs[i] { perClass[cls, default: SegmentationMetrics()].add(s) }
                    if perImage {
                        row = ImageScore(
                            sampleIndex: batch.sampleIndices[i], image: batch.imageNames[i], mask: batch.maskNames[i],
                            prompt: batch.prompts[i], classID: batch.classIDs[i], dice: s.dice, iou: s.iou)
                    }
                }
                if originalResolution {
                    let sample = data.samples.samples[batch.sampleIndices[i]]
                    let truth = try originalTarget(sample, batchClass: batch.classIDs[i])
                    let pred = originalPrediction(
                        logits.slice(axis: 0, i..<(i + 1)).reshaped([logits.shape[1], logits.shape[2]]),
                        size: batch.originalSizes[i], threshold: threshold, resize: resize)
                    let s = counts(pred, truth)
                    atOriginal.add(s)
                    row?.diceOriginal = s.dice
                    row?.iouOriginal = s.iou
                }
                if let row { rows.append(row) }
            }
        }
        var v = atModel.reductionVector + atOriginal.reductionVector
        comm.allReduceSum(&v, label: "evaluation metrics")
        // Per-class sums: every rank contributes the same class-id slots.
        let classIDs = (data.samples.classes?.classes.map(\.id) ?? []).sorted()
        let width = SegmentationMetrics.reductionWidth
        var classVector = classIDs.flatMap { perClass[$0]?.reductionVector ?? [Double](repeating: 0, count: width) }
        if !classVector.isEmpty { comm.allReduceSum(&classVector, label: "per-class metrics") }
        var reducedPerClass: [Int: SegmentationMetrics] = [:]
        for (k, id) in classIDs.enumerated() {
            let m = SegmentationMetrics(reductionVector: Array(classVector[(width * k)..<(width * k + width)]))
            if m.images > 0 { reducedPerClass[id] = m }
        }
        var allRows: [ImageScore] = []
        if perImage {
            // Every rank's rows to every rank (one all-gather of their JSON), then in sample order.
            let mine = try JSONEncoder().encode(rows)
            for part in comm.allGatherVariable(Array(mine), label: "per-image scores") {
                allRows += try JSONDecoder().decode([ImageScore].self, from: Data(part))
            }
            allRows.sort { ($0.sampleIndex, $0.classID ?? -1) < ($1.sampleIndex, $1.classID ?? -1) }
        }
        return EvaluationResult(
            modelResolution: SegmentationMetrics(reductionVector: Array(v[0..<width])),
            originalResolution: originalResolution
                ? SegmentationMetrics(reductionVector: Array(v[width..<(2 * width)])) : nil,
            perClass: reducedPerClass, perImage: allRows)
    }

    /// Runs the model over every (non-empty) batch of `data` without gradients.
    static func forEachBatch(
        model: SegmentationModel, data: DataLoader, cache: FeatureCache? = nil, progress: ((Int, Int) -> Void)?,
        _ body: (Batch, Tensor) throws -> Void
    ) throws {
        try GradMode.withoutGradients {
            let stream = try data.batches(epoch: 0)
            defer { stream.close() }
            var done = 0
            while let batch = try stream.next() {
                done += 1
                progress?(done, stream.batchCount)
                if batch.isEmpty { continue }
                try body(batch, TrainingStep.logits(model, batch, cache: cache))
            }
        }
    }

    /// One chosen sample's prediction at its original size, with what it was predicted from.
    public struct SamplePrediction {
        public var sample: Sample
        public var prompt: String
        public var mask: BinaryMask
    }

    /// Predictions for the samples at `indices` of `data` (in batches of at most `batchSize`), at each
    /// image's own size: the pictures of TensorBoard's validation overlays and of the report's worst
    /// images. A sample is prepared exactly as in evaluation (epoch 0, its index keys its prompt), so
    /// its prediction is the one its per-image score was measured on.
    public static func predictions(
        model: SegmentationModel, data: DataLoader, indices: [Int], batchSize: Int,
        threshold: ProbabilityThreshold = .half, resize: MaskResize = .bilinear
    ) throws -> [SamplePrediction] {
        var out: [SamplePrediction] = []
        for start in stride(from: 0, to: indices.count, by: max(1, batchSize)) {
            let batch = try data.batch(of: Array(indices[start..<min(indices.count, start + max(1, batchSize))]))
            guard !batch.isEmpty else { continue }
            let logits = try GradMode.withoutGradients { try TrainingStep.logits(model, batch, cache: nil) }
            let h = logits.shape[1], w = logits.shape[2]
            for i in 0..<batch.count {
                let mask = originalPrediction(
                    logits.slice(axis: 0, i..<(i + 1)).reshaped([h, w]), size: batch.originalSizes[i],
                    threshold: threshold, resize: resize)
                out.append(
                    SamplePrediction(
                        sample: data.samples.samples[batch.sampleIndices[i]], prompt: batch.prompts[i], mask: mask))
            }
        }
        return out
    }

    /// Writes predicted masks (0/255 PNG at the original resolution) and optional overlays for
    /// this rank's shard; returns the number of files written.
    public static func predict(
        model: SegmentationModel, data: DataLoader, outputDirectory: URL, overlays: Bool,
        threshold: ProbabilityThreshold = .half, resize: MaskResize = .bilinear,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> Int {
        let fm = FileManager.default
        var written = 0
        // Files are named after the image; when entries share images (referring datasets: one mask per
        // referred object; class-folder datasets: `<class>/<stem>`), every file of the split is named after
        // its mask, so no prediction overwrites another and the names follow one rule.
        var uses: [String: Int] = [:]
        for s in data.samples.samples { uses[s.entry.imageName, default: 0] += 1 }
        let namedByMask = uses.values.contains { $0 > 1 }
        try forEachBatch(model: model, data: data, progress: progress) { batch, logits in
            for i in 0..<batch.count {
                let sample = data.samples.samples[batch.sampleIndices[i]]
                let pred = originalPrediction(
                    logits.slice(axis: 0, i..<(i + 1)).reshaped([logits.shape[1], logits.shape[2]]),
                    size: batch.originalSizes[i], threshold: threshold, resize: resize)
                var stem = (sample.entry.imageName as NSString).deletingPathExtension
                if let cls = batch.classIDs[i] {
                    stem += "_class\(cls)"
                } else if namedByMask {
                    stem = (sample.entry.maskName as NSString).deletingPathExtension
                }
                let maskURL = outputDirectory.appendingPathComponent("masks").appendingPathComponent(stem + ".png")
                try fm.createDirectory(at: maskURL.deletingLastPathComponent(), withIntermediateDirectories: true)
                try ImageIO.writeMaskPNG(pred, to: maskURL)
                written += 1
                if overlays {
                    let image = try ImageIO.readImage(sample.entry.imageURL)
                    let url = outputDirectory.appendingPathComponent("overlays").appendingPathComponent(stem + ".png")
                    try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                    try ImageIO.writePNG(ImageIO.overlay(image: image, mask: pred), to: url)
                    written += 1
                }
            }
        }
        return written
    }

    /// Multi-class prediction: every image is segmented once per class prompt; writes each class's
    /// probability map (8-bit PNG, 255 = 1.0) and the arg-max label map (class ids as gray values;
    /// pixels whose best probability is below 0.5 get `background`) at the original resolution.
    /// Images are split over ranks in contiguous blocks; returns the files this rank wrote.
    public static func predictClasses(
        model: SegmentationModel, samples: SampleSet, tokenizer: CLIPTokenizer, imageSize: Int,
        normalization: Normalization = .imageNet, resizeFilter: ResizeFilter = .bilinear,
        outputDirectory: URL, comm: Communicator,
        background: Int = 0
    ) throws -> Int {
        guard let classes = samples.classes else { return 0 }
        var seen = Set<String>()
        let images = samples.samples.map(\.entry).filter { seen.insert($0.imageURL.path).inserted }
        let per = (images.count + comm.size - 1) / comm.size
        let mine = images[min(images.count, comm.rank * per)..<min(images.count, (comm.rank + 1) * per)]
        let ids = classes.trainableIDs
        let texts = ids.map { classes.promptTexts(for: $0).first ?? classes.info($0)!.name }
        let encodings = tokenizer.encodeBatch(texts, padding: .longest(max: CLIPTokenizer.contextLength))
        let prompts = TextPrompts(inputIDs: encodings.map(\.inputIDs), attentionMask: encodings.map(\.attentionMask))
        let fm = FileManager.default
        var written = 0
        try GradMode.withoutGradients {
            // Image-conditioned prompts (CoCoOp) make the class embeddings depend on the image.
            let clipseg = model as? CLIPSegModel
            let sharedCond: Tensor? = clipseg.flatMap {
                $0.textDependsOnImages ? nil : $0.conditionalEmbeddings(text: prompts)
            }
            for entry in mine {
                let rgb = try ImageIO.readImage(entry.imageURL)
                let one = rgb.resized(width: imageSize, height: imageSize, filter: resizeFilter).normalizedTensor(
                    normalization
                ).reshaped([1, 3, imageSize, imageSize])
                let pixels = one.expanded(to: [ids.count, 3, imageSize, imageSize])
                let logits: Tensor
                if let clipseg {
                    logits = clipseg.segment(
                        pixels: pixels,
                        conditional: sharedCond ?? clipseg.conditionalEmbeddings(text: prompts, pixels: pixels))
                } else {
                    logits = model.segmentationLogits(pixels: pixels, text: prompts)
                }
                let full = logits.resized(to: (rgb.height, rgb.width), mode: .bilinear)
                let n = rgb.width * rgb.height
                var best = [Float](repeating: 0.5, count: n)
                var label = [UInt8](repeating: UInt8(background), count: n)
                let stem = (entry.imageName as NSString).deletingPathExtension
                for (k, id) in ids.enumerated() {
                    var gray = [UInt8](repeating: 0, count: n)
                    full.withUnsafePointer { start in
                        let p = start + k * n
                        for i in 0..<n {
                            let prob = stableSigmoid(p[i])
                            gray[i] = UInt8((prob * 255).rounded())
                            if prob > best[i] { best[i] = prob; label[i] = UInt8(id) }
                        }
                    }
                    let name = classes.info(id)!.name.replacingOccurrences(of: "/", with: "_")
                    let url = outputDirectory.appendingPathComponent("probabilities/\(stem)/\(id)_\(name).png")
                    try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                    try ImageIO.writeFileBytes(
                        try PNGCodec.encodeGray(gray, width: rgb.width, height: rgb.height), to: url)
                    written += 1
                }
                let url = outputDirectory.appendingPathComponent("labels/\(stem).png")
                try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try ImageIO.writeFileBytes(
                    try PNGCodec.encodeGray(label, width: rgb.width, height: rgb.height), to: url)
                written += 1
            }
        }
        return written
    }
}
