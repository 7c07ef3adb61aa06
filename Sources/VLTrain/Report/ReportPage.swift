import Foundation

/// The report page: a pure function from loaded data to one self-contained HTML document (inline
/// CSS and SVG, images as `data:` URIs, no script, nothing fetched). Every string from a run, a
/// dataset or a config reaches the page through `HTML`, which escapes it.
public enum ReportPage {
    /// The page of one run.
    public static func render(run: RunReportData, generated: String) -> String {
        page(
            title: "VLSeg run report: \(URL(fileURLWithPath: run.directory).lastPathComponent)",
            generated: generated, body: runSections(run, headingLevel: 2))
    }

    /// The page of a sweep: its trials, parameters vs objective, then its best trial's run.
    public static func render(sweep: SweepReportData, generated: String) -> String {
        var body = sweepSections(sweep)
        if let run = sweep.bestRun {
            body.append(
                HTML.element(
                    "section", [("id", "best-run")],
                    [
                        HTML.element("h2", text: "Best trial's run"),
                        HTML.element("p", [], [.text("Run directory: "), code(run.directory)]),
                    ] + runSections(run, headingLevel: 3)))
        } else if let why = sweep.bestRunMissing {
            body.append(
                HTML.element(
                    "section", [("id", "best-run")],
                    [HTML.element("h2", text: "Best trial's run"), missing(why)]))
        }
        return page(title: "VLSeg sweep report: \(sweep.summary.study)", generated: generated, body: body)
    }

    // MARK: Page frame

    static let css: StaticString = """
        body{font-family:system-ui,sans-serif;margin:24px;color:#1a1a1a;background:#ffffff;max-width:1180px}
        h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:28px}
        h3{font-size:16px}table{border-collapse:collapse;font-size:13px;margin:8px 0}
        th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
        th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
        tr.best td{background:#ffe9d6;font-weight:600}pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px;max-height:480px}
        .missing{color:#8a5a00;font-style:italic}.charts{display:flex;flex-wrap:wrap;gap:16px}
        .worst{display:flex;flex-wrap:wrap;gap:12px}.worst figure{margin:0;border:1px solid #ddd;padding:6px}
        .worst img{image-rendering:pixelated;margin-right:4px}figcaption{font-size:12px;max-width:520px;overflow-wrap:anywhere}
        code{overflow-wrap:anywhere}
        """

    static func page(title: String, generated: String, body: [HTML]) -> String {
        HTML.document(
            lang: "en",
            head: [
                HTML.void("meta", [("charset", "utf-8")]),
                // No fetch of any kind: the page is read offline and must not call out.
                HTML.void(
                    "meta",
                    [
                        ("http-equiv", "Content-Security-Policy"),
                        ("content", "default-src 'none'; img-src data:; style-src 'unsafe-inline'"),
                    ]),
                HTML.element("title", text: title),
                HTML.styleSheet(css),
            ],
            body: [HTML.element("h1", text: title), HTML.element("p", [("class", "generated")], text: generated)]
                + body)
    }

    static func missing(_ why: String) -> HTML { HTML.element("p", [("class", "missing")], text: why) }
    static func code(_ s: String) -> HTML { HTML.element("code", text: s) }
    static func number(_ v: Double?, _ format: String = "%.4f") -> String {
        guard let v, v.isFinite else { return "-" }
        return String(format: format, v)
    }

    static func heading(_ level: Int, _ text: String) -> HTML {
        level <= 2 ? HTML.element("h2", text: text) : HTML.element("h3", text: text)
    }

    /// A table with a header row; `numeric` columns are right-aligned.
    static func table(
        _ headers: [String], _ rows: [[String]], numeric: Set<Int> = [], rowClasses: [String?] = [], id: String? = nil
    ) -> HTML {
        let head = HTML.element("tr", [], headers.map { HTML.element("th", text: $0) })
        let body = rows.enumerated().map { r, row in
            HTML.element(
                "tr", [("class", r < rowClasses.count ? rowClasses[r] : nil)],
                row.enumerated().map { c, cell in
                    HTML.element("td", [("class", numeric.contains(c) ? "num" : nil)], text: cell)
                })
        }
        // A key-value table has no header row.
        let thead = headers.allSatisfy(\.isEmpty) ? [] : [HTML.element("thead", [], [head])]
        return HTML.element("table", [("id", id)], thead + [HTML.element("tbody", [], body)])
    }

    // MARK: Run

    static func runSections(_ run: RunReportData, headingLevel h: Int) -> [HTML] {
        [
            summarySection(run, h), curvesSection(run, h), checkpointSection(run, h), testSection(run, h),
            worstSection(run, h), configSection(run, h),
        ]
    }

    static func summarySection(_ run: RunReportData, _ h: Int) -> HTML {
        var rows: [[String]] = [["run directory", run.directory]]
        if let t = run.training {
            rows += [
                ["method", t.method], ["seed", "\(t.seed)"], ["steps", "\(t.steps)"], ["epochs", "\(t.epochs)"],
                ["stopped early", t.stoppedEarly ? "yes" : "no"], ["trainable parameters", "\(t.trainableParameters)"],
                ["ranks", "\(t.ranks)"], ["training time", String(format: "%.1f s", t.wallSeconds)],
            ]
        } else {
            rows.append(["training record", "none (\(TrainingRecord.fileName) is written when a run finishes)"])
        }
        return HTML.element("section", [("id", "summary")], [heading(h, "Summary"), table(["", ""], rows)])
    }

    /// The value series `key` of records of `kind`, by step.
    static func series(_ run: RunReportData, kind: String, key: String, name: String) -> Charts.Series {
        Charts.Series(
            name: name,
            points: run.records.filter { $0.kind == kind }.compactMap { r in
                r.values[key].map { (Double(r.step), $0) }
            })
    }

    static func curvesSection(_ run: RunReportData, _ h: Int) -> HTML {
        var children = [heading(h, "Curves")]
        if let why = run.missing["metrics"] {
            children.append(missing(why))
        } else {
            let loss = Charts.lineChart(
                title: "Loss by step",
                series: [
                    series(run, kind: "train", key: "loss", name: "train loss"),
                    series(run, kind: "val", key: "val_loss", name: "validation loss"),
                ], xLabel: "step", yLabel: "loss")
            let dice = Charts.lineChart(
                title: "Validation Dice by step",
                series: [
                    series(run, kind: "val", key: "val_dice", name: "Dice (mean over images)"),
                    series(run, kind: "val", key: "val_dice_pooled", name: "Dice (pooled)"),
                ], xLabel: "step", yLabel: "Dice")
            children.append(
                HTML.element(
                    "div", [("class", "charts")],
                    [
                        loss ?? missing("no loss was recorded"),
                        dice ?? missing("no validation was recorded (trainer.eval_every)"),
                    ]))
        }
        return HTML.element("section", [("id", "curves")], children)
    }

    static func checkpointSection(_ run: RunReportData, _ h: Int) -> HTML {
        var children = [heading(h, "Best checkpoint")]
        if let why = run.missing["checkpoints"] {
            children.append(missing(why))
        } else {
            var rows: [[String]] = [
                ["best", run.bestCheckpoint ?? "none (no validation decided one)"],
                ["latest", run.latestCheckpoint ?? "none"],
            ]
            if let t = run.training {
                rows.append(["best step", t.bestStep.map(String.init) ?? "-"])
                rows.append(["best validation Dice", number(t.bestValidationDice)])
            }
            rows.append(["saved", run.checkpoints.joined(separator: ", ")])
            children.append(table(["", ""], rows))
        }
        return HTML.element("section", [("id", "checkpoint")], children)
    }

    static func testSection(_ run: RunReportData, _ h: Int) -> HTML {
        var children = [heading(h, "Test scores")]
        if let e = run.evaluation {
            children.append(
                table(
                    ["", "Dice", "IoU", "Dice (pooled)", "IoU (pooled)"],
                    [
                        [
                            "at \(e.inputSize)x\(e.inputSize)", number(e.dice), number(e.iou), number(e.dicePooled),
                            number(e.iouPooled),
                        ],
                        [
                            "at the images' own size (\(e.resize))", number(e.diceOriginal), number(e.iouOriginal),
                            number(e.diceOriginalPooled), number(e.iouOriginalPooled),
                        ],
                    ], numeric: [1, 2, 3, 4]))
            children.append(
                HTML.element(
                    "p", [],
                    text:
                        "\(e.images) images of split '\(e.split)', loss \(number(e.loss)), threshold \(e.threshold), checkpoint \(e.checkpoint ?? "none (base model)")"
                ))
        } else if let why = run.missing["test"] {
            children.append(missing(why))
        }
        children.append(heading(h + 1, "Per-image Dice"))
        if let scores = run.perImage, !scores.isEmpty {
            let chart = Charts.histogram(
                title: "Per-image Dice on the test split", values: scores.map(\.dice),
                xLabel: "Dice (per image, model resolution)")
            let sorted = scores.map(\.dice).sorted()
            let median =
                sorted.count % 2 == 1
                ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
            children.append(chart ?? missing("no finite per-image score"))
            children.append(
                HTML.element(
                    "p", [],
                    text:
                        "\(scores.count) images; median \(number(median)), min \(number(sorted.first)), max \(number(sorted.last)); scores from \(run.perImageSource ?? "?")"
                ))
        } else {
            children.append(missing(run.missing["per-image"] ?? "no per-image scores"))
        }
        return HTML.element("section", [("id", "test")], children)
    }

    static func dataURI(_ png: [UInt8]) -> String { "data:image/png;base64," + Data(png).base64EncodedString() }

    static func worstSection(_ run: RunReportData, _ h: Int) -> HTML {
        var children = [heading(h, "Lowest-Dice test images")]
        guard !run.worst.isEmpty else {
            children.append(missing(run.missing["worst"] ?? "no per-image predictions"))
            return HTML.element("section", [("id", "worst")], children)
        }
        children.append(
            HTML.element(
                "p", [],
                text:
                    "Each: the image, the target mask over it (green) and the prediction over it (red), lowest Dice first."
            ))
        let figures = run.worst.enumerated().map { k, w -> HTML in
            let s = w.score
            let images = [("image", w.image), ("target", w.truth), ("prediction", w.prediction)].map { label, png in
                HTML.void(
                    "img",
                    [
                        ("src", dataURI(png)), ("width", "\(w.width)"), ("height", "\(w.height)"),
                        ("alt", "\(label) of \(s.image)"), ("class", "overlay \(label)"),
                    ])
            }
            let caption = HTML.element(
                "figcaption", [],
                [
                    HTML.element("b", text: "#\(k + 1) Dice \(number(s.dice)), IoU \(number(s.iou))"),
                    .text(s.diceOriginal.map { " (at its own size: Dice \(number($0)))" } ?? ""),
                    HTML.void("br"), .text("image: "), code(s.image), .text(", mask: "), code(s.mask),
                    HTML.void("br"), .text("prompt: "), HTML.element("q", [("class", "prompt")], text: s.prompt),
                ])
            return HTML.element("figure", [], images + [caption])
        }
        children.append(HTML.element("div", [("class", "worst")], figures))
        return HTML.element("section", [("id", "worst")], children)
    }

    static func configSection(_ run: RunReportData, _ h: Int) -> HTML {
        var children = [heading(h, "Resolved config")]
        if let text = run.configText {
            children.append(HTML.element("pre", [("id", "config")], text: text))
        } else if let why = run.missing["config"] {
            children.append(missing(why))
        }
        return HTML.element("section", [("id", "config-section")], children)
    }

    // MARK: Sweep

    static func sweepSections(_ sweep: SweepReportData) -> [HTML] {
        let s = sweep.summary
        let done = s.trials.filter { $0.state == .complete }.count
        var overview: [[String]] = [
            ["sweep directory", sweep.directory], ["study", s.study], ["experiment", s.experiment ?? "-"],
            ["objective", "\(s.objective.metric) (\(s.objective.direction.rawValue))"],
            ["trials", "\(s.trials.count) of \(s.trialsTarget.map(String.init) ?? "?"), \(done) complete"],
        ]
        if let best = s.bestTrial, let t = s.trials.first(where: { $0.number == best }) {
            overview.append(["best trial", "\(best): \(s.objective.metric) \(number(t.value, "%.6g"))"])
        } else {
            overview.append(["best trial", "none yet"])
        }
        let names = Array(Set(s.trials.flatMap(\.params.keys))).sorted()
        let trials = s.trials.sorted { $0.number < $1.number }
        let rows = trials.map { t in
            ["\(t.number)", t.state.rawValue, number(t.value, "%.6g")] + names.map { t.params[$0]?.description ?? "" }
                + [number(t.seconds, "%.1f"), t.runDir ?? "", t.error ?? ""]
        }
        let headers = ["trial", "state", s.objective.metric] + names + ["seconds", "run directory", "error"]
        let numeric = Set([0, 2, 3 + names.count])
        let chart = Charts.parallelCoordinates(
            title: "Parameters vs \(s.objective.metric)", trials: trials, objective: s.objective.metric,
            best: s.bestTrial)
        return [
            HTML.element(
                "section", [("id", "sweep")], [HTML.element("h2", text: "Sweep"), table(["", ""], overview)]),
            HTML.element(
                "section", [("id", "trials")],
                [
                    HTML.element("h2", text: "Trials"),
                    table(
                        headers, rows, numeric: numeric,
                        rowClasses: trials.map { $0.number == s.bestTrial ? "best" : nil },
                        id: "trials-table"),
                ]),
            HTML.element(
                "section", [("id", "parameters")],
                [
                    HTML.element("h2", text: "Parameters vs objective"),
                    chart ?? missing("no trial has a value yet"),
                ]),
        ]
    }
}
