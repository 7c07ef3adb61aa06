import Foundation
import VLData
import XCTest

/// Every dataset config the papers use, on small generated copies of its upstream folder layout: medvlsm's
/// folders under one data_root (CAMUS's per-split sub-folders, the test-only polyp sets, the pooled polyp
/// set) and TuneVLSeg's binarised natural-image layout (`annotations/<split>/<class>/*.png`), through
/// `vlseg data check data=NAME data_root=DIR`, then one short training on the class-folder layout.
final class DatasetLayoutsTests: XCTestCase {
    static let configDir = TrainingTests.packageRoot.appendingPathComponent("configs").path

    /// A 24x24 image with a bright square at a position derived from `seed`, and its 0/255 mask.
    static func sample(_ seed: Int) -> (RGBImage, BinaryMask) {
        var pixels = [UInt8](repeating: 40, count: 24 * 24 * 3)
        var mask = [UInt8](repeating: 0, count: 24 * 24)
        let x0 = 2 + (seed * 5) % 12, y0 = 2 + (seed * 7) % 12
        for y in y0..<(y0 + 8) {
            for x in x0..<(x0 + 8) {
                let i = y * 24 + x
                pixels[3 * i] = 220; pixels[3 * i + 1] = UInt8(60 + seed % 100); mask[i] = 255
            }
        }
        return (RGBImage(width: 24, height: 24, pixels: pixels), BinaryMask(width: 24, height: 24, values: mask))
    }

    /// A medvlsm dataset: `anns/<split>.json` with `count` entries each; CAMUS-style when `splitFolders`
    /// (files in images/<train|test>/, val sharing train's folder).
    static func writeMedvlsm(_ root: URL, splits: [String: Int], splitFolders: Bool = false) throws {
        let fm = FileManager.default
        var n = 0
        for (split, count) in splits.sorted(by: { $0.key < $1.key }) {
            let folder = splitFolders ? (split == "test" ? "test/" : "train/") : ""
            var entries: [[String: Any]] = []
            for _ in 0..<count {
                let (image, mask) = sample(n)
                let name = "\(split)_\(n).png"
                for dir in ["images", "masks"] {
                    try fm.createDirectory(
                        at: root.appendingPathComponent("\(dir)/\(folder)"), withIntermediateDirectories: true)
                }
                try ImageIO.writePNG(image, to: root.appendingPathComponent("images/\(folder)\(name)"))
                try ImageIO.writeMaskPNG(mask, to: root.appendingPathComponent("masks/\(folder)\(name)"))
                entries.append(["img_name": name, "mask_name": name, "prompts": ["p0": "", "p1": "a square \(n)"]])
                n += 1
            }
            try fm.createDirectory(at: root.appendingPathComponent("anns"), withIntermediateDirectories: true)
            try JSONSerialization.data(withJSONObject: entries).write(
                to: root.appendingPathComponent("anns/\(split).json"))
        }
    }

    /// TuneVLSeg's binarised layout: `images/<split>/<stem>.<ext>` and one mask folder per class present.
    static func writeClassFolders(_ root: URL, jpeg: Bool, classes: [String]) throws {
        let fm = FileManager.default
        var n = 0
        for (split, count) in [("training", 6), ("validation", 3)] {
            for i in 0..<count {
                let (image, mask) = sample(n)
                let stem = "img_\(split)_\(i)"
                let images = root.appendingPathComponent("images/\(split)")
                try fm.createDirectory(at: images, withIntermediateDirectories: true)
                if jpeg {
                    try ImageIO.writeFileBytes(
                        try JPEGCodec.encode(image, quality: 95), to: images.appendingPathComponent("\(stem).jpg"))
                } else {
                    try ImageIO.writePNG(image, to: images.appendingPathComponent("\(stem).png"))
                }
                // Every image shows the first class; every other one the second as well.
                for (c, name) in classes.enumerated() where c == 0 || i % 2 == 0 {
                    let dir = root.appendingPathComponent("annotations/\(split)/\(name)")
                    try fm.createDirectory(at: dir, withIntermediateDirectories: true)
                    try ImageIO.writeMaskPNG(mask, to: dir.appendingPathComponent("\(stem).png"))
                }
                n += 1
            }
        }
    }

    static func check(_ overrides: [String]) throws -> (status: Int32, output: String) {
        let r = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["data", "check", "--config-dir", configDir] + overrides, timeout: 120)
        return (r.status, r.output)
    }

    func testEveryPaperDatasetConfigReadsItsUpstreamLayout() throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-layouts-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: work) }
        let three = ["train": 4, "val": 2, "test": 2]
        for folder in ["kvasir_polyp", "bkai_polyp", "clinicdb_polyp", "isic", "dfu", "busi", "chexlocalize"] {
            try Self.writeMedvlsm(work.appendingPathComponent(folder), splits: three)
        }
        try Self.writeMedvlsm(work.appendingPathComponent("camus"), splits: three, splitFolders: true)
        for folder in ["cvc300_polyp", "colondb_polyp", "etis_polyp"] {
            try Self.writeMedvlsm(work.appendingPathComponent(folder), splits: ["train": 3, "test": 2])
        }
        try Self.writeClassFolders(
            work.appendingPathComponent("cityscapes_binarized"), jpeg: false, classes: ["car", "traffic light"])
        try Self.writeClassFolders(
            work.appendingPathComponent("VOC2012_binarized"), jpeg: true, classes: ["aeroplane", "dog"])

        for name in ["kvasir", "bkai", "clinicdb", "isic", "dfu", "busi", "chexlocalize", "camus"] {
            let r = try Self.check(["data=\(name)", "data_root=\(work.path)"])
            XCTAssertEqual(r.status, 0, "\(name): \(r.output)")
            for line in ["split train: 4 entries", "split val: 2 entries", "split test: 2 entries", "ok: no problems"] {
                XCTAssertTrue(r.output.contains(line), "\(name) lacks '\(line)':\n\(r.output)")
            }
        }
        // Test-only polyp sets: validation on test.json, test on test.json + train.json.
        for name in ["cvc300", "colondb", "etis"] {
            let r = try Self.check(["data=\(name)", "data_root=\(work.path)", "--json"])
            XCTAssertEqual(r.status, 0, "\(name): \(r.output)")
            let report = try JSONDecoder().decode(DatasetCheckReport.self, from: Data(r.output.utf8))
            XCTAssertEqual(report.splits.map(\.split), ["train", "test"], name)
            XCTAssertEqual(report.splits.map(\.entries), [3, 2], name)
        }
        // The pooled set: one report per dataset folder, the unseen sets with both of their files.
        let pooled = try Self.check(["data=polyp", "data_root=\(work.path)", "--json"])
        XCTAssertEqual(pooled.status, 0, pooled.output)
        let reports = try pooled.output.split(separator: "\n").map {
            try JSONDecoder().decode(DatasetCheckReport.self, from: Data($0.utf8))
        }
        XCTAssertEqual(
            reports.map { URL(fileURLWithPath: $0.root).lastPathComponent },
            ["kvasir_polyp", "clinicdb_polyp", "bkai_polyp", "cvc300_polyp", "colondb_polyp", "etis_polyp"])
        XCTAssertEqual(reports.map { $0.splits.map(\.entries).reduce(0, +) }, [8, 8, 8, 5, 5, 5])

        for (name, images) in [("cityscapes", "png"), ("pascal_voc", "jpg")] {
            let r = try Self.check(["data=\(name)", "data_root=\(work.path)", "--json"])
            XCTAssertEqual(r.status, 0, "\(name): \(r.output)")
            let report = try JSONDecoder().decode(DatasetCheckReport.self, from: Data(r.output.utf8))
            XCTAssertEqual(report.format, "class-directories")
            // training: 6 masks of the first class + 3 of the second; validation: 3 + 2.
            XCTAssertEqual(report.splits.map(\.split), ["training", "validation"], name)
            XCTAssertEqual(report.splits.map(\.entries), [9, 5], name)
            XCTAssertEqual(report.splits.first?.images, 6, "\(name): one image file per stem (.\(images))")
            XCTAssertEqual(report.splits.first?.promptKeys, [ClassDirectoryDataset.promptKey: 9], name)
        }
        // A ROOT given directly is detected as the class-folder layout too.
        let direct = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["data", "check", work.appendingPathComponent("cityscapes_binarized").path],
            timeout: 60)
        XCTAssertEqual(direct.status, 0, direct.output)
        XCTAssertTrue(direct.output.contains("(class-directories)"), direct.output)
    }

    func testBrokenLayoutsAreNamed() throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-layouts-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: work) }
        let city = work.appendingPathComponent("cityscapes_binarized")
        try Self.writeClassFolders(city, jpeg: false, classes: ["car"])
        // A mask whose image is gone: the problem names the mask's entry and the missing file.
        let gone = city.appendingPathComponent("images/validation/img_validation_1.png")
        try FileManager.default.removeItem(at: gone)
        let started = Date()
        let r = try Self.check(["data=cityscapes", "data_root=\(work.path)"])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.output.contains("car/img_validation_1.png"), r.output)
        XCTAssertTrue(r.output.contains("1 problem(s) found"), r.output)
        XCTAssertLessThan(Date().timeIntervalSince(started), 60)

        // A pooled split whose part is missing: training refuses before any step, naming the file.
        try Self.writeMedvlsm(work.appendingPathComponent("kvasir_polyp"), splits: ["train": 4, "val": 2, "test": 2])
        let run = try ProcessRunner.run(
            ProcessRunner.vlsegPath,
            [
                "train", "--config-dir", Self.configDir, "data=polyp", "data_root=\(work.path)", "model.preset=tiny",
                "model.path=\(work.appendingPathComponent("model").path)", "model.image_size=24",
                "run.dir=\(work.appendingPathComponent("run").path)", "trainer.max_steps=1", "data.workers=0",
            ], timeout: 120)
        XCTAssertEqual(run.status, 1, run.output)
        XCTAssertTrue(
            run.output.contains(work.appendingPathComponent("clinicdb_polyp/anns/train.json").path), run.output)
        XCTAssertTrue(run.output.contains("source 'clinicdb_polyp/train'"), run.output)

        // A source reaching outside the data root is refused by name.
        let bad = try Self.check(["data=kvasir", "data_root=\(work.path)", "data.splits.test=[../x/test]"])
        XCTAssertEqual(bad.status, 1, bad.output)
        XCTAssertTrue(bad.output.contains("split source '../x/test'"), bad.output)
    }

    /// Training, evaluation and prediction read the class-folder layout; the prompt is the class name.
    func testTrainsOnClassFolders() throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-layouts-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: work) }
        try Self.writeClassFolders(
            work.appendingPathComponent("VOC2012_binarized"), jpeg: true, classes: ["aeroplane", "dog"])
        let run = work.appendingPathComponent("run")
        let common = [
            "--config-dir", Self.configDir, "data=pascal_voc", "data_root=\(work.path)", "model.preset=tiny",
            "model.path=\(work.appendingPathComponent("model").path)", "model.image_size=32", "data.batch_size=3",
            "trainer.global_batch_size=0", "data.workers=0", "trainer.threads=1", "run.dir=\(run.path)",
        ]
        let t = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["train"] + common + ["trainer.max_steps=3", "trainer.max_epochs=0"],
            timeout: 180)
        XCTAssertEqual(t.status, 0, t.output)
        let testReport = run.appendingPathComponent("eval-test.json")
        XCTAssertTrue(
            FileManager.default.fileExists(atPath: testReport.path), "the validation folder is the test split")
        let p = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["predict"] + common + ["--split", "test"], timeout: 120)
        XCTAssertEqual(p.status, 0, p.output)
        let written = run.appendingPathComponent("predictions/test")
        let files = FileManager.default.enumerator(atPath: written.path)?.compactMap { $0 as? String } ?? []
        // Named `<class>/<stem>` as TuneVLSeg writes them: 3 aeroplane masks and 2 dog masks in validation.
        XCTAssertEqual(files.filter { $0.hasPrefix("masks/aeroplane/") }.count, 3, "\(files)")
        XCTAssertEqual(files.filter { $0.hasPrefix("masks/dog/") }.count, 2, "\(files)")
    }
}
