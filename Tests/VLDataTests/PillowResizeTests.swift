import Foundation
import VLData
import VLTensor
import VLTestSupport
import XCTest

/// PIL's BILINEAR and BICUBIC resizes, byte for byte: Pillow itself resizes the same image and the
/// bytes must be identical, shrinking (antialiased) and enlarging, in both axes and one.
final class PillowResizeTests: XCTestCase {
    func testResizeMatchesPillowByteForByte() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vlseg-pillow-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // Smooth gradients plus noise and hard edges: every filter lobe matters somewhere.
        var rng = SplitMix64(seed: 7)
        let width = 61, height = 47
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                for c in 0..<3 {
                    let edge = (x / 9 + y / 7) % 2 == 0 ? 200 : 30
                    let noise = Int(rng.next() % 50)
                    pixels[(y * width + x) * 3 + c] = UInt8(min(255, (edge + noise + 20 * c) % 256))
                }
            }
        }
        let image = RGBImage(width: width, height: height, pixels: pixels)
        let source = dir.appendingPathComponent("source.png")
        try ImageIO.writePNG(image, to: source)
        let sizes = [(24, 24), (128, 96), (61, 20), (30, 47), (352, 352), (7, 5)]
        let script = """
            import sys
            from PIL import Image
            img = Image.open(sys.argv[1]).convert("RGB")
            for spec in sys.argv[3:]:
                w, h, f = (int(v) for v in spec.split("x"))
                img.resize((w, h), resample=f).save(f"{sys.argv[2]}/{w}x{h}x{f}.png")
            """
        var specs: [String] = []
        for (w, h) in sizes { for filter in ResizeFilter.allCases { specs.append("\(w)x\(h)x\(filter.rawValue)") } }
        _ = try PythonReference.run(script, arguments: [source.path, dir.path] + specs)
        for (w, h) in sizes {
            for filter in ResizeFilter.allCases {
                let pillow = try ImageIO.readImage(dir.appendingPathComponent("\(w)x\(h)x\(filter.rawValue).png"))
                let ours = image.resized(width: w, height: h, filter: filter)
                let differing = zip(ours.pixels, pillow.pixels).filter { $0 != $1 }.count
                XCTAssertEqual(
                    differing, 0, "\(filter) \(width)x\(height) -> \(w)x\(h): \(differing) bytes differ from Pillow")
            }
        }
    }
}
