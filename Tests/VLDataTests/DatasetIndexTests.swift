import Foundation
import VLTestSupport
import XCTest

@testable import VLData

/// Small medvlsm-layout datasets written into temporary folders (shared by the data tests of part B).
enum DataFixture {
    static func temporaryRoot(_ name: String = "ds") -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("vlseg-dataB-\(name)-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// An image whose pixels depend on `seed` (so samples are told apart) with a gradient (so resizing and
    /// augmentation have something to move).
    static func image(width: Int, height: Int, seed: Int) -> RGBImage {
        var px = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let i = 3 * (y * width + x)
                px[i] = UInt8((seed * 37 + x * 5) & 255)
                px[i + 1] = UInt8((seed * 11 + y * 7) & 255)
                px[i + 2] = UInt8((seed * 3 + x + y) & 255)
            }
        }
        return RGBImage(width: width, height: height, pixels: px)
    }

    /// A mask with a rectangle of foreground whose position depends on `seed`.
    static func mask(width: Int, height: Int, seed: Int) -> BinaryMask {
        var m = BinaryMask(width: width, height: height)
        let x0 = seed % max(1, width / 2), y0 = (seed / 2) % max(1, height / 2)
        for y in y0..<min(height, y0 + height / 3 + 1) {
            for x in x0..<min(width, x0 + width / 3 + 1) { m.values[y * width + x] = 1 }
        }
        return m
    }

    static func writeJSON(_ object: Any, to url: URL) {
        try! FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        try! data.write(to: url)
    }

    static func writeText(_ text: String, to url: URL) {
        try! FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try! Data(text.utf8).write(to: url)
    }

    /// The prompts medvlsm files carry: p0 empty, p1 a string, p2 a list.
    static func prompts(_ i: Int) -> [String: Any] {
        ["p0": "", "p1": "polyp \(i)", "p2": ["small polyp \(i)", "a polyp number \(i)"]]
    }

    /// Writes `count` entries per split with PNG (or JPEG) images and PNG masks; returns the root.
    @discardableResult
    static func makeDataset(
        root: URL? = nil, splits: [String: Int] = ["train": 6, "val": 3, "test": 2],
        width: Int = 20, height: Int = 16, jpeg: Bool = false,
        prompts: (Int) -> [String: Any] = DataFixture.prompts
    ) -> URL {
        let root = root ?? temporaryRoot()
        var seed = 0
        for (split, count) in splits.sorted(by: { $0.key < $1.key }) {
            var entries: [[String: Any]] = []
            for i in 0..<count {
                let imgName = "\(split)_\(i).\(jpeg ? "jpg" : "png")", maskName = "\(split)_\(i)_mask.png"
                let imgURL = root.appendingPathComponent("images/\(imgName)")
                try! FileManager.default.createDirectory(
                    at: imgURL.deletingLastPathComponent(), withIntermediateDirectories: true)
                if jpeg {
                    try! JPEGCodec.write(image(width: width, height: height, seed: seed), to: imgURL, quality: 90)
                } else {
                    try! ImageIO.writePNG(image(width: width, height: height, seed: seed), to: imgURL)
                }
                try! ImageIO.writeMaskPNG(
                    mask(width: width, height: height, seed: seed), to: root.appendingPathComponent("masks/\(maskName)")
                )
                entries.append([
                    "img_name": imgName, "mask_name": maskName, "prompts": prompts(seed),
                    "bbox": [0, 0, 1, 1], "cat": 0, "segment_id": "\(seed)",
                ])
                seed += 1
            }
            writeJSON(entries, to: root.appendingPathComponent("anns/\(split).json"))
        }
        return root
    }

    /// The CLIP vocabulary the package ships.
    static var tokenizerDirectory: URL { get throws { try Fixtures.bundledTokenizer() } }
}

final class DatasetIndexTests: XCTestCase {
    func testParsesStringAndListPromptsSubfoldersAndIgnoresExtraKeys() throws {
        let root = DataFixture.temporaryRoot()
        try ImageIO.writePNG(
            DataFixture.image(width: 6, height: 4, seed: 1), to: root.appendingPathComponent("images/a/b/x.png"))
        try ImageIO.writeMaskPNG(
            DataFixture.mask(width: 6, height: 4, seed: 1), to: root.appendingPathComponent("masks/a/b/x_m.png"))
        DataFixture.writeJSON(
            [
                [
                    "img_name": "a/b/x.png", "mask_name": "a/b/x_m.png", "bbox": [1, 2, 3, 4], "cat": 0,
                    "sentences": [["idx": 0, "sent": "heart"]], "sentences_num": 1,
                    "prompts": ["p0": "", "p1": "one", "p2": ["two a", "two b", "  "], "p10": "ten", "p3": []],
                ]
            ], to: root.appendingPathComponent("anns/train.json"))

        let index = try DatasetIndex.load(root: root, split: "train")
        XCTAssertEqual(index.entries.count, 1)
        let e = index.entries[0]
        XCTAssertEqual(e.imageName, "a/b/x.png")
        XCTAssertEqual(e.imageURL.path, root.appendingPathComponent("images/a/b/x.png").path)
        XCTAssertEqual(e.maskURL.path, root.appendingPathComponent("masks/a/b/x_m.png").path)
        XCTAssertEqual(e.prompts.keys, ["p0", "p1", "p2", "p3", "p10"], "natural order, blank keys kept")
        XCTAssertEqual(e.prompts.nonEmptyKeys, ["p1", "p2", "p10"])
        XCTAssertEqual(e.prompts["p1"], ["one"])
        XCTAssertEqual(e.prompts["p2"], ["two a", "two b"], "blank list items are dropped")
        XCTAssertEqual(e.reference.index, 0)
        XCTAssertTrue(index.problems.isEmpty)
    }

    func testCAMUSStyleSplitFoldersAreFound() throws {
        // medvlsm's CAMUS keeps images/train/NAME while the JSON says NAME; val reads from images/train too.
        let root = DataFixture.temporaryRoot()
        for dir in ["train", "test"] {
            try ImageIO.writePNG(
                DataFixture.image(width: 4, height: 4, seed: 0), to: root.appendingPathComponent("images/\(dir)/p1.png")
            )
            try ImageIO.writeMaskPNG(
                DataFixture.mask(width: 4, height: 4, seed: 0),
                to: root.appendingPathComponent("masks/\(dir)/p1_gt.png"))
        }
        for split in ["train", "val", "test"] {
            DataFixture.writeJSON(
                [["img_name": "p1.png", "mask_name": "p1_gt.png", "prompts": ["p1": "lv"]]],
                to: root.appendingPathComponent("anns/\(split).json"))
        }
        XCTAssertEqual(
            try DatasetIndex.load(root: root, split: "train").entries[0].imageURL.path,
            root.appendingPathComponent("images/train/p1.png").path)
        XCTAssertEqual(
            try DatasetIndex.load(root: root, split: "val").entries[0].maskURL.path,
            root.appendingPathComponent("masks/train/p1_gt.png").path)
        XCTAssertEqual(
            try DatasetIndex.load(root: root, split: "test").entries[0].imageURL.path,
            root.appendingPathComponent("images/test/p1.png").path)
        XCTAssertEqual(DatasetIndex.availableSplits(root: root), ["train", "val", "test"])
    }

    func testMalformedJSONNamesTheFileAndTheParserError() {
        let root = DataFixture.temporaryRoot()
        let file = root.appendingPathComponent("anns/train.json")
        DataFixture.writeText("[{\"img_name\": \"a.png\",\n  \"mask_name\": x}]", to: file)
        XCTAssertThrowsError(try DatasetIndex.load(root: root, split: "train")) { error in
            guard case let DataError.malformedJSON(path, detail)? = error as? DataError else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(path, file.path)
            XCTAssertTrue(detail.contains("line 2"), detail)
            XCTAssertTrue("\(error)".contains(file.path))
        }
        DataFixture.writeText("{\"img_name\": \"a.png\"}", to: file)
        XCTAssertThrowsError(try DatasetIndex.load(root: root, split: "train")) { error in
            XCTAssertTrue("\(error)".contains("expected a list"), "\(error)")
        }
    }

    func testMissingAnnotationFile() {
        let root = DataFixture.temporaryRoot()
        XCTAssertThrowsError(try DatasetIndex.load(root: root, split: "val")) { error in
            XCTAssertEqual(
                error as? DataError,
                .missingFile(path: root.appendingPathComponent("anns/val.json").path, role: "annotations", entry: nil))
        }
    }

    func testMalformedEntriesNameTheEntry() throws {
        let root = DataFixture.temporaryRoot()
        let file = root.appendingPathComponent("anns/train.json")
        DataFixture.writeJSON(
            [
                ["img_name": "a.png", "mask_name": "a_m.png", "prompts": ["p1": "ok"]],
                ["img_name": "b.png", "prompts": ["p1": "no mask name"]],
                ["img_name": "c.png", "mask_name": "c_m.png", "prompts": ["p1": 3]],
                ["img_name": "../d.png", "mask_name": "d_m.png", "prompts": ["p1": "escapes the root"]],
            ], to: file)
        XCTAssertThrowsError(try DatasetIndex.load(root: root, split: "train")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("\(file.path) entry 1"), text)
            XCTAssertTrue(text.contains("img_name \"b.png\""), text)
            XCTAssertTrue(text.contains("mask_name"), text)
        }
        let index = try DatasetIndex.load(root: root, split: "train", onError: .skip)
        XCTAssertEqual(index.entries.map(\.imageName), ["a.png"])
        XCTAssertEqual(index.problems.compactMap(\.entry?.index), [1, 2, 3])
        XCTAssertTrue(
            "\(index.problems[1])".contains("prompt \"p1\" must be a string or a list of strings"),
            "\(index.problems[1])")
    }

    func testEntryWithoutUsablePrompt() throws {
        let root = DataFixture.temporaryRoot()
        let file = root.appendingPathComponent("anns/test.json")
        DataFixture.writeJSON(
            [
                ["img_name": "a.png", "mask_name": "a_m.png", "prompts": ["p0": "", "p1": "fine"]],
                ["img_name": "b.png", "mask_name": "b_m.png", "prompts": ["p0": "", "p1": "", "p2": [" ", ""]]],
                ["img_name": "c.png", "mask_name": "c_m.png"],
                ["img_name": "d.png", "mask_name": "d_m.png", "prompts": ["p0": "only p0"]],
            ], to: file)
        XCTAssertThrowsError(try DatasetIndex.load(root: root, split: "test")) { error in
            guard case let DataError.noUsablePrompt(ref, _)? = error as? DataError else { return XCTFail("\(error)") }
            XCTAssertEqual(ref, EntryReference(file: file.path, index: 1, imageName: "b.png", maskName: "b_m.png"))
            XCTAssertTrue(
                "\(error)".contains("entry 1 (img_name \"b.png\", mask_name \"b_m.png\"): no usable prompt"), "\(error)"
            )
        }
        // Without a choice, p0-only is usable; with "random" (which never draws p0) it is not.
        let lenient = try DatasetIndex.load(root: root, split: "test", onError: .skip)
        XCTAssertEqual(lenient.entries.map(\.imageName), ["a.png", "d.png"])
        let random = try DatasetIndex.load(root: root, split: "test", promptChoice: .random, onError: .skip)
        XCTAssertEqual(random.entries.map(\.imageName), ["a.png"])
        XCTAssertTrue(random.problems.contains { "\($0)".contains("entry 3") && "\($0)".contains("other than p0") })
        // A fixed key missing from an entry is named at load time, before any training.
        XCTAssertThrowsError(try DatasetIndex.load(root: root, split: "test", promptChoice: .key("p1"), onError: .fail))
        { error in
            XCTAssertTrue("\(error)".contains("entry 1"), "\(error)")
        }
    }

    // MARK: Prompt choice

    func testPromptChoiceParsingAndCoding() throws {
        XCTAssertEqual(try PromptChoice(parsing: "p1"), .key("p1"))
        XCTAssertEqual(try PromptChoice(parsing: " random "), .random)
        XCTAssertEqual(try PromptChoice(parsing: "p1,p3"), .anyOf(["p1", "p3"]))
        XCTAssertEqual(try PromptChoice(parsing: "[p2, \"p4\"]"), .anyOf(["p2", "p4"]))
        XCTAssertThrowsError(try PromptChoice(parsing: ""))
        XCTAssertThrowsError(try PromptChoice(parsing: "p1,random"))
        for choice: PromptChoice in [.key("p5"), .random, .anyOf(["p1", "p2"])] {
            let data = try JSONEncoder().encode([choice])
            XCTAssertEqual(try JSONDecoder().decode([PromptChoice].self, from: data), [choice])
            XCTAssertEqual(PromptChoice(choice.description), choice)
        }
        XCTAssertEqual(
            try JSONDecoder().decode([PromptChoice].self, from: Data("[\"p1,p2\", [\"p3\"]]".utf8)),
            [.anyOf(["p1", "p2"]), .key("p3")])
    }

    func testPromptChoiceIsDeterministicAndUniform() throws {
        let prompts = PromptSet(["p0": ["zero"], "p1": ["one"], "p2": ["two a", "two b"], "p3": [], "p4": ["four"]])
        let ref = EntryReference(file: "f", index: 0)
        var seen: [String: Int] = [:]
        for index in 0..<3000 {
            let a = try PromptChoice.random.choose(from: prompts, seed: 7, epoch: 2, index: index, entry: ref)
            let b = try PromptChoice.random.choose(from: prompts, seed: 7, epoch: 2, index: index, entry: ref)
            XCTAssertEqual(a, b)
            seen[a.text, default: 0] += 1
        }
        XCTAssertNil(seen["zero"], "random never draws p0")
        XCTAssertEqual(Set(seen.keys), ["one", "two a", "two b", "four"])
        // Uniform over keys (1/3 each), then within p2's list (1/6 each).
        XCTAssertEqual(Double(seen["one"]!) / 3000, 1.0 / 3, accuracy: 0.04)
        XCTAssertEqual(Double(seen["two a"]!) / 3000, 1.0 / 6, accuracy: 0.04)
        // The draw depends on epoch and index (different keys give different streams).
        let byEpoch = try (0..<20).map {
            try PromptChoice.random.choose(from: prompts, seed: 7, epoch: $0, index: 5, entry: ref).text
        }
        XCTAssertGreaterThan(Set(byEpoch).count, 1)
        let fixed = try PromptChoice.key("p2").choose(from: prompts, seed: 1, epoch: 0, index: 0, entry: ref)
        XCTAssertEqual(fixed.key, "p2")
        let some = try (0..<200).map {
            try PromptChoice.anyOf(["p1", "p3", "p4"]).choose(from: prompts, seed: 1, epoch: 0, index: $0, entry: ref)
                .key
        }
        XCTAssertEqual(Set(some), ["p1", "p4"], "blank p3 is never drawn")
        XCTAssertThrowsError(try PromptChoice.key("p3").choose(from: prompts, seed: 1, epoch: 0, index: 0, entry: ref))
    }

    func testBoundedDrawIsUniformAndInRange() {
        var rng = CounterRandom(seed: 3, purpose: .permutation)
        var counts = [Int](repeating: 0, count: 7)
        for _ in 0..<70_000 { counts[rng.drawIndex(below: 7)] += 1 }
        for c in counts { XCTAssertEqual(Double(c), 10_000, accuracy: 400) }
        for n in [1, 2, 3, 1000, Int(UInt32.max) + 5] {
            for _ in 0..<100 { XCTAssertLessThan(rng.drawIndex(below: n), n) }
        }
    }

    // MARK: data check

    func testDataCheckOnACleanDataset() throws {
        let root = DataFixture.makeDataset(splits: ["train": 4, "val": 2, "test": 2], width: 20, height: 16)
        let report = try DatasetCheck.run(root: root)
        XCTAssertTrue(report.ok, report.text)
        XCTAssertEqual(report.splits.map(\.split), ["train", "val", "test"])
        XCTAssertEqual(report.splits.map(\.entries), [4, 2, 2])
        let train = report.splits[0]
        XCTAssertEqual(train.sizes?.mostCommon, "20x16")
        XCTAssertEqual(train.promptKeys, ["p0": 0, "p1": 4, "p2": 4])
        XCTAssertGreaterThan(train.foreground!.mean, 0)
        XCTAssertTrue(report.text.contains("ok: no problems found"), report.text)
        // The JSON form round-trips and says ok.
        let json = try JSONEncoder().encode(report)
        XCTAssertEqual(try JSONDecoder().decode(DatasetCheckReport.self, from: json), report)
        XCTAssertTrue(String(decoding: json, as: UTF8.self).contains("\"ok\":true"))
    }

    func testDataCheckFindsPlantedProblems() throws {
        let root = DataFixture.makeDataset(splits: ["train": 6, "val": 2, "test": 1], width: 20, height: 16)
        let fm = FileManager.default
        // train_1: image missing; train_2: mask of another size; train_3: corrupt (truncated) image;
        // train_4: empty prompts (rewritten below); val: garbage bytes as a mask.
        try fm.removeItem(at: root.appendingPathComponent("images/train_1.png"))
        try ImageIO.writeMaskPNG(
            BinaryMask(width: 10, height: 16), to: root.appendingPathComponent("masks/train_2_mask.png"))
        let img3 = root.appendingPathComponent("images/train_3.png")
        let bytes = try Data(contentsOf: img3)
        try bytes.prefix(bytes.count / 2).write(to: img3)
        DataFixture.writeText("not an image at all", to: root.appendingPathComponent("masks/val_0_mask.png"))
        let ann = root.appendingPathComponent("anns/train.json")
        var entries = try JSONSerialization.jsonObject(with: Data(contentsOf: ann)) as! [[String: Any]]
        entries[4]["prompts"] = ["p0": "", "p1": ""]
        DataFixture.writeJSON(entries, to: ann)

        let report = try DatasetCheck.run(root: root)
        XCTAssertFalse(report.ok)
        let messages = report.problems.map(\.message)
        func find(_ index: Int, _ needle: String, split: String = "train") -> Bool {
            report.problems.contains { $0.split == split && $0.entryIndex == index && $0.message.contains(needle) }
        }
        XCTAssertTrue(find(1, "image file not found"), "\(messages)")
        XCTAssertTrue(find(1, "train_1.png"), "\(messages)")
        XCTAssertTrue(find(2, "mask is 10x16 but image is 20x16"), "\(messages)")
        XCTAssertTrue(find(3, "cannot read image"), "\(messages)")
        XCTAssertTrue(find(4, "no usable prompt"), "\(messages)")
        XCTAssertTrue(find(0, "cannot read mask", split: "val"), "\(messages)")
        XCTAssertEqual(report.problems.count, 5, "\(messages)")
        XCTAssertEqual(report.splits.first { $0.split == "train" }?.problems, 4)
        XCTAssertTrue(report.text.contains("5 problem(s) found"), report.text)
        // Each problem names the annotation file and entry.
        XCTAssertTrue(messages.allSatisfy { $0.contains("anns/") && $0.contains(" entry ") }, "\(messages)")
    }

    func testDataCheckNamesLabelMasksThatReadAsEmpty() throws {
        let root = DataFixture.makeDataset(splits: ["train": 4, "val": 1, "test": 1], width: 20, height: 16)
        // train_1: a 0/1 label mask (foreground stored as 1); train_2: truly empty.
        var labels = [UInt8](repeating: 0, count: 20 * 16)
        for i in 40..<120 { labels[i] = 1 }
        try Data(PNGCodec.encodeGray(labels, width: 20, height: 16)).write(
            to: root.appendingPathComponent("masks/train_1_mask.png"))
        try ImageIO.writeMaskPNG(
            BinaryMask(width: 20, height: 16), to: root.appendingPathComponent("masks/train_2_mask.png"))

        let report = try DatasetCheck.run(root: root)
        XCTAssertTrue(report.ok, report.text)  // warnings only
        XCTAssertEqual(report.splits[0].foreground?.emptyMasks, 2)
        let faint = report.warnings.filter { $0.contains("no larger than 127") }
        XCTAssertEqual(faint.count, 1, "\(report.warnings)")
        XCTAssertTrue(faint[0].hasPrefix("train: 1 of the empty mask(s)"), faint[0])
        XCTAssertTrue(faint[0].contains("train_1_mask.png: up to 1"), faint[0])
        XCTAssertTrue(faint[0].contains("rescale them to 0/255"), faint[0])
    }

    func testDataCheckOnAFolderWithoutAnnotations() throws {
        let root = DataFixture.temporaryRoot()
        let report = try DatasetCheck.run(root: root)
        XCTAssertFalse(report.ok)
        XCTAssertTrue(report.problems[0].message.contains("no annotation files"))
        XCTAssertThrowsError(try DatasetCheck.run(root: root.appendingPathComponent("nope")))
    }
}

/// `data.splits` sources and the class-folder layout, read without a config.
final class SplitSourcesTests: XCTestCase {
    func testSourceSpecs() throws {
        let root = URL(fileURLWithPath: "/data")
        let pooled = try SplitSource(spec: "kvasir_polyp/test", root: root)
        XCTAssertEqual(pooled.root.path, "/data/kvasir_polyp")
        XCTAssertEqual(pooled.name, "test")
        XCTAssertEqual(pooled.prefix, "kvasir_polyp")
        let own = try SplitSource(spec: "val", root: root)
        XCTAssertEqual(own.root.path, "/data")
        XCTAssertEqual(own.prefix, "")
        for bad in ["", "/abs/test", "../x/test", "a//test", "a/./test", "a/"] {
            XCTAssertThrowsError(try SplitSource(spec: bad, root: root), bad) { error in
                XCTAssertTrue("\(error)".contains("split source '\(bad)'"), "\(error)")
            }
        }
        XCTAssertThrowsError(try DatasetSplits(root: root, mapping: ["test": []]).sources("test")) { error in
            XCTAssertTrue("\(error)".contains("data.splits.test is an empty list"), "\(error)")
        }
        XCTAssertEqual(try DatasetSplits(root: root).sources("val").map(\.name), ["val"])
    }

    func testClassFoldersInNameOrderWithImagesFoundByStem() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-classdirs-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let fm = FileManager.default
        let mask = BinaryMask(width: 4, height: 4, values: [UInt8](repeating: 255, count: 16))
        let image = RGBImage(width: 4, height: 4, pixels: [UInt8](repeating: 9, count: 48))
        try fm.createDirectory(at: root.appendingPathComponent("images/val"), withIntermediateDirectories: true)
        try ImageIO.writePNG(image, to: root.appendingPathComponent("images/val/b.png"))
        try ImageIO.writeFileBytes(try JPEGCodec.encode(image), to: root.appendingPathComponent("images/val/a.jpg"))
        for (cls, stems) in [("zebra", ["b", "a"]), ("traffic light", ["a"])] {
            let dir = root.appendingPathComponent("annotations/val/\(cls)")
            try fm.createDirectory(at: dir, withIntermediateDirectories: true)
            for s in stems { try ImageIO.writeMaskPNG(mask, to: dir.appendingPathComponent("\(s).png")) }
        }
        XCTAssertEqual(DatasetFormat.detect(root: root), .classDirectories)
        XCTAssertEqual(DatasetFormat.availableSplits(root: root), ["val"])
        let index = try ClassDirectoryDataset.load(root: root, split: "val")
        XCTAssertEqual(index.entries.map(\.maskName), ["traffic light/a.png", "zebra/a.png", "zebra/b.png"])
        XCTAssertEqual(index.entries.map(\.imageName), ["a.jpg", "a.jpg", "b.png"])
        XCTAssertEqual(
            index.entries.map { $0.prompts[ClassDirectoryDataset.promptKey] },
            [["traffic light"], ["zebra"], ["zebra"]])
        XCTAssertEqual(index.entries.map(\.reference.index), [0, 1, 2])
        // Through `DatasetSplits` with a prefix, as the pooled configs use it.
        let pooled = try DatasetSplits(
            root: root.deletingLastPathComponent(), mapping: ["test": ["\(root.lastPathComponent)/val"]]
        )
        .samples("test", promptChoice: .random)
        XCTAssertEqual(pooled.samples.first?.entry.maskName, "\(root.lastPathComponent)/traffic light/a.png")
        // A split folder without class folders, and a missing split, are errors naming the folder.
        try fm.createDirectory(at: root.appendingPathComponent("annotations/empty"), withIntermediateDirectories: true)
        XCTAssertThrowsError(try ClassDirectoryDataset.load(root: root, split: "empty")) { error in
            XCTAssertTrue("\(error)".contains("annotations/empty: no class folders"), "\(error)")
        }
        XCTAssertThrowsError(try ClassDirectoryDataset.load(root: root, split: "nope")) { error in
            XCTAssertTrue("\(error)".contains("annotations/nope"), "\(error)")
        }
    }
}
