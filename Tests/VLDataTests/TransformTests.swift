import Foundation
import VLTensor
import XCTest

@testable import VLData

final class TransformTests: XCTestCase {
    /// The test pattern also used to produce the Pillow reference values below.
    static func pattern(width: Int, height: Int) -> RGBImage {
        var px = [UInt8]()
        for y in 0..<height {
            for x in 0..<width {
                px.append(UInt8((x * 37 + y * 91 + x * y * 7) % 256))
                px.append(UInt8((x * 11 + y * 29 + 53 + x * x * 3) % 256))
                px.append(UInt8((x * 71 + y * 13 + 106 + y * y * 5) % 256))
            }
        }
        return RGBImage(width: width, height: height, pixels: px)
    }

    /// Pillow 13.0 `Image.resize((W, H), Image.BILINEAR)` of `pattern(7, 5)` (and of `pattern(64, 48)`
    /// to 9x7), recorded once with Pillow; the values are Pillow's, not this code's.
    static let pillowBilinear: [(w: Int, h: Int, bytes: [UInt8])] = [
        (3, 2, [105, 95, 146, 125, 144, 117, 133, 152, 141, 124, 153, 120, 139, 173, 125, 151, 89, 114]),
        (
            11, 9,
            [
                0, 53, 106, 17, 59, 138, 40, 69, 183, 64, 82, 229, 87, 96, 181, 111, 113, 63, 135, 133, 108, 158, 155,
                153, 182, 180, 199, 205, 207, 104, 222, 227, 20, 30, 63, 112, 48, 69, 144, 73, 79, 181, 98, 92, 173,
                123, 106, 133, 148, 123, 69, 119, 143, 114, 113, 165, 159, 138, 190, 205, 163, 170, 110, 181, 151, 26,
                81, 79, 122, 101, 85, 154, 128, 95, 179, 156, 108, 79, 183, 122, 52, 211, 139, 79, 93, 159, 124, 38,
                181, 169, 66, 206, 215, 93, 108, 120, 113, 25, 36, 131, 95, 136, 153, 101, 168, 172, 111, 190, 130, 124,
                72, 129, 138, 48, 159, 155, 93, 98, 175, 138, 77, 197, 183, 107, 222, 229, 137, 109, 134, 158, 13, 50,
                182, 111, 152, 205, 117, 184, 214, 127, 206, 84, 140, 88, 47, 154, 64, 79, 171, 109, 111, 191, 154, 144,
                213, 199, 176, 238, 245, 209, 125, 150, 232, 29, 66, 90, 127, 173, 115, 133, 141, 140, 143, 98, 102,
                156, 71, 106, 170, 85, 141, 187, 130, 176, 207, 175, 172, 191, 182, 117, 125, 137, 139, 77, 107, 164,
                45, 87, 27, 143, 195, 54, 149, 111, 91, 159, 16, 128, 172, 62, 156, 186, 107, 175, 203, 152, 212, 205,
                179, 188, 155, 153, 80, 35, 53, 97, 41, 77, 124, 61, 109, 78, 159, 222, 106, 165, 138, 146, 175, 43,
                186, 188, 89, 164, 202, 134, 95, 219, 179, 135, 131, 115, 152, 68, 75, 137, 38, 67, 169, 57, 104, 198,
                77, 136, 108, 169, 238, 138, 175, 154, 179, 185, 59, 220, 198, 105, 169, 212, 150, 47, 229, 195, 88, 86,
                77, 130, 15, 29, 171, 40, 75, 212, 67, 120, 242, 87, 152,
            ]
        ),
        (
            4, 9,
            [
                19, 61, 143, 77, 90, 182, 145, 144, 128, 203, 204, 105, 51, 71, 145, 112, 100, 144, 123, 154, 134, 161,
                169, 111, 103, 87, 148, 171, 116, 80, 86, 170, 144, 90, 111, 121, 151, 103, 161, 139, 132, 79, 100, 186,
                158, 133, 112, 135, 197, 119, 177, 83, 148, 95, 126, 202, 174, 205, 128, 151, 114, 135, 137, 114, 164,
                88, 163, 189, 167, 142, 83, 111, 58, 151, 110, 142, 180, 87, 183, 167, 152, 104, 49, 83, 110, 167, 137,
                161, 196, 114, 136, 110, 104, 169, 58, 103, 142, 177, 153, 172, 206, 130, 107, 75, 76, 208, 64, 115,
            ]
        ),
        (
            7, 3,
            [
                39, 65, 114, 79, 79, 185, 119, 99, 146, 159, 125, 71, 89, 157, 142, 129, 195, 213, 169, 130, 28, 125,
                111, 154, 176, 125, 168, 85, 145, 40, 136, 171, 111, 130, 203, 182, 124, 184, 196, 175, 29, 68, 69, 157,
                217, 131, 171, 32, 193, 191, 103, 109, 217, 174, 171, 102, 99, 123, 31, 60, 185, 75, 131,
            ]
        ),
        (
            5, 5,
            [
                12, 58, 130, 58, 78, 216, 111, 114, 110, 164, 162, 166, 210, 212, 82, 106, 87, 148, 159, 107, 92, 176,
                143, 81, 31, 191, 184, 84, 71, 100, 199, 116, 176, 119, 136, 120, 79, 172, 109, 153, 220, 212, 215, 100,
                128, 36, 145, 128, 107, 165, 44, 191, 201, 147, 161, 135, 136, 90, 43, 80, 130, 174, 176, 209, 194, 92,
                94, 184, 148, 141, 22, 42, 220, 72, 128,
            ]
        ),
    ]
    static let pillowBig9x7: [UInt8] = [
        128, 127, 130, 129, 128, 130, 131, 125, 126, 129, 129, 130, 124, 125, 124, 125, 120, 127, 129, 123, 128, 131,
        130, 126, 132, 129, 129, 126, 125, 127, 129, 128, 127, 127, 124, 128, 122, 127, 129, 128, 128, 128, 122, 130,
        133, 128, 122, 129, 131, 125, 128, 121, 127, 131, 120, 122, 127, 123, 124, 125, 124, 126, 129, 120, 129, 127,
        129, 130, 131, 129, 132, 125, 128, 127, 129, 134, 128, 130, 127, 125, 121, 126, 127, 128, 125, 125, 129, 128,
        129, 129, 135, 130, 128, 128, 131, 126, 128, 127, 128, 135, 129, 126, 132, 128, 125, 131, 126, 123, 134, 129,
        129, 140, 126, 129, 140, 127, 125, 173, 128, 129, 131, 129, 126, 123, 123, 126, 123, 125, 130, 132, 130, 122,
        137, 130, 129, 130, 131, 131, 130, 126, 127, 131, 129, 131, 139, 125, 128, 125, 125, 130, 128, 128, 129, 132,
        130, 124, 124, 128, 129, 133, 130, 125, 136, 127, 126, 129, 130, 127, 128, 130, 131, 133, 125, 126, 122, 123,
        127, 128, 137, 127, 133, 137, 123, 129, 124, 130, 129, 127, 132,
    ]

    /// Pillow 13.0 `Image.resize(size, Image.NEAREST)` of a 7x5 mode-"L" image.
    static let nearestInput: [UInt8] = [
        0, 120, 240, 80, 200, 40, 160, 200, 40, 160, 0, 120, 240, 80, 120, 240, 80, 200, 40, 160, 0, 40, 160, 0, 120,
        240, 80, 200, 240, 80, 200, 40, 160, 0, 120,
    ]
    static let pillowNearest: [(w: Int, h: Int, bytes: [UInt8])] = [
        (3, 4, [120, 80, 40, 40, 0, 240, 160, 120, 80, 80, 40, 0]),
        (
            10, 11,
            [
                0, 120, 120, 240, 80, 80, 200, 40, 40, 160, 0, 120, 120, 240, 80, 80, 200, 40, 40, 160, 200, 40, 40,
                160, 0, 0, 120, 240, 240, 80, 200, 40, 40, 160, 0, 0, 120, 240, 240, 80, 120, 240, 240, 80, 200, 200,
                40, 160, 160, 0, 120, 240, 240, 80, 200, 200, 40, 160, 160, 0, 120, 240, 240, 80, 200, 200, 40, 160,
                160, 0, 40, 160, 160, 0, 120, 120, 240, 80, 80, 200, 40, 160, 160, 0, 120, 120, 240, 80, 80, 200, 240,
                80, 80, 200, 40, 40, 160, 0, 0, 120, 240, 80, 80, 200, 40, 40, 160, 0, 0, 120,
            ]
        ),
        (7, 2, [200, 40, 160, 0, 120, 240, 80, 40, 160, 0, 120, 240, 80, 200]),
    ]

    // MARK: - Independent reference of PIL's bilinear (Double arithmetic)

    /// Pillow's Resample.c written out again in plain Double: triangle filter of support
    /// max(1, in/out), normalised weights, horizontal pass then vertical, each pass rounded to 8 bits.
    static func referenceResize(_ img: RGBImage, width outW: Int, height outH: Int) -> RGBImage {
        func weights(_ inSize: Int, _ outSize: Int) -> [(start: Int, w: [Double])] {
            let scale = Double(inSize) / Double(outSize)
            let fs = max(scale, 1)
            return (0..<outSize).map { xx in
                let center = (Double(xx) + 0.5) * scale
                let lo = max(0, Int(center - fs + 0.5)), hi = min(inSize, Int(center + fs + 0.5))
                var w = (lo..<hi).map { x in max(0, 1 - abs((Double(x) - center + 0.5) / fs)) }
                let sum = w.reduce(0, +)
                w = w.map { $0 / sum }
                return (lo, w)
            }
        }
        func round8(_ v: Double) -> UInt8 { UInt8(min(max((v + 0.5).rounded(.down), 0), 255)) }
        var cur = img
        if outW != img.width {
            let ws = weights(img.width, outW)
            var px = [UInt8](repeating: 0, count: outW * cur.height * 3)
            for y in 0..<cur.height {
                for x in 0..<outW {
                    for c in 0..<3 {
                        var s = 0.0
                        for (k, w) in ws[x].w.enumerated() {
                            s += w * Double(cur.pixels[3 * (y * cur.width + ws[x].start + k) + c])
                        }
                        px[3 * (y * outW + x) + c] = round8(s)
                    }
                }
            }
            cur = RGBImage(width: outW, height: cur.height, pixels: px)
        }
        if outH != img.height {
            let ws = weights(img.height, outH)
            var px = [UInt8](repeating: 0, count: outW * outH * 3)
            for y in 0..<outH {
                for x in 0..<outW {
                    for c in 0..<3 {
                        var s = 0.0
                        for (k, w) in ws[y].w.enumerated() {
                            s += w * Double(cur.pixels[3 * ((ws[y].start + k) * outW + x) + c])
                        }
                        px[3 * (y * outW + x) + c] = round8(s)
                    }
                }
            }
            cur = RGBImage(width: outW, height: outH, pixels: px)
        }
        return cur
    }

    // MARK: - Resize

    func testBilinearMatchesPillowExactly() {
        let img = Self.pattern(width: 7, height: 5)
        for (w, h, bytes) in Self.pillowBilinear {
            XCTAssertEqual(img.resized(width: w, height: h).pixels, bytes, "7x5 -> \(w)x\(h)")
        }
        XCTAssertEqual(Self.pattern(width: 64, height: 48).resized(width: 9, height: 7).pixels, Self.pillowBig9x7)
    }

    func testBilinearMatchesIndependentDoubleReference() {
        // Shrink (antialiased), enlarge, mixed, and a large odd factor.
        let cases: [(Int, Int, Int, Int)] = [
            (7, 5, 3, 2), (7, 5, 11, 9), (7, 5, 4, 9), (64, 48, 9, 7),
            (600, 500, 352, 352), (33, 17, 100, 5), (13, 29, 13, 10),
        ]
        for (iw, ih, ow, oh) in cases {
            let img = Self.pattern(width: iw, height: ih)
            let got = img.resized(width: ow, height: oh)
            let ref = Self.referenceResize(img, width: ow, height: oh)
            var maxDiff = 0
            for i in 0..<got.pixels.count { maxDiff = max(maxDiff, abs(Int(got.pixels[i]) - Int(ref.pixels[i]))) }
            // Fixed point vs Double can differ by one level where a value sits on a rounding edge.
            XCTAssertLessThanOrEqual(maxDiff, 1, "\(iw)x\(ih) -> \(ow)x\(oh)")
        }
    }

    func testBilinearShrinkAveragesEveryPixel() {
        // A 1-pixel checkerboard halved must become gray (antialiasing), not a sampled checkerboard:
        // exactly mid-gray inside, where the stretched triangle covers four pixels symmetrically, and
        // close to it on the border, where Pillow's window is clipped.
        var px = [UInt8]()
        for y in 0..<8 { for x in 0..<8 { let v: UInt8 = (x + y) % 2 == 0 ? 255 : 0; px += [v, v, v] } }
        let out = RGBImage(width: 8, height: 8, pixels: px).resized(width: 4, height: 4)
        for y in 0..<4 {
            for x in 0..<4 {
                let v = Int(out.pixels[3 * (y * 4 + x)])
                let interior = (1...2).contains(x) && (1...2).contains(y)
                XCTAssertEqual(v, 128, accuracy: interior ? 1 : 6, "(\(x), \(y))")
            }
        }
        // Same size is the identity.
        let img = Self.pattern(width: 5, height: 4)
        XCTAssertEqual(img.resized(width: 5, height: 4), img)
    }

    func testNearestMatchesPillow() {
        let mask = BinaryMask(width: 7, height: 5, values: Self.nearestInput.map { $0 > 127 ? 1 : 0 })
        for (w, h, bytes) in Self.pillowNearest {
            XCTAssertEqual(mask.resizedNearest(width: w, height: h).values, bytes.map { $0 > 127 ? 1 : 0 }, "\(w)x\(h)")
        }
        XCTAssertEqual(pilNearestIndices(inSize: 4, outSize: 8), [0, 0, 1, 1, 2, 2, 3, 3])
        XCTAssertEqual(pilNearestIndices(inSize: 9, outSize: 3), [1, 4, 7])
    }

    // MARK: - Normalisation

    func testNormalizeImageNetAndCLIP() {
        let img = RGBImage(width: 2, height: 1, pixels: [0, 128, 255, 10, 20, 30])
        let t = img.normalizedTensor(.imageNet)
        XCTAssertEqual(t.shape, [3, 1, 2])
        let v = t.scalars
        let mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225]
        // CHW: channel planes of two pixels each.
        let expected: [Float] = [
            (0 - mean[0]) / std[0], (10 / 255 - mean[0]) / std[0],
            (128 / 255 - mean[1]) / std[1], (20 / 255 - mean[1]) / std[1],
            (1 - mean[2]) / std[2], (30 / 255 - mean[2]) / std[2],
        ]
        for i in 0..<6 { XCTAssertEqual(v[i], expected[i], accuracy: 1e-6) }
        XCTAssertEqual(v[0], -2.1179039, accuracy: 1e-5)
        XCTAssertEqual(v[4], 2.64, accuracy: 1e-5)

        let c = img.normalizedTensor(.clip).scalars
        XCTAssertEqual(c[0], -0.48145466 / 0.26862954, accuracy: 1e-5)
        XCTAssertEqual(c[4], (1 - 0.40821073) / 0.27577711, accuracy: 1e-5)
    }

    func testNormalizationDecoding() throws {
        let n = try JSONDecoder().decode(
            Normalization.self, from: Data(#"{"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.5, 1]}"#.utf8))
        XCTAssertEqual(n.std, [0.25, 0.5, 1])
        XCTAssertThrowsError(
            try JSONDecoder().decode(Normalization.self, from: Data(#"{"mean": [0.5], "std": [1, 1, 1]}"#.utf8)))
        XCTAssertThrowsError(
            try JSONDecoder().decode(Normalization.self, from: Data(#"{"mean": [0, 0, 0], "std": [1, 0, 1]}"#.utf8)))
        XCTAssertEqual(
            try JSONDecoder().decode(Normalization.self, from: JSONEncoder().encode(Normalization.clip)), .clip)
    }

    func testNormalizeIntoBatchSlot() {
        let a = Self.pattern(width: 4, height: 3), b = Self.pattern(width: 4, height: 3).flippedHorizontally()
        let batch = Tensor(zeros: [2, 3, 3, 4])
        batch.withUnsafeMutablePointer { p in
            a.normalize(.imageNet, into: p)
            b.normalize(.imageNet, into: p + 36)
        }
        XCTAssertEqual(Array(batch.scalars[0..<36]), a.normalizedTensor(.imageNet).scalars)
        XCTAssertEqual(Array(batch.scalars[36..<72]), b.normalizedTensor(.imageNet).scalars)

        let mask = BinaryMask(width: 3, height: 1, values: [0, 1, 1])
        var floats = [Float](repeating: -1, count: 3)
        floats.withUnsafeMutableBufferPointer { mask.writeFloats(into: $0.baseAddress!) }
        XCTAssertEqual(floats, [0, 1, 1])
    }

    // MARK: - Augmentation

    /// A sample whose image encodes its mask (white blob on dark gray), so geometric consistency
    /// between the two can be checked pixel by pixel.
    static func blobSample(width: Int = 40, height: Int = 30) -> (RGBImage, BinaryMask) {
        var px = [UInt8](), m = [UInt8]()
        for y in 0..<height {
            for x in 0..<width {
                let dx = Double(x) - 12, dy = Double(y) - 10
                let inside = dx * dx / 49 + dy * dy / 25 <= 1
                let v: UInt8 = inside ? 230 : 30
                px += [v, UInt8((x * 5) % 64), UInt8((y * 7) % 64)]
                m.append(inside ? 1 : 0)
            }
        }
        return (RGBImage(width: width, height: height, pixels: px), BinaryMask(width: width, height: height, values: m))
    }

    static let everything = AugmentationConfig(
        affine: .init(p: 1, degrees: 25, translate: 0.1, scale: [0.8, 1.2], shear: 10),
        foregroundCrop: .init(p: 1, minScale: 0.6),
        brightness: .init(p: 1, limit: 0.2), contrast: .init(p: 1, limit: 0.3),
        horizontalFlip: 0.5, verticalFlip: 0.5)

    func testAugmentationIsDeterministicPerKey() {
        let (img, mask) = Self.blobSample()
        func run(_ index: UInt64, epoch: UInt64 = 0) -> (RGBImage, BinaryMask) {
            var rng = CounterRandom(seed: 7, epoch: epoch, index: index, purpose: .augmentation)
            return augment(image: img, mask: mask, config: Self.everything, rng: &rng)
        }
        let a = run(3), b = run(3)
        XCTAssertEqual(a.0, b.0); XCTAssertEqual(a.1, b.1)
        let c = run(4), d = run(3, epoch: 1)
        XCTAssertNotEqual(a.0, c.0)
        XCTAssertNotEqual(a.0, d.0)
    }

    func testDefaultConfigIsIdentity() {
        let (img, mask) = Self.blobSample()
        XCTAssertTrue(AugmentationConfig().isIdentity)
        XCTAssertFalse(AugmentationConfig.tuneVLSeg.isIdentity)
        var rng = CounterRandom(seed: 1, purpose: .augmentation)
        let (i2, m2) = augment(image: img, mask: mask, config: .none, rng: &rng)
        XCTAssertEqual(i2, img); XCTAssertEqual(m2, mask)
    }

    func testFlipMovesMaskWithImage() {
        let (img, mask) = Self.blobSample()
        var rng = CounterRandom(seed: 1, index: 0, purpose: .augmentation)
        let (i2, m2) = augment(image: img, mask: mask, config: AugmentationConfig(horizontalFlip: 1), rng: &rng)
        XCTAssertEqual(i2, img.flippedHorizontally())
        XCTAssertEqual(m2, mask.flippedHorizontally())
        XCTAssertEqual(m2.values[10 * 40 + (39 - 12)], 1)  // blob centre moved to the mirrored column
        XCTAssertEqual(m2.values[10 * 40 + 12], 0)
        var rng2 = CounterRandom(seed: 1, index: 0, purpose: .augmentation)
        let (i3, m3) = augment(image: img, mask: mask, config: AugmentationConfig(verticalFlip: 1), rng: &rng2)
        XCTAssertEqual(i3, img.flippedVertically()); XCTAssertEqual(m3, mask.flippedVertically())
    }

    func testGeometricAugmentationsKeepImageAndMaskAligned() {
        let (img, mask) = Self.blobSample()
        let geometric = AugmentationConfig(
            affine: .init(p: 1, degrees: 30, translate: 0.1, scale: [0.8, 1.25], shear: 8),
            foregroundCrop: .init(p: 1, minScale: 0.5), horizontalFlip: 0.5, verticalFlip: 0.5)
        for index in 0..<20 {
            var rng = CounterRandom(seed: 11, index: UInt64(index), purpose: .augmentation)
            let (i2, m2) = augment(image: img, mask: mask, config: geometric, rng: &rng)
            XCTAssertEqual(i2.width, 40); XCTAssertEqual(m2.height, 30)
            XCTAssertGreaterThan(m2.foregroundRatio, 0, "foreground kept (key \(index))")
            // The red channel encodes the mask; they may disagree only along the blob's edge.
            var disagree = 0
            for p in 0..<(40 * 30) where (i2.pixels[3 * p] > 130) != (m2.values[p] == 1) { disagree += 1 }
            let fg = m2.values.reduce(0) { $0 + Int($1) }
            XCTAssertLessThan(Double(disagree), 0.35 * Double(fg) + 4, "key \(index): \(disagree) of \(fg)")
        }
    }

    func testForegroundCropContainsTheForeground() {
        let (img, mask) = Self.blobSample(width: 60, height: 50)
        let crop = AugmentationConfig(foregroundCrop: .init(p: 1, minScale: 0.3))
        var zoomed = 0
        for index in 0..<30 {
            var rng = CounterRandom(seed: 5, index: UInt64(index), purpose: .augmentation)
            let (_, m2) = augment(image: img, mask: mask, config: crop, rng: &rng)
            // The whole blob survives the crop, so it can only grow when resized back up.
            XCTAssertGreaterThanOrEqual(m2.foregroundRatio, mask.foregroundRatio * 0.95, "key \(index)")
            if m2.foregroundRatio > mask.foregroundRatio * 1.1 { zoomed += 1 }
        }
        XCTAssertGreaterThan(zoomed, 10)
    }

    func testBrightnessAndContrast() {
        let img = RGBImage(width: 2, height: 1, pixels: [100, 100, 100, 200, 200, 200])
        XCTAssertEqual(img.adjustingBrightness(0.1).pixels, [126, 126, 126, 226, 226, 226])
        XCTAssertEqual(img.adjustingBrightness(-0.5).pixels, [0, 0, 0, 73, 73, 73])
        // Mean luma 150: factor 2 doubles distances from it.
        XCTAssertEqual(img.adjustingContrast(2).pixels, [50, 50, 50, 250, 250, 250])
        XCTAssertEqual(img.adjustingContrast(1), img)
    }

    func testAffineIdentityParametersChangeNothing() {
        let (img, mask) = Self.blobSample()
        let m = AffineSampler(width: 40, height: 30, degrees: 0, translate: (0, 0), scale: 1, shearDegrees: 0)
        XCTAssertEqual(img.warped(m, border: .replicate), img)
        XCTAssertEqual(mask.warped(m, border: .constant), mask)
        // A whole-pixel translation shifts exactly.
        let shift = AffineSampler(width: 40, height: 30, degrees: 0, translate: (3, 2), scale: 1, shearDegrees: 0)
        let moved = mask.warped(shift, border: .constant)
        XCTAssertEqual(moved.values[(10 + 2) * 40 + 12 + 3], 1)
        XCTAssertEqual(moved.values.reduce(0) { $0 + Int($1) }, mask.values.reduce(0) { $0 + Int($1) })
        XCTAssertEqual(img.warped(shift, border: .constant).pixels[3 * ((10 + 2) * 40 + 15)], 230)
    }

    // MARK: - Configuration

    func testConfigDecodingDefaultsAndErrors() throws {
        let json = #"{"affine": {"p": 0.2, "degrees": 5, "scale": [0.9, 1.1]}, "horizontal_flip": 0.5}"#
        let c = try JSONDecoder().decode(AugmentationConfig.self, from: Data(json.utf8))
        XCTAssertEqual(c.affine.p, 0.2); XCTAssertEqual(c.affine.degrees, 5);
        XCTAssertEqual(c.affine.scale, [0.9, 1.1])
        XCTAssertEqual(c.affine.translate, 0); XCTAssertEqual(c.affine.border, .replicate)
        XCTAssertEqual(c.horizontalFlip, 0.5); XCTAssertEqual(c.contrast, .init())
        XCTAssertEqual(try JSONDecoder().decode(AugmentationConfig.self, from: Data("{}".utf8)), .none)

        // Round trip through the encoder.
        let again = try JSONDecoder().decode(
            AugmentationConfig.self, from: JSONEncoder().encode(AugmentationConfig.tuneVLSeg))
        XCTAssertEqual(again, .tuneVLSeg)

        func error(_ text: String) -> String {
            do { _ = try JSONDecoder().decode(AugmentationConfig.self, from: Data(text.utf8)); return "no error" } catch
            {
                return "\(error)"
            }
        }
        XCTAssertTrue(error(#"{"afine": {}}"#).contains("unknown key 'afine'"))
        XCTAssertTrue(error(#"{"affine": {"prob": 1}}"#).contains("unknown key 'prob'"))
        XCTAssertTrue(error(#"{"brightness": {"p": 1.5}}"#).contains("probability"))
        XCTAssertTrue(error(#"{"affine": {"scale": [1.2, 0.8]}}"#).contains("scale"))
        XCTAssertTrue(error(#"{"foreground_crop": {"min_scale": 0}}"#).contains("min_scale"))
    }

    func testTuneVLSegPreset() {
        let t = AugmentationConfig.tuneVLSeg
        XCTAssertEqual(t.affine.p, 0.2); XCTAssertEqual(t.affine.degrees, 5); XCTAssertEqual(t.affine.translate, 0.02)
        XCTAssertEqual(t.affine.scale, [0.98, 1.02]); XCTAssertEqual(t.affine.border, .replicate)
        // Brightness and contrast as albumentations draws them: together, one p.
        XCTAssertEqual(t.brightness, .init()); XCTAssertEqual(t.contrast, .init())
        XCTAssertEqual(t.brightnessContrast, .init(p: 0.2, brightnessLimit: 0.1, contrastLimit: 0.1))
        XCTAssertEqual(t.horizontalFlip, 0); XCTAssertEqual(t.foregroundCrop.p, 0)
        // About a fifth of samples get an affine.
        let (img, mask) = Self.blobSample()
        var changed = 0
        for i in 0..<200 {
            var rng = CounterRandom(seed: 2, index: UInt64(i), purpose: .augmentation)
            if augment(image: img, mask: mask, config: AugmentationConfig(affine: t.affine), rng: &rng).1 != mask {
                changed += 1
            }
        }
        XCTAssertGreaterThan(changed, 20); XCTAssertLessThan(changed, 65)
    }
}
