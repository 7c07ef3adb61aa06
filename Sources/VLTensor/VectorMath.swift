import Foundation

/// Vectorised transcendental functions for the hot loops (softmax, sigmoid, GELU).
///
/// `Foundation.exp` costs a libm call per element; attention and the MLP activations evaluate tens
/// of millions of exponentials per image. These run 8 lanes at a time with a Cephes-style
/// polynomial (range reduction by ln 2, degree-6 minimax polynomial, exponent by bit assembly):
/// within 2 ulp of `exp` on [-87, 88], exactly 0 below (so -infinity masks stay exact zeros).
public enum VectorMath {
    public typealias V = SIMD8<Float>

    @inline(__always)
    public static func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }

    @inline(__always)
    public static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }

    @inline(__always)
    public static func exp(_ x: V) -> V {
        let hi = V(repeating: 88.3762626647949), lo = V(repeating: -87.3365447505531)
        var v = x.clamped(lowerBound: lo, upperBound: hi)
        var fx = v * 1.44269504088896341 + 0.5
        fx = fx.rounded(.down)
        v = v - fx * 0.693359375
        v = v + fx * 2.12194440e-4
        let z = v * v
        var y = V(repeating: 1.9875691500e-4)
        y = y * v + 1.3981999507e-3
        y = y * v + 8.3334519073e-3
        y = y * v + 4.1665795894e-2
        y = y * v + 1.6666665459e-1
        y = y * v + 5.0000001201e-1
        y = y * z + v + 1
        let n = SIMD8<Int32>(fx) &+ 127
        let pow2n = unsafeBitCast(n &<< 23, to: V.self)
        y = y * pow2n
        return y.replacing(with: 0, where: x .< lo)
    }

    /// out[i] = exp(x[i] - shift), returning the sum (softmax numerators).
    @inline(__always)
    public static func expShifted(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int, shift: Float) -> Float {
        var acc = V(repeating: 0)
        var i = 0
        let s = V(repeating: shift)
        while i + 8 <= n {
            let e = exp(load(x + i) - s)
            store(e, out + i)
            acc += e
            i += 8
        }
        var sum = acc.sum()
        while i < n {
            let e = Foundation.exp(x[i] - shift)
            out[i] = e
            sum += e
            i += 1
        }
        return sum
    }

    /// Largest element of x[0..<n] (-infinity when empty).
    @inline(__always)
    public static func maximum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var m = V(repeating: -.infinity)
        var i = 0
        while i + 8 <= n {
            m = pointwiseMax(m, load(x + i))
            i += 8
        }
        var r = m.max()
        while i < n { r = Swift.max(r, x[i]); i += 1 }
        return r
    }

    /// x[i] *= s.
    @inline(__always)
    public static func scale(_ x: UnsafeMutablePointer<Float>, _ n: Int, by s: Float) {
        for i in 0..<n { x[i] *= s }
    }

    /// out[i] = 1 / (1 + exp(-a * x[i])) (a = 1: sigmoid; 1.702: quick GELU's gate).
    public static func sigmoid(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int, a: Float = 1) {
        var i = 0
        let one = V(repeating: 1)
        while i + 8 <= n {
            let v = load(x + i)
            let s = one / (one + exp(-a * v))
            store(s, out + i)
            i += 8
        }
        while i < n { out[i] = stableSigmoid(a * x[i]); i += 1 }
    }

    /// out[i] = x[i] * sigmoid(1.702 x[i]).
    public static func quickGELU(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        let one = V(repeating: 1)
        while i + 8 <= n {
            let v = load(x + i)
            let s = v / (one + exp(-1.702 * v))
            store(s, out + i)
            i += 8
        }
        while i < n { out[i] = x[i] * stableSigmoid(1.702 * x[i]); i += 1 }
    }
}
