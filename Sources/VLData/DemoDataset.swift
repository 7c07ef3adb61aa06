import Foundation

/// A synthetic dataset in the medvlsm layout, the built-in data for the demo and the tests.
///
/// Each image is a smooth, textured "tissue" background with two to four blob-shaped lesions of
/// *different* colours, sizes and positions. The mask marks exactly one of them and every non-empty
/// prompt names that one's colour, with more detail as the key grows (size, shape, position, count,
/// the other colours). Because another lesion of another colour is always present, a model that
/// ignores the text cannot exceed about one half Dice: the task is learnable and text matters.
///
/// Everything is drawn from `CounterRandom(seed, index: sample, purpose: .demoData)`, so a sample
/// does not depend on how many others are made or in what order, and the same seed writes
/// byte-identical files.
public enum DemoDataset {
    /// Image file format of the written images (masks are always PNG).
    public enum FileFormat: String, Sendable, CaseIterable {
        case png, jpg
    }

    public struct Options: Sendable {
        public var count: Int
        public var width: Int
        public var height: Int
        public var seed: UInt64
        public var format: FileFormat
        /// JPEG quality (1...100) when `format` is `.jpg`.
        public var jpegQuality: Int
        /// Fractions of the samples in train and val; test takes the rest.
        public var trainFraction: Double
        public var valFraction: Double

        public init(
            count: Int = 200, width: Int = 352, height: Int = 352, seed: UInt64 = 0,
            format: FileFormat = .png, jpegQuality: Int = 90,
            trainFraction: Double = 0.7, valFraction: Double = 0.15
        ) {
            self.count = count; self.width = width; self.height = height; self.seed = seed
            self.format = format; self.jpegQuality = jpegQuality
            self.trainFraction = trainFraction; self.valFraction = valFraction
        }

        /// Smallest side that leaves room for several separated lesions.
        public static let minimumSide = 32
    }

    /// A prompt value as the medvlsm annotation files hold it: a string or a list of strings.
    public enum PromptValue: Sendable, Equatable {
        case text(String)
        case list([String])

        /// All the strings the value offers.
        public var texts: [String] {
            switch self {
            case .text(let s): return [s]
            case .list(let l): return l
            }
        }

        var jsonObject: Any {
            switch self {
            case .text(let s): return s
            case .list(let l): return l
            }
        }
    }

    /// The colours lesions can have: well separated in hue, all distinct from the muted background.
    public static let palette: [(name: String, rgb: (Double, Double, Double))] = [
        ("red", (205, 40, 40)), ("green", (40, 165, 60)), ("blue", (45, 85, 210)),
        ("yellow", (228, 208, 45)), ("purple", (145, 60, 185)), ("cyan", (45, 185, 195)),
    ]

    /// One drawn lesion.
    public struct Lesion: Sendable, Equatable {
        public var centerX: Double
        public var centerY: Double
        /// Mean radius in pixels; the outline is `radius * (1 + a2 cos(2θ+φ2) + a3 cos(3θ+φ3))`.
        public var radius: Double
        public var a2: Double, phi2: Double, a3: Double, phi3: Double
        /// Index into `palette`.
        public var colorIndex: Int

        public var colorName: String { DemoDataset.palette[colorIndex].name }
        /// Largest distance of the outline from the centre.
        var extent: Double { radius * (1 + a2 + a3) }

        func outline(_ theta: Double) -> Double {
            radius * (1 + a2 * cos(2 * theta + phi2) + a3 * cos(3 * theta + phi3))
        }

        /// "small", "medium" or "large" by radius relative to the image's shorter side.
        func sizeWord(shortSide: Int) -> String {
            let f = radius / Double(shortSide)
            return f < 0.10 ? "small" : (f < 0.14 ? "medium" : "large")
        }

        var shapeWord: String {
            if a3 >= 0.08 { return "irregular" }
            return a2 >= 0.12 ? "oval" : "round"
        }

        func positionWords(width: Int, height: Int) -> String {
            let col = centerX < Double(width) / 3 ? "left" : (centerX < 2 * Double(width) / 3 ? "center" : "right")
            let row = centerY < Double(height) / 3 ? "top" : (centerY < 2 * Double(height) / 3 ? "middle" : "bottom")
            if row == "middle" && col == "center" { return "center" }
            return "\(row) \(col)"
        }
    }

    /// One generated sample.
    public struct Sample: Sendable {
        public var image: RGBImage
        public var mask: BinaryMask
        public var lesions: [Lesion]
        /// Index into `lesions` of the one the mask and prompts describe.
        public var target: Int
        /// p0 ... p9.
        public var prompts: [(key: String, value: PromptValue)]
    }

    // MARK: - Generation

    /// Generates sample `index` (pure: depends only on the index and the options).
    public static func makeSample(index: Int, options: Options) -> Sample {
        let w = options.width, h = options.height
        precondition(
            w >= Options.minimumSide && h >= Options.minimumSide,
            "demo images need at least \(Options.minimumSide) pixels a side")
        var rng = CounterRandom(seed: options.seed, epoch: 0, index: UInt64(index), purpose: .demoData)
        let short = min(w, h)

        // Background: a muted tissue tint modulated by two octaves of smooth value noise.
        let level = rng.uniform(95, 150)
        let tint = (level + rng.uniform(12, 38), level + rng.uniform(-4, 6), level - rng.uniform(0, 22))
        let coarse = ValueNoise(width: w, height: h, cell: Double(short) / rng.uniform(3, 5), rng: &rng)
        let fine = ValueNoise(width: w, height: h, cell: Double(short) / rng.uniform(10, 16), rng: &rng)
        let grain = ValueNoise(width: w, height: h, cell: max(2, Double(short) / 60), rng: &rng)

        // Lesions: 2 (50 %), 3 (35 %) or 4 (15 %), distinct colours, not touching.
        let u = rng.unit()
        let wanted = u < 0.5 ? 2 : (u < 0.85 ? 3 : 4)
        var colors = Array(0..<palette.count)
        for i in stride(from: colors.count - 1, to: 0, by: -1) {
            colors.swapAt(i, min(Int(rng.unit() * Double(i + 1)), i))
        }
        var lesions: [Lesion] = []
        for n in 0..<wanted {
            let sizeClass = rng.unit()
            var radius =
                Double(short)
                * (sizeClass < 0.34
                    ? rng.uniform(0.07, 0.10)
                    : (sizeClass < 0.67 ? rng.uniform(0.10, 0.14) : rng.uniform(0.14, 0.19)))
            let a2 = rng.uniform(0, 0.3), phi2 = rng.uniform(0, 2 * .pi)
            let a3 = rng.bernoulli(0.4) ? rng.uniform(0.08, 0.16) : rng.uniform(0, 0.06)
            let phi3 = rng.uniform(0, 2 * .pi)
            var placed: Lesion? = nil
            // Up to 6 rounds of 60 tries, shrinking the lesion after each round that found no room.
            for _ in 0..<6 where placed == nil {
                for _ in 0..<60 {
                    let candidate = Lesion(
                        centerX: 0, centerY: 0, radius: radius, a2: a2, phi2: phi2, a3: a3,
                        phi3: phi3, colorIndex: colors[n])
                    let margin = candidate.extent + 2
                    let cx = rng.uniform(margin, max(margin + 1e-9, Double(w) - margin))
                    let cy = rng.uniform(margin, max(margin + 1e-9, Double(h) - margin))
                    let clear = lesions.allSatisfy { other in
                        let dx = other.centerX - cx, dy = other.centerY - cy
                        return (dx * dx + dy * dy).squareRoot() > other.extent + candidate.extent + 3
                    }
                    if clear {
                        var l = candidate
                        l.centerX = cx; l.centerY = cy
                        placed = l
                        break
                    }
                }
                if placed == nil { radius *= 0.8 }
            }
            if let l = placed { lesions.append(l) }
        }
        let target = min(Int(rng.unit() * Double(lesions.count)), lesions.count - 1)

        // Render.
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        var maskValues = [UInt8](repeating: 0, count: w * h)
        pixels.withUnsafeMutableBufferPointer { px in
            for y in 0..<h {
                for x in 0..<w {
                    let n = 0.65 * coarse.value(x, y) + 0.35 * fine.value(x, y) - 0.5
                    let g = grain.value(x, y) - 0.5
                    let i = 3 * (y * w + x)
                    px[i] = clampToByte(tint.0 + 70 * n + 14 * g)
                    px[i + 1] = clampToByte(tint.1 + 62 * n + 14 * g)
                    px[i + 2] = clampToByte(tint.2 + 58 * n + 14 * g)
                }
            }
            for (li, l) in lesions.enumerated() {
                let rgb = palette[l.colorIndex].rgb
                let x0 = max(0, Int(l.centerX - l.extent) - 2), x1 = min(w - 1, Int(l.centerX + l.extent) + 2)
                let y0 = max(0, Int(l.centerY - l.extent) - 2), y1 = min(h - 1, Int(l.centerY + l.extent) + 2)
                guard x0 <= x1, y0 <= y1 else { continue }
                for y in y0...y1 {
                    for x in x0...x1 {
                        let dx = Double(x) + 0.5 - l.centerX, dy = Double(y) + 0.5 - l.centerY
                        let d = (dx * dx + dy * dy).squareRoot()
                        let r = l.outline(atan2(dy, dx))
                        // One pixel of antialiasing on the image; the mask takes the pixel when its
                        // centre is inside the outline.
                        let coverage = min(max(r - d + 0.5, 0), 1)
                        guard coverage > 0 else { continue }
                        if li == target && d <= r { maskValues[y * w + x] = 1 }
                        // Shaded towards the rim and textured, so lesions are not flat discs.
                        let shade = 0.8 + 0.2 * max(0, 1 - d / max(r, 1)) + 0.25 * (fine.value(x, y) - 0.5)
                        let i = 3 * (y * w + x)
                        let lc = (rgb.0 * shade, rgb.1 * shade, rgb.2 * shade)
                        px[i] = clampToByte(Double(px[i]) * (1 - coverage) + lc.0 * coverage)
                        px[i + 1] = clampToByte(Double(px[i + 1]) * (1 - coverage) + lc.1 * coverage)
                        px[i + 2] = clampToByte(Double(px[i + 2]) * (1 - coverage) + lc.2 * coverage)
                    }
                }
            }
        }
        let image = RGBImage(width: w, height: h, pixels: pixels)
        let mask = BinaryMask(width: w, height: h, values: maskValues)
        return Sample(
            image: image, mask: mask, lesions: lesions, target: target,
            prompts: prompts(lesions: lesions, target: target, width: w, height: h))
    }

    /// p0 (empty, as in medvlsm) to p9, each naming the target's colour, adding size, shape,
    /// position, the lesion count and the other colours as the key grows. p2 and p8 are lists.
    static func prompts(lesions: [Lesion], target: Int, width: Int, height: Int) -> [(key: String, value: PromptValue)]
    {
        let t = lesions[target]
        let color = t.colorName
        let size = t.sizeWord(shortSide: min(width, height))
        let shape = t.shapeWord
        let position = t.positionWords(width: width, height: height)
        let countWord = ["zero", "one", "two", "three", "four", "five"][min(lesions.count, 5)]
        let others = lesions.enumerated().filter { $0.offset != target }.map(\.element.colorName)
        let othersText =
            others.count == 1
            ? others[0]
            : others.dropLast().joined(separator: ", ") + " and " + others.last!
        let otherNoun = others.count == 1 ? "the other is" : "the others are"
        return [
            ("p0", .text("")),
            ("p1", .text("a \(color) lesion")),
            ("p2", .list(["a \(color) spot", "a \(color) lesion", "the \(color) region"])),
            ("p3", .text("a \(size) \(color) lesion")),
            ("p4", .text("a \(size) \(shape) \(color) lesion")),
            ("p5", .text("a \(size) \(color) lesion at the \(position)")),
            ("p6", .text("a \(size) \(shape) \(color) lesion in the \(position) of the image")),
            ("p7", .text("a \(size) \(color) lesion at the \(position), one of \(countWord) lesions")),
            (
                "p8",
                .list([
                    "a \(size) \(shape) \(color) lesion at the \(position) among \(countWord) lesions",
                    "the \(color) one of \(countWord) lesions, \(size) and \(shape), at the \(position)",
                ])
            ),
            (
                "p9",
                .text(
                    "a \(size) \(shape) \(color) lesion at the \(position) of the image; there are \(countWord) lesions and \(otherNoun) \(othersText)"
                )
            ),
        ]
    }

    // MARK: - Writing

    /// A failure to lay out the dataset folders or annotation files (image files fail with `ImageError`).
    public struct WriteError: Error, CustomStringConvertible {
        public let description: String
    }

    /// What `write` produced.
    public struct Summary: Sendable {
        public var root: URL
        public var splitCounts: [(split: String, count: Int)]
        public var width: Int
        public var height: Int
        public var format: FileFormat
        /// Mean fraction of mask pixels that are foreground.
        public var meanForeground: Double
        public var seconds: Double
    }

    /// How many samples go to train, val and test: the fractions rounded, with at least one sample
    /// in val and test whenever there are three or more.
    public static func splitSizes(count: Int, trainFraction: Double, valFraction: Double) -> (
        train: Int, val: Int, test: Int
    ) {
        var val = Int((Double(count) * valFraction).rounded())
        var train = Int((Double(count) * trainFraction).rounded())
        if count >= 3 { val = max(val, 1) }
        train = min(train, count - val)
        var test = count - train - val
        if count >= 3 && test == 0 { test = 1; train -= 1 }
        return (train, val, test)
    }

    /// Writes `anns/{train,val,test}.json`, `images/` and `masks/` under `root` (created if needed;
    /// files of the same names are replaced). Samples are made in parallel; the output does not
    /// depend on the thread count. `progress` is called with (done, total) after each sample.
    @discardableResult
    public static func write(options: Options, to root: URL, progress: (@Sendable (Int, Int) -> Void)? = nil) throws
        -> Summary
    {
        precondition(options.count > 0, "demo dataset needs at least one sample")
        let start = Date()
        let fm = FileManager.default
        let images = root.appendingPathComponent("images"), masks = root.appendingPathComponent("masks")
        let anns = root.appendingPathComponent("anns")
        for dir in [images, masks, anns] {
            do { try fm.createDirectory(at: dir, withIntermediateDirectories: true) } catch {
                throw WriteError(description: "cannot create folder \(dir.path): \(ImageIO.reason(of: error))")
            }
        }
        let ext = options.format == .png ? "png" : "jpg"
        let count = options.count
        let state = ParallelWriteState<[String: Any]>(count: count)
        DispatchQueue.concurrentPerform(iterations: count) { i in
            if state.failed { return }
            let sample = makeSample(index: i, options: options)
            let name = String(format: "demo_%05d", i)
            do {
                let imageURL = images.appendingPathComponent("\(name).\(ext)")
                switch options.format {
                case .png: try PNGCodec.write(sample.image, to: imageURL)
                case .jpg: try JPEGCodec.write(sample.image, to: imageURL, quality: options.jpegQuality)
                }
                try PNGCodec.write(mask: sample.mask, to: masks.appendingPathComponent("\(name).png"))
                let entry: [String: Any] = [
                    "img_name": "\(name).\(ext)",
                    "mask_name": "\(name).png",
                    "prompts": Dictionary(uniqueKeysWithValues: sample.prompts.map { ($0.key, $0.value.jsonObject) }),
                ]
                state.finish(index: i, result: entry, foreground: sample.mask.foregroundRatio, progress: progress)
            } catch {
                state.fail(error)
            }
        }
        if let error = state.firstError { throw error }

        let sizes = splitSizes(count: count, trainFraction: options.trainFraction, valFraction: options.valFraction)
        let entries = state.results.map { $0! }
        let splits: [(String, ArraySlice<[String: Any]>)] = [
            ("train", entries[0..<sizes.train]),
            ("val", entries[sizes.train..<(sizes.train + sizes.val)]),
            ("test", entries[(sizes.train + sizes.val)...]),
        ]
        for (split, list) in splits {
            let url = anns.appendingPathComponent("\(split).json")
            let data: Data
            do {
                data = try JSONSerialization.data(
                    withJSONObject: Array(list),
                    options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            } catch {
                throw WriteError(description: "cannot encode \(url.path): \(error)")
            }
            try ImageIO.writeFileBytes(Array(data) + [0x0A], to: url)
        }
        return Summary(
            root: root, splitCounts: splits.map { ($0.0, $0.1.count) }, width: options.width,
            height: options.height, format: options.format,
            meanForeground: state.foregroundSum / Double(count),
            seconds: Date().timeIntervalSince(start))
    }
}

/// Smooth 2-D value noise in [0, 1]: random values on a lattice, blended with smoothstep weights.
struct ValueNoise {
    let cell: Double
    let gridW: Int
    let lattice: [Double]

    init(width: Int, height: Int, cell: Double, rng: inout CounterRandom) {
        self.cell = max(cell, 1)
        gridW = Int(Double(width) / self.cell) + 2
        let gridH = Int(Double(height) / self.cell) + 2
        var values = [Double](repeating: 0, count: gridW * gridH)
        for i in 0..<values.count { values[i] = rng.unit() }
        lattice = values
    }

    @inline(__always)
    func value(_ x: Int, _ y: Int) -> Double {
        let fx = Double(x) / cell, fy = Double(y) / cell
        let ix = Int(fx), iy = Int(fy)
        var tx = fx - Double(ix), ty = fy - Double(iy)
        tx = tx * tx * (3 - 2 * tx)
        ty = ty * ty * (3 - 2 * ty)
        let i = iy * gridW + ix
        let top = lattice[i] * (1 - tx) + lattice[i + 1] * tx
        let bottom = lattice[i + gridW] * (1 - tx) + lattice[i + gridW + 1] * tx
        return top * (1 - ty) + bottom * ty
    }
}
