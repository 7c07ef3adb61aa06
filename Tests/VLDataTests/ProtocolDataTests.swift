import Foundation
import VLTestSupport
import XCTest

@testable import VLData

/// The data settings of the papers' protocols (docs/protocols.md): soft targets (`data.target`), "."
/// after prompts (`data.append_period`) and OpenCV's bicubic resize (`data.resize=cv2_cubic`).
final class ProtocolDataTests: XCTestCase {
    struct NoBatch: Error {}

    /// A 20x16 dataset whose first mask holds the grey levels 0, 64, 127, 128 and 255.
    func greyMaskDataset() throws -> (root: URL, levels: [UInt8]) {
        let root = DataFixture.makeDataset(splits: ["train": 2], width: 20, height: 16)
        addTeardownBlock { try? FileManager.default.removeItem(at: root) }
        let palette: [UInt8] = [0, 64, 127, 128, 255]
        let levels = (0..<(20 * 16)).map { palette[$0 % palette.count] }
        let png = try PNGCodec.encodeGray(levels, width: 20, height: 16)
        try Data(png).write(to: root.appendingPathComponent("masks/train_0_mask.png"))
        return (root, levels)
    }

    func firstBatch(root: URL, target: MaskTarget, appendPeriod: Bool, size: Int) throws -> Batch {
        let samples = try DatasetIndex.load(root: root, split: "train", promptChoice: .key("p1"), onError: .fail)
            .sampleSet
        let sampler = try ShardedSampler(
            count: samples.count, rank: 0, worldSize: 1, batchSize: 2, seed: 3, mode: .evaluation)
        var config = DataLoaderConfig(imageSize: size, workers: 0, seed: 3, promptChoice: .key("p1"))
        config.target = target
        config.appendPeriod = appendPeriod
        let loader = try DataLoader(
            samples: samples, sampler: sampler, tokenizer: try DataLoaderTests.tokenizer, config: config)
        let stream = try loader.batches(epoch: 0)
        defer { stream.close() }
        guard let batch = try stream.next() else { throw NoBatch() }
        return batch
    }

    func testSoftTargetsAreTheGreyLevelOver255() throws {
        let (root, levels) = try greyMaskDataset()
        let soft = try firstBatch(root: root, target: .soft, appendPeriod: false, size: 20)
        // 20x16 resized to 20x20 by nearest: compare against the nearest-resized levels.
        let resized = BinaryMask(width: 20, height: 16, values: levels).resizedNearest(width: 20, height: 20)
        XCTAssertEqual(Array(soft.masks.scalars[0..<400]), resized.values.map { Float($0) / 255 })
        let binary = try firstBatch(root: root, target: .binary, appendPeriod: false, size: 20)
        XCTAssertEqual(Array(binary.masks.scalars[0..<400]), resized.values.map { $0 > 127 ? 1 : 0 })
        // Metrics count a target pixel as foreground above 0.5: the same pixels either way.
        XCTAssertEqual(
            soft.masks.scalars[0..<400].map { $0 > 0.5 }, binary.masks.scalars[0..<400].map { $0 > 0.5 })
    }

    func testAppendPeriodAddsOneUnlessThePromptEndsWithOne() throws {
        let (root, _) = try greyMaskDataset()
        let batch = try firstBatch(root: root, target: .binary, appendPeriod: true, size: 12)
        XCTAssertEqual(batch.prompts, ["polyp 0.", "polyp 1."])
        XCTAssertEqual(
            try firstBatch(root: root, target: .binary, appendPeriod: false, size: 12).prompts, ["polyp 0", "polyp 1"])
        XCTAssertEqual(promptEndingWithPeriod("a polyp."), "a polyp.")
        XCTAssertEqual(promptEndingWithPeriod("a polyp"), "a polyp.")
    }

    /// OpenCV's coefficients for a = -0.75 sum to one and reproduce cv2's at the centre and a quarter.
    func testOpenCVCubicCoefficients() {
        XCTAssertEqual(OpenCVCubicTaps.coefficients(0), [0, 1, 0, 0])
        let q = OpenCVCubicTaps.coefficients(0.25)
        // Keys' kernel with a = -0.75 at distances 1.25, 0.25, 0.75, 1.75.
        func keys(_ t: Double) -> Double {
            let a = -0.75
            return t < 1 ? ((a + 2) * t - (a + 3)) * t * t + 1 : (((t - 5) * t + 8) * t - 4) * a
        }
        for (got, t) in zip(q, [1.25, 0.25, 0.75, 1.75]) { XCTAssertEqual(Double(got), keys(t), accuracy: 1e-6) }
    }

    /// Against cv2.resize(INTER_CUBIC) (opencv-python-headless, launch/common.sh) on scikit-image's astronaut
    /// photo: shrinking to CLIPSeg's 352 and CRIS's 416, and enlarging to a non-square size.
    func testOpenCVCubicMatchesCV2OnARealPhoto() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-cv2-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let sizes = [(352, 352), (416, 416), (700, 530), (97, 131)]
        let script = """
            import sys, cv2, numpy as np
            from skimage import data
            out = sys.argv[1]
            img = np.ascontiguousarray(data.astronaut()[:, :, :3])
            img.tofile(out + '/source.rgb')
            print(img.shape[1], img.shape[0])
            for w, h in [\(sizes.map { "(\($0.0), \($0.1))" }.joined(separator: ", "))]:
                cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC).tofile(out + '/%dx%d.rgb' % (w, h))
            """
        let header = try PythonReference.run(script, arguments: [dir.path]).split(separator: " ").compactMap {
            Int($0.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        XCTAssertEqual(header.count, 2)
        let source = RGBImage(
            width: header[0], height: header[1],
            pixels: [UInt8](try Data(contentsOf: dir.appendingPathComponent("source.rgb"))))
        var worst = 0
        for (w, h) in sizes {
            let reference = [UInt8](try Data(contentsOf: dir.appendingPathComponent("\(w)x\(h).rgb")))
            let ours = source.resizedOpenCVCubic(width: w, height: h).pixels
            XCTAssertEqual(ours.count, reference.count)
            let diff = zip(ours, reference).map { abs(Int($0) - Int($1)) }.max() ?? 0
            let differing = zip(ours, reference).filter { $0 != $1 }.count
            print(
                "cv2 INTER_CUBIC \(header[0])x\(header[1]) -> \(w)x\(h): max difference \(diff) grey level(s), \(differing) of \(ours.count) values differ"
            )
            worst = max(worst, diff)
        }
        XCTAssertLessThanOrEqual(worst, 1, "within one grey level of cv2.resize")
        // And it is not PIL's bicubic: the two differ on this photo.
        XCTAssertNotEqual(
            source.resizedOpenCVCubic(width: 352, height: 352).pixels,
            source.resized(width: 352, height: 352, filter: .bicubic).pixels)
    }
}
