import Foundation

/// A float32 N-dimensional array, row-major and contiguous, possibly a view into shared storage.
///
/// Tensors are values: copying one shares its storage (like an array slice), and kernels never
/// write into an input. Views are made only where they are free (reshape, leading-axis slices);
/// every other layout change copies. A tensor that takes part in differentiation carries a
/// `GradNode`; tensors computed only from frozen inputs carry none, so nothing is recorded for them.
// @unchecked Sendable: shape and node are immutable values; the storage is shared by reference, and
// its contract is the engine's: an op writes only tensors it created (or an output its caller handed
// it), and parallel workers inside an op write disjoint ranges.
public struct Tensor: @unchecked Sendable {
    public let storage: TensorStorage
    public let offset: Int
    public let shape: [Int]
    /// The autodiff node that produced this tensor (or the leaf it is), nil when no gradient flows.
    public internal(set) var node: GradNode?

    public init(storage: TensorStorage, offset: Int = 0, shape: [Int], node: GradNode? = nil) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        precondition(
            offset + shapeElementCount(shape) <= storage.count,
            "view \(shape)+\(offset) exceeds storage of \(storage.count)")
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.node = node
    }

    /// A zero-filled tensor.
    public init(zeros shape: [Int]) {
        self.init(storage: TensorStorage(count: shapeElementCount(shape)), shape: shape)
    }

    /// A tensor whose contents the caller fills before reading.
    public init(uninitialized shape: [Int]) {
        self.init(storage: TensorStorage(uninitializedCount: shapeElementCount(shape)), shape: shape)
    }

    /// A tensor holding a copy of `values`.
    public init(shape: [Int], values: [Float]) {
        precondition(values.count == shapeElementCount(shape), "\(values.count) values for shape \(shape)")
        self.init(uninitialized: shape)
        withUnsafeMutableBufferPointer { dst in _ = dst.update(fromContentsOf: values) }
    }

    public init(filling value: Float, shape: [Int]) {
        self.init(uninitialized: shape)
        withUnsafeMutableBufferPointer { $0.update(repeating: value) }
    }

    /// A rank-0 tensor.
    public init(scalar: Float) { self.init(shape: [], values: [scalar]) }

    public var rank: Int { shape.count }
    public var count: Int { shapeElementCount(shape) }
    public var requiresGrad: Bool { node != nil }
    public var isReadOnly: Bool { storage.isReadOnly }

    /// A copy of the elements.
    public var scalars: [Float] { withUnsafeBufferPointer { Array($0) } }

    /// The single element of a one-element tensor.
    public var item: Float {
        precondition(count == 1, "item of a tensor with \(count) elements")
        return withUnsafePointer { $0[0] }
    }

    public func dim(_ axis: Int) -> Int { shape[normalizedAxis(axis, rank: rank)] }

    /// The same values, cut off from the autodiff graph.
    public func detached() -> Tensor { Tensor(storage: storage, offset: offset, shape: shape) }

    /// A new tensor with the same values in fresh, writable, owned storage (no graph).
    public func copy() -> Tensor {
        let out = Tensor(uninitialized: shape)
        withTensorPointers(writing: out, reading: self) { o, p in o.update(from: p, count: count) }
        return out
    }

    /// A leaf that requires a gradient: a trainable parameter or an input being differentiated.
    public func requiringGrad(name: String = "") -> Tensor {
        var t = detached()
        t.node = GradNode(leafShape: shape, name: name)
        return t
    }

    /// The accumulated gradient of a leaf after `backward`.
    public var grad: Tensor? { node?.leafGradient }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let preview = withUnsafeBufferPointer {
            $0.prefix(8).map { String(format: "%.5g", $0) }.joined(separator: ", ")
        }
        return "Tensor(\(shape)\(requiresGrad ? ", grad" : "")) [\(preview)\(count > 8 ? ", ..." : "")]"
    }
}

// MARK: - Random initialisation

/// A small, fast, seedable generator (SplitMix64) for initialisation and tests.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    public mutating func nextUnitFloat() -> Double { Double(next() >> 11) * 0x1.0p-53 }
    /// Standard normal (Box-Muller).
    public mutating func nextNormal() -> Double {
        let u1 = max(nextUnitFloat(), 1e-300), u2 = nextUnitFloat()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }
}

extension Tensor {
    /// Normal(mean, std) values from a seeded generator.
    public static func randomNormal(_ shape: [Int], mean: Float = 0, std: Float = 1, generator: inout SplitMix64)
        -> Tensor
    {
        let t = Tensor(uninitialized: shape)
        t.withUnsafeMutableBufferPointer { p in
            for i in p.indices { p[i] = mean + std * Float(generator.nextNormal()) }
        }
        return t
    }

    /// Uniform values in [low, high) from a seeded generator.
    public static func randomUniform(_ shape: [Int], low: Float, high: Float, generator: inout SplitMix64) -> Tensor {
        let t = Tensor(uninitialized: shape)
        t.withUnsafeMutableBufferPointer { p in
            for i in p.indices { p[i] = low + (high - low) * Float(generator.nextUnitFloat()) }
        }
        return t
    }
}
