import Foundation

/// One image of a generated dataset and the annotation entries that point at it.
///
/// An image can carry several entries (one mask and prompt set each): the scene generator refers to
/// different objects of the same picture, which is how a referring-segmentation dataset teaches that
/// the text, not the picture alone, decides the mask.
public struct SyntheticImage: Sendable {
    public struct Entry: Sendable {
        public var mask: BinaryMask
        /// p0 ... pN as the medvlsm annotation files hold them.
        public var prompts: [(key: String, value: DemoDataset.PromptValue)]
        public init(mask: BinaryMask, prompts: [(key: String, value: DemoDataset.PromptValue)]) {
            self.mask = mask
            self.prompts = prompts
        }
    }
    public var image: RGBImage
    public var entries: [Entry]
    public init(image: RGBImage, entries: [Entry]) {
        self.image = image
        self.entries = entries
    }
}

/// Writes generated images in the medvlsm layout (`anns/{train,val,test}.json`, `images/`, `masks/`),
/// the layout `DemoDataset` writes, for generators that are pure functions of the image index.
///
/// Splits are made by image, not by entry, so no picture of the validation or test split was seen in
/// training under another prompt.
public enum SyntheticDatasetWriter {
    public struct Summary: Sendable {
        public var root: URL
        /// Entries per split (images per split in `imageCounts`).
        public var splitCounts: [(split: String, count: Int)]
        public var imageCounts: [(split: String, count: Int)]
        public var meanForeground: Double
        public var seconds: Double
    }

    /// Writes `count` images made by `make(index)` under `root`, named `<prefix>_<index>`; entries of
    /// one image are `<prefix>_<index>_<k>` masks. Images are made in parallel; the files do not depend
    /// on the thread count. `progress` gets (done, total) after each image.
    public static func write(
        count: Int, prefix: String, trainFraction: Double = 0.7, valFraction: Double = 0.15,
        to root: URL, progress: (@Sendable (Int, Int) -> Void)? = nil,
        make: @Sendable (Int) -> SyntheticImage
    ) throws -> Summary {
        guard count > 0 else {
            throw DemoDataset.WriteError(description: "a generated dataset needs at least one image")
        }
        let start = Date()
        let fm = FileManager.default
        let images = root.appendingPathComponent("images"), masks = root.appendingPathComponent("masks")
        let anns = root.appendingPathComponent("anns")
        for dir in [images, masks, anns] {
            do { try fm.createDirectory(at: dir, withIntermediateDirectories: true) } catch {
                throw DemoDataset.WriteError(
                    description: "cannot create folder \(dir.path): \(ImageIO.reason(of: error))")
            }
        }
        let state = ParallelWriteState<[[String: Any]]>(count: count)
        DispatchQueue.concurrentPerform(iterations: count) { i in
            if state.failed { return }
            let sample = make(i)
            let name = String(format: "%@_%05d", prefix, i)
            do {
                try PNGCodec.write(sample.image, to: images.appendingPathComponent("\(name).png"))
                var list: [[String: Any]] = []
                var foreground = 0.0
                for (k, entry) in sample.entries.enumerated() {
                    let maskName = sample.entries.count == 1 ? "\(name).png" : "\(name)_\(k).png"
                    try PNGCodec.write(mask: entry.mask, to: masks.appendingPathComponent(maskName))
                    list.append([
                        "img_name": "\(name).png",
                        "mask_name": maskName,
                        "prompts": Dictionary(
                            uniqueKeysWithValues: entry.prompts.map { ($0.key, $0.value.jsonObject) }),
                    ])
                    foreground += entry.mask.foregroundRatio
                }
                state.finish(index: i, result: list, foreground: foreground, progress: progress)
            } catch {
                state.fail(error)
            }
        }
        if let error = state.firstError { throw error }

        let sizes = DemoDataset.splitSizes(count: count, trainFraction: trainFraction, valFraction: valFraction)
        let perImage = state.results.map { $0 ?? [] }
        let ranges = [
            ("train", 0..<sizes.train), ("val", sizes.train..<(sizes.train + sizes.val)),
            ("test", (sizes.train + sizes.val)..<count),
        ]
        var splitCounts: [(String, Int)] = []
        for (split, range) in ranges {
            let list = range.flatMap { perImage[$0] }
            let url = anns.appendingPathComponent("\(split).json")
            let data: Data
            do {
                data = try JSONSerialization.data(
                    withJSONObject: list, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            } catch {
                throw DemoDataset.WriteError(description: "cannot encode \(url.path): \(error)")
            }
            try ImageIO.writeFileBytes(Array(data) + [0x0A], to: url)
            splitCounts.append((split, list.count))
        }
        let entryCount = max(1, splitCounts.reduce(0) { $0 + $1.1 })
        return Summary(
            root: root, splitCounts: splitCounts, imageCounts: ranges.map { ($0.0, $0.1.count) },
            meanForeground: state.foregroundSum / Double(entryCount), seconds: Date().timeIntervalSince(start))
    }
}

/// What the worker threads of a dataset writer gather: one result per sample, the foreground sum
/// for the summary, progress in order, and the first error (after which workers stop early).
// @unchecked Sendable: every access holds `lock`.
final class ParallelWriteState<Result>: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var results: [Result?]
    private(set) var foregroundSum = 0.0
    private var done = 0
    private var error: Error?

    init(count: Int) { results = Array(repeating: nil, count: count) }

    var failed: Bool { lock.lock(); defer { lock.unlock() }; return error != nil }
    var firstError: Error? { lock.lock(); defer { lock.unlock() }; return error }

    /// Records a finished sample and reports progress under the lock, so counts print in order.
    func finish(index: Int, result: Result, foreground: Double, progress: ((Int, Int) -> Void)?) {
        lock.lock(); defer { lock.unlock() }
        results[index] = result
        foregroundSum += foreground
        done += 1
        progress?(done, results.count)
    }

    func fail(_ e: Error) {
        lock.lock(); defer { lock.unlock() }
        if error == nil { error = e }
    }
}

@inline(__always)
func clampToByte(_ v: Double) -> UInt8 { UInt8(min(max(v.rounded(), 0), 255)) }
