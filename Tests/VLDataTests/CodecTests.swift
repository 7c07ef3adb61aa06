import CJPEG
import Foundation
import XCTest

@testable import VLData

/// Builds PNG files byte by byte (stored deflate blocks, CRC-32, Adler-32), independent of libpng,
/// so the decoder is checked against files whose every sample value is known.
enum HandPNG {
    static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    static func be32(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }

    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        return be32(UInt32(data.count)) + body + be32(crc32(body))
    }

    /// A zlib stream of stored (uncompressed) deflate blocks.
    static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]
        var i = 0
        repeat {
            let n = min(65535, data.count - i)
            let final: UInt8 = i + n == data.count ? 1 : 0
            out += [final, UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            out += data[i..<(i + n)]
            i += n
        } while i < data.count
        var a: UInt32 = 1, b: UInt32 = 0
        for x in data { a = (a + UInt32(x)) % 65521; b = (b + a) % 65521 }
        return out + be32((b << 16) | a)
    }

    /// colorType: 0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA. `samples` holds one value per
    /// channel per pixel (16-bit values for depth 16, indices for palette), packed here.
    static func make(
        width: Int, height: Int, bitDepth: Int, colorType: Int, samples: [Int],
        palette: [(UInt8, UInt8, UInt8)]? = nil, transparency: [UInt8]? = nil,
        extraChunks: [(String, [UInt8])] = []
    ) -> [UInt8] {
        let channels = [0: 1, 2: 3, 3: 1, 4: 2, 6: 4][colorType]!
        precondition(samples.count == width * height * channels)
        var raw: [UInt8] = []
        for y in 0..<height {
            raw.append(0)  // filter: none
            let row = samples[(y * width * channels)..<((y + 1) * width * channels)]
            switch bitDepth {
            case 16:
                for v in row { raw += [UInt8(v >> 8), UInt8(v & 0xFF)] }
            case 8:
                for v in row { raw.append(UInt8(v)) }
            default:  // 1, 2, 4: pack MSB first
                var byte = 0, used = 0
                for v in row {
                    byte = (byte << bitDepth) | v
                    used += bitDepth
                    if used == 8 { raw.append(UInt8(byte)); byte = 0; used = 0 }
                }
                if used > 0 { raw.append(UInt8(byte << (8 - used))) }
            }
        }
        var png = PNGCodec.signature
        png += chunk("IHDR", be32(UInt32(width)) + be32(UInt32(height)) + [UInt8(bitDepth), UInt8(colorType), 0, 0, 0])
        for (type, data) in extraChunks { png += chunk(type, data) }
        if let palette { png += chunk("PLTE", palette.flatMap { [$0.0, $0.1, $0.2] }) }
        if let transparency { png += chunk("tRNS", transparency) }
        png += chunk("IDAT", zlibStored(raw))
        png += chunk("IEND", [])
        return png
    }
}

final class CodecTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-codec-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: tmp)
    }

    func decodeImage(_ bytes: [UInt8]) throws -> RGBImage { try bytes.withUnsafeBytes { try PNGCodec.decodeImage($0) } }
    func decodeMask(_ bytes: [UInt8]) throws -> BinaryMask { try bytes.withUnsafeBytes { try PNGCodec.decodeMask($0) } }

    /// libpng's 16-to-8 scaling (png_set_scale_16): round(v * 255 / 65535).
    func scale16(_ v: Int) -> UInt8 { UInt8((v * 255 + 32767) / 65535) }

    // MARK: - PNG variants

    func testGray8() throws {
        let values = [0, 1, 127, 128, 200, 255]
        let png = HandPNG.make(width: 3, height: 2, bitDepth: 8, colorType: 0, samples: values)
        let img = try decodeImage(png)
        XCTAssertEqual(img.width, 3); XCTAssertEqual(img.height, 2)
        XCTAssertEqual(img.pixels, values.flatMap { [UInt8($0), UInt8($0), UInt8($0)] })
        XCTAssertEqual(try decodeMask(png).values, [0, 0, 0, 1, 1, 1])
    }

    func testGray16ScalesLikeLibpng() throws {
        let values = [0, 257, 32767, 32896, 33000, 65535, 12345, 128, 65280]
        let png = HandPNG.make(width: 3, height: 3, bitDepth: 16, colorType: 0, samples: values)
        let img = try decodeImage(png)
        XCTAssertEqual(img.pixels, values.flatMap { v in [scale16(v), scale16(v), scale16(v)] })
        // 32767 -> 127 (background), 32896 -> 128 (foreground): the threshold is on the scaled value.
        XCTAssertEqual(try decodeMask(png).values, values.map { scale16($0) > 127 ? 1 : 0 })
        XCTAssertEqual(scale16(32767), 127)
        XCTAssertEqual(scale16(32896), 128)
    }

    func testColourManagementChunksDoNotChangeStoredValues() throws {
        // libpng would gamma-correct these (gAMA 1.0 turns 64 into 136); PIL returns stored values, so do we.
        let values = [0, 64, 128, 200, 255]
        for chunks in [
            [("gAMA", HandPNG.be32(100_000))], [("gAMA", HandPNG.be32(50_000)), ("sRGB", [0])],
            [("cHRM", [UInt8](repeating: 1, count: 32)), ("gAMA", HandPNG.be32(45_455))],
        ] {
            let gray = HandPNG.make(
                width: 5, height: 1, bitDepth: 8, colorType: 0, samples: values, extraChunks: chunks)
            XCTAssertEqual(
                try decodeImage(gray).pixels, values.flatMap { [UInt8($0), UInt8($0), UInt8($0)] }, "\(chunks.map(\.0))"
            )
            let deep = HandPNG.make(
                width: 5, height: 1, bitDepth: 16, colorType: 0, samples: values.map { $0 * 257 },
                extraChunks: chunks)
            XCTAssertEqual(try decodeImage(deep).pixels, values.flatMap { [UInt8($0), UInt8($0), UInt8($0)] })
        }
    }

    func testGrayLowBitDepthsExpandToFullRange() throws {
        // 1-bit masks (PIL mode "1") are common: 1 must become 255 and count as foreground.
        let bits = [0, 1, 1, 0, 1, 0, 0, 1, 1]
        let one = HandPNG.make(width: 9, height: 1, bitDepth: 1, colorType: 0, samples: bits)
        XCTAssertEqual(try decodeImage(one).pixels, bits.flatMap { b in Array(repeating: UInt8(b * 255), count: 3) })
        XCTAssertEqual(try decodeMask(one).values, bits.map { UInt8($0) })
        let two = HandPNG.make(width: 4, height: 1, bitDepth: 2, colorType: 0, samples: [0, 1, 2, 3])
        XCTAssertEqual(try decodeImage(two).pixels, [0, 85, 170, 255].flatMap { [UInt8($0), UInt8($0), UInt8($0)] })
        let four = HandPNG.make(width: 3, height: 1, bitDepth: 4, colorType: 0, samples: [0, 7, 15])
        XCTAssertEqual(try decodeImage(four).pixels, [0, 119, 255].flatMap { [UInt8($0), UInt8($0), UInt8($0)] })
    }

    func testGrayAlpha8DropsAlphaWithoutCompositing() throws {
        // (gray, alpha): a transparent bright pixel keeps its gray; the mask reads gray, never alpha.
        let samples = [200, 0, 50, 255, 128, 128, 127, 255]
        let png = HandPNG.make(width: 2, height: 2, bitDepth: 8, colorType: 4, samples: samples)
        XCTAssertEqual(try decodeImage(png).pixels, [200, 200, 200, 50, 50, 50, 128, 128, 128, 127, 127, 127])
        XCTAssertEqual(try decodeMask(png).values, [1, 0, 1, 0])
    }

    func testGrayAlpha16() throws {
        let samples = [65535, 0, 1000, 65535, 40000, 30000, 0, 0]
        let png = HandPNG.make(width: 2, height: 2, bitDepth: 16, colorType: 4, samples: samples)
        let grays = [65535, 1000, 40000, 0].map(scale16)
        XCTAssertEqual(try decodeImage(png).pixels, grays.flatMap { [$0, $0, $0] })
        XCTAssertEqual(try decodeMask(png).values, grays.map { $0 > 127 ? 1 : 0 })
    }

    func testRGB8() throws {
        let samples = [255, 0, 0, 0, 255, 255, 10, 20, 30, 128, 0, 0, 127, 255, 255, 250, 251, 252]
        let png = HandPNG.make(width: 3, height: 2, bitDepth: 8, colorType: 2, samples: samples)
        XCTAssertEqual(try decodeImage(png).pixels, samples.map { UInt8($0) })
        // First channel (red) decides, not luminance: cyan (0,255,255) is background.
        XCTAssertEqual(try decodeMask(png).values, [1, 0, 0, 1, 0, 1])
    }

    func testRGB16() throws {
        let samples = [65535, 0, 32896, 1234, 50000, 65535, 32767, 65535, 0, 257, 514, 771]
        let png = HandPNG.make(width: 2, height: 2, bitDepth: 16, colorType: 2, samples: samples)
        XCTAssertEqual(try decodeImage(png).pixels, samples.map(scale16))
        XCTAssertEqual(try decodeMask(png).values, [1, 0, 0, 0])
    }

    func testRGBA8DropsAlpha() throws {
        let samples = [200, 10, 20, 0, 30, 40, 50, 255, 128, 64, 32, 100, 0, 0, 0, 0]
        let png = HandPNG.make(width: 2, height: 2, bitDepth: 8, colorType: 6, samples: samples)
        XCTAssertEqual(try decodeImage(png).pixels, [200, 10, 20, 30, 40, 50, 128, 64, 32, 0, 0, 0])
        XCTAssertEqual(try decodeMask(png).values, [1, 0, 1, 0])
    }

    func testRGBA16() throws {
        let samples = [65535, 100, 200, 0, 300, 65535, 400, 65535]
        let png = HandPNG.make(width: 2, height: 1, bitDepth: 16, colorType: 6, samples: samples)
        XCTAssertEqual(try decodeImage(png).pixels, [65535, 100, 200, 300, 65535, 400].map(scale16))
        XCTAssertEqual(try decodeMask(png).values, [1, 0])
    }

    func testPaletteWithTransparency() throws {
        let palette: [(UInt8, UInt8, UInt8)] = [(0, 0, 0), (255, 255, 255), (128, 0, 0), (0, 128, 0), (255, 255, 255)]
        let indices = [0, 1, 2, 3, 4, 1]
        let png = HandPNG.make(
            width: 3, height: 2, bitDepth: 8, colorType: 3, samples: indices,
            palette: palette, transparency: [255, 0, 128])
        let img = try decodeImage(png)
        XCTAssertEqual(img.pixels, indices.flatMap { [palette[$0].0, palette[$0].1, palette[$0].2] })
        // The mask reads the palette colour's first channel.
        XCTAssertEqual(try decodeMask(png).values, [0, 1, 1, 0, 1, 1])
        // Class indices are the palette indices, even where two entries share a colour (1 and 4).
        let classes = try png.withUnsafeBytes { try PNGCodec.decodeClassIndices($0) }
        XCTAssertEqual(classes.values, indices.map { UInt8($0) })
    }

    func testPalette4Bit() throws {
        let palette: [(UInt8, UInt8, UInt8)] = (0..<16).map { (i: Int) -> (UInt8, UInt8, UInt8) in
            let v = UInt8(i * 16)
            return (v, 255 - v, 7)
        }
        let indices = [0, 5, 15, 8, 9, 3]
        let png = HandPNG.make(width: 6, height: 1, bitDepth: 4, colorType: 3, samples: indices, palette: palette)
        XCTAssertEqual(try decodeImage(png).pixels, indices.flatMap { [palette[$0].0, palette[$0].1, palette[$0].2] })
        XCTAssertEqual(
            try png.withUnsafeBytes { try PNGCodec.decodeClassIndices($0) }.values, indices.map { UInt8($0) })
    }

    func testClassIndicesOfGrayAndRejectsSixteenBit() throws {
        let gray = HandPNG.make(width: 4, height: 1, bitDepth: 8, colorType: 0, samples: [0, 1, 2, 19])
        XCTAssertEqual(try gray.withUnsafeBytes { try PNGCodec.decodeClassIndices($0) }.values, [0, 1, 2, 19])
        let deep = HandPNG.make(width: 1, height: 1, bitDepth: 16, colorType: 0, samples: [3])
        XCTAssertThrowsError(try deep.withUnsafeBytes { try PNGCodec.decodeClassIndices($0, source: "/x/deep.png") }) {
            e in
            guard case .unsupportedFormat(let path, _)? = e as? ImageError else { return XCTFail("\(e)") }
            XCTAssertEqual(path, "/x/deep.png")
        }
    }

    // MARK: - PNG writer

    func testPNGRoundTripRGBAndMask() throws {
        var pixels = [UInt8](repeating: 0, count: 17 * 9 * 3)
        for i in 0..<pixels.count { pixels[i] = UInt8((i * 37 + i / 7) % 256) }
        let image = RGBImage(width: 17, height: 9, pixels: pixels)
        let url = tmp.appendingPathComponent("sub/dir/out.png")
        try ImageIO.writePNG(image, to: url)
        XCTAssertEqual(try ImageIO.readImage(url), image)

        let mask = BinaryMask(width: 5, height: 3, values: [0, 1, 1, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1, 1, 1])
        let murl = tmp.appendingPathComponent("mask.png")
        try ImageIO.writeMaskPNG(mask, to: murl)
        XCTAssertEqual(try ImageIO.readMask(murl), mask)
        // Stored as 8-bit gray 0/255.
        let stored = try ImageIO.readClassIndices(murl)
        XCTAssertEqual(stored.values, mask.values.map { $0 * 255 })
        // No temporary files are left behind.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: tmp.path).filter { $0.hasPrefix(".") }
        XCTAssertEqual(leftovers, [])
    }

    func testCodecChosenBySignatureNotExtension() throws {
        let png = HandPNG.make(width: 2, height: 1, bitDepth: 8, colorType: 0, samples: [10, 250])
        let wrongName = tmp.appendingPathComponent("really-a-png.jpg")
        try Data(png).write(to: wrongName)
        XCTAssertEqual(try ImageIO.readImage(wrongName).pixels, [10, 10, 10, 250, 250, 250])
        let jpeg = try JPEGCodec.encodeGray([UInt8](repeating: 200, count: 64), width: 8, height: 8, quality: 95)
        let jpegAsPNG = tmp.appendingPathComponent("really-a-jpeg.png")
        try Data(jpeg).write(to: jpegAsPNG)
        XCTAssertEqual(try ImageIO.readMask(jpegAsPNG).values, [UInt8](repeating: 1, count: 64))
    }

    // MARK: - JPEG

    /// A 48x32 image of six flat 16x16 blocks aligned to the 16-pixel MCU, so compression barely touches them.
    func blocksImage() -> (RGBImage, [(Int, Int, (UInt8, UInt8, UInt8))]) {
        let colors: [(UInt8, UInt8, UInt8)] = [
            (200, 30, 30), (30, 200, 30), (30, 30, 200), (240, 240, 240), (20, 20, 20), (128, 128, 128),
        ]
        let w = 48, h = 32
        var px = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            for x in 0..<w {
                let c = colors[(y / 16) * 3 + x / 16]
                px[3 * (y * w + x)] = c.0; px[3 * (y * w + x) + 1] = c.1; px[3 * (y * w + x) + 2] = c.2
            }
        }
        let centres = (0..<6).map { (i: Int) -> (Int, Int, (UInt8, UInt8, UInt8)) in
            let x: Int = 16 * (i % 3) + 8
            let y: Int = 16 * (i / 3) + 8
            return (x, y, colors[i])
        }
        return (RGBImage(width: w, height: h, pixels: px), centres)
    }

    func sofMarker(_ jpeg: [UInt8]) -> UInt8? {
        for i in 0..<(jpeg.count - 1) where jpeg[i] == 0xFF && (jpeg[i + 1] == 0xC0 || jpeg[i + 1] == 0xC2) {
            return jpeg[i + 1]
        }
        return nil
    }

    func testColourJPEGBaselineAndProgressive() throws {
        let (image, centres) = blocksImage()
        for progressive in [false, true] {
            let jpeg = try JPEGCodec.encode(image, quality: 95, progressive: progressive, subsampling: .s444)
            XCTAssertEqual(sofMarker(jpeg), progressive ? 0xC2 : 0xC0, "SOF kind")
            let url = tmp.appendingPathComponent(progressive ? "p.jpg" : "b.jpg")
            try Data(jpeg).write(to: url)
            let decoded = try ImageIO.readImage(url)
            XCTAssertEqual(decoded.width, 48); XCTAssertEqual(decoded.height, 32)
            for (x, y, c) in centres {
                let i = 3 * (y * 48 + x)
                XCTAssertEqual(Double(decoded.pixels[i]), Double(c.0), accuracy: 4, "R at \(x),\(y)")
                XCTAssertEqual(Double(decoded.pixels[i + 1]), Double(c.1), accuracy: 4, "G at \(x),\(y)")
                XCTAssertEqual(Double(decoded.pixels[i + 2]), Double(c.2), accuracy: 4, "B at \(x),\(y)")
            }
            // Mask from the red channel: red (200) and white (240) blocks are foreground.
            let mask = try ImageIO.readMask(url)
            XCTAssertEqual(centres.map { mask.values[$0.1 * 48 + $0.0] }, [1, 0, 0, 1, 0, 1])
        }
    }

    func testGrayJPEGBaselineAndProgressive() throws {
        let levels: [UInt8] = [0, 60, 127, 128, 200, 255]
        let w = 48, h = 32
        var gray = [UInt8](repeating: 0, count: w * h)
        for y in 0..<h { for x in 0..<w { gray[y * w + x] = levels[(y / 16) * 3 + x / 16] } }
        for progressive in [false, true] {
            let jpeg = try JPEGCodec.encodeGray(gray, width: w, height: h, quality: 98, progressive: progressive)
            XCTAssertEqual(sofMarker(jpeg), progressive ? 0xC2 : 0xC0)
            let img = try jpeg.withUnsafeBytes { try JPEGCodec.decodeImage($0) }
            for i in 0..<6 {
                let x = 16 * (i % 3) + 8, y = 16 * (i / 3) + 8
                let p = 3 * (y * w + x)
                XCTAssertEqual(Double(img.pixels[p]), Double(levels[i]), accuracy: 2)
                XCTAssertEqual(img.pixels[p], img.pixels[p + 1]); XCTAssertEqual(img.pixels[p], img.pixels[p + 2])
            }
            let mask = try jpeg.withUnsafeBytes { try JPEGCodec.decodeMask($0) }
            XCTAssertEqual(
                (0..<6).map { mask.values[(16 * ($0 / 3) + 8) * w + 16 * ($0 % 3) + 8] }, [0, 0, 0, 1, 1, 1])
        }
    }

    func testCMYKJPEGConvertsFromAdobeInvertedStorage() throws {
        // Stored (inverted) C'M'Y'K' = (255, 0, 0, 255) is cyan ink 0, magenta and yellow ink full: red.
        let w = 16, h = 16
        var cmyk = [UInt8]()
        for _ in 0..<(w * h) { cmyk += [255, 0, 0, 255] }
        let jpeg = try JPEGCodec.compress(
            cmyk, width: w, height: h, format: TJPF_CMYK,
            subsampling: Int32(TJSAMP_444.rawValue), quality: 100, progressive: false)
        let img = try jpeg.withUnsafeBytes { try JPEGCodec.decodeImage($0) }
        XCTAssertEqual(Double(img.pixels[0]), 255, accuracy: 3)
        XCTAssertEqual(Double(img.pixels[1]), 0, accuracy: 3)
        XCTAssertEqual(Double(img.pixels[2]), 0, accuracy: 3)
    }

    // MARK: - Errors

    func assertOneLineError(
        _ body: () throws -> Void, path: String, contains: String,
        file: StaticString = #filePath, line: UInt = #line
    ) -> ImageError? {
        do {
            try body()
            XCTFail("expected an error", file: file, line: line)
            return nil
        } catch let e as ImageError {
            XCTAssertEqual(e.path, path, file: file, line: line)
            XCTAssertTrue(e.description.contains(path), e.description, file: file, line: line)
            XCTAssertTrue(
                e.description.contains(contains), "'\(e.description)' lacks '\(contains)'", file: file, line: line)
            XCTAssertFalse(e.description.contains("\n"), "multi-line: \(e.description)", file: file, line: line)
            return e
        } catch {
            XCTFail("unexpected error type \(error)", file: file, line: line)
            return nil
        }
    }

    func testCorruptAndTruncatedPNG() throws {
        var samples = [Int]()
        for i in 0..<(32 * 32 * 3) { samples.append((i * 7) % 256) }
        let good = HandPNG.make(width: 32, height: 32, bitDepth: 8, colorType: 2, samples: samples)

        let truncated = tmp.appendingPathComponent("truncated.png")
        try Data(good.prefix(good.count / 2)).write(to: truncated)
        let e1 = assertOneLineError({ _ = try ImageIO.readImage(truncated) }, path: truncated.path, contains: "libpng")
        if case .corrupt? = e1 {} else { XCTFail("truncated PNG: \(String(describing: e1))") }

        // A flipped byte inside IDAT breaks its CRC.
        var bad = good
        bad[bad.count / 2] ^= 0x5A
        let corrupt = tmp.appendingPathComponent("corrupt.png")
        try Data(bad).write(to: corrupt)
        let e2 = assertOneLineError({ _ = try ImageIO.readMask(corrupt) }, path: corrupt.path, contains: "corrupt")
        if case .corrupt? = e2 {} else { XCTFail("corrupt PNG: \(String(describing: e2))") }

        // A broken IHDR (zero width).
        var header = good
        header[16] = 0; header[17] = 0; header[18] = 0; header[19] = 0
        let badHeader = tmp.appendingPathComponent("header.png")
        try Data(header).write(to: badHeader)
        _ = assertOneLineError({ _ = try ImageIO.readImage(badHeader) }, path: badHeader.path, contains: "libpng")

        // Only the first bytes of the signature.
        let stub = tmp.appendingPathComponent("stub.png")
        try Data(good.prefix(5)).write(to: stub)
        _ = assertOneLineError({ _ = try ImageIO.readImage(stub) }, path: stub.path, contains: "ends after 5 bytes")
    }

    func testCorruptAndTruncatedJPEG() throws {
        let (image, _) = blocksImage()
        let good = try JPEGCodec.encode(image, quality: 90)
        let truncated = tmp.appendingPathComponent("truncated.jpg")
        try Data(good.prefix(good.count * 2 / 3)).write(to: truncated)
        let e1 = assertOneLineError(
            { _ = try ImageIO.readImage(truncated) }, path: truncated.path, contains: "TurboJPEG")
        if case .corrupt? = e1 {} else { XCTFail("truncated JPEG: \(String(describing: e1))") }

        // Garbage after the SOI marker.
        var bad = Array(good.prefix(3))
        bad += [UInt8](repeating: 0x13, count: 200)
        let corrupt = tmp.appendingPathComponent("corrupt.jpg")
        try Data(bad).write(to: corrupt)
        let e2 = assertOneLineError({ _ = try ImageIO.readMask(corrupt) }, path: corrupt.path, contains: "TurboJPEG")
        if case .corrupt? = e2 {} else { XCTFail("corrupt JPEG: \(String(describing: e2))") }

        // Progressive and truncated.
        let prog = try JPEGCodec.encode(image, quality: 90, progressive: true)
        let ptrunc = tmp.appendingPathComponent("ptrunc.jpg")
        try Data(prog.prefix(prog.count / 2)).write(to: ptrunc)
        _ = assertOneLineError(
            { _ = try ImageIO.readImage(ptrunc) }, path: ptrunc.path, contains: "corrupt or truncated")
    }

    func testMissingUnreadableEmptyAndUnsupported() throws {
        let missing = tmp.appendingPathComponent("nope.png")
        let e1 = assertOneLineError({ _ = try ImageIO.readImage(missing) }, path: missing.path, contains: "not found")
        XCTAssertEqual(e1, .missingFile(path: missing.path))

        let dir = tmp.appendingPathComponent("adir.png")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let e2 = assertOneLineError({ _ = try ImageIO.readMask(dir) }, path: dir.path, contains: "directory")
        if case .unreadable? = e2 {} else { XCTFail("\(String(describing: e2))") }

        let empty = tmp.appendingPathComponent("empty.png")
        try Data().write(to: empty)
        _ = assertOneLineError({ _ = try ImageIO.readImage(empty) }, path: empty.path, contains: "empty file")

        let gif = tmp.appendingPathComponent("anim.png")
        try Data(Array("GIF89a".utf8) + [1, 0, 1, 0, 0, 0, 0]).write(to: gif)
        let e3 = assertOneLineError({ _ = try ImageIO.readImage(gif) }, path: gif.path, contains: "GIF")
        if case .unsupportedFormat? = e3 {} else { XCTFail("\(String(describing: e3))") }

        let text = tmp.appendingPathComponent("notes.png")
        try Data("hello world".utf8).write(to: text)
        _ = assertOneLineError({ _ = try ImageIO.readImage(text) }, path: text.path, contains: "not a PNG or JPEG")
    }

    func testWriteFailureNamesFile() throws {
        // The parent "folder" is a regular file.
        let blocker = tmp.appendingPathComponent("blocker")
        try Data([1]).write(to: blocker)
        let target = blocker.appendingPathComponent("out.png")
        _ = assertOneLineError(
            { try ImageIO.writeMaskPNG(BinaryMask(width: 2, height: 2), to: target) },
            path: target.path, contains: "cannot write")
    }

    // MARK: - Overlay

    func testOverlayBlendsOnlyForeground() {
        let image = RGBImage(width: 2, height: 1, fill: (100, 100, 100))
        let mask = BinaryMask(width: 2, height: 1, values: [1, 0])
        let out = ImageIO.overlay(image: image, mask: mask, color: (255, 0, 0), alpha: 0.5)
        XCTAssertEqual(Array(out.pixels[0..<3]), [178, 50, 50])
        XCTAssertEqual(Array(out.pixels[3..<6]), [100, 100, 100])
        // A mask at another resolution is resized to the image.
        let small = BinaryMask(width: 1, height: 1, values: [1])
        let all = ImageIO.overlay(image: image, mask: small, color: (0, 0, 0), alpha: 1)
        XCTAssertEqual(all.pixels, [0, 0, 0, 0, 0, 0])
    }
}
