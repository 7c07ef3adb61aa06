import ArgumentParser
import Foundation
import VLData

extension DemoDataset.FileFormat: ExpressibleByArgument {}
extension DemoDataKind: ExpressibleByArgument {}

/// `vlseg demo-data`: writes the synthetic, learnable dataset the demo and the tests train on.
struct DemoDataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo-data",
        abstract: "Write a synthetic dataset in the medvlsm layout (anns/, images/, masks/).",
        discussion: """
            Images show two to four coloured blob-shaped lesions on a textured background; the mask marks \
            one of them and the prompts p1..p9 name it by colour, then size, shape, position and count. \
            The same seed writes byte-identical files. \
            --kind scenes writes the demo backbone's source domain instead (shapes of several colours, sizes, \
            textures and positions, referring prompts such as "the red triangle" or "every blue shape", several \
            entries per image); --kind endoscopy|ultrasound|medical the shifted target domain ("a polyp", \
            "a benign tumour"; medical mixes both). These write PNG images.
            """)

    @Option(help: "Output folder (created if missing; files of the same names are replaced).")
    var out: String

    @Option(help: "Generator: blobs (default), scenes, endoscopy, ultrasound or medical.")
    var kind: DemoDataKind = .blobs

    @Option(help: "Scenes: entries (mask and prompts) per image.")
    var entriesPerImage: Int = 2

    @Option(help: "Number of samples, split 70/15/15 into train/val/test.")
    var count: Int = 200

    @Option(help: "Side of square images in pixels.")
    var size: Int = 352

    @Option(help: "Image width (with --height, for non-square images; overrides --size).")
    var width: Int?

    @Option(help: "Image height (with --width).")
    var height: Int?

    @Option(help: "Seed of the generator.")
    var seed: UInt64 = 0

    @Option(help: "Image file format: png or jpg (masks are always PNG).")
    var format: DemoDataset.FileFormat = .png

    @Option(help: "JPEG quality, 1-100.")
    var quality: Int = 90

    func validate() throws {
        let minimum = DemoDataset.Options.minimumSide
        guard count >= 1 else { throw ValidationError("--count must be at least 1") }
        guard (width == nil) == (height == nil) else { throw ValidationError("give --width and --height together") }
        let (w, h) = (width ?? size, height ?? size)
        guard w >= minimum, h >= minimum else {
            throw ValidationError("images must be at least \(minimum)x\(minimum) pixels")
        }
        guard w <= 8192, h <= 8192 else { throw ValidationError("images must be at most 8192 pixels a side") }
        guard (1...100).contains(quality) else { throw ValidationError("--quality must be in 1...100") }
        guard (1...16).contains(entriesPerImage) else { throw ValidationError("--entries-per-image must be in 1...16") }
        if kind != .blobs {
            guard width == nil, format == .png else {
                throw ValidationError("--kind \(kind.rawValue) writes square PNG images: use --size")
            }
        }
    }

    func run() throws {
        if kind != .blobs {
            let root = URL(fileURLWithPath: out)
            print("writing \(count) \(kind.rawValue) images (\(size)x\(size) png, seed \(seed)) to \(root.path)")
            let step = max(1, count / 10)
            let summary = try kind.write(
                count: count, size: size, seed: seed, entriesPerImage: entriesPerImage, to: root
            ) { done, total in
                if done % step == 0 || done == total { print("  \(done)/\(total)") }
            }
            let splits = summary.entries.map { "\($0.split) \($0.count)" }.joined(separator: ", ")
            print(
                "wrote \(count) images in \(String(format: "%.1f", summary.seconds)) s: entries \(splits); "
                    + "mean foreground \(String(format: "%.1f", summary.meanForeground * 100)) %")
            print("dataset root: \(root.path) (anns/train.json, anns/val.json, anns/test.json, images/, masks/)")
            return
        }
        let options = DemoDataset.Options(
            count: count, width: width ?? size, height: height ?? size, seed: seed,
            format: format, jpegQuality: quality)
        let root = URL(fileURLWithPath: out)
        print(
            "writing \(count) demo samples (\(options.width)x\(options.height) \(format.rawValue), seed \(seed)) to \(root.path)"
        )
        let step = max(1, count / 10)
        let summary = try DemoDataset.write(options: options, to: root) { done, total in
            if done % step == 0 || done == total { print("  \(done)/\(total)") }
        }
        let splits = summary.splitCounts.map { "\($0.split) \($0.count)" }.joined(separator: ", ")
        print(
            "wrote \(count) samples in \(String(format: "%.1f", summary.seconds)) s: \(splits); "
                + "mean foreground \(String(format: "%.1f", summary.meanForeground * 100)) %")
        print("dataset root: \(root.path) (anns/train.json, anns/val.json, anns/test.json, images/, masks/)")
    }
}
