import Foundation
import XCTest

@testable import VLData

final class MultiClassTests: XCTestCase {
    /// Three 8x8 images with class-index masks:
    /// - img0: background 0, cat (1) in the top-left quarter, dog (2) in the bottom row
    /// - img1: background, dog covering the left half, one void (255) pixel
    /// - img2: background and an unlisted value 9 only
    func makeDataset(classes: Any? = nil) throws -> URL {
        let root = DataFixture.temporaryRoot("mc")
        DataFixture.writeJSON(
            classes ?? [
                "classes": [
                    ["id": 0, "name": "background", "ignore": true],
                    ["id": 1, "name": "cat", "prompts": ["a {} sitting", "the {name}"]],
                    ["id": 2, "name": "dog"],
                    ["id": 3, "name": "bird"],
                ],
                "templates": ["a photo of a {}."],
            ] as [String: Any], to: root.appendingPathComponent("classes.json"))
        var maps: [[UInt8]] = []
        var m0 = [UInt8](repeating: 0, count: 64)
        for y in 0..<4 { for x in 0..<4 { m0[y * 8 + x] = 1 } }
        for x in 0..<8 { m0[56 + x] = 2 }
        var m1 = [UInt8](repeating: 0, count: 64)
        for y in 0..<8 { for x in 0..<4 { m1[y * 8 + x] = 2 } }
        m1[63] = 255
        var m2 = [UInt8](repeating: 0, count: 64)
        m2[10] = 9
        maps = [m0, m1, m2]
        var entries: [[String: Any]] = []
        for (i, values) in maps.enumerated() {
            try ImageIO.writePNG(
                DataFixture.image(width: 8, height: 8, seed: i), to: root.appendingPathComponent("images/\(i).png"))
            try LabelMap(width: 8, height: 8, values: values).writePNG(
                to: root.appendingPathComponent("masks/\(i).png"))
            entries.append(["img_name": "\(i).png", "mask_name": "\(i).png"])
        }
        DataFixture.writeJSON(entries, to: root.appendingPathComponent("anns/train.json"))
        return root
    }

    func testClassListParsing() throws {
        let root = try makeDataset()
        let list = try ClassList.load(root.appendingPathComponent("classes.json"))
        XCTAssertEqual(list.classes.map(\.name), ["background", "cat", "dog", "bird"])
        XCTAssertEqual(list.trainableIDs, [1, 2, 3])
        XCTAssertEqual(list.promptTexts(for: 1), ["a cat sitting", "the cat"])
        XCTAssertEqual(list.promptTexts(for: 2), ["a photo of a dog."])

        let short = root.appendingPathComponent("short.json")
        DataFixture.writeJSON(["classes": ["road", "car"]], to: short)
        let s = try ClassList.load(short)
        XCTAssertEqual(s.classes.map(\.id), [0, 1])
        XCTAssertEqual(s.promptTexts(for: 1), ["car"], "without templates the prompt is the class name")
        DataFixture.writeJSON(["sky", "tree"], to: short)
        XCTAssertEqual(try ClassList.load(short).classes.map(\.name), ["sky", "tree"])

        DataFixture.writeJSON(["classes": [["id": 1, "name": "a"], ["id": 1, "name": "b"]]], to: short)
        XCTAssertThrowsError(try ClassList.load(short)) {
            XCTAssertTrue("\($0)".contains("class id 1 appears more than once"), "\($0)")
        }
        DataFixture.writeJSON(["classes": [["id": 300, "name": "a"]]], to: short)
        XCTAssertThrowsError(try ClassList.load(short)) { XCTAssertTrue("\($0)".contains("0...255"), "\($0)") }
        DataFixture.writeText("{\"classes\": [", to: short)
        XCTAssertThrowsError(try ClassList.load(short)) { XCTAssertTrue("\($0)".contains(short.path), "\($0)") }
    }

    func testSamplesArePresentClassesInIDOrder() throws {
        let root = try makeDataset()
        XCTAssertTrue(MultiClassDataset.isMultiClass(root: root))
        let set = try MultiClassDataset.load(root: root, split: "train")
        XCTAssertEqual(set.samples.map(\.entry.imageName), ["0.png", "0.png", "1.png"])
        XCTAssertEqual(set.samples.map(\.target), [.classPresent(1), .classPresent(2), .classPresent(2)])
        // minimum_pixels: dog's 8 pixels in img0 stop counting at 9.
        let strict = try MultiClassDataset.load(root: root, split: "train", config: MultiClassConfig(minimumPixels: 9))
        XCTAssertEqual(strict.samples.map(\.target), [.classPresent(1), .classPresent(2)])
        XCTAssertEqual(strict.samples.map(\.entry.imageName), ["0.png", "1.png"])
    }

    func testLoaderYieldsBinaryMasksAndClassPrompts() throws {
        let root = try makeDataset()
        let set = try MultiClassDataset.load(root: root, split: "train")
        let sampler = try ShardedSampler(count: set.count, batchSize: 3, mode: .evaluation)
        let l = try DataLoader(
            samples: set, sampler: sampler, tokenizer: DataLoaderTests.tokenizer,
            config: DataLoaderConfig(imageSize: 8, workers: 1, seed: 4))
        let stream = try l.batches(epoch: 0)
        let b = try XCTUnwrap(try stream.next())
        XCTAssertNil(try stream.next())
        XCTAssertEqual(b.classIDs, [1, 2, 2])
        XCTAssertTrue(["a cat sitting", "the cat"].contains(b.prompts[0]), b.prompts[0])
        XCTAssertEqual(b.prompts[1], "a photo of a dog.")
        XCTAssertEqual(b.promptKeys, [nil, nil, nil])
        XCTAssertEqual(b.inputIDs[1], try DataLoaderTests.tokenizer.encode("a photo of a dog.", maxLength: 77).inputIDs)
        let masks = b.masks.scalars
        func mask(_ j: Int) -> [Float] { Array(masks[(j * 64)..<((j + 1) * 64)]) }
        XCTAssertEqual(mask(0), (0..<64).map { ($0 / 8 < 4 && $0 % 8 < 4) ? 1 : 0 }, "cat = top-left quarter")
        XCTAssertEqual(mask(1), (0..<64).map { $0 >= 56 ? 1 : 0 }, "dog in img0 = bottom row")
        XCTAssertEqual(mask(2), (0..<64).map { $0 % 8 < 4 ? 1 : 0 }, "dog in img1 = left half; void is background")
        // The cat prompt is drawn per (seed, epoch, index) among the class's texts.
        var texts = Set<String>()
        for epoch in 0..<16 {
            texts.insert(set.classes!.choosePrompt(classID: 1, seed: 4, epoch: epoch, index: 0))
        }
        XCTAssertEqual(texts, ["a cat sitting", "the cat"])
    }

    func testAbsentClassSamplesAreDrawnPerEpochWithEmptyTargets() throws {
        let root = try makeDataset()
        let set = try MultiClassDataset.load(root: root, split: "train", config: MultiClassConfig(absentPerImage: 1))
        XCTAssertEqual(
            set.samples.map(\.target),
            [
                .classPresent(1), .classPresent(2), .classAbsent(candidates: [3]),
                .classPresent(2), .classAbsent(candidates: [1, 3]),
                .classAbsent(candidates: [1, 2, 3]),
            ])
        let sampler = try ShardedSampler(count: set.count, batchSize: 6, mode: .evaluation)
        let l = try DataLoader(
            samples: set, sampler: sampler, tokenizer: nil, config: DataLoaderConfig(imageSize: 8, workers: 0, seed: 2))
        var drawn = Set<Int>()
        for epoch in 0..<40 {
            let b = try XCTUnwrap(try l.batches(epoch: epoch).next())
            XCTAssertEqual(b.classIDs[2], 3)
            XCTAssertTrue([1, 3].contains(b.classIDs[4]!))
            drawn.insert(b.classIDs[5]!)
            for j in [2, 4, 5] {
                XCTAssertTrue(
                    b.masks.scalars[(j * 64)..<((j + 1) * 64)].allSatisfy { $0 == 0 }, "absent class target is empty")
            }
            XCTAssertTrue(b.inputIDs.isEmpty, "no tokenizer, no ids")
            let again = try XCTUnwrap(try l.batches(epoch: epoch).next())
            XCTAssertEqual(again.classIDs, b.classIDs, "deterministic per epoch")
            XCTAssertEqual(again.prompts, b.prompts)
        }
        XCTAssertEqual(drawn, [1, 2, 3], "the absent class changes between epochs")
    }

    func testListedClassesSpareTheScan() throws {
        let root = try makeDataset()
        DataFixture.writeJSON(
            [["img_name": "0.png", "mask_name": "0.png", "classes": [2]]],
            to: root.appendingPathComponent("anns/val.json"))
        let set = try MultiClassDataset.load(root: root, split: "val")
        XCTAssertEqual(set.samples.map(\.target), [.classPresent(2)])
    }

    func testBadMasksNameTheEntry() throws {
        let root = try makeDataset()
        try FileManager.default.removeItem(at: root.appendingPathComponent("masks/1.png"))
        XCTAssertThrowsError(try MultiClassDataset.load(root: root, split: "train")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("entry 1 (img_name \"1.png\", mask_name \"1.png\")"), text)
            XCTAssertTrue(text.contains("mask file not found"), text)
        }
        let skipped = try MultiClassDataset.load(root: root, split: "train", onError: .skip)
        XCTAssertEqual(skipped.samples.map(\.target), [.classPresent(1), .classPresent(2)])
        XCTAssertEqual(skipped.problems.count, 1)
    }

    func testDataCheckReportsClassesAndUnknownValues() throws {
        let root = try makeDataset()
        let report = try DatasetCheck.run(root: root)
        XCTAssertTrue(report.multiClass)
        XCTAssertTrue(report.ok, report.text)
        XCTAssertEqual(report.splits[0].classes, ["background": 3, "cat": 1, "dog": 2])
        XCTAssertTrue(
            report.warnings.contains {
                $0.contains("not in the class list") && $0.contains("9 (1 masks)") && $0.contains("255")
            },
            "\(report.warnings)")
    }
}
