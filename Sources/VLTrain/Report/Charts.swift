import Foundation

/// Inline SVG charts of the report, drawn in Swift so the page needs no script and no network.
///
/// Every label goes through `HTML`, so a series or axis named from data is escaped like any text.
public enum Charts {
    /// One line of a line chart.
    public struct Series: Sendable {
        public var name: String
        public var points: [(x: Double, y: Double)]

        public init(name: String, points: [(x: Double, y: Double)]) {
            self.name = name
            self.points = points.filter { $0.x.isFinite && $0.y.isFinite }
        }
    }

    /// Colour-blind-safe palette (Okabe-Ito), in the order series use it.
    public static let palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]

    /// The plot area inside an SVG of `width` x `height`: margins for the axes' labels.
    struct Frame {
        var width: Double, height: Double
        var left = 64.0, right = 16.0, top = 28.0, bottom = 44.0
        var plotWidth: Double { width - left - right }
        var plotHeight: Double { height - top - bottom }
        func x(_ fraction: Double) -> Double { left + fraction * plotWidth }
        func y(_ fraction: Double) -> Double { top + (1 - fraction) * plotHeight }
    }

    static func number(_ v: Double) -> String { String(format: "%.1f", v) }

    /// The `<svg>` element, sized by its view box, with a `<title>` for screen readers.
    static func svg(title: String, width: Double, height: Double, cssClass: String, _ children: [HTML]) -> HTML {
        HTML.element(
            "svg",
            [
                ("xmlns", "http://www.w3.org/2000/svg"), ("class", cssClass),
                ("viewBox", "0 0 \(Int(width)) \(Int(height))"), ("width", "\(Int(width))"),
                ("height", "\(Int(height))"), ("role", "img"),
            ],
            [HTML.element("title", text: title)] + children)
    }

    static func text(
        _ value: String, x: Double, y: Double, anchor: String = "middle", size: Int = 11, rotate: Bool = false,
        weight: String? = nil
    ) -> HTML {
        HTML.element(
            "text",
            [
                ("x", number(x)), ("y", number(y)), ("text-anchor", anchor), ("font-size", "\(size)"),
                ("font-weight", weight),
                ("transform", rotate ? "rotate(-90 \(number(x)) \(number(y)))" : nil),
            ], text: value)
    }

    static func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String, width: Double = 1)
        -> HTML
    {
        HTML.element(
            "line",
            [
                ("x1", number(x1)), ("y1", number(y1)), ("x2", number(x2)), ("y2", number(y2)),
                ("stroke", stroke), ("stroke-width", String(format: "%g", width)),
            ])
    }

    /// The axes of a 2-D chart: frame, grid lines and labelled ticks on both, and the axis titles.
    static func axes(_ f: Frame, x: ChartScale, y: ChartScale, xLabel: String, yLabel: String) -> [HTML] {
        var parts: [HTML] = [
            HTML.element(
                "rect",
                [
                    ("x", number(f.left)), ("y", number(f.top)), ("width", number(f.plotWidth)),
                    ("height", number(f.plotHeight)), ("fill", "#ffffff"), ("stroke", "#888888"),
                ])
        ]
        for t in y.ticks() {
            let py = f.y(y.position(t))
            parts.append(line(f.left, py, f.left + f.plotWidth, py, stroke: "#e4e4e4"))
            parts.append(text(ChartScale.label(t), x: f.left - 6, y: py + 4, anchor: "end"))
        }
        for t in x.ticks() {
            let px = f.x(x.position(t))
            parts.append(line(px, f.top, px, f.top + f.plotHeight, stroke: "#e4e4e4"))
            parts.append(text(ChartScale.label(t), x: px, y: f.top + f.plotHeight + 16))
        }
        parts.append(text(xLabel, x: f.left + f.plotWidth / 2, y: f.height - 6, size: 12))
        parts.append(text(yLabel, x: 14, y: f.top + f.plotHeight / 2, size: 12, rotate: true))
        return parts
    }

    /// A line chart of `series` against a shared x axis (steps), with a legend; nil when no series
    /// has a point (the page then says what is missing instead of drawing empty axes).
    public static func lineChart(
        title: String, series: [Series], xLabel: String, yLabel: String, width: Double = 560, height: Double = 300
    ) -> HTML? {
        let drawn = series.filter { !$0.points.isEmpty }
        guard !drawn.isEmpty else { return nil }
        let f = Frame(width: width, height: height)
        let xs = ChartScale(covering: drawn.flatMap { $0.points.map(\.x) }, allowLog: false)
        let ys = ChartScale(covering: drawn.flatMap { $0.points.map(\.y) }, allowLog: false)
        var parts = axes(f, x: xs, y: ys, xLabel: xLabel, yLabel: yLabel)
        for (k, s) in drawn.enumerated() {
            let color = palette[k % palette.count]
            let coords = s.points.map { "\(number(f.x(xs.position($0.x)))),\(number(f.y(ys.position($0.y))))" }
            if s.points.count > 1 {
                parts.append(
                    HTML.element(
                        "polyline",
                        [
                            ("points", coords.joined(separator: " ")), ("fill", "none"), ("stroke", color),
                            ("stroke-width", "2"), ("class", "series"), ("data-series", s.name),
                        ]))
            }
            // Markers, so a series of one point (one evaluation) still shows.
            for p in s.points {
                parts.append(
                    HTML.element(
                        "circle",
                        [
                            ("cx", number(f.x(xs.position(p.x)))), ("cy", number(f.y(ys.position(p.y)))), ("r", "2.5"),
                            ("fill", color),
                        ],
                        [HTML.element("title", text: "\(s.name) at \(ChartScale.label(p.x)): \(ChartScale.label(p.y))")]
                    ))
            }
            // Legend along the top, each entry as wide as its name (about 6.5 px a character at 11 px).
            let lx = f.left + drawn[..<k].map { 34 + 6.5 * Double($0.name.count) }.reduce(0, +)
            parts.append(line(lx, 12, lx + 18, 12, stroke: color, width: 3))
            parts.append(text(s.name, x: lx + 22, y: 16, anchor: "start"))
        }
        return svg(title: title, width: width, height: height, cssClass: "chart line-chart", parts)
    }

    /// A histogram of `values` in [lower, upper] with `bins` equal bins (the last one closed); nil
    /// when there is no finite value.
    public static func histogram(
        title: String, values: [Double], lower: Double = 0, upper: Double = 1, bins: Int = 20, xLabel: String,
        width: Double = 560, height: Double = 260
    ) -> HTML? {
        let finite = values.filter(\.isFinite)
        guard !finite.isEmpty, bins > 0, upper > lower else { return nil }
        var counts = [Int](repeating: 0, count: bins)
        for v in finite {
            let b = Int(((v - lower) / (upper - lower) * Double(bins)).rounded(.down))
            counts[min(max(b, 0), bins - 1)] += 1
        }
        let f = Frame(width: width, height: height)
        let xs = ChartScale(lower: lower, upper: upper, logarithmic: false)
        let ys = ChartScale(covering: counts.map(Double.init), allowLog: false, includeZero: true)
        var parts = axes(f, x: xs, y: ys, xLabel: xLabel, yLabel: "images")
        let binWidth = f.plotWidth / Double(bins)
        for (b, c) in counts.enumerated() where c > 0 {
            let top = f.y(ys.position(Double(c))), base = f.y(ys.position(0))
            let from = lower + Double(b) * (upper - lower) / Double(bins)
            let to = from + (upper - lower) / Double(bins)
            parts.append(
                HTML.element(
                    "rect",
                    [
                        ("x", number(f.left + Double(b) * binWidth + 1)), ("y", number(top)),
                        ("width", number(max(binWidth - 2, 1))), ("height", number(base - top)), ("fill", palette[0]),
                        ("class", "bar"),
                    ],
                    [
                        HTML.element(
                            "title", text: "\(ChartScale.label(from)) to \(ChartScale.label(to)): \(c) image(s)")
                    ]))
        }
        return svg(title: title, width: width, height: height, cssClass: "chart histogram", parts)
    }
}
