import Foundation
import VLTensor

// MARK: - Photometric

extension RGBImage {
    /// Every byte mapped through a 256-entry table (brightness and contrast are both such maps).
    func mapped(_ table: [UInt8]) -> RGBImage {
        var out = self
        table.withUnsafeBufferPointer { t in
            out.pixels.withUnsafeMutableBufferPointer { p in
                for i in 0..<p.count { p[i] = t[Int(p[i])] }
            }
        }
        return out
    }

    /// Mean luma (ITU-R 601 weights, as PIL's `convert("L")`), the pivot of a contrast change.
    var meanLuma: Double {
        var sum = 0.0
        pixels.withUnsafeBufferPointer { p in
            var s: UInt64 = 0
            for i in 0..<(width * height) {
                s += UInt64(299 * UInt32(p[3 * i]) + 587 * UInt32(p[3 * i + 1]) + 114 * UInt32(p[3 * i + 2]))
            }
            sum = Double(s) / 1000
        }
        return width * height == 0 ? 0 : sum / Double(width * height)
    }

    /// Adds `delta` (in units of the full range, e.g. 0.1 = +25.5 levels) to every channel.
    public func adjustingBrightness(_ delta: Double) -> RGBImage {
        mapped((0..<256).map { UInt8(min(max((Double($0) + delta * 255).rounded(), 0), 255)) })
    }

    /// Scales the distance of every channel from the image's mean luma by `factor` (1 = unchanged),
    /// torchvision's and PIL ImageEnhance's definition of contrast.
    public func adjustingContrast(_ factor: Double) -> RGBImage {
        let m = meanLuma
        return mapped((0..<256).map { UInt8(min(max(((Double($0) - m) * factor + m).rounded(), 0), 255)) })
    }

    /// albumentations 1.x `RandomBrightnessContrast` on 8-bit images with `brightness_by_max` (its
    /// default): every value v becomes alpha * v + beta * 255, clipped to [0, 255] and truncated toward
    /// zero, through a 256-entry table computed in float32 as its lookup table is. Unlike
    /// `adjustingContrast`, alpha scales about 0, not about the mean luma, so it also darkens or brightens.
    public func adjustingBrightnessContrast(alpha: Double, beta: Double) -> RGBImage {
        let a = Float(alpha), b = Float(beta * 255)
        return mapped(
            (0..<256).map { v in
                var x = Float(v)
                if alpha != 1 { x *= a }
                if beta != 0 { x += b }
                return UInt8(min(max(x, 0), 255))  // Float -> UInt8 truncates, as numpy's astype
            })
    }
}
