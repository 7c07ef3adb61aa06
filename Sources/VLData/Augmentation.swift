import Foundation
import VLTensor

// MARK: - Augmentation

/// Augments one training sample: foreground-keeping crop, random affine, flips, then brightness and
/// contrast (separately, then together as albumentations does), each with its own probability, the geometric ones applied identically to image and mask.
///
/// All randomness comes from `rng`, which the loader derives from (seed, epoch, sample index,
/// `.augmentation`), so a sample is augmented the same way whatever rank or thread handles it. Every
/// step draws the same number of values whether or not it fires, so turning one augmentation on or
/// off does not change the draws of the others.
public func augment(
    image: RGBImage, mask: BinaryMask, config: AugmentationConfig,
    rng: inout CounterRandom
) -> (RGBImage, BinaryMask) {
    precondition(
        image.width == mask.width && image.height == mask.height,
        "augment: image \(image.width)x\(image.height) and mask \(mask.width)x\(mask.height) differ")
    var img = image, msk = mask
    let w = image.width, h = image.height

    // 1. Crop containing the foreground bounding box, resized back.
    let cropFires = rng.bernoulli(config.foregroundCrop.p)
    let cropScale = rng.uniform(config.foregroundCrop.minScale, 1)
    let cropU = rng.unit(), cropV = rng.unit()
    if cropFires && w > 1 && h > 1 {
        let bounds = msk.foregroundBounds
        let cw = min(w, max(bounds?.x.count ?? 1, Int((cropScale * Double(w)).rounded())))
        let ch = min(h, max(bounds?.y.count ?? 1, Int((cropScale * Double(h)).rounded())))
        // Offsets for which the crop still covers the box.
        let xLo = max(0, (bounds?.x.upperBound ?? 0) - cw), xHi = min(bounds?.x.lowerBound ?? (w - cw), w - cw)
        let yLo = max(0, (bounds?.y.upperBound ?? 0) - ch), yHi = min(bounds?.y.lowerBound ?? (h - ch), h - ch)
        let x0 = xLo + min(Int(cropU * Double(xHi - xLo + 1)), xHi - xLo)
        let y0 = yLo + min(Int(cropV * Double(yHi - yLo + 1)), yHi - yLo)
        if cw != w || ch != h {
            img = img.cropped(x: x0, y: y0, width: cw, height: ch).resized(width: w, height: h)
            msk = msk.cropped(x: x0, y: y0, width: cw, height: ch).resizedNearest(width: w, height: h)
        }
    }

    // 2. Random affine.
    let a = config.affine
    let affineFires = rng.bernoulli(a.p)
    let angle = rng.uniform(-a.degrees, a.degrees)
    let tx = rng.uniform(-a.translate, a.translate) * Double(w)
    let ty = rng.uniform(-a.translate, a.translate) * Double(h)
    let scale = rng.uniform(a.scale[0], a.scale[1])
    let shear = rng.uniform(-a.shear, a.shear)
    // The y scale's own draw exists only with keep_ratio off, so the default's draws are unchanged.
    let scaleY = a.keepRatio ? scale : rng.uniform(a.scale[0], a.scale[1])
    if affineFires {
        let m = AffineSampler(
            width: w, height: h, degrees: angle, translate: (tx, ty), scale: scale, scaleY: scaleY,
            shearDegrees: shear)
        img = img.warped(m, border: a.border, interpolation: a.interpolation)
        msk = msk.warped(m, border: a.border)
    }

    // 3. Flips.
    if rng.bernoulli(config.horizontalFlip) {
        img = img.flippedHorizontally(); msk = msk.flippedHorizontally()
    }
    if rng.bernoulli(config.verticalFlip) {
        img = img.flippedVertically(); msk = msk.flippedVertically()
    }

    // 4. Photometric (image only).
    let brightFires = rng.bernoulli(config.brightness.p)
    let brightDelta = rng.uniform(-config.brightness.limit, config.brightness.limit)
    if brightFires { img = img.adjustingBrightness(brightDelta) }
    let contrastFires = rng.bernoulli(config.contrast.p)
    let contrastFactor = 1 + rng.uniform(-config.contrast.limit, config.contrast.limit)
    if contrastFires { img = img.adjustingContrast(contrastFactor) }

    // 5. Brightness and contrast together (albumentations 1.x): one draw of p, then alpha and beta.
    let bc = config.brightnessContrast
    let bcFires = rng.bernoulli(bc.p)
    let alpha = 1 + rng.uniform(-bc.contrastLimit, bc.contrastLimit)
    let beta = rng.uniform(-bc.brightnessLimit, bc.brightnessLimit)
    if bcFires { img = img.adjustingBrightnessContrast(alpha: alpha, beta: beta) }
    return (img, msk)
}
