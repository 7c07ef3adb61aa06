import Foundation

/// One axis of a chart: maps data values to [0, 1] and proposes labelled ticks.
///
/// Values spanning more than two decades (all positive) are drawn on a log axis, so a learning
/// rate sampled from 1e-5 to 1e-2 does not squeeze three quarters of its trials against one end.
public struct ChartScale: Sendable, Equatable {
    public var lower: Double
    public var upper: Double
    public var logarithmic: Bool

    /// A scale covering `values` (non-finite ones ignored): log when `allowLog`, all positive and
    /// max / min > 100; a single value gets a small range around it; no values gives [0, 1].
    public init(covering values: [Double], allowLog: Bool = true, includeZero: Bool = false) {
        let finite = values.filter(\.isFinite)
        guard var lo = finite.min(), var hi = finite.max() else {
            self.init(lower: 0, upper: 1, logarithmic: false)
            return
        }
        if allowLog, lo > 0, hi / lo > 100 {
            self.init(lower: lo, upper: hi, logarithmic: true)
            return
        }
        if includeZero { lo = min(lo, 0); hi = max(hi, 0) }
        if lo == hi {
            let pad = lo == 0 ? 1 : abs(lo) * 0.1
            lo -= pad
            hi += pad
        }
        self.init(lower: lo, upper: hi, logarithmic: false)
    }

    public init(lower: Double, upper: Double, logarithmic: Bool) {
        self.lower = lower
        self.upper = upper
        self.logarithmic = logarithmic
    }

    /// Where `value` falls, 0 at `lower` and 1 at `upper` (outside for values outside the range).
    public func position(_ value: Double) -> Double {
        if logarithmic {
            let a = log10(lower), b = log10(upper)
            return b == a ? 0.5 : (log10(max(value, .leastNormalMagnitude)) - a) / (b - a)
        }
        return upper == lower ? 0.5 : (value - lower) / (upper - lower)
    }

    /// About `count` round tick values inside the range: powers of ten on a log axis, multiples of
    /// 1, 2 or 5 times a power of ten on a linear one.
    public func ticks(count: Int = 5) -> [Double] {
        if logarithmic {
            let first = Int(ceil(log10(lower) - 1e-9)), last = Int(floor(log10(upper) + 1e-9))
            guard first <= last else { return [lower, upper] }
            let stride = max(1, (last - first + 1 + count - 1) / count)
            return Swift.stride(from: first, through: last, by: stride).map { pow(10, Double($0)) }
        }
        let span = upper - lower
        guard span > 0, span.isFinite else { return [lower] }
        let rough = span / Double(max(count, 1))
        let exponent = Int(floor(log10(rough)))
        let magnitude = pow(10, Double(exponent))
        let mantissa = [1, 2, 5, 10].first { Double($0) * magnitude >= rough } ?? 10
        // Multiples of mantissa x 10^exponent, computed from integers and one division by a power of ten
        // (exact), so 3 x 0.2 is 0.6 and not 0.6000000000000001.
        func value(_ i: Int) -> Double {
            exponent < 0 ? Double(i * mantissa) / pow(10, Double(-exponent)) : Double(i * mantissa) * magnitude
        }
        let step = Double(mantissa) * magnitude
        let first = Int(ceil(lower / step - 1e-9)), last = Int(floor(upper / step + 1e-9))
        guard first <= last else { return [lower] }
        return (first...last).map(value)
    }

    /// A tick or value label: short, `%g`-like.
    public static func label(_ value: Double) -> String {
        if value == 0 { return "0" }
        if abs(value) >= 1e-3 && abs(value) < 1e5 { return String(format: "%.4g", value) }
        return String(format: "%.2g", value)
    }
}
