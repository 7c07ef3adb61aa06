import Foundation

/// What the loss is trained against (`data.target`).
///
/// Both papers' loaders divide the stored mask by 255 and give the loss that value: VLSM-Adapter through
/// torchvision's `ToTensor` after a nearest resize, TuneVLSeg after `cv2.IMREAD_GRAYSCALE`. On 0/255 masks
/// that is 0/1; on masks with intermediate grey levels (JPEG-compressed masks, anti-aliased edges) the
/// target is fractional there. `binary` thresholds at 127 instead, which gives every pixel a hard label.
public enum MaskTarget: String, Sendable, Codable, CaseIterable {
    case binary
    case soft
}

extension ImageIO {
    /// A mask's first-channel levels 0...255 (the grey value, or red for colour files): the values that
    /// `readMask` thresholds at 127, kept as they are. Stored in a `BinaryMask`, whose geometric
    /// transforms (nearest resize, crops, flips, the nearest warp) copy values and so keep levels.
    public static func readMaskLevels(_ url: URL) throws -> BinaryMask {
        let rgb = try readImage(url)
        var levels = [UInt8](repeating: 0, count: rgb.width * rgb.height)
        rgb.pixels.withUnsafeBufferPointer { src in
            for i in 0..<levels.count { levels[i] = src[3 * i] }
        }
        return BinaryMask(width: rgb.width, height: rgb.height, values: levels)
    }
}

extension BinaryMask {
    /// The mask as loss targets: 0/1 for a binary mask (any nonzero value is foreground), value / 255
    /// for levels read by `ImageIO.readMaskLevels`.
    public func writeTargets(_ kind: MaskTarget, into destination: UnsafeMutablePointer<Float>) {
        switch kind {
        case .binary: writeFloats(into: destination)
        case .soft:
            values.withUnsafeBufferPointer { src in
                for i in 0..<src.count { destination[i] = Float(src[i]) / 255 }
            }
        }
    }
}

/// TuneVLSeg's `insert_stop_at_last`: the prompt with "." appended unless it already ends with one.
public func promptEndingWithPeriod(_ prompt: String) -> String {
    prompt.hasSuffix(".") ? prompt : prompt + "."
}
