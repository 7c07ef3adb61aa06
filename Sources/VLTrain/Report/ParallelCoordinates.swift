import Foundation

extension Charts {
    /// One vertical axis of a parallel-coordinates chart: numbers on a `ChartScale`, or categories
    /// spaced evenly in sorted order.
    enum ParallelAxis {
        case numeric(ChartScale)
        case categorical([String])

        init(values: [SweepSummary.ParameterValue]) {
            let numbers = values.compactMap(\.number)
            if numbers.count == values.count {
                self = .numeric(ChartScale(covering: numbers))
            } else {
                self = .categorical(Array(Set(values.map(\.description))).sorted())
            }
        }

        func position(_ value: SweepSummary.ParameterValue) -> Double? {
            switch self {
            case let .numeric(scale):
                guard let n = value.number else { return nil }
                return scale.position(n)
            case let .categorical(names):
                guard let i = names.firstIndex(of: value.description) else { return nil }
                return names.count == 1 ? 0.5 : Double(i) / Double(names.count - 1)
            }
        }

        /// Tick labels and their positions.
        var ticks: [(label: String, at: Double)] {
            switch self {
            case let .numeric(scale):
                return scale.ticks(count: 4).map { (ChartScale.label($0), scale.position($0)) }
            case let .categorical(names):
                return names.enumerated().map {
                    ($0.element, names.count == 1 ? 0.5 : Double($0.offset) / Double(names.count - 1))
                }
            }
        }

        var isLogarithmic: Bool {
            if case let .numeric(scale) = self { return scale.logarithmic }
            return false
        }
    }

    /// Parameters vs objective: one vertical axis per parameter (sorted by name) and a last one for
    /// the objective; one line per trial that has a value, the best trial drawn on top in its own
    /// colour. Axes spanning more than two decades are logarithmic (marked "log"). Nil when no trial
    /// has a value.
    public static func parallelCoordinates(
        title: String, trials: [SweepSummary.Trial], objective: String, best: Int?, width: Double = 900,
        height: Double = 360
    ) -> HTML? {
        let scored = trials.filter { $0.value?.isFinite ?? false }
        guard !scored.isEmpty else { return nil }
        let names = Array(Set(scored.flatMap(\.params.keys))).sorted()
        var axes = names.map { name in ParallelAxis(values: scored.compactMap { $0.params[name] }) }
        axes.append(.numeric(ChartScale(covering: scored.compactMap(\.value))))
        let labels = names + [objective]
        let top = 40.0, bottom = 48.0, side = 70.0
        let plotHeight = height - top - bottom
        let gap = labels.count > 1 ? (width - 2 * side) / Double(labels.count - 1) : 0
        func x(_ axis: Int) -> Double { labels.count > 1 ? side + Double(axis) * gap : width / 2 }
        func y(_ fraction: Double) -> Double { top + (1 - fraction) * plotHeight }

        var parts: [HTML] = []
        for (k, axis) in axes.enumerated() {
            parts.append(line(x(k), top, x(k), top + plotHeight, stroke: "#555555"))
            for tick in axis.ticks {
                parts.append(line(x(k) - 3, y(tick.at), x(k) + 3, y(tick.at), stroke: "#555555"))
                parts.append(text(tick.label, x: x(k) + 5, y: y(tick.at) + 4, anchor: "start", size: 10))
            }
            let name = labels[k] + (axis.isLogarithmic ? " (log)" : "")
            parts.append(text(name, x: x(k), y: top - 14, size: 11, weight: k == axes.count - 1 ? "bold" : nil))
        }
        // The best trial last, so it is drawn over the others.
        let ordered = scored.sorted { ($0.number == best ? 1 : 0, $0.number) < ($1.number == best ? 1 : 0, $1.number) }
        for trial in ordered {
            var values = names.map { trial.params[$0] }
            values.append(trial.value.map { SweepSummary.ParameterValue.number($0) })
            // A trial without one of the parameters (conditional search spaces) breaks its line there.
            var segments: [[String]] = [[]]
            for (k, v) in values.enumerated() {
                guard let v, let p = axes[k].position(v) else {
                    segments.append([])
                    continue
                }
                segments[segments.count - 1].append("\(number(x(k))),\(number(y(p)))")
            }
            let isBest = trial.number == best
            for segment in segments where !segment.isEmpty {
                parts.append(
                    HTML.element(
                        "polyline",
                        [
                            ("points", segment.joined(separator: " ")), ("fill", "none"),
                            ("stroke", isBest ? palette[1] : palette[0]), ("stroke-width", isBest ? "3" : "1.5"),
                            ("stroke-opacity", isBest ? "1" : "0.55"), ("class", isBest ? "trial best" : "trial"),
                        ],
                        [
                            HTML.element(
                                "title",
                                text: "trial \(trial.number): \(objective) \(ChartScale.label(trial.value ?? .nan))")
                        ]))
            }
        }
        parts.append(
            text(
                "one line per trial with a value; the best trial in orange", x: width / 2, y: height - 12, size: 11))
        return svg(title: title, width: width, height: height, cssClass: "chart parallel-coordinates", parts)
    }
}
