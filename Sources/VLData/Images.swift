/// An 8-bit RGB image, rows top to bottom, pixels interleaved R, G, B.
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(
            width >= 0 && height >= 0 && pixels.count == width * height * 3,
            "RGB image \(width)x\(height) with \(pixels.count) bytes")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    public init(width: Int, height: Int, fill: (UInt8, UInt8, UInt8) = (0, 0, 0)) {
        self.init(
            width: width, height: height,
            pixels: [UInt8]((0..<(width * height)).flatMap { _ in [fill.0, fill.1, fill.2] }))
    }
}

/// A binary mask: 1 = foreground, 0 = background, row-major.
public struct BinaryMask: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var values: [UInt8]

    public init(width: Int, height: Int, values: [UInt8]) {
        precondition(
            width >= 0 && height >= 0 && values.count == width * height,
            "mask \(width)x\(height) with \(values.count) values")
        self.width = width
        self.height = height
        self.values = values
    }

    public init(width: Int, height: Int) {
        self.init(width: width, height: height, values: [UInt8](repeating: 0, count: width * height))
    }

    /// Fraction of foreground pixels.
    public var foregroundRatio: Double {
        values.isEmpty ? 0 : Double(values.reduce(0) { $0 + Int($1) }) / Double(values.count)
    }
}
