import Foundation

/// The demo's target domain: generated medical-looking images with a real shift from the scenes the
/// demo backbone is pretrained on (`SceneDataset`).
///
/// - Endoscopy-like: pink, vascularised mucosa in a round field of view with vignetting, and one polyp
///   (a raised, shaded, slightly redder blob with specular highlights; highlights also fall on the
///   surrounding tissue, so brightness alone does not find it). Prompts say "a polyp".
/// - Ultrasound-like: grey speckle in a fan-shaped sector with layered tissue, and one dark lesion
///   with a soft border and posterior enhancement. Prompts say "a benign tumour".
///
/// The texture, colours and vocabulary ("polyp", "tumour", "colonoscopy", "hypoechoic", ...) never
/// occur in the source domain, so the pretrained model's zero-shot masks are poor and adaptation has
/// something to do. Every image carries one entry with prompts p0 (empty) to p5.
///
/// Everything is drawn from `CounterRandom(seed, index: image, purpose: .shiftedDomainData)`.
public enum ShiftedDomainDataset {
    public enum Modality: String, CaseIterable, Sendable {
        case endoscopy, ultrasound
        /// Both, drawn per image (half each on average).
        case mixed
    }

    public struct Options: Sendable {
        public var count: Int
        public var width: Int
        public var height: Int
        public var seed: UInt64
        public var modality: Modality
        public var trainFraction: Double
        public var valFraction: Double

        public init(
            count: Int = 200, width: Int = 128, height: Int = 128, seed: UInt64 = 0, modality: Modality = .mixed,
            trainFraction: Double = 0.6, valFraction: Double = 0.15
        ) {
            self.count = count; self.width = width; self.height = height; self.seed = seed; self.modality = modality
            self.trainFraction = trainFraction; self.valFraction = valFraction
        }
    }

    /// The modality of image `index`.
    public static func modality(index: Int, options: Options) -> Modality {
        guard options.modality == .mixed else { return options.modality }
        var rng = CounterRandom(seed: options.seed, epoch: 1, index: UInt64(index), purpose: .shiftedDomainData)
        return rng.bernoulli(0.5) ? .endoscopy : .ultrasound
    }

    /// Generates image `index` with its mask and prompts (pure in the index and options).
    public static func makeImage(index: Int, options: Options) -> SyntheticImage {
        let w = max(options.width, 16), h = max(options.height, 16)
        var rng = CounterRandom(seed: options.seed, epoch: 0, index: UInt64(index), purpose: .shiftedDomainData)
        switch modality(index: index, options: options) {
        case .ultrasound: return ultrasound(width: w, height: h, rng: &rng)
        default: return endoscopy(width: w, height: h, rng: &rng)
        }
    }

    /// A blob outline: mean radius with two random harmonics (as `DemoDataset`'s lesions).
    struct Blob {
        var cx: Double, cy: Double, rx: Double, ry: Double
        var a2: Double, p2: Double, a3: Double, p3: Double

        /// Signed distance-like value: < 1 inside (normalised radius at the point's angle).
        func level(_ x: Double, _ y: Double) -> Double {
            let dx = (x - cx) / rx, dy = (y - cy) / ry
            let t = atan2(dy, dx)
            let r = 1 + a2 * cos(2 * t + p2) + a3 * cos(3 * t + p3)
            return (dx * dx + dy * dy).squareRoot() / r
        }
    }

    static func sizeWord(_ radius: Double, short: Double) -> String {
        radius / short < 0.13 ? "small" : (radius / short < 0.19 ? "medium-sized" : "large")
    }

    static func positionWord(_ x: Double, _ y: Double, width: Int, height: Int) -> String {
        let col = x < Double(width) / 3 ? "left" : (x < 2 * Double(width) / 3 ? "centre" : "right")
        let row = y < Double(height) / 3 ? "upper" : (y < 2 * Double(height) / 3 ? "middle" : "lower")
        return row == "middle" && col == "centre" ? "centre" : "\(row) \(col)"
    }

    static func endoscopy(width w: Int, height h: Int, rng: inout CounterRandom) -> SyntheticImage {
        let short = Double(min(w, h))
        let base = (rng.uniform(200, 235), rng.uniform(110, 145), rng.uniform(110, 140))
        let mucosa = ValueNoise(width: w, height: h, cell: short / rng.uniform(4, 7), rng: &rng)
        let vessels = ValueNoise(width: w, height: h, cell: short / rng.uniform(9, 14), rng: &rng)
        let fine = ValueNoise(width: w, height: h, cell: max(2, short / 40), rng: &rng)
        let radius = short * rng.uniform(0.11, 0.22)
        let polyp = Blob(
            cx: rng.uniform(radius + 4, Double(w) - radius - 4), cy: rng.uniform(radius + 4, Double(h) - radius - 4),
            rx: radius * rng.uniform(0.85, 1.15), ry: radius * rng.uniform(0.85, 1.15),
            a2: rng.uniform(0, 0.15), p2: rng.uniform(0, 2 * .pi), a3: rng.uniform(0, 0.08), p3: rng.uniform(0, 2 * .pi)
        )
        let tint = (rng.uniform(-10, 20), rng.uniform(-45, -20), rng.uniform(-40, -15))
        // Highlights: a few on the polyp's lit side, a few on the tissue.
        let light = rng.uniform(0, 2 * .pi)
        var spots: [(Double, Double, Double)] = []
        for _ in 0..<(2 + pick(&rng, 3)) {
            let a = light + rng.uniform(-0.6, 0.6), d = rng.uniform(0.2, 0.6)
            spots.append(
                (
                    polyp.cx + cos(a) * d * polyp.rx, polyp.cy + sin(a) * d * polyp.ry,
                    rng.uniform(1.0, 2.2) * short / 128
                ))
        }
        for _ in 0..<(1 + pick(&rng, 4)) {
            spots.append((rng.uniform(0, Double(w)), rng.uniform(0, Double(h)), rng.uniform(0.8, 2.0) * short / 128))
        }
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        var mask = [UInt8](repeating: 0, count: w * h)
        let fov = 0.5 * short * rng.uniform(0.95, 1.15)
        for y in 0..<h {
            for x in 0..<w {
                let px = Double(x) + 0.5, py = Double(y) + 0.5
                let m = mucosa.value(x, y) - 0.5
                let v = 1 - min(1, abs(vessels.value(x, y) - 0.5) * 14)  // thin ridges: vessels
                var r = base.0 + 40 * m - 25 * v, g = base.1 + 35 * m - 45 * v, b = base.2 + 30 * m - 35 * v
                let level = polyp.level(px, py)
                if level < 1.08 {
                    // Bulbous: brighter towards the lit side of the centre, a soft rim.
                    let inside = min(1, max(0, (1.08 - level) / 0.16))
                    let dx = (px - polyp.cx) / polyp.rx, dy = (py - polyp.cy) / polyp.ry
                    let lit = 18 * (dx * cos(light) + dy * sin(light)) + 22 * (1 - level * level)
                    let f = 12 * (fine.value(x, y) - 0.5)
                    r += inside * (tint.0 + lit + f); g += inside * (tint.1 + lit + f); b += inside * (tint.2 + lit + f)
                    if level <= 1 { mask[y * w + x] = 1 }
                }
                for s in spots {
                    let d2 = ((px - s.0) * (px - s.0) + (py - s.1) * (py - s.1)) / (s.2 * s.2)
                    if d2 < 4 {
                        let k = exp(-d2)
                        r += (255 - r) * k; g += (255 - g) * k; b += (255 - b) * k
                    }
                }
                // Round field of view with vignetting; outside it is black.
                let cdx = px - Double(w) / 2, cdy = py - Double(h) / 2
                let rr = (cdx * cdx + cdy * cdy).squareRoot() / fov
                let vig = rr > 1 ? max(0, 1 - (rr - 1) * 12) : 1 - 0.35 * rr * rr
                let i = 3 * (y * w + x)
                pixels[i] = clampToByte(r * vig); pixels[i + 1] = clampToByte(g * vig);
                pixels[i + 2] = clampToByte(b * vig)
            }
        }
        let size = sizeWord(radius, short: short)
        let position = positionWord(polyp.cx, polyp.cy, width: w, height: h)
        let prompts: [(key: String, value: DemoDataset.PromptValue)] = [
            ("p0", .text("")), ("p1", .text("a polyp")), ("p2", .text("a colorectal polyp")),
            ("p3", .text("a \(size) polyp")),
            ("p4", .text("a \(size) polyp in the \(position) of the colonoscopy image")),
            ("p5", .list(["a raised polyp on the bowel mucosa", "a polyp in the colon"])),
        ]
        return SyntheticImage(
            image: RGBImage(width: w, height: h, pixels: pixels),
            entries: [.init(mask: BinaryMask(width: w, height: h, values: mask), prompts: prompts)])
    }

    static func ultrasound(width w: Int, height h: Int, rng: inout CounterRandom) -> SyntheticImage {
        let short = Double(min(w, h))
        let layers = ValueNoise(width: w, height: h, cell: short / rng.uniform(5, 8), rng: &rng)
        let gain = rng.uniform(95, 140)
        let radius = short * rng.uniform(0.1, 0.2)
        let lesion = Blob(
            cx: rng.uniform(radius * 1.4 + 4, Double(w) - radius * 1.4 - 4),
            cy: rng.uniform(max(radius + 4, 0.25 * Double(h)), Double(h) - radius - 6),
            rx: radius * rng.uniform(1.1, 1.5), ry: radius * rng.uniform(0.65, 0.95),
            a2: rng.uniform(0, 0.12), p2: rng.uniform(0, 2 * .pi), a3: rng.uniform(0, 0.1), p3: rng.uniform(0, 2 * .pi))
        let softness = rng.uniform(0.12, 0.3)
        let darkness = rng.uniform(0.15, 0.35)
        // Fan-shaped sector from an apex above the image.
        let apexX = Double(w) / 2, apexY = -0.25 * Double(h)
        let halfAngle = rng.uniform(0.55, 0.75)
        let bandFrequency = rng.uniform(14, 20)
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        var mask = [UInt8](repeating: 0, count: w * h)
        for y in 0..<h {
            for x in 0..<w {
                let px = Double(x) + 0.5, py = Double(y) + 0.5
                // Speckle: exponential (Rayleigh intensity) per pixel, times layered echogenicity.
                let speckle = -log(max(1e-6, rng.unit())) * 0.6 + 0.4
                let band = 0.55 + 0.45 * sin(py / short * bandFrequency + 6 * layers.value(x, y))
                var e = gain * speckle * (0.6 + 0.6 * band) * (0.75 + 0.5 * layers.value(x, y))
                let level = lesion.level(px, py)
                // Dark inside, with a soft border; brighter below (posterior enhancement).
                let inside = 1 / (1 + exp((level - 1) / (softness * 0.35)))
                e *= 1 - (1 - darkness) * inside
                if abs(px - lesion.cx) < lesion.rx * 0.8 && py > lesion.cy + lesion.ry * 0.9 {
                    e *= 1 + 0.35 * exp(-(py - lesion.cy - lesion.ry) / (0.6 * short))
                }
                if level <= 1 { mask[y * w + x] = 1 }
                e *= 1 - 0.4 * py / Double(h)  // depth attenuation
                let angle = atan2(px - apexX, py - apexY)
                if abs(angle) > halfAngle { e = 0; mask[y * w + x] = 0 }
                let v = clampToByte(e)
                let i = 3 * (y * w + x)
                pixels[i] = v; pixels[i + 1] = v; pixels[i + 2] = v
            }
        }
        let size = sizeWord(radius, short: short)
        let position = positionWord(lesion.cx, lesion.cy, width: w, height: h)
        let prompts: [(key: String, value: DemoDataset.PromptValue)] = [
            ("p0", .text("")), ("p1", .text("a benign tumour")),
            ("p2", .text("a benign tumour in a breast ultrasound")),
            ("p3", .text("a \(size) hypoechoic mass")),
            ("p4", .text("a \(size) benign tumour in the \(position) of the ultrasound")),
            ("p5", .list(["an oval hypoechoic tumour with soft margins", "a benign breast tumour"])),
        ]
        return SyntheticImage(
            image: RGBImage(width: w, height: h, pixels: pixels),
            entries: [.init(mask: BinaryMask(width: w, height: h, values: mask), prompts: prompts)])
    }

    /// Writes the dataset in the medvlsm layout under `root`.
    @discardableResult
    public static func write(options: Options, to root: URL, progress: (@Sendable (Int, Int) -> Void)? = nil) throws
        -> SyntheticDatasetWriter.Summary
    {
        try SyntheticDatasetWriter.write(
            count: options.count, prefix: options.modality.rawValue, trainFraction: options.trainFraction,
            valFraction: options.valFraction, to: root, progress: progress
        ) { i in
            makeImage(index: i, options: options)
        }
    }
}
