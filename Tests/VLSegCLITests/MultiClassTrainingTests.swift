import Foundation
import VLData
import XCTest

/// A multi-class dataset (class-index masks + classes.json) through train, evaluate and predict.
final class MultiClassTrainingTests: XCTestCase {
    func makeDataset(_ root: URL) throws {
        let fm = FileManager.default
        for dir in ["anns", "images", "masks"] {
            try fm.createDirectory(at: root.appendingPathComponent(dir), withIntermediateDirectories: true)
        }
        let classes =
            [
                "classes": [
                    ["id": 0, "name": "background", "ignore": true], ["id": 1, "name": "red square"],
                    ["id": 2, "name": "blue square"],
                ],
                "templates": ["a {}"],
            ] as [String: Any]
        try JSONSerialization.data(withJSONObject: classes).write(to: root.appendingPathComponent("classes.json"))
        var entries: [[String: Any]] = []
        for i in 0..<12 {
            var pixels = [UInt8](repeating: 90, count: 32 * 32 * 3)
            var labels = [UInt8](repeating: 0, count: 32 * 32)
            let redAt = (i * 5) % 16, blueAt = 16 - (i * 3) % 16
            for y in 0..<10 {
                for x in 0..<10 {
                    let r = (y + redAt) * 32 + x + 2, b = (y + blueAt / 2) * 32 + x + 20
                    pixels[3 * r] = 230; pixels[3 * r + 1] = 20; pixels[3 * r + 2] = 20; labels[r] = 1
                    if i % 3 != 0 { pixels[3 * b] = 20; pixels[3 * b + 1] = 20; pixels[3 * b + 2] = 230; labels[b] = 2 }
                }
            }
            try ImageIO.writePNG(
                RGBImage(width: 32, height: 32, pixels: pixels), to: root.appendingPathComponent("images/\(i).png"))
            try LabelMap(width: 32, height: 32, values: labels).writePNG(
                to: root.appendingPathComponent("masks/\(i).png"))
            entries.append(["img_name": "\(i).png", "mask_name": "\(i).png"])
        }
        for (split, range) in [("train", 0..<8), ("val", 8..<10), ("test", 10..<12)] {
            try JSONSerialization.data(withJSONObject: Array(entries[range])).write(
                to: root.appendingPathComponent("anns/\(split).json"))
        }
    }

    func testTrainEvaluatePredict() throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vlseg-multiclass-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: work) }
        let data = work.appendingPathComponent("data"), run = work.appendingPathComponent("run")
        try makeDataset(data)
        let common = [
            "--config-dir", TrainingTests.packageRoot.appendingPathComponent("configs").path,
            "data.name=shapes", "data.root=\(data.path)", "model.path=\(work.appendingPathComponent("model").path)",
            "model.preset=tiny", "model.image_size=32", "data.batch_size=4", "trainer.global_batch_size=0",
            "data.workers=0", "trainer.threads=1", "run.dir=\(run.path)", "data.absent_per_image=1",
        ]
        let t = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["train"] + common + ["trainer.max_steps=4", "trainer.max_epochs=0"], timeout: 120)
        XCTAssertEqual(t.status, 0, t.output)
        let e = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["evaluate"] + common + ["--split", "test"], timeout: 120)
        XCTAssertEqual(e.status, 0, e.output)
        XCTAssertTrue(
            e.output.contains("class 1 (red square)") && e.output.contains("class 2 (blue square)")
                && e.output.contains("mean class Dice"), e.output)
        let p = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["predict"] + common + ["--split", "test"], timeout: 120)
        XCTAssertEqual(p.status, 0, p.output)
        let out = run.appendingPathComponent("predictions/test")
        let label = try ImageIO.readClassIndices(out.appendingPathComponent("labels/10.png"))
        XCTAssertEqual(label.width, 32)
        XCTAssertTrue(label.values.allSatisfy { [0, 1, 2].contains(Int($0)) })
        XCTAssertTrue(
            FileManager.default.fileExists(atPath: out.appendingPathComponent("probabilities/10/1_red square.png").path)
        )
        XCTAssertTrue(
            FileManager.default.fileExists(
                atPath: out.appendingPathComponent("probabilities/11/2_blue square.png").path))
    }
}
