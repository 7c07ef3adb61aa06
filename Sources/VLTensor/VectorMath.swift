import CVectorMath
import Foundation

/// Vectorised transcendental functions for the hot loops (softmax, sigmoid, GELU).
///
/// `Foundation.exp` costs a libm call per element; attention and the MLP activations evaluate tens
/// of millions of exponentials per image. These run 8 lanes at a time with a Cephes-style
/// polynomial (range reduction by ln 2, degree-6 minimax polynomial, exponent by bit assembly):
/// within 2 ulp of `exp` on [-87, 88], exactly 0 below (so -infinity masks stay exact zeros).
public enum VectorMath {
    public typealias V = SIMD8<Float>

    /// The AVX2+FMA kernels of CVectorMath run on this CPU (same polynomial, 8 lanes per
    /// instruction instead of the 4 the baseline-x86-64 Swift code gets): the array functions below
    /// hand their work to them, and keep the portable SIMD code for other CPUs.
    public static let wide = vlseg_vector_math_wide() != 0

    @inline(__always)
    public static func load(_ p: UnsafePointer<Float>) -> V { V(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]) }

    @inline(__always)
    public static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) {
        p[0] = v[0]; p[1] = v[1]; p[2] = v[2]; p[3] = v[3]
        p[4] = v[4]; p[5] = v[5]; p[6] = v[6]; p[7] = v[7]
    }

    @inline(__always)
    public static func exp(_ x: V) -> V {
        let hi = V(repeating: 88.3762626647949), lo = V(repeating: -87.3365447505531)
        var v = x.replacing(with: hi, where: x .> hi).replacing(with: lo, where: x .< lo)
        // n = round(v / ln 2) by the 1.5·2^23 trick: adding it leaves the rounded integer in the low
        // mantissa bits, which also gives n as an integer without a float-to-int conversion.
        let magic = V(repeating: 12582912)
        let t = v * 1.44269504088896341 + magic
        let fx = t - magic
        let n = unsafeBitCast(t, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
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
        let pow2n = unsafeBitCast((n &+ 127) &<< 23, to: V.self)
        y = y * pow2n
        return y.replacing(with: 0, where: x .< lo)
    }

    /// out[i] = exp(x[i] - shift), returning the sum (softmax numerators).
    @inline(__always)
    public static func expShifted(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int, shift: Float)
        -> Float
    {
        if wide { return vlseg_exp_shifted(x, out, n, shift) }
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
            let v = load(x + i)
            m = m.replacing(with: v, where: v .> m)
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
        if wide { return vlseg_sigmoid(x, out, n, a) }
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
        if wide { return vlseg_quick_gelu(x, out, n) }
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
