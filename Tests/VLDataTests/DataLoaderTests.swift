import Foundation
import VLModels
import VLTestSupport
import VLTokenizer
import XCTest

@testable import VLData

/// Collects log lines from the loader's threads.
final class LogCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    var lines: [String] { lock.lock(); defer { lock.unlock() }; return stored }
    var sink: @Sendable (String) -> Void {
        { [self] line in
            lock.lock(); stored.append(line); lock.unlock()
        }
    }
}

final class DataLoaderTests: XCTestCase {
    /// Loaded once (49k entries); a failure fails each test that needs it, with its message.
    static let loadedTokenizer = Result { try CLIPTokenizer(directory: DataFixture.tokenizerDirectory) }
    static var tokenizer: CLIPTokenizer { get throws { try loadedTokenizer.get() } }

    func loader(
        root: URL, split: String = "train", rank: Int = 0, world: Int = 1, batch: Int = 2, workers: Int = 1,
        mode: SamplerMode = .training(.drop), onError: OnErrorPolicy = .fail, size: Int = 12,
        augmentation: AugmentationConfig? = nil, prompt: PromptChoice = .random,
        log: LogCollector = LogCollector()
    ) throws -> DataLoader {
        let samples = try DatasetIndex.load(root: root, split: split, promptChoice: prompt, onError: onError).sampleSet
        let sampler = try ShardedSampler(
            count: samples.count, rank: rank, worldSize: world, batchSize: batch, seed: 21, mode: mode)
        let config = DataLoaderConfig(
            imageSize: size, workers: workers, prefetch: 2, seed: 21, promptChoice: prompt,
            onError: onError, augmentation: augmentation)
        return try DataLoader(
            samples: samples, sampler: sampler, tokenizer: Self.tokenizer, config: config, log: log.sink)
    }

    func drain(_ stream: BatchStream) throws -> [Batch] {
        var out: [Batch] = []
        while let b = try stream.next() { out.append(b) }
        return out
    }

    func testBatchContents() throws {
        let root = DataFixture.makeDataset(splits: ["train": 4], width: 20, height: 16)
        let l = try loader(root: root, batch: 2, workers: 1, mode: .evaluation, size: 12, prompt: .key("p1"))
        let batches = try drain(try l.batches(epoch: 0))
        XCTAssertEqual(batches.count, 2)
        let b = batches[0]
        XCTAssertEqual(b.pixelValues.shape, [2, 3, 12, 12])
        XCTAssertEqual(b.masks.shape, [2, 12, 12])
        XCTAssertTrue(b.masks.scalars.allSatisfy { $0 == 0 || $0 == 1 })
        XCTAssertTrue(b.masks.scalars.contains(1))
        XCTAssertEqual(b.sampleIndices, [0, 1])
        XCTAssertEqual(b.imageNames, ["train_0.png", "train_1.png"])
        XCTAssertEqual(b.maskNames, ["train_0_mask.png", "train_1_mask.png"])
        XCTAssertEqual(b.originalSizes, [ImageSize(width: 20, height: 16), ImageSize(width: 20, height: 16)])
        XCTAssertEqual(b.prompts, ["polyp 0", "polyp 1"])
        XCTAssertEqual(b.promptKeys, ["p1", "p1"])
        XCTAssertEqual(b.classIDs, [nil, nil])
        XCTAssertEqual(b.entries.map(\.index), [0, 1])
        XCTAssertEqual(b.cursor, SamplerCursor(epoch: 0, position: 0))
        XCTAssertEqual(b.nextCursor, SamplerCursor(epoch: 0, position: 1))
        XCTAssertEqual(batches[1].nextCursor, SamplerCursor(epoch: 1, position: 0))
        // Tokenised like HF CLIPTokenizer(padding="max_length", max_length=77).
        XCTAssertEqual(b.textLength, 77)
        XCTAssertEqual(b.inputIDs[0], try Self.tokenizer.encode("polyp 0", maxLength: 77).inputIDs)
        XCTAssertEqual(b.attentionMask[0].prefix(6), [1, 1, 1, 1, 1, 0])
        XCTAssertEqual(b.inputIDsTensor.shape, [2, 77])
        // Pixels are the resized image normalised with ImageNet statistics.
        let expected = try ImageIO.readImage(root.appendingPathComponent("images/train_1.png"))
            .resized(width: 12, height: 12).normalizedTensor(.imageNet)
        XCTAssertEqual(Array(b.pixelValues.scalars[(3 * 144)...]), expected.scalars)
        let mask = try ImageIO.readMask(root.appendingPathComponent("masks/train_0_mask.png")).resizedNearest(
            width: 12, height: 12)
        XCTAssertEqual(Array(b.masks.scalars[0..<144]), mask.values.map { Float($0) })
    }

    func testBatchOrderAndContentsAreIdenticalWithZeroOneAndThreeWorkers() throws {
        let root = DataFixture.makeDataset(splits: ["train": 14], width: 24, height: 20)
        var reference: [Batch]?
        for workers in [0, 1, 3] {
            let l = try loader(
                root: root, batch: 3, workers: workers, mode: .training(.wrap), augmentation: Self.strongAugmentation)
            var batches: [Batch] = []
            for epoch in 0..<2 { batches += try drain(try l.batches(epoch: epoch)) }
            XCTAssertEqual(batches.count, 10)
            if let ref = reference {
                XCTAssertEqual(batches.map(\.sampleIndices), ref.map(\.sampleIndices), "workers \(workers)")
                XCTAssertEqual(batches.map(\.prompts), ref.map(\.prompts))
                XCTAssertEqual(batches.map(\.inputIDs), ref.map(\.inputIDs))
                XCTAssertEqual(batches.map(\.cursor), ref.map(\.cursor))
                for (a, b) in zip(batches, ref) {
                    XCTAssertEqual(a.pixelValues.scalars, b.pixelValues.scalars)
                    XCTAssertEqual(a.masks.scalars, b.masks.scalars)
                }
            } else {
                reference = batches
            }
        }
    }

    static let strongAugmentation = AugmentationConfig(
        affine: .init(p: 0.5, degrees: 20, translate: 0.1, scale: [0.9, 1.1], shear: 5),
        brightness: .init(p: 0.5, limit: 0.2), contrast: .init(p: 0.5, limit: 0.2),
        horizontalFlip: 0.5, verticalFlip: 0.5)

    func testAugmentationAndPromptOfASampleDoNotDependOnTheRankLayout() throws {
        let root = DataFixture.makeDataset(splits: ["train": 12], width: 18, height: 14)
        var views: [[Int: ([Float], [Float], String)]] = []
        for world in 1...3 {
            var seen: [Int: ([Float], [Float], String)] = [:]
            for rank in 0..<world {
                let l = try loader(
                    root: root, rank: rank, world: world, batch: 2, workers: rank % 2,
                    augmentation: Self.strongAugmentation)
                for b in try drain(try l.batches(epoch: 3)) {
                    let plane = 3 * 12 * 12
                    for (j, index) in b.sampleIndices.enumerated() {
                        XCTAssertNil(seen[index], "sample \(index) on two ranks")
                        seen[index] = (
                            Array(b.pixelValues.scalars[(j * plane)..<((j + 1) * plane)]),
                            Array(b.masks.scalars[(j * 144)..<((j + 1) * 144)]), b.prompts[j]
                        )
                    }
                }
            }
            XCTAssertEqual(Set(seen.keys), Set(0..<12), "world \(world)")
            views.append(seen)
        }
        for world in 1..<3 {
            for index in 0..<12 {
                XCTAssertEqual(
                    views[world][index]!.0, views[0][index]!.0, "pixels of sample \(index), world \(world + 1)")
                XCTAssertEqual(
                    views[world][index]!.1, views[0][index]!.1, "mask of sample \(index), world \(world + 1)")
                XCTAssertEqual(
                    views[world][index]!.2, views[0][index]!.2, "prompt of sample \(index), world \(world + 1)")
            }
        }
        // The augmentation did something: some sample differs from its plain resize.
        let plain = try loader(root: root, batch: 2, workers: 0)
        let plainBatches = try drain(try plain.batches(epoch: 3))
        var differs = 0
        for b in plainBatches {
            for (j, index) in b.sampleIndices.enumerated()
            where Array(b.masks.scalars[(j * 144)..<((j + 1) * 144)]) != views[0][index]!.1 {
                differs += 1
            }
        }
        XCTAssertGreaterThan(differs, 0)
    }

    func testResumeFromACursorGivesTheRestOfTheEpoch() throws {
        let root = DataFixture.makeDataset(splits: ["train": 11], width: 16, height: 16)
        let l = try loader(root: root, batch: 2, workers: 2)
        let full = try drain(try l.batches(epoch: 4))
        let stopAfter = full[1]
        let resumed = try drain(try loader(root: root, batch: 2, workers: 1).batches(from: stopAfter.nextCursor))
        XCTAssertEqual(resumed.map(\.sampleIndices), full.dropFirst(2).map(\.sampleIndices))
        XCTAssertEqual(resumed.map(\.prompts), full.dropFirst(2).map(\.prompts))
        XCTAssertEqual(resumed.first?.pixelValues.scalars, full[2].pixelValues.scalars)
    }

    /// Plants problems in train_3 (sample 3) and returns which batch of epoch 0 holds it.
    func plant(_ problem: String, root: URL, loader l: DataLoader) throws -> Int {
        switch problem {
        case "missing":
            try FileManager.default.removeItem(at: root.appendingPathComponent("images/train_3.png"))
        case "corrupt":
            let url = root.appendingPathComponent("images/train_3.png")
            let bytes = try Data(contentsOf: url)
            try bytes.prefix(60).write(to: url)
        case "size":
            try ImageIO.writeMaskPNG(
                BinaryMask(width: 7, height: 5), to: root.appendingPathComponent("masks/train_3_mask.png"))
        default:
            XCTFail(problem)
        }
        return l.sampler.batches(epoch: 0).firstIndex { $0.contains(3) }!
    }

    func testOnErrorFailThrowsAtTheBatchWhereTheEntryIs() throws {
        for (problem, needle) in [
            ("missing", "image file not found"), ("corrupt", "cannot read image"),
            ("size", "mask is 7x5 but image is 16x16"),
        ] {
            for workers in [0, 2] {
                let root = DataFixture.makeDataset(splits: ["train": 8], width: 16, height: 16)
                let l = try loader(root: root, batch: 2, workers: workers)
                let bad = try plant(problem, root: root, loader: l)
                let stream = try l.batches(epoch: 0)
                for _ in 0..<bad { XCTAssertNotNil(try stream.next()) }
                XCTAssertThrowsError(try stream.next()) { error in
                    let text = "\(error)"
                    XCTAssertTrue(
                        text.contains(
                            "anns/train.json entry 3 (img_name \"train_3.png\", mask_name \"train_3_mask.png\")"), text)
                    XCTAssertTrue(text.contains(needle), "\(problem): \(text)")
                    XCTAssertEqual((error as? DataError)?.entry?.index, 3)
                }
                XCTAssertNil(try stream.next(), "a failed stream is closed")
            }
        }
        XCTAssertEqual(DataLoader.liveWorkerThreads, 0)
    }

    func testOnErrorSkipLeavesTheSampleOutLogsItOnceAndCounts() throws {
        let root = DataFixture.makeDataset(splits: ["train": 8], width: 16, height: 16)
        let log = LogCollector()
        let l = try loader(root: root, batch: 2, workers: 2, onError: .skip, log: log)
        let bad = try plant("corrupt", root: root, loader: l)
        for epoch in 0..<2 {
            let stream = try l.batches(epoch: epoch)
            let batches = try drain(stream)
            XCTAssertEqual(batches.count, 4, "every batch is still delivered")
            XCTAssertEqual(batches.map(\.count).reduce(0, +), 7)
            XCTAssertFalse(batches.flatMap(\.sampleIndices).contains(3))
            if epoch == 0 { XCTAssertEqual(batches[bad].count, 1) }
            XCTAssertEqual(stream.skippedCount, 1)
        }
        let lines = log.lines
        XCTAssertEqual(lines.filter { $0.hasPrefix("skipping") }.count, 1, "\(lines)")
        XCTAssertTrue(lines[0].contains("entry 3"), "\(lines)")
        XCTAssertEqual(lines.filter { $0.contains("skipped 1 sample(s)") }.count, 2, "\(lines)")
        XCTAssertEqual(l.skippedCount, 1)

        // Index-level problems (no usable prompt) are also skipped and logged.
        let ann = root.appendingPathComponent("anns/train.json")
        var entries = try JSONSerialization.jsonObject(with: Data(contentsOf: ann)) as! [[String: Any]]
        entries[5]["prompts"] = ["p0": ""]
        DataFixture.writeJSON(entries, to: ann)
        let log2 = LogCollector()
        let l2 = try loader(root: root, batch: 2, workers: 1, onError: .skip, log: log2)
        XCTAssertEqual(l2.samples.count, 7)
        XCTAssertTrue(
            log2.lines.contains { $0.contains("entry 5") && $0.contains("no usable prompt") }, "\(log2.lines)")
    }

    func testLabelMasksWithValuesBelow128AreReportedOnce() throws {
        let root = DataFixture.makeDataset(splits: ["train": 6], width: 16, height: 16)
        // Two 0/1 label masks and one truly empty mask: one warning, naming the first label mask read.
        var labels = [UInt8](repeating: 0, count: 16 * 16)
        for i in 30..<90 { labels[i] = 1 }
        for i in [1, 4] {
            try Data(PNGCodec.encodeGray(labels, width: 16, height: 16)).write(
                to: root.appendingPathComponent("masks/train_\(i)_mask.png"))
        }
        try ImageIO.writeMaskPNG(
            BinaryMask(width: 16, height: 16), to: root.appendingPathComponent("masks/train_2_mask.png"))
        let log = LogCollector()
        let l = try loader(root: root, batch: 2, workers: 2, mode: .evaluation, log: log)
        for epoch in 0..<2 { _ = try drain(try l.batches(epoch: epoch)) }
        let warnings = log.lines.filter { $0.contains("none above 127") }
        XCTAssertEqual(warnings.count, 1, "\(log.lines)")
        XCTAssertTrue(
            warnings[0].contains("values up to 1") && warnings[0].contains("rescale them to 0/255"), warnings[0])
        XCTAssertTrue(warnings[0].contains("entry 1") || warnings[0].contains("entry 4"), warnings[0])

        // A dataset of 0/255 masks (some empty) says nothing.
        let clean = DataFixture.makeDataset(splits: ["train": 4], width: 16, height: 16)
        try ImageIO.writeMaskPNG(
            BinaryMask(width: 16, height: 16), to: clean.appendingPathComponent("masks/train_0_mask.png"))
        let quiet = LogCollector()
        _ = try drain(try loader(root: clean, batch: 2, workers: 1, mode: .evaluation, log: quiet).batches(epoch: 0))
        XCTAssertEqual(quiet.lines, [])
    }

    func testStoppingEarlyLeavesNoThreads() throws {
        let root = DataFixture.makeDataset(splits: ["train": 24], width: 32, height: 32)
        for workers in [1, 3] {
            do {
                let l = try loader(root: root, batch: 2, workers: workers)
                let stream = try l.batches(epoch: 0)
                _ = try stream.next()
                withExtendedLifetime(stream) { XCTAssertGreaterThan(DataLoader.liveWorkerThreads, 0) }
                // Dropped without close (workers blocked on the full queue): deinit stops and joins them.
            }
            XCTAssertEqual(DataLoader.liveWorkerThreads, 0)
            let l = try loader(root: root, batch: 2, workers: workers)
            let stream = try l.batches(epoch: 0)
            _ = try stream.next()
            stream.close()
            XCTAssertEqual(DataLoader.liveWorkerThreads, 0)
            XCTAssertNil(try stream.next())
        }
    }

    func testTooFewSamplesForOneGlobalBatchIsAClearError() throws {
        let root = DataFixture.makeDataset(splits: ["train": 3], width: 8, height: 8)
        XCTAssertThrowsError(try loader(root: root, world: 2, batch: 2)) { error in
            XCTAssertTrue("\(error)".contains("do not fill one global batch"), "\(error)")
        }
        XCTAssertNoThrow(try loader(root: root, world: 2, batch: 2, mode: .training(.wrap)))
    }

    func testLongestPaddingTrimsTheTextLength() throws {
        let root = DataFixture.makeDataset(splits: ["train": 2], width: 8, height: 8)
        let samples = try DatasetIndex.load(root: root, split: "train").sampleSet
        let sampler = try ShardedSampler(count: 2, batchSize: 2, mode: .evaluation)
        var config = DataLoaderConfig(imageSize: 8, workers: 0, promptChoice: .key("p1"))
        config.textPadding = .longest()
        let l = try DataLoader(samples: samples, sampler: sampler, tokenizer: Self.tokenizer, config: config)
        let b = try XCTUnwrap(try l.batches(epoch: 0).next())
        XCTAssertEqual(b.textLength, try Self.tokenizer.encode("polyp 0").count + 2)
        XCTAssertEqual(
            b.inputIDs[1], Array(try Self.tokenizer.encode("polyp 1", maxLength: 77).inputIDs.prefix(b.textLength)))
    }
}
