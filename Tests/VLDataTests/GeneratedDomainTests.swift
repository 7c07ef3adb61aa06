import Foundation
import XCTest

@testable import VLData

/// The demo backbone's generated domains: the source scenes with referring prompts and the shifted
/// medical target domain.
final class GeneratedDomainTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-domains-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func files(_ root: URL) throws -> [String: Data] {
        var out: [String: Data] = [:]
        for sub in ["anns", "images", "masks"] {
            for name in try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent(sub).path) {
                out["\(sub)/\(name)"] = try Data(contentsOf: root.appendingPathComponent("\(sub)/\(name)"))
            }
        }
        return out
    }

    /// Every entry's prompts denote exactly its mask's objects: the phrase's words agree with them.
    func testSceneEntriesReferToTheirMasks() {
        let options = SceneDataset.Options(count: 60, width: 96, height: 96, seed: 7)
        var shapesSeen = Set<SceneDataset.Shape>(), colours = Set<Int>(), multi = 0, relations = 0
        for i in 0..<options.count {
            let scene = SceneDataset.makeScene(index: i, options: options)
            XCTAssertGreaterThanOrEqual(scene.objects.count, 2)
            XCTAssertEqual(scene.entries.count, 2, "image \(i)")
            XCTAssertNotEqual(
                scene.entries[0].targets, scene.entries[1].targets,
                "two entries of one image refer to different objects")
            for o in scene.objects { shapesSeen.insert(o.shape); colours.insert(o.colorIndex) }
            for entry in scene.entries {
                XCTAssertFalse(entry.targets.isEmpty)
                if entry.targets.count > 1 { multi += 1 }
                for phrase in entry.prompts {
                    if phrase.contains(" on the ") || phrase.contains(" at the ") { relations += 1 }
                    // A colour word in the phrase is every target's colour.
                    for (c, colour) in SceneDataset.palette.enumerated()
                    where phrase.split(separator: " ").contains(Substring(colour.name)) {
                        XCTAssertTrue(
                            entry.targets.allSatisfy { scene.objects[$0].colorIndex == c }, "'\(phrase)' in image \(i)")
                    }
                    // "every"/"all" name sets; "the"/"a" one object.
                    if phrase.hasPrefix("the ") || phrase.hasPrefix("a ") || phrase.hasPrefix("an ") {
                        XCTAssertEqual(entry.targets.count, 1, "'\(phrase)' in image \(i)")
                    }
                }
            }
            let sample = SceneDataset.makeImage(index: i, options: options)
            for (k, e) in sample.entries.enumerated() {
                XCTAssertGreaterThan(e.mask.foregroundRatio, 0, "image \(i) entry \(k)")
                XCTAssertEqual(e.prompts.first?.key, "p0")
            }
        }
        XCTAssertEqual(shapesSeen.count, SceneDataset.Shape.allCases.count)
        XCTAssertGreaterThanOrEqual(colours.count, 6)
        XCTAssertGreaterThan(multi, 5, "sets (\"every blue shape\") occur")
        XCTAssertGreaterThan(relations, 5, "relations (\"the ring on the left\") occur")
    }

    func testSameSeedWritesIdenticalFilesForEveryKind() throws {
        for kind in [DemoDataKind.scenes, .medical] {
            let a = tmp.appendingPathComponent("\(kind)-a"), b = tmp.appendingPathComponent("\(kind)-b")
            let c = tmp.appendingPathComponent("\(kind)-c")
            let summary = try kind.write(count: 12, size: 64, seed: 3, to: a)
            try kind.write(count: 12, size: 64, seed: 3, to: b)
            try kind.write(count: 12, size: 64, seed: 4, to: c)
            XCTAssertEqual(summary.images, 12)
            let fa = try files(a)
            XCTAssertEqual(fa, try files(b), "\(kind)")
            XCTAssertNotEqual(fa, try files(c), "\(kind)")
        }
    }

    func testTargetDomainHasBothModalitiesAndNewWords() throws {
        let options = ShiftedDomainDataset.Options(count: 40, width: 64, height: 64, seed: 1)
        var modalities = Set<ShiftedDomainDataset.Modality>()
        for i in 0..<options.count {
            let m = ShiftedDomainDataset.modality(index: i, options: options)
            modalities.insert(m)
            let sample = ShiftedDomainDataset.makeImage(index: i, options: options)
            XCTAssertEqual(sample.entries.count, 1)
            let entry = sample.entries[0]
            XCTAssertGreaterThan(entry.mask.foregroundRatio, 0.005, "image \(i)")
            let p1 = entry.prompts.first { $0.key == "p1" }?.value.texts.first
            XCTAssertEqual(p1, m == .endoscopy ? "a polyp" : "a benign tumour")
            if m == .ultrasound {
                // Grey: every pixel has equal channels.
                let px = sample.image.pixels
                var grey = true
                for i in stride(from: 0, to: px.count, by: 3) where px[i] != px[i + 1] || px[i] != px[i + 2] {
                    grey = false
                }
                XCTAssertTrue(grey, "image \(i)")
            }
        }
        XCTAssertEqual(modalities, [.endoscopy, .ultrasound])
        // None of the target domain's key words occur in the source scenes' prompts.
        let scenes = SceneDataset.Options(count: 40, width: 64, height: 64, seed: 1)
        var sourceWords = Set<String>()
        for i in 0..<scenes.count {
            for entry in SceneDataset.makeScene(index: i, options: scenes).entries {
                for phrase in entry.prompts {
                    for word in phrase.split(separator: " ") { sourceWords.insert(String(word)) }
                }
            }
        }
        for word in ["polyp", "benign", "tumour", "colorectal", "ultrasound", "hypoechoic"] {
            XCTAssertFalse(sourceWords.contains(word), word)
        }
    }
}
