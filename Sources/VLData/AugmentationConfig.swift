import Foundation
import VLTensor

// MARK: - Augmentation configuration

/// Training augmentations, all off by default (`AugmentationConfig()` changes nothing).
///
/// Decoded from configs with snake_case keys; an unknown key or an out-of-range value is an error
/// naming it, so a typo cannot silently disable an augmentation.
public struct AugmentationConfig: Codable, Sendable, Equatable {
    /// Random affine applied identically to image (bilinear or bicubic) and mask (nearest).
    public struct Affine: Codable, Sendable, Equatable {
        /// Probability of applying it.
        public var p: Double = 0
        /// Rotation uniform in [-degrees, degrees].
        public var degrees: Double = 0
        /// Translation uniform in [-translate, translate] times the width (x) and height (y).
        public var translate: Double = 0
        /// Scale uniform in [scale[0], scale[1]]: one draw for both axes (`keepRatio`), or one per axis.
        public var scale: [Double] = [1, 1]
        /// Horizontal shear uniform in [-shear, shear] degrees.
        public var shear: Double = 0
        /// How pixels pulled in from outside the image are filled.
        public var border: BorderMode = .replicate
        /// One scale for x and y (true), or x and y drawn independently from `scale`, as albumentations'
        /// `Affine(keep_ratio=False)`, its default.
        public var keepRatio = true
        /// The image's interpolation (the mask's is always nearest).
        public var interpolation: AffineInterpolation = .bilinear

        public init(
            p: Double = 0, degrees: Double = 0, translate: Double = 0, scale: [Double] = [1, 1],
            shear: Double = 0, border: BorderMode = .replicate, keepRatio: Bool = true,
            interpolation: AffineInterpolation = .bilinear
        ) {
            self.p = p; self.degrees = degrees; self.translate = translate; self.scale = scale
            self.shear = shear; self.border = border; self.keepRatio = keepRatio; self.interpolation = interpolation
        }

        enum CodingKeys: String, CodingKey, CaseIterable {
            case p, degrees, translate, scale, shear, border, keepRatio = "keep_ratio", interpolation
        }

        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(
                decoder, known: CodingKeys.allCases.map(\.stringValue), section: "augmentation.affine")
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init()
            p = try c.decodeIfPresent(Double.self, forKey: .p) ?? p
            degrees = try c.decodeIfPresent(Double.self, forKey: .degrees) ?? degrees
            translate = try c.decodeIfPresent(Double.self, forKey: .translate) ?? translate
            scale = try c.decodeIfPresent([Double].self, forKey: .scale) ?? scale
            shear = try c.decodeIfPresent(Double.self, forKey: .shear) ?? shear
            border = try c.decodeIfPresent(BorderMode.self, forKey: .border) ?? border
            keepRatio = try c.decodeIfPresent(Bool.self, forKey: .keepRatio) ?? keepRatio
            if let name = try c.decodeIfPresent(String.self, forKey: .interpolation) {
                let allowed = AffineInterpolation.allCases.map(\.rawValue)
                guard let value = AffineInterpolation(rawValue: name) else {
                    throw DecodingError.dataCorruptedError(
                        forKey: .interpolation, in: c,
                        debugDescription:
                            "interpolation must be one of \(allowed.joined(separator: ", ")), found '\(name)'")
                }
                interpolation = value
            }
            try check(probability: p, key: .p, in: c)
            try check(degrees >= 0 && degrees <= 180, "degrees must be in 0...180", key: .degrees, in: c)
            try check(translate >= 0 && translate < 1, "translate must be in [0, 1)", key: .translate, in: c)
            try check(
                scale.count == 2 && scale[0] > 0 && scale[0] <= scale[1],
                "scale must be [low, high] with 0 < low <= high", key: .scale, in: c)
            try check(shear >= 0 && shear < 90, "shear must be in [0, 90) degrees", key: .shear, in: c)
        }
    }

    /// A random crop that contains the mask's foreground bounding box, resized back to the input size.
    public struct ForegroundCrop: Codable, Sendable, Equatable {
        public var p: Double = 0
        /// Smallest crop side as a fraction of the image side (the crop grows when the foreground needs it).
        public var minScale: Double = 0.7

        public init(p: Double = 0, minScale: Double = 0.7) { self.p = p; self.minScale = minScale }

        enum CodingKeys: String, CodingKey, CaseIterable { case p, minScale = "min_scale" }

        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(
                decoder, known: CodingKeys.allCases.map(\.stringValue), section: "augmentation.foreground_crop")
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init()
            p = try c.decodeIfPresent(Double.self, forKey: .p) ?? p
            minScale = try c.decodeIfPresent(Double.self, forKey: .minScale) ?? minScale
            try check(probability: p, key: .p, in: c)
            try check(minScale > 0 && minScale <= 1, "min_scale must be in (0, 1]", key: .minScale, in: c)
        }
    }

    /// A photometric jitter applied with probability p, strength uniform in [-limit, limit].
    public struct Jitter: Codable, Sendable, Equatable {
        public var p: Double = 0
        public var limit: Double = 0

        public init(p: Double = 0, limit: Double = 0) { self.p = p; self.limit = limit }

        enum CodingKeys: String, CodingKey, CaseIterable { case p, limit }

        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(
                decoder, known: CodingKeys.allCases.map(\.stringValue), section: "augmentation jitter")
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init()
            p = try c.decodeIfPresent(Double.self, forKey: .p) ?? p
            limit = try c.decodeIfPresent(Double.self, forKey: .limit) ?? limit
            try check(probability: p, key: .p, in: c)
            try check(limit >= 0 && limit < 1, "limit must be in [0, 1)", key: .limit, in: c)
        }
    }

    /// albumentations 1.x `RandomBrightnessContrast`: one probability for both changes, and the
    /// contrast factor multiplies the values themselves (no pivot), see `adjustingBrightnessContrast`.
    public struct BrightnessContrast: Codable, Sendable, Equatable {
        public var p: Double = 0
        /// beta uniform in [-limit, limit], added as beta * 255.
        public var brightnessLimit: Double = 0
        /// alpha = 1 + U(-limit, limit), multiplying every value.
        public var contrastLimit: Double = 0

        public init(p: Double = 0, brightnessLimit: Double = 0, contrastLimit: Double = 0) {
            self.p = p; self.brightnessLimit = brightnessLimit; self.contrastLimit = contrastLimit
        }

        enum CodingKeys: String, CodingKey, CaseIterable {
            case p, brightnessLimit = "brightness_limit", contrastLimit = "contrast_limit"
        }

        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(
                decoder, known: CodingKeys.allCases.map(\.stringValue), section: "augmentation.brightness_contrast")
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init()
            p = try c.decodeIfPresent(Double.self, forKey: .p) ?? p
            brightnessLimit = try c.decodeIfPresent(Double.self, forKey: .brightnessLimit) ?? brightnessLimit
            contrastLimit = try c.decodeIfPresent(Double.self, forKey: .contrastLimit) ?? contrastLimit
            try check(probability: p, key: .p, in: c)
            try check(
                brightnessLimit >= 0 && brightnessLimit < 1, "brightness_limit must be in [0, 1)",
                key: .brightnessLimit, in: c)
            try check(
                contrastLimit >= 0 && contrastLimit < 1, "contrast_limit must be in [0, 1)", key: .contrastLimit,
                in: c)
        }
    }

    public var affine = Affine()
    public var foregroundCrop = ForegroundCrop()
    /// Adds limit-bounded fractions of the full range (albumentations' brightness_by_max).
    public var brightness = Jitter()
    /// Scales contrast about the mean luma by 1 + U(-limit, limit).
    public var contrast = Jitter()
    /// Brightness and contrast together, as albumentations 1.x (after `brightness` and `contrast`).
    public var brightnessContrast = BrightnessContrast()
    /// Probability of a horizontal flip.
    public var horizontalFlip: Double = 0
    /// Probability of a vertical flip.
    public var verticalFlip: Double = 0

    public init(
        affine: Affine = Affine(), foregroundCrop: ForegroundCrop = ForegroundCrop(), brightness: Jitter = Jitter(),
        contrast: Jitter = Jitter(), brightnessContrast: BrightnessContrast = BrightnessContrast(),
        horizontalFlip: Double = 0, verticalFlip: Double = 0
    ) {
        self.affine = affine; self.foregroundCrop = foregroundCrop; self.brightness = brightness
        self.contrast = contrast; self.brightnessContrast = brightnessContrast
        self.horizontalFlip = horizontalFlip; self.verticalFlip = verticalFlip
    }

    /// No augmentation (evaluation, or training without it).
    public static let none = AugmentationConfig()

    /// TuneVLSeg's training augmentations (its end-to-end CLIPSeg/CRIS experiment configs):
    /// `Affine(scale 0.98-1.02, translate ±2 %, rotate ±5°, border replicate, INTER_CUBIC, p=0.2)` with
    /// albumentations' default `keep_ratio=False` (x and y scales drawn independently) and
    /// `RandomBrightnessContrast(limits 0.1, p=0.2)` (as albumentations 1.x: `brightness_contrast`). Its `CropNonEmptyMaskIfExists` crops the full
    /// image size out of an image already resized to that size, which keeps everything, so the
    /// foreground crop stays off here too; no flips (commented out there).
    public static let tuneVLSeg = AugmentationConfig(
        affine: Affine(
            p: 0.2, degrees: 5, translate: 0.02, scale: [0.98, 1.02], shear: 0, border: .replicate, keepRatio: false,
            interpolation: .bicubic),
        brightnessContrast: BrightnessContrast(p: 0.2, brightnessLimit: 0.1, contrastLimit: 0.1))

    /// Whether the configuration can change a sample at all (lets the loader skip the work).
    public var isIdentity: Bool {
        affine.p == 0 && foregroundCrop.p == 0 && brightness.p == 0 && contrast.p == 0
            && brightnessContrast.p == 0 && horizontalFlip == 0 && verticalFlip == 0
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case affine, foregroundCrop = "foreground_crop", brightness, contrast
        case brightnessContrast = "brightness_contrast"
        case horizontalFlip = "horizontal_flip", verticalFlip = "vertical_flip"
    }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.stringValue), section: "augmentation")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        affine = try c.decodeIfPresent(Affine.self, forKey: .affine) ?? affine
        foregroundCrop = try c.decodeIfPresent(ForegroundCrop.self, forKey: .foregroundCrop) ?? foregroundCrop
        brightness = try c.decodeIfPresent(Jitter.self, forKey: .brightness) ?? brightness
        contrast = try c.decodeIfPresent(Jitter.self, forKey: .contrast) ?? contrast
        brightnessContrast =
            try c.decodeIfPresent(BrightnessContrast.self, forKey: .brightnessContrast) ?? brightnessContrast
        horizontalFlip = try c.decodeIfPresent(Double.self, forKey: .horizontalFlip) ?? horizontalFlip
        verticalFlip = try c.decodeIfPresent(Double.self, forKey: .verticalFlip) ?? verticalFlip
        try check(probability: horizontalFlip, key: .horizontalFlip, in: c)
        try check(probability: verticalFlip, key: .verticalFlip, in: c)
    }
}

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

private func rejectUnknownKeys(_ decoder: Decoder, known: [String], section: String) throws {
    let c = try decoder.container(keyedBy: AnyKey.self)
    for key in c.allKeys where !known.contains(key.stringValue) {
        throw DecodingError.dataCorruptedError(
            forKey: key, in: c,
            debugDescription: "unknown key '\(key.stringValue)' in \(section) (known: \(known.joined(separator: ", ")))"
        )
    }
}

private func check<K: CodingKey>(_ ok: Bool, _ message: String, key: K, in c: KeyedDecodingContainer<K>) throws {
    if !ok { throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: message) }
}

private func check<K: CodingKey>(probability p: Double, key: K, in c: KeyedDecodingContainer<K>) throws {
    try check(p >= 0 && p <= 1, "'\(key.stringValue)' must be a probability in [0, 1]", key: key, in: c)
}
