import Foundation
import VLTensor
import VLTestSupport
import XCTest

@testable import VLData

/// `brightness_contrast`: albumentations 1.x `RandomBrightnessContrast` (one p for both; v -> alpha * v +
/// beta * 255, clipped and truncated) against numpy's lookup table, its keys, and the preset using it.
final class BrightnessContrastTests: XCTestCase {
    /// Every 8-bit value once per channel.
    static let ramp = RGBImage(width: 256, height: 1, pixels: (0..<256).flatMap { [UInt8($0), UInt8($0), UInt8($0)] })

    /// The table as albumentations' `_brightness_contrast_adjust_uint` computes it (float32 arange times
    /// alpha, plus beta * 255, clipped, astype uint8), written from its formula with numpy.
    func testTheTableMatchesNumpyBitForBit() throws {
        let cases: [(Double, Double)] = [
            (1.0, 0.0), (1.1, 0.0), (0.9, 0.0), (1.0, 0.1), (1.0, -0.1), (1.07317, -0.0431), (0.93, 0.0999),
            (1.5, 0.3), (0.5, -0.4),
        ]
        let script = """
            import sys, json, numpy as np
            out = []
            for alpha, beta in json.loads(sys.argv[1]):
                lut = np.arange(0, 256).astype("float32")
                if alpha != 1:
                    lut *= alpha
                if beta != 0:
                    lut += beta * 255
                out.append(np.clip(lut, 0, 255).astype(np.uint8).tolist())
            print(json.dumps(out))
            """
        let arg = "[" + cases.map { "[\($0.0), \($0.1)]" }.joined(separator: ",") + "]"
        let text = try PythonReference.run(script, arguments: [arg])
        let tables = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[Int]])
        XCTAssertEqual(tables.count, cases.count)
        var mismatches = 0
        for ((alpha, beta), table) in zip(cases, tables) {
            let out = Self.ramp.adjustingBrightnessContrast(alpha: alpha, beta: beta)
            let ours = stride(from: 0, to: out.pixels.count, by: 3).map { Int(out.pixels[$0]) }
            mismatches += zip(ours, table).filter { $0 != $1 }.count
            XCTAssertEqual(ours, table, "alpha \(alpha), beta \(beta)")
        }
        print("brightness_contrast vs numpy: \(mismatches) of \(cases.count * 256) table entries differ")
        // Contrast multiplies about 0, not about the mean: a mid-grey image darkens with alpha < 1.
        XCTAssertEqual(Self.ramp.adjustingBrightnessContrast(alpha: 0.9, beta: 0).pixels[3 * 200], 180)
        XCTAssertEqual(Self.ramp.adjustingBrightnessContrast(alpha: 1, beta: 0), Self.ramp)
    }

    /// One p for both: with p = 0.2 about a fifth of samples change (two independent p = 0.2 draws would
    /// change about 36 %), and the ones that change get both alpha and beta.
    func testOneProbabilityForBoth() {
        let config = AugmentationConfig(
            brightnessContrast: .init(p: 0.2, brightnessLimit: 0.1, contrastLimit: 0.1))
        XCTAssertFalse(config.isIdentity)
        let image = TransformTests.pattern(width: 16, height: 12)
        let mask = BinaryMask(width: 16, height: 12, values: [UInt8](repeating: 0, count: 16 * 12))
        var changed = 0
        for i in 0..<400 {
            var rng = CounterRandom(seed: 3, index: UInt64(i), purpose: .augmentation)
            let (out, outMask) = augment(image: image, mask: mask, config: config, rng: &rng)
            XCTAssertEqual(outMask, mask, "photometric only")
            if out != image { changed += 1 }
        }
        print("brightness_contrast p 0.2: \(changed) of 400 samples changed")
        XCTAssertGreaterThan(changed, 50)
        XCTAssertLessThan(changed, 115)
    }

    func testKeysDecodeAndBadValuesAreNamed() throws {
        let json = #"{"brightness_contrast": {"p": 0.2, "brightness_limit": 0.1, "contrast_limit": 0.05}}"#
        let c = try JSONDecoder().decode(AugmentationConfig.self, from: Data(json.utf8))
        XCTAssertEqual(c.brightnessContrast, .init(p: 0.2, brightnessLimit: 0.1, contrastLimit: 0.05))
        XCTAssertEqual(AugmentationConfig().brightnessContrast, .init(), "off by default")
        func error(_ text: String) -> String {
            do {
                _ = try JSONDecoder().decode(AugmentationConfig.self, from: Data(text.utf8))
                return "no error"
            } catch { return "\(error)" }
        }
        XCTAssertTrue(
            error(#"{"brightness_contrast": {"limit": 0.1}}"#).contains(
                "unknown key 'limit' in augmentation.brightness_contrast"))
        XCTAssertTrue(error(#"{"brightness_contrast": {"p": 2}}"#).contains("'p' must be a probability"))
        XCTAssertTrue(
            error(#"{"brightness_contrast": {"brightness_limit": 1.5}}"#).contains("brightness_limit must be in [0, 1)")
        )
        XCTAssertTrue(
            error(#"{"brightness_contrast": {"contrast_limit": -0.1}}"#).contains("contrast_limit must be in [0, 1)"))
    }

    func testTheTuneVLSegPresetUsesIt() {
        let t = AugmentationConfig.tuneVLSeg
        XCTAssertEqual(t.brightnessContrast, .init(p: 0.2, brightnessLimit: 0.1, contrastLimit: 0.1))
        XCTAssertEqual(t.brightness.p, 0)
        XCTAssertEqual(t.contrast.p, 0)
    }
}
