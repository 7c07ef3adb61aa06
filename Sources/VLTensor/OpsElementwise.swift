import Foundation

// Differentiable elementwise operations with broadcasting.

extension Tensor {
    static func binary(_ a: Tensor, _ b: Tensor, _ op: Kernels.BinaryOp, _ name: String) -> Tensor {
        let out = Kernels.broadcastBinary(a, b, op)
        guard willRecord(a, b) else { return Tensor.unrecorded(out, name: name) }
        let aShape = a.shape, bShape = b.shape
        // Save only what the derivative needs.
        let savedA = (op == .mul || op == .div) ? a.detached() : nil
        let savedB = (op == .mul || op == .div) ? b.detached() : nil
        return record(out, inputs: [a, b], name: name) { g, needs in
            var ga: Tensor? = nil, gb: Tensor? = nil
            switch op {
            case .add:
                if needs[0] { ga = Kernels.reduce(g, toShape: aShape) }
                if needs[1] { gb = Kernels.reduce(g, toShape: bShape) }
            case .sub:
                if needs[0] { ga = Kernels.reduce(g, toShape: aShape) }
                if needs[1] { gb = Kernels.scaled(Kernels.reduce(g, toShape: bShape), -1) }
            case .mul:
                if needs[0] { ga = Kernels.reduce(Kernels.broadcastBinary(g, savedB!, .mul), toShape: aShape) }
                if needs[1] { gb = Kernels.reduce(Kernels.broadcastBinary(g, savedA!, .mul), toShape: bShape) }
            case .div:
                let gOverB = Kernels.broadcastBinary(g, savedB!, .div)
                if needs[0] { ga = Kernels.reduce(gOverB, toShape: aShape) }
                if needs[1] {
                    // d(a/b)/db = -a/b^2 = -(g/b) * (a/b)
                    let aOverB = Kernels.broadcastBinary(savedA!, savedB!, .div)
                    gb = Kernels.scaled(
                        Kernels.reduce(Kernels.broadcastBinary(gOverB, aOverB, .mul), toShape: bShape), -1)
                }
            }
            return [ga, gb]
        }
    }

    public static func + (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .add, "add") }
    public static func - (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .sub, "sub") }
    public static func * (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .mul, "mul") }
    public static func / (a: Tensor, b: Tensor) -> Tensor { binary(a, b, .div, "div") }

    /// alpha * self.
    public func scaled(_ alpha: Float) -> Tensor {
        let out = Kernels.scaled(self, alpha)
        return Tensor.record(out, inputs: [self], name: "scale") { g, _ in [Kernels.scaled(g, alpha)] }
    }

    public static func * (a: Tensor, s: Float) -> Tensor { a.scaled(s) }
    public static func * (s: Float, a: Tensor) -> Tensor { a.scaled(s) }
    public static prefix func - (a: Tensor) -> Tensor { a.scaled(-1) }

    /// self + constant.
    public func adding(_ c: Float) -> Tensor {
        let out = Tensor(uninitialized: shape)
        withTensorPointers(writing: out, reading: self) { o, p in
            parallelFor(count) { r in for i in r { o[i] = p[i] + c } }
        }
        return Tensor.record(out, inputs: [self], name: "add_scalar") { g, _ in [g] }
    }

    public static func + (a: Tensor, c: Float) -> Tensor { a.adding(c) }
    public static func - (a: Tensor, c: Float) -> Tensor { a.adding(-c) }
}

// MARK: - Unary activations

/// A pointwise function with its derivative, expressed from the input x and output y.
struct PointwiseFunction {
    let name: String
    let forward: (Float) -> Float
    /// dy/dx given x and y.
    let derivative: (Float, Float) -> Float
}

extension Tensor {
    func pointwise(_ f: PointwiseFunction) -> Tensor {
        let out = Tensor(uninitialized: shape)
        let fw = f.forward
        withTensorPointers(writing: out, reading: self) { o, p in
            parallelFor(count, grain: 8192) { r in for i in r { o[i] = fw(p[i]) } }
        }
        guard Tensor.willRecord(self) else { return Tensor.unrecorded(out, name: f.name) }
        let x = detached(), y = out.detached(), d = f.derivative
        return Tensor.record(out, inputs: [self], name: f.name) { g, _ in
            let gx = Tensor(uninitialized: x.shape)
            withTensorPointers(writing: gx, reading: g, x, y) { go, pg, px, py in
                parallelFor(x.count, grain: 8192) { r in for i in r { go[i] = pg[i] * d(px[i], py[i]) } }
            }
            return [gx]
        }
    }

    /// max(x, 0); backward passes the gradient where the output is positive. Tight loops (no
    /// per-element closure) so they vectorise: ReLU runs over the widest activations of the decoders.
    public func relu() -> Tensor {
        let out = Tensor(uninitialized: shape)
        withTensorPointers(writing: out, reading: self) { o, p in
            parallelFor(count, grain: 32768) { r in
                for i in r { o[i] = max(p[i], 0) }
            }
        }
        guard Tensor.willRecord(self) else { return Tensor.unrecorded(out, name: "relu") }
        let y = out.detached()
        return Tensor.record(out, inputs: [self], name: "relu") { g, _ in [reluBackward(g, output: y)] }
    }

    public func sigmoid() -> Tensor {
        let out = Tensor(uninitialized: shape)
        withTensorPointers(writing: out, reading: self) { o, p in
            parallelFor(count, grain: 16384) { r in VectorMath.sigmoid(p + r.lowerBound, o + r.lowerBound, r.count) }
        }
        guard Tensor.willRecord(self) else { return Tensor.unrecorded(out, name: "sigmoid") }
        let y = out.detached()
        return Tensor.record(out, inputs: [self], name: "sigmoid") { g, _ in
            let gx = Tensor(uninitialized: y.shape)
            withTensorPointers(writing: gx, reading: g, y) { go, pg, py in
                parallelFor(y.count, grain: 16384) { r in for i in r { go[i] = pg[i] * py[i] * (1 - py[i]) } }
            }
            return [gx]
        }
    }

    public func tanh() -> Tensor {
        pointwise(PointwiseFunction(name: "tanh", forward: { Foundation.tanh($0) }, derivative: { _, y in 1 - y * y }))
    }

    /// x * sigmoid(1.702 x), CLIP's activation.
    public func quickGELU() -> Tensor {
        let out = Tensor(uninitialized: shape)
        withTensorPointers(writing: out, reading: self) { o, p in
            parallelFor(count, grain: 16384) { r in VectorMath.quickGELU(p + r.lowerBound, o + r.lowerBound, r.count) }
        }
        guard Tensor.willRecord(self) else { return Tensor.unrecorded(out, name: "quick_gelu") }
        let x = detached()
        return Tensor.record(out, inputs: [self], name: "quick_gelu") { g, _ in
            let gx = Tensor(uninitialized: x.shape)
            withTensorPointers(writing: gx, reading: g, x) { go, pg, px in
                parallelFor(x.count, grain: 16384) { r in
                    // s = sigmoid(1.702 x) into the output, then d/dx = s + 1.702 x s (1 - s).
                    VectorMath.sigmoid(px + r.lowerBound, go + r.lowerBound, r.count, a: 1.702)
                    for i in r {
                        let s = go[i]
                        go[i] = pg[i] * (s + 1.702 * px[i] * s * (1 - s))
                    }
                }
            }
            return [gx]
        }
    }

    /// The exact GELU, x * Phi(x) (PyTorch's default).
    public func gelu() -> Tensor {
        pointwise(
            PointwiseFunction(
                name: "gelu",
                forward: { x in 0.5 * x * (1 + erf(x * 0.70710678118654752)) },
                derivative: { x, _ in
                    let cdf = 0.5 * (1 + erf(x * 0.70710678118654752))
                    let pdf = 0.39894228040143268 * Foundation.exp(-0.5 * x * x)
                    return cdf + x * pdf
                }))
    }

    public func exp() -> Tensor {
        pointwise(PointwiseFunction(name: "exp", forward: { Foundation.exp($0) }, derivative: { _, y in y }))
    }

    /// Natural logarithm (inputs must be positive).
    public func log() -> Tensor {
        pointwise(PointwiseFunction(name: "log", forward: { Foundation.log($0) }, derivative: { x, _ in 1 / x }))
    }

    public func square() -> Tensor {
        pointwise(PointwiseFunction(name: "square", forward: { $0 * $0 }, derivative: { x, _ in 2 * x }))
    }
}

/// 1 / (1 + e^-x) without overflow for large |x|.
@inline(__always)
public func stableSigmoid(_ x: Float) -> Float {
    if x >= 0 { return 1 / (1 + Foundation.exp(-x)) }
    let e = Foundation.exp(x)
    return e / (1 + e)
}
