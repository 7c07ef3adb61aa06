import Foundation
import VLTensor
import VLTestSupport
import XCTest

@testable import VLData

/// The affine's `keep_ratio` and `interpolation` keys, as TuneVLSeg's albumentations `Affine` uses them
/// (x and y scales drawn independently; INTER_CUBIC image, nearest mask).
final class AffineOptionsTests: XCTestCase {
    /// A smooth image with a soft disc, where cubic interpolation is well defined.
    static func smooth(width w: Int, height h: Int) -> RGBImage {
        var px = [UInt8]()
        for y in 0..<h {
            for x in 0..<w {
                let dx = Double(x) - Double(w) * 0.4, dy = Double(y) - Double(h) * 0.55
                let disc = 120 * exp(-(dx * dx + dy * dy) / 60)
                px.append(UInt8(min(255, 40 + 3 * Double(x) + disc)))
                px.append(UInt8(min(255, 20 + 4 * Double(y) + disc / 2)))
                px.append(UInt8(min(255, 128 + 60 * sin(Double(x + y) / 6))))
            }
        }
        return RGBImage(width: w, height: h, pixels: px)
    }

    /// The bicubic warp against OpenCV's `warpAffine(INTER_CUBIC, BORDER_REPLICATE)` with the same
    /// inverse map, on an anisotropic, rotated, shifted transform. OpenCV quantises source positions to
    /// 1/32 pixel and its weights to 15 bits, so a few levels of difference remain on steep slopes.
    func testBicubicWarpMatchesOpenCV() throws {
        let w = 48, h = 40
        let image = Self.smooth(width: w, height: h)
        let m = AffineSampler(
            width: w, height: h, degrees: 4.5, translate: (0.8, -0.6), scale: 1.02, scaleY: 0.981, shearDegrees: 0)
        XCTAssertEqual(m.scaleX, 1.02); XCTAssertEqual(m.scaleY, 0.981)
        let ours = image.warped(m, border: .replicate, interpolation: .bicubic)
        // Index coordinates: source = A * (x + 0.5 - c - t) + c - 0.5.
        let bx = -m.a11 * (m.cx + m.tx - 0.5) - m.a12 * (m.cy + m.ty - 0.5) + m.cx - 0.5
        let by = -m.a21 * (m.cx + m.tx - 0.5) - m.a22 * (m.cy + m.ty - 0.5) + m.cy - 0.5
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-affine-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data(image.pixels).write(to: dir.appendingPathComponent("in.raw"))
        let script = """
            import sys, numpy as np, cv2
            d, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
            img = np.fromfile(d + "/in.raw", dtype=np.uint8).reshape(h, w, 3)
            M = np.array([float(v) for v in sys.argv[4:10]]).reshape(2, 3)
            out = cv2.warpAffine(img, M, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_REPLICATE)
            out.tofile(d + "/out.raw")
            """
        _ = try PythonReference.run(
            script, arguments: [dir.path, "\(w)", "\(h)"] + [m.a11, m.a12, bx, m.a21, m.a22, by].map { "\($0)" })
        let reference = try [UInt8](Data(contentsOf: dir.appendingPathComponent("out.raw")))
        XCTAssertEqual(reference.count, ours.pixels.count)
        let diffs = zip(ours.pixels, reference).map { abs(Int($0) - Int($1)) }
        let worst = diffs.max() ?? 255
        let mean = Double(diffs.reduce(0, +)) / Double(max(diffs.count, 1))
        print("bicubic affine vs cv2.warpAffine: max |diff| \(worst), mean \(mean) levels")
        XCTAssertLessThanOrEqual(worst, 2)
        XCTAssertLessThan(mean, 0.3)
        // And it is not the bilinear warp.
        XCTAssertNotEqual(ours, image.warped(m, border: .replicate, interpolation: .bilinear))
    }

    /// An anisotropic scale maps each axis by its own factor about the centre.
    func testScalesActPerAxis() {
        let m = AffineSampler(
            width: 40, height: 30, degrees: 0, translate: (0, 0), scale: 2, scaleY: 0.5, shearDegrees: 0)
        // Output pixel centre (20 + 4.5, 15 + 2.5) is 4 px right and 2 px down of the centre (20, 15).
        let (u, v) = m.source(24, 17)
        XCTAssertEqual(u, 20 + 4.5 / 2, accuracy: 1e-12)
        XCTAssertEqual(v, 15 + 2.5 / 0.5, accuracy: 1e-12)
    }

    /// keep_ratio false draws the y scale on its own; true (the default) keeps one scale, and the
    /// default's draws and results are what they were (the extra draw exists only when asked for).
    func testKeepRatioDrawsAndTheDefaultIsUnchanged() {
        let image = Self.smooth(width: 24, height: 20)
        let mask = BinaryMask(width: 24, height: 20, values: (0..<480).map { UInt8(($0 / 7) % 2) })
        let free = AugmentationConfig(affine: .init(p: 1, degrees: 3, scale: [0.8, 1.2], keepRatio: false))
        let tied = AugmentationConfig(affine: .init(p: 1, degrees: 3, scale: [0.8, 1.2]))
        var differ = 0
        for i in 0..<20 {
            var a = CounterRandom(seed: 1, index: UInt64(i), purpose: .augmentation)
            var b = CounterRandom(seed: 1, index: UInt64(i), purpose: .augmentation)
            let outFree = augment(image: image, mask: mask, config: free, rng: &a)
            let outTied = augment(image: image, mask: mask, config: tied, rng: &b)
            if outFree.1 != outTied.1 { differ += 1 }
            // The tied draw is the isotropic sampler of the same first five values.
            var c = CounterRandom(seed: 1, index: UInt64(i), purpose: .augmentation)
            _ = c.bernoulli(0)
            _ = c.uniform(0.7, 1)
            _ = c.unit(); _ = c.unit()
            _ = c.bernoulli(1)
            let angle = c.uniform(-3, 3), tx = c.uniform(0, 0) * 24, ty = c.uniform(0, 0) * 20
            let s = c.uniform(0.8, 1.2), sh = c.uniform(0, 0)
            let m = AffineSampler(
                width: 24, height: 20, degrees: angle, translate: (tx, ty), scale: s, shearDegrees: sh)
            XCTAssertEqual(outTied.1, mask.warped(m, border: .replicate), "sample \(i)")
        }
        XCTAssertGreaterThan(differ, 10, "independent y scales change the mask")
    }

    func testKeysDecodeAndBadValuesAreNamed() throws {
        let json = #"{"affine": {"p": 0.2, "keep_ratio": false, "interpolation": "bicubic"}}"#
        let c = try JSONDecoder().decode(AugmentationConfig.self, from: Data(json.utf8))
        XCTAssertFalse(c.affine.keepRatio)
        XCTAssertEqual(c.affine.interpolation, .bicubic)
        let d = AugmentationConfig.Affine()
        XCTAssertTrue(d.keepRatio)
        XCTAssertEqual(d.interpolation, .bilinear, "defaults unchanged")
        do {
            _ = try JSONDecoder().decode(
                AugmentationConfig.self, from: Data(#"{"affine": {"interpolation": "nearest"}}"#.utf8))
            XCTFail("nearest accepted")
        } catch {
            XCTAssertTrue(
                "\(error)".contains("interpolation must be one of bilinear, bicubic, found 'nearest'"), "\(error)")
        }
        let t = AugmentationConfig.tuneVLSeg.affine
        XCTAssertFalse(t.keepRatio)
        XCTAssertEqual(t.interpolation, .bicubic)
    }
}
