import Foundation

/// The demo backbone's source domain: generated "natural" scenes with referring prompts.
///
/// Each image shows two to six objects on a smooth, two-tone landscape-like background. Objects vary
/// in shape (circle, square, triangle, ring, star, cross), colour, size, texture (plain, striped,
/// dotted) and position, and colours and shapes repeat within a scene, so that no single word picks
/// the object: "the red triangle" needs both words when there is a red circle and a blue triangle too,
/// "the ring on the left" needs a relation, "every blue shape" a set. Each image carries
/// `entriesPerImage` entries, each with its own mask and the prompts p1..pN that all describe exactly
/// that mask (p0 is empty, as in medvlsm). A model that ignores the text cannot do well, so
/// pretraining on it has to teach the text tower the words and how they combine.
///
/// Everything is drawn from `CounterRandom(seed, index: image, purpose: .sceneData)`: an image does
/// not depend on how many others are made, and the same seed writes the same files.
public enum SceneDataset {
    public struct Options: Sendable {
        /// Number of images (entries: `count * entriesPerImage`).
        public var count: Int
        public var width: Int
        public var height: Int
        public var seed: UInt64
        public var entriesPerImage: Int
        public var trainFraction: Double
        public var valFraction: Double

        public init(
            count: Int = 1000, width: Int = 128, height: Int = 128, seed: UInt64 = 0, entriesPerImage: Int = 2,
            trainFraction: Double = 0.8, valFraction: Double = 0.1
        ) {
            self.count = count; self.width = width; self.height = height; self.seed = seed
            self.entriesPerImage = entriesPerImage
            self.trainFraction = trainFraction; self.valFraction = valFraction
        }
    }

    public enum Shape: String, CaseIterable, Sendable {
        case circle, square, triangle, ring, star, cross
        var plural: String { self == .cross ? "crosses" : rawValue + "s" }
    }

    public enum Texture: String, CaseIterable, Sendable {
        case plain, striped, dotted
    }

    /// Object colours: far apart in hue and from the backgrounds' muted tones.
    public static let palette: [(name: String, rgb: (Double, Double, Double))] = [
        ("red", (215, 35, 35)), ("green", (35, 170, 55)), ("blue", (40, 80, 220)),
        ("yellow", (235, 215, 40)), ("purple", (150, 55, 190)), ("orange", (245, 135, 25)),
        ("white", (240, 240, 240)), ("black", (25, 25, 25)),
    ]

    public struct Object: Sendable, Equatable {
        public var shape: Shape
        public var colorIndex: Int
        public var texture: Texture
        public var large: Bool
        public var centerX: Double, centerY: Double
        /// Circumscribed radius in pixels.
        public var radius: Double
        public var rotation: Double
        public var colorName: String { SceneDataset.palette[colorIndex].name }

        /// Whether the point (pixel centre) lies inside the shape.
        func contains(_ x: Double, _ y: Double) -> Bool {
            let dx = (x - centerX) / radius, dy = (y - centerY) / radius
            let c = cos(rotation), s = sin(rotation)
            let u = c * dx + s * dy, v = -s * dx + c * dy
            let d = (u * u + v * v).squareRoot()
            switch shape {
            case .circle: return d <= 1
            case .ring: return d <= 1 && d >= 0.55
            case .square: return max(abs(u), abs(v)) <= 0.78
            case .cross: return (abs(u) <= 0.3 && abs(v) <= 0.95) || (abs(v) <= 0.3 && abs(u) <= 0.95)
            case .triangle:
                // Equilateral, vertices on the unit circle: inside all three edges' half-planes
                // (each edge's inward normal points at the centre, at distance 0.5).
                for k in 0..<3 {
                    let a = Double(k) * 2 * .pi / 3 + .pi / 2 + .pi
                    if u * cos(a) + v * sin(a) > 0.5 { return false }
                }
                return true
            case .star:
                let period = 2 * Double.pi / 5
                var t = (atan2(v, u) + .pi / 2).truncatingRemainder(dividingBy: period)
                if t < 0 { t += period }
                let tri = abs(2 * t / period - 1)
                return d <= 0.45 + 0.55 * tri
            }
        }

        /// The texture's brightness factor at a pixel inside the object.
        func shade(_ x: Double, _ y: Double) -> Double {
            switch texture {
            case .plain: return 1
            case .striped:
                let p = ((x - centerX) * 0.7 + (y - centerY) * 0.7) / max(3, radius * 0.45)
                return Int(floor(p)) % 2 == 0 ? 1 : 0.45
            case .dotted:
                let cell = max(4, radius * 0.5)
                let fx = (x - centerX) / cell, fy = (y - centerY) / cell
                let ox = fx - fx.rounded(), oy = fy - fy.rounded()
                return ox * ox + oy * oy < 0.09 ? 0.35 : 1
            }
        }
    }

    /// A referring expression's candidates: the objects it denotes and how to say it.
    struct Reference {
        var targets: Set<Int>
        var phrases: [String]
    }

    public struct Scene: Sendable {
        public var image: RGBImage
        public var objects: [Object]
        public var entries: [(targets: [Int], prompts: [String])]
    }

    /// Generates image `index` and its entries (pure in the index and options).
    public static func makeScene(index: Int, options: Options) -> Scene {
        let w = max(options.width, 16), h = max(options.height, 16)
        var rng = CounterRandom(seed: options.seed, epoch: 0, index: UInt64(index), purpose: .sceneData)
        let short = Double(min(w, h))

        // Background: a horizon between two muted tones, with smooth noise.
        let sky = (rng.uniform(120, 200), rng.uniform(130, 200), rng.uniform(140, 210))
        let ground = (rng.uniform(70, 140), rng.uniform(80, 150), rng.uniform(50, 110))
        let horizon = rng.uniform(0.3, 0.7) * Double(h)
        let noise = ValueNoise(width: w, height: h, cell: short / rng.uniform(3, 6), rng: &rng)

        // Objects: a few colours and shapes per scene, so that they repeat and words must combine.
        let wanted = 2 + pick(&rng, 5)
        let colors = drawDistinct(&rng, from: palette.count, count: 1 + pick(&rng, 3))
        let shapes = drawDistinct(&rng, from: Shape.allCases.count, count: 1 + pick(&rng, 3)).map { Shape.allCases[$0] }
        var objects: [Object] = []
        for _ in 0..<wanted {
            let large = rng.bernoulli(0.5)
            var radius = short * (large ? rng.uniform(0.14, 0.19) : rng.uniform(0.075, 0.105))
            let shape = shapes[pick(&rng, shapes.count)]
            let color = colors[pick(&rng, colors.count)]
            let texture: Texture = rng.bernoulli(0.6) ? .plain : (rng.bernoulli(0.5) ? .striped : .dotted)
            let rotation = shape == .circle || shape == .ring ? 0 : rng.uniform(-0.35, 0.35)
            var placed: Object? = nil
            for _ in 0..<4 where placed == nil {
                for _ in 0..<40 {
                    let cx = rng.uniform(radius + 1, Double(w) - radius - 1)
                    let cy = rng.uniform(radius + 1, Double(h) - radius - 1)
                    let clear = objects.allSatisfy { o in
                        let dx = o.centerX - cx, dy = o.centerY - cy
                        return (dx * dx + dy * dy).squareRoot() > o.radius + radius + 2
                    }
                    if clear {
                        placed = Object(
                            shape: shape, colorIndex: color, texture: texture, large: large,
                            centerX: cx, centerY: cy, radius: radius, rotation: rotation)
                        break
                    }
                }
                if placed == nil { radius *= 0.85 }
            }
            if let o = placed { objects.append(o) }
        }

        // Render the background, then each object (none overlap).
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            let blend = 1 / (1 + exp(-(Double(y) - horizon) / 3))
            for x in 0..<w {
                let n = 50 * (noise.value(x, y) - 0.5)
                let i = 3 * (y * w + x)
                pixels[i] = clampToByte(sky.0 * (1 - blend) + ground.0 * blend + n)
                pixels[i + 1] = clampToByte(sky.1 * (1 - blend) + ground.1 * blend + n)
                pixels[i + 2] = clampToByte(sky.2 * (1 - blend) + ground.2 * blend + n)
            }
        }
        for o in objects {
            let rgb = palette[o.colorIndex].rgb
            let x0 = max(0, Int(o.centerX - o.radius) - 1), x1 = min(w - 1, Int(o.centerX + o.radius) + 1)
            let y0 = max(0, Int(o.centerY - o.radius) - 1), y1 = min(h - 1, Int(o.centerY + o.radius) + 1)
            guard x0 <= x1, y0 <= y1 else { continue }
            for y in y0...y1 {
                for x in x0...x1 {
                    let px = Double(x) + 0.5, py = Double(y) + 0.5
                    guard o.contains(px, py) else { continue }
                    let s = o.shade(px, py)
                    // Dark colours get lighter textures, so black stays distinguishable.
                    let f = o.colorIndex == palette.count - 1 && s < 1 ? 2.6 : s
                    let i = 3 * (y * w + x)
                    pixels[i] = clampToByte(rgb.0 * f + 8 * (noise.value(x, y) - 0.5))
                    pixels[i + 1] = clampToByte(rgb.1 * f + 8 * (noise.value(x, y) - 0.5))
                    pixels[i + 2] = clampToByte(rgb.2 * f + 8 * (noise.value(x, y) - 0.5))
                }
            }
        }

        // Entries: distinct referents, each with every phrase that denotes exactly it.
        let references = Self.references(objects, width: w, height: h)
        var grouped: [Set<Int>: [String]] = [:]
        var order: [Set<Int>] = []
        for r in references where !r.targets.isEmpty {
            if grouped[r.targets] == nil { order.append(r.targets) }
            grouped[r.targets, default: []].append(contentsOf: r.phrases)
        }
        var entries: [(targets: [Int], prompts: [String])] = []
        var left = order
        while entries.count < options.entriesPerImage && !left.isEmpty {
            let set = left.remove(at: pick(&rng, left.count))
            var phrases: [String] = []
            for p in grouped[set] ?? [] where !phrases.contains(p) { phrases.append(p) }
            entries.append((set.sorted(), phrases))
        }
        return Scene(image: RGBImage(width: w, height: h, pixels: pixels), objects: objects, entries: entries)
    }

    /// Every referring expression the scene supports, with the exact set of objects it denotes.
    static func references(_ objects: [Object], width: Int, height: Int) -> [Reference] {
        // Arrays in a fixed order throughout: Set and Dictionary iteration order changes from one
        // process to the next (seeded hashing), and the files must not.
        var refs: [Reference] = []
        func with(_ f: (Object) -> Bool) -> Set<Int> { Set(objects.indices.filter { f(objects[$0]) }) }
        let colors = Set(objects.map(\.colorIndex)).sorted()
        let shapes = Shape.allCases.filter { s in objects.contains { $0.shape == s } }

        for c in colors {
            let name = palette[c].name
            let set = with { $0.colorIndex == c }
            if set.count == 1 {
                refs.append(Reference(targets: set, phrases: ["the \(name) shape", "the \(name) object"]))
            } else {
                refs.append(Reference(targets: set, phrases: ["every \(name) shape", "all the \(name) objects"]))
            }
        }
        for s in shapes {
            let set = with { $0.shape == s }
            if set.count == 1 {
                refs.append(Reference(targets: set, phrases: ["the \(s.rawValue)", "a \(s.rawValue)"]))
            } else {
                refs.append(Reference(targets: set, phrases: ["every \(s.rawValue)", "all the \(s.plural)"]))
            }
            for c in colors {
                let both = with { $0.shape == s && $0.colorIndex == c }
                guard !both.isEmpty, both != set else { continue }
                let name = palette[c].name
                refs.append(
                    Reference(
                        targets: both,
                        phrases: both.count == 1
                            ? ["the \(name) \(s.rawValue)", "\(article(name)) \(name) \(s.rawValue)"]
                            : ["every \(name) \(s.rawValue)", "all the \(name) \(s.plural)"]))
            }
            for large in [true, false] {
                let sized = with { $0.shape == s && $0.large == large }
                guard sized.count == 1, sized != set else { continue }
                refs.append(Reference(targets: sized, phrases: ["the \(large ? "large" : "small") \(s.rawValue)"]))
            }
            for t in Texture.allCases where t != .plain {
                let textured = with { $0.shape == s && $0.texture == t }
                guard textured.count == 1, textured != set else { continue }
                refs.append(Reference(targets: textured, phrases: ["the \(t.rawValue) \(s.rawValue)"]))
            }
            // Relations among objects of one shape: the clearly leftmost, rightmost, highest, lowest.
            if set.count >= 2 {
                let members = set.sorted().map { ($0, objects[$0]) }
                let margin = 0.08 * Double(min(width, height))
                let directions: [(String, (Object) -> Double)] = [
                    ("on the left", { -$0.centerX }), ("on the right", { $0.centerX }),
                    ("at the top", { -$0.centerY }), ("at the bottom", { $0.centerY }),
                ]
                for (words, key) in directions {
                    let sorted = members.sorted { key($0.1) > key($1.1) }
                    guard key(sorted[0].1) - key(sorted[1].1) > margin else { continue }
                    refs.append(Reference(targets: [sorted[0].0], phrases: ["the \(s.rawValue) \(words)"]))
                }
            }
        }
        for t in Texture.allCases where t != .plain {
            let set = with { $0.texture == t }
            guard !set.isEmpty else { continue }
            refs.append(
                Reference(
                    targets: set, phrases: [set.count == 1 ? "the \(t.rawValue) shape" : "every \(t.rawValue) shape"]))
        }
        return refs
    }

    /// The written image with its entries' masks and prompts (p0 empty, then p1..pN).
    public static func makeImage(index: Int, options: Options) -> SyntheticImage {
        let scene = makeScene(index: index, options: options)
        let w = scene.image.width, h = scene.image.height
        let entries = scene.entries.map { entry -> SyntheticImage.Entry in
            var values = [UInt8](repeating: 0, count: w * h)
            for t in entry.targets {
                let o = scene.objects[t]
                let x0 = max(0, Int(o.centerX - o.radius) - 1), x1 = min(w - 1, Int(o.centerX + o.radius) + 1)
                let y0 = max(0, Int(o.centerY - o.radius) - 1), y1 = min(h - 1, Int(o.centerY + o.radius) + 1)
                guard x0 <= x1, y0 <= y1 else { continue }
                for y in y0...y1 {
                    for x in x0...x1 where o.contains(Double(x) + 0.5, Double(y) + 0.5) { values[y * w + x] = 1 }
                }
            }
            var prompts: [(key: String, value: DemoDataset.PromptValue)] = [("p0", .text(""))]
            for (k, p) in entry.prompts.enumerated() { prompts.append(("p\(k + 1)", .text(p))) }
            return SyntheticImage.Entry(mask: BinaryMask(width: w, height: h, values: values), prompts: prompts)
        }
        return SyntheticImage(image: scene.image, entries: entries)
    }

    /// Writes the dataset in the medvlsm layout under `root` (splits by image).
    @discardableResult
    public static func write(options: Options, to root: URL, progress: (@Sendable (Int, Int) -> Void)? = nil) throws
        -> SyntheticDatasetWriter.Summary
    {
        try SyntheticDatasetWriter.write(
            count: options.count, prefix: "scene", trainFraction: options.trainFraction,
            valFraction: options.valFraction, to: root, progress: progress
        ) { i in
            makeImage(index: i, options: options)
        }
    }
}

/// A uniform index in 0..<n (0 when n <= 1).
@inline(__always)
func pick(_ rng: inout CounterRandom, _ n: Int) -> Int {
    guard n > 1 else { return 0 }
    return min(Int(rng.unit() * Double(n)), n - 1)
}

/// `count` distinct indices of 0..<n, in random order.
func drawDistinct(_ rng: inout CounterRandom, from n: Int, count: Int) -> [Int] {
    var all = Array(0..<n)
    for i in stride(from: n - 1, to: 0, by: -1) { all.swapAt(i, pick(&rng, i + 1)) }
    return Array(all.prefix(max(1, min(count, n))))
}

/// "a" or "an" before a word (by its first letter, enough for the generated vocabulary).
func article(_ word: String) -> String {
    guard let first = word.lowercased().first else { return "a" }
    return "aeiou".contains(first) ? "an" : "a"
}
