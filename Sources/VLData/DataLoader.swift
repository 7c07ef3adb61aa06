import Foundation
import Synchronization
import VLTensor
import VLTokenizer

/// How the loader turns samples into batches (`data.*` in the config).
public struct DataLoaderConfig: Sendable {
    /// Side of the square model input (352 for CLIPSeg).
    public var imageSize: Int = 352
    /// Background threads that decode and transform; 0 prepares each batch on the caller's thread.
    public var workers: Int = 1
    /// Batches that may be prepared ahead of the consumer; nil = twice the workers (at least 2).
    public var prefetch: Int? = nil
    /// Seed of the counter-based randomness (prompts, augmentation, absent classes).
    public var seed: UInt64 = 0
    /// Which prompt of a medvlsm entry each sample uses.
    public var promptChoice: PromptChoice = .random
    /// Text padding: fixed 77 like the published CLIPSeg inputs, or to the batch's longest prompt.
    public var textPadding: CLIPTokenizer.Padding = .maxLength(CLIPTokenizer.contextLength)
    /// What an unusable sample does: stop with its error, or be left out (logged once, counted).
    public var onError: OnErrorPolicy = .fail
    /// Augmentations, nil for none (evaluation, prediction).
    public var augmentation: AugmentationConfig? = nil
    /// Per-channel mean and standard deviation of the model (ImageNet for CLIPSeg).
    public var normalization: Normalization = .imageNet
    /// The filter of the image resize to `imageSize` (the model's processor's `resample`).
    public var resizeFilter: ResizeFilter = .bilinear
    /// Resize images as OpenCV's `INTER_CUBIC` (`resizedOpenCVCubic`) instead of with `resizeFilter`.
    public var opencvCubic = false
    /// Loss targets: binarised at 127, or the mask's levels / 255 (`MaskTarget`); medvlsm entries only
    /// (class maps are labels, always binary).
    public var target: MaskTarget = .binary
    /// Append "." to prompts that lack one (`promptEndingWithPeriod`).
    public var appendPeriod = false

    public init(
        imageSize: Int = 352, workers: Int = 1, prefetch: Int? = nil, seed: UInt64 = 0,
        promptChoice: PromptChoice = .random,
        textPadding: CLIPTokenizer.Padding = .maxLength(CLIPTokenizer.contextLength),
        onError: OnErrorPolicy = .fail, augmentation: AugmentationConfig? = nil,
        normalization: Normalization = .imageNet
    ) {
        self.imageSize = imageSize
        self.workers = workers
        self.prefetch = prefetch
        self.seed = seed
        self.promptChoice = promptChoice
        self.textPadding = textPadding
        self.onError = onError
        self.augmentation = augmentation
        self.normalization = normalization
    }

    /// The prefetch depth in force.
    public var effectivePrefetch: Int { max(1, prefetch ?? max(2, 2 * workers)) }
}

/// Turns a rank's shard of a `SampleSet` into batches, preparing them on background threads.
///
/// Each sample is decoded, checked (mask size = image size), resized (antialiased bilinear for the image,
/// nearest for the mask), augmented with its own `CounterRandom(seed, epoch, sample index, .augmentation)`
/// stream, normalised straight into the batch tensor, and given a prompt drawn from its
/// `.prompt` stream; the batch's prompts are then tokenised together. Because every random draw is keyed by
/// the sample and not by the thread, batch contents and order are the same with 0, 1 or 8 workers, on any
/// rank layout, and after a resume.
///
/// Workers claim whole batches in order and may run at most `prefetch` batches ahead of the consumer, so
/// memory stays bounded; the consumer receives batches strictly in sampler order.
// @unchecked Sendable: its settings are immutable; the skipped-sample record is guarded by `lock`.
public final class DataLoader: @unchecked Sendable {
    public let samples: SampleSet
    public let sampler: ShardedSampler
    public let config: DataLoaderConfig
    public let tokenizer: CLIPTokenizer?
    let log: @Sendable (String) -> Void

    private let lock = NSLock()
    private var loggedSkips = Set<Int>()
    private var skippedSamples = Set<Int>()
    private var warnedFaintMask = false

    /// Writes one line to stderr, prefixed like the rest of the tool's messages.
    public static let standardErrorLog: @Sendable (String) -> Void = { line in
        FileHandle.standardError.write(Data("vlseg: \(line)\n".utf8))
    }

    /// - Parameters:
    ///   - tokenizer: nil leaves `inputIDs`/`attentionMask` empty (tools that only need pixels).
    ///   - log: where skipped entries and the skip summary go (stderr by default).
    public init(
        samples: SampleSet, sampler: ShardedSampler, tokenizer: CLIPTokenizer?,
        config: DataLoaderConfig = DataLoaderConfig(),
        log: @escaping @Sendable (String) -> Void = DataLoader.standardErrorLog
    ) throws {
        guard sampler.count == samples.count else {
            throw SamplerError(detail: "sampler made for \(sampler.count) samples, the dataset has \(samples.count)")
        }
        guard config.imageSize >= 1 else {
            throw DataError.emptyEpoch(detail: "image size must be positive, got \(config.imageSize)")
        }
        guard config.workers >= 0 else {
            throw DataError.emptyEpoch(detail: "workers must be >= 0, got \(config.workers)")
        }
        if case .training = sampler.mode, sampler.batchesPerEpoch == 0 {
            throw DataError.emptyEpoch(
                detail:
                    "\(samples.count) samples do not fill one global batch of \(sampler.batchSize) x \(sampler.worldSize) ranks with remainder policy drop; lower the batch size or use wrap"
            )
        }
        self.samples = samples
        self.sampler = sampler
        self.config = config
        self.tokenizer = tokenizer
        self.log = log
        for problem in samples.problems {
            log("skipping \(problem)")
        }
    }

    /// The batches of `epoch`, from its start.
    public func batches(epoch: Int) throws -> BatchStream {
        try batches(from: SamplerCursor(epoch: epoch, position: 0))
    }

    /// The rest of the cursor's epoch (a resumed run passes the checkpoint's cursor).
    public func batches(from cursor: SamplerCursor) throws -> BatchStream {
        let remaining = try sampler.remainingBatches(from: cursor)
        return BatchStream(loader: self, cursor: cursor, batches: remaining)
    }

    /// Samples left out so far under `on_error: skip` (unique, over all epochs), plus entries the index left out.
    public var skippedCount: Int {
        lock.lock(); defer { lock.unlock() }
        return skippedSamples.count + samples.problems.count
    }

    // MARK: Preparing samples

    /// What a prepared sample contributes besides its pixels.
    struct SampleInfo {
        var originalSize: ImageSize
        var prompt: String
        var promptKey: String?
        var classID: Int?
    }

    /// Prepares sample `index` of `epoch` into `pixels` (3*S*S floats, CHW) and `mask` (S*S floats).
    func prepare(index: Int, epoch: Int, pixels: UnsafeMutablePointer<Float>, mask: UnsafeMutablePointer<Float>) throws
        -> SampleInfo
    {
        let sample = samples.samples[index]
        let entry = sample.entry
        let ref = entry.reference

        // The prompt first: it needs no I/O, and a sample without one should not cost a decode.
        var info = SampleInfo(originalSize: ImageSize(width: 0, height: 0), prompt: "", promptKey: nil, classID: nil)
        switch sample.target {
        case .binary:
            let choice = try config.promptChoice.choose(
                from: entry.prompts, seed: config.seed, epoch: epoch, index: index, entry: ref)
            info.prompt = choice.text
            info.promptKey = choice.key
        case let .classPresent(id):
            info.classID = id
        case let .classAbsent(candidates):
            guard !candidates.isEmpty else {
                throw DataError.classes(
                    file: samples.classes?.file ?? "", entry: ref, detail: "no absent class to draw")
            }
            var rng = CounterRandom(
                seed: config.seed, epoch: UInt64(epoch), index: UInt64(index), purpose: .classSampling)
            info.classID = candidates[rng.drawIndex(below: candidates.count)]
        }
        if let id = info.classID {
            guard let classes = samples.classes, classes.info(id) != nil else {
                throw DataError.classes(
                    file: samples.classes?.file ?? ClassList.defaultFileName, entry: ref,
                    detail: "class id \(id) is not in the class list")
            }
            info.prompt = classes.choosePrompt(classID: id, seed: config.seed, epoch: epoch, index: index)
        }
        if config.appendPeriod { info.prompt = promptEndingWithPeriod(info.prompt) }

        let image: RGBImage
        do {
            image = try ImageIO.readImage(entry.imageURL)
        } catch let error as ImageError {
            throw DataError(imageError: error, role: "image", entry: ref)
        }
        var target: BinaryMask
        switch sample.target {
        case .binary:
            do {
                target =
                    config.target == .soft
                    ? try ImageIO.readMaskLevels(entry.maskURL) : try ImageIO.readMask(entry.maskURL)
            } catch let error as ImageError {
                throw DataError(imageError: error, role: "mask", entry: ref)
            }
            if config.target == .binary, !target.values.contains(where: { $0 != 0 }) { warnIfFaint(entry) }
        case let .classPresent(id):
            let map: LabelMap
            do {
                map = try LabelMap.read(entry.maskURL)
            } catch let error as DataError {
                throw error.attaching(ref)
            }
            target = map.binaryMask(classID: id)
        case .classAbsent:
            target = BinaryMask(width: image.width, height: image.height)
        }
        guard target.width == image.width, target.height == image.height else {
            throw DataError.sizeMismatch(
                ref, imageWidth: image.width, imageHeight: image.height,
                maskWidth: target.width, maskHeight: target.height)
        }
        info.originalSize = ImageSize(width: image.width, height: image.height)

        // Resize first, then augment at the model's resolution, as TuneVLSeg's pipelines do (Resize leads
        // its albumentations list): the geometric augmentations then cost the same for every image size.
        let side = config.imageSize
        var img =
            image.width == side && image.height == side
            ? image
            : config.opencvCubic
                ? image.resizedOpenCVCubic(width: side, height: side)
                : image.resized(width: side, height: side, filter: config.resizeFilter)
        target =
            target.width == side && target.height == side ? target : target.resizedNearest(width: side, height: side)
        if let augmentation = config.augmentation, !augmentation.isIdentity {
            var rng = CounterRandom(
                seed: config.seed, epoch: UInt64(epoch), index: UInt64(index), purpose: .augmentation)
            (img, target) = augment(image: img, mask: target, config: augmentation, rng: &rng)
        }
        img.normalize(config.normalization, into: pixels)
        target.writeTargets(sample.target == .binary ? config.target : .binary, into: mask)
        return info
    }

    /// Says once per loader when an empty mask holds nonzero values no larger than 127: a 0/1 label
    /// mask, which the > 127 rule (medvlsm's 0/255 masks) reads as all background. Such a run would
    /// learn to predict nothing and still score Dice 1 on every empty target.
    private func warnIfFaint(_ entry: DatasetEntry) {
        lock.lock()
        let warned = warnedFaintMask
        lock.unlock()
        guard !warned, let top = ImageIO.faintMaskMaximum(entry.maskURL) else { return }
        lock.lock()
        let first = !warnedFaintMask
        warnedFaintMask = true
        lock.unlock()
        if first {
            log(
                "warning: \(entry.reference): the mask holds values up to \(top) but none above 127, so it reads as all background "
                    + "(foreground is a first-channel value above 127, as in 0/255 masks); if the dataset's masks are 0/1 labels, "
                    + "rescale them to 0/255 (vlseg data check lists every such mask)")
        }
    }

    /// The samples at `indices` as one batch, prepared on the caller's thread (as in evaluation:
    /// epoch 0's prompts, the loader's augmentation if any).
    public func batch(of indices: [Int]) throws -> Batch {
        try makeBatch(indices, cursor: SamplerCursor(), next: SamplerCursor(), stream: nil)
    }

    /// Prepares one batch (used by the workers, and inline with `workers: 0`).
    func makeBatch(_ indices: [Int], cursor: SamplerCursor, next: SamplerCursor, stream: BatchStream.Core?) throws
        -> Batch
    {
        let side = config.imageSize
        let plane = side * side
        let pixels = Tensor(uninitialized: [indices.count, 3, side, side])
        let masks = Tensor(uninitialized: [indices.count, side, side])
        var kept: [Int] = []
        var infos: [SampleInfo] = []
        for (slot, index) in indices.enumerated() {
            do {
                let info: SampleInfo
                do {
                    info = try withTensorPointers(writing: pixels, masks) { pp, pm in
                        try prepare(
                            index: index, epoch: cursor.epoch, pixels: pp + slot * 3 * plane, mask: pm + slot * plane)
                    }
                } catch let error as DataError {
                    throw error
                } catch {
                    let entry = samples.samples[index].entry
                    throw DataError.unreadableFile(
                        path: entry.imageURL.path, role: "image", entry: entry.reference, detail: "\(error)")
                }
                kept.append(slot)
                infos.append(info)
            } catch let error as DataError {
                guard config.onError == .skip else { throw error }
                recordSkip(index: index, error: error)
                stream?.countSkip()
            }
        }

        var pixelValues = pixels, maskValues = masks
        if kept.count < indices.count {
            // Close the gaps left by skipped samples (rare: only under on_error skip).
            pixelValues = Tensor(uninitialized: [kept.count, 3, side, side])
            maskValues = Tensor(uninitialized: [kept.count, side, side])
            withTensorPointers(writing: pixelValues, maskValues, reading: pixels, masks) {
                toPixels, toMasks, fromPixels, fromMasks in
                for (to, from) in kept.enumerated() {
                    (toPixels + to * 3 * plane).update(from: fromPixels + from * 3 * plane, count: 3 * plane)
                    (toMasks + to * plane).update(from: fromMasks + from * plane, count: plane)
                }
            }
        }
        let keptIndices = kept.map { indices[$0] }
        var ids: [[Int]] = [], attention: [[Int]] = []
        if let tokenizer, !infos.isEmpty {
            let limit: Int
            switch config.textPadding {
            case let .maxLength(n): limit = n
            case let .longest(max: n): limit = n
            }
            TruncationNotice.check(infos.map(\.prompt), tokenizer: tokenizer, maxLength: limit, log: log)
            let encodings = tokenizer.encodeBatch(infos.map(\.prompt), padding: config.textPadding)
            ids = encodings.map(\.inputIDs)
            attention = encodings.map(\.attentionMask)
        }
        let entries = keptIndices.map { samples.samples[$0].entry }
        return Batch(
            pixelValues: pixelValues, masks: maskValues, inputIDs: ids, attentionMask: attention,
            sampleIndices: keptIndices, entries: entries.map(\.reference),
            imageNames: entries.map(\.imageName), maskNames: entries.map(\.maskName),
            originalSizes: infos.map(\.originalSize), prompts: infos.map(\.prompt),
            promptKeys: infos.map(\.promptKey), classIDs: infos.map(\.classID),
            cursor: cursor, nextCursor: next)
    }

    private func recordSkip(index: Int, error: DataError) {
        lock.lock()
        let first = loggedSkips.insert(index).inserted
        skippedSamples.insert(index)
        lock.unlock()
        if first { log("skipping \(error)") }
    }

    // MARK: Worker bookkeeping

    private static let live = Atomic<Int>(0)

    /// Loader worker threads alive in this process (a test checks it drops to zero after early stops).
    public static var liveWorkerThreads: Int { live.load(ordering: .sequentiallyConsistent) }

    static func workerStarted() { live.add(1, ordering: .sequentiallyConsistent) }
    static func workerEnded() { live.subtract(1, ordering: .sequentiallyConsistent) }
}

/// One epoch's (remaining) batches of a rank, in order. Call `next()` until it returns nil; `close()` (or
/// dropping the stream) stops the workers early and waits for them, so no thread outlives the stream.
///
/// The workers hold only the stream's shared `Core`, never the stream itself, so releasing the stream runs
/// its `deinit` (which stops them) even while they are blocked on a full queue.
// @unchecked Sendable: consumed by one thread; what it shares with the workers lives in `Core`.
public final class BatchStream: @unchecked Sendable {
    public var loader: DataLoader { core.loader }
    /// The cursor of the first batch this stream yields.
    public var startCursor: SamplerCursor { core.startCursor }
    public var batchCount: Int { core.batches.count }
    /// Samples skipped in this stream so far (`on_error: skip`).
    public var skippedCount: Int { core.skippedCount }

    private let core: Core

    init(loader: DataLoader, cursor: SamplerCursor, batches: [[Int]]) {
        core = Core(loader: loader, cursor: cursor, batches: batches)
        let workers = min(loader.config.workers, batches.count)
        core.liveWorkers = workers
        for w in 0..<workers {
            let thread = Thread { [core] in
                DataLoader.workerStarted()
                core.workerLoop()
                DataLoader.workerEnded()
                core.workerExited()
            }
            thread.name = "vlseg-data-\(w)"
            thread.stackSize = 4 << 20
            thread.start()
        }
    }

    deinit { core.close() }

    /// The next batch, nil at the end of the epoch. Throws the error of the batch where an unusable sample
    /// sits (`on_error: fail`); the stream is closed after an error.
    public func next() throws -> Batch? { try core.next() }

    /// Stops the workers and waits for them to exit (a batch being prepared is finished first, which
    /// takes milliseconds). Safe to call more than once.
    public func close() { core.close() }

    /// The state the consumer and the workers share, guarded by `condition`.
    // @unchecked Sendable: the queue state shared with the workers is read and written under its
    // condition lock only.
    final class Core: @unchecked Sendable {
        let loader: DataLoader
        let startCursor: SamplerCursor
        let batches: [[Int]]
        let condition = NSCondition()
        var results: [Int: Result<Batch, Error>] = [:]
        var nextToDeliver = 0
        var nextToClaim = 0
        var stopped = false
        var liveWorkers = 0
        var skipped = 0
        var finished = false

        init(loader: DataLoader, cursor: SamplerCursor, batches: [[Int]]) {
            self.loader = loader
            self.startCursor = cursor
            self.batches = batches
        }

        var skippedCount: Int {
            condition.lock(); defer { condition.unlock() }
            return skipped
        }

        func countSkip() {
            condition.lock(); skipped += 1; condition.unlock()
        }

        func workerExited() {
            condition.lock()
            liveWorkers -= 1
            condition.broadcast()
            condition.unlock()
        }

        private func build(_ k: Int) -> Result<Batch, Error> {
            let cursor = SamplerCursor(epoch: startCursor.epoch, position: startCursor.position + k)
            return Result {
                try loader.makeBatch(batches[k], cursor: cursor, next: loader.sampler.advanced(cursor), stream: self)
            }
        }

        func workerLoop() {
            let depth = loader.config.effectivePrefetch
            while true {
                condition.lock()
                while !stopped && nextToClaim < batches.count && nextToClaim >= nextToDeliver + depth {
                    condition.wait()
                }
                if stopped || nextToClaim >= batches.count {
                    condition.unlock()
                    return
                }
                let k = nextToClaim
                nextToClaim += 1
                condition.unlock()

                let result = build(k)

                condition.lock()
                if !stopped { results[k] = result }
                condition.broadcast()
                condition.unlock()
            }
        }

        func next() throws -> Batch? {
            condition.lock()
            if stopped || nextToDeliver >= batches.count {
                let done = nextToDeliver >= batches.count && !finished
                if done { finished = true }
                condition.unlock()
                if done { finish() }
                return nil
            }
            let k = nextToDeliver
            let result: Result<Batch, Error>
            if loader.config.workers == 0 {
                condition.unlock()
                result = build(k)
                condition.lock()
            } else {
                while results[k] == nil && !stopped { condition.wait() }
                guard let r = results.removeValue(forKey: k) else {
                    condition.unlock()
                    return nil
                }
                result = r
            }
            nextToDeliver += 1
            condition.broadcast()
            condition.unlock()
            switch result {
            case let .success(batch):
                return batch
            case let .failure(error):
                close()
                throw error
            }
        }

        func close() {
            condition.lock()
            stopped = true
            condition.broadcast()
            while liveWorkers > 0 { condition.wait() }
            results.removeAll()
            condition.unlock()
        }

        private func finish() {
            close()
            let n = skippedCount
            if n > 0 {
                loader.log(
                    "skipped \(n) sample(s) in epoch \(startCursor.epoch) of this rank (on_error: skip); \(loader.skippedCount) distinct so far"
                )
            }
        }
    }
}
