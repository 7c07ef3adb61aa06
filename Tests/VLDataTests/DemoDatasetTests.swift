import Foundation
import XCTest

@testable import VLData

final class DemoDatasetTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-demo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: tmp)
    }

    func loadEntries(_ root: URL, _ split: String) throws -> [[String: Any]] {
        let data = try Data(contentsOf: root.appendingPathComponent("anns/\(split).json"))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [[String: Any]])
    }

    func promptTexts(_ value: Any) -> [String] {
        if let s = value as? String { return [s] }
        return (value as? [String]) ?? []
    }

    func testLayoutMasksAndPrompts() throws {
        let root = tmp.appendingPathComponent("demo")
        let summary = try DemoDataset.write(options: .init(count: 20, width: 64, height: 64, seed: 1), to: root)
        XCTAssertEqual(summary.splitCounts.map(\.count), [14, 3, 3])
        var names = Set<String>()
        var sawList = false
        let colorNames = DemoDataset.palette.map(\.name)
        for split in ["train", "val", "test"] {
            for entry in try loadEntries(root, split) {
                let img = try XCTUnwrap(entry["img_name"] as? String)
                let maskName = try XCTUnwrap(entry["mask_name"] as? String)
                XCTAssertTrue(names.insert(img).inserted, "\(img) listed twice")
                let image = try ImageIO.readImage(root.appendingPathComponent("images/\(img)"))
                let mask = try ImageIO.readMask(root.appendingPathComponent("masks/\(maskName)"))
                XCTAssertEqual(image.width, 64); XCTAssertEqual(mask.width, 64); XCTAssertEqual(mask.height, 64)
                XCTAssertGreaterThan(mask.foregroundRatio, 0.003, "\(maskName) has foreground")
                // Masks are stored as 0/255.
                let raw = try ImageIO.readClassIndices(root.appendingPathComponent("masks/\(maskName)"))
                XCTAssertTrue(raw.values.allSatisfy { $0 == 0 || $0 == 255 })

                let prompts = try XCTUnwrap(entry["prompts"] as? [String: Any])
                XCTAssertEqual(Set(prompts.keys), Set((0...9).map { "p\($0)" }))
                XCTAssertEqual(prompts["p0"] as? String, "")
                // Every non-empty prompt names the same colour, the target's.
                let p1 = try XCTUnwrap(prompts["p1"] as? String)
                let color = try XCTUnwrap(colorNames.first { p1.contains($0) }, p1)
                for k in 1...9 {
                    let texts = promptTexts(prompts["p\(k)"]!)
                    if prompts["p\(k)"] is [String] { sawList = true }
                    XCTAssertFalse(texts.isEmpty)
                    for t in texts { XCTAssertTrue(t.contains(color), "p\(k) '\(t)' lacks \(color)") }
                }
                // The image under the mask has the named colour.
                let rgb = DemoDataset.palette.first { $0.name == color }!.rgb
                var sum = (0.0, 0.0, 0.0), n = 0.0
                for i in 0..<(64 * 64) where mask.values[i] == 1 {
                    sum.0 += Double(image.pixels[3 * i]); sum.1 += Double(image.pixels[3 * i + 1]);
                    sum.2 += Double(image.pixels[3 * i + 2])
                    n += 1
                }
                let mean = (sum.0 / n, sum.1 / n, sum.2 / n)
                let dist =
                    ((mean.0 - rgb.0) * (mean.0 - rgb.0) + (mean.1 - rgb.1) * (mean.1 - rgb.1) + (mean.2 - rgb.2)
                        * (mean.2 - rgb.2))
                    .squareRoot()
                XCTAssertLessThan(dist, 60, "\(img): mean \(mean) vs \(color) \(rgb)")
            }
        }
        XCTAssertEqual(names.count, 20)
        XCTAssertTrue(sawList, "some prompt values are lists")
    }

    func testSamplesShowSeveralDifferentlyColouredLesionsAndMaskOne() {
        let options = DemoDataset.Options(count: 50, width: 96, height: 80, seed: 9)
        var counts = Set<Int>()
        for i in 0..<50 {
            let s = DemoDataset.makeSample(index: i, options: options)
            XCTAssertGreaterThanOrEqual(s.lesions.count, 2)
            XCTAssertEqual(Set(s.lesions.map(\.colorIndex)).count, s.lesions.count, "distinct colours")
            counts.insert(s.lesions.count)
            // The mask covers the target's centre and no other lesion's.
            for (li, l) in s.lesions.enumerated() {
                let v = s.mask.values[Int(l.centerY) * 96 + Int(l.centerX)]
                XCTAssertEqual(v, li == s.target ? 1 : 0, "sample \(i) lesion \(li)")
            }
        }
        XCTAssertTrue(counts.contains(2) && counts.contains(3), "lesion counts vary: \(counts)")
        // A sample does not depend on how many are made.
        let a = DemoDataset.makeSample(index: 7, options: options)
        var other = options
        other.count = 3
        let b = DemoDataset.makeSample(index: 7, options: other)
        XCTAssertEqual(a.image, b.image); XCTAssertEqual(a.mask, b.mask)
    }

    func allFiles(_ root: URL) throws -> [String: Data] {
        var out: [String: Data] = [:]
        let e = FileManager.default.enumerator(atPath: root.path)!
        while let rel = e.nextObject() as? String {
            var isDir: ObjCBool = false
            let full = root.appendingPathComponent(rel)
            if FileManager.default.fileExists(atPath: full.path, isDirectory: &isDir), !isDir.boolValue {
                out[rel] = try Data(contentsOf: full)
            }
        }
        return out
    }

    func testSameSeedWritesByteIdenticalFiles() throws {
        let opts = DemoDataset.Options(count: 8, width: 48, height: 40, seed: 42)
        try DemoDataset.write(options: opts, to: tmp.appendingPathComponent("a"))
        try DemoDataset.write(options: opts, to: tmp.appendingPathComponent("b"))
        let a = try allFiles(tmp.appendingPathComponent("a")), b = try allFiles(tmp.appendingPathComponent("b"))
        XCTAssertEqual(a.count, 8 * 2 + 3)
        XCTAssertEqual(a, b)
        var other = opts
        other.seed = 43
        try DemoDataset.write(options: other, to: tmp.appendingPathComponent("c"))
        let c = try allFiles(tmp.appendingPathComponent("c"))
        XCTAssertNotEqual(a["images/demo_00000.png"], c["images/demo_00000.png"])
    }

    func testNonSquareJPEG() throws {
        let root = tmp.appendingPathComponent("jpg")
        let opts = DemoDataset.Options(count: 3, width: 600, height: 500, seed: 0, format: .jpg)
        let summary = try DemoDataset.write(options: opts, to: root)
        XCTAssertEqual(summary.splitCounts.map(\.count), [1, 1, 1])
        let entry = try loadEntries(root, "train")[0]
        XCTAssertEqual(entry["img_name"] as? String, "demo_00000.jpg")
        let url = root.appendingPathComponent("images/demo_00000.jpg")
        let bytes = try Data(contentsOf: url)
        XCTAssertEqual(Array(bytes.prefix(3)), [0xFF, 0xD8, 0xFF])
        let image = try ImageIO.readImage(url)
        XCTAssertEqual(image.width, 600); XCTAssertEqual(image.height, 500)
        let mask = try ImageIO.readMask(root.appendingPathComponent("masks/demo_00000.png"))
        XCTAssertEqual(mask.width, 600); XCTAssertEqual(mask.height, 500)
    }

    func testSplitSizes() {
        XCTAssertTrue(DemoDataset.splitSizes(count: 200, trainFraction: 0.7, valFraction: 0.15) == (140, 30, 30))
        XCTAssertTrue(DemoDataset.splitSizes(count: 3, trainFraction: 0.7, valFraction: 0.15) == (1, 1, 1))
        XCTAssertTrue(DemoDataset.splitSizes(count: 1, trainFraction: 0.7, valFraction: 0.15) == (1, 0, 0))
        XCTAssertTrue(DemoDataset.splitSizes(count: 10, trainFraction: 0.7, valFraction: 0.15) == (7, 2, 1))
    }
}
